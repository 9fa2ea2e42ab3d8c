"""Follow each Linear/Conv2d's output channels through a torch.fx graph to the layers reading them.

A *chain* starts at a producer (nn.Linear / nn.Conv2d call) and walks forward through nodes that
keep channels separate (BatchNorm, element-wise activations, dropout, pooling, flatten) to the
*consumers* whose input dimension is those channels (nn.Linear, nn.Conv2d with groups=1).
Anything else that touches the channels (add, cat, mul, a custom op, the graph output, a
parameter read through get_attr, a module called twice) is a *blocker*: removing channels there
would need a matching change we cannot make safely.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.AlphaDropout,
)  # fmt: skip
_POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS: set[Any] = {
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.softplus, F.dropout, F.dropout1d, F.dropout2d,
}  # fmt: skip
_POOL_FUNCTIONS: set[Any] = {
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous"}


@dataclass
class Layout:
    """Where the producer's channels sit in a tensor: dim ``dim`` of a rank-``rank`` tensor, or
    flattened channel-major into dim 1 of a 2-D tensor with ``spatial`` entries per channel."""

    rank: int
    dim: int
    spatial: int = 0  # > 0: flattened, feature = channel * spatial + position

    @property
    def flat(self) -> bool:
        return self.spatial > 0


@dataclass
class Consumer:
    node: fx.Node
    spatial: int  # 0: reads channels directly (Conv2d dim 1, Linear last dim); > 0: flattened


@dataclass
class Chain:
    producer: fx.Node
    batchnorms: list[fx.Node] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    blockers: list[tuple[fx.Node, str]] = field(default_factory=list)


def describe(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_function":
        target = getattr(target, "__name__", str(target))
    return f"node '{node.name}' ({node.op} {target})"


def _shape(node: fx.Node) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _only_first_arg_is(node: fx.Node, src: fx.Node) -> bool:
    """The channel tensor is args[0] and no other argument is a graph value."""
    if not node.args or node.args[0] is not src:
        return False
    others = list(node.args[1:]) + list(node.kwargs.values())
    return not any(isinstance(a, fx.Node) for a in others)


def _flatten_dims(node: fx.Node) -> tuple[Any, Any]:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return start, end


class ChannelGraph:
    """A traced model with shapes, and the channel chain of each producer."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.calls: dict[str, int] = {}
        self.attr_reads: dict[str, list[fx.Node]] = {}
        for node in gm.graph.nodes:
            if node.op == "call_module":
                self.calls[str(node.target)] = self.calls.get(str(node.target), 0) + 1
            elif node.op == "get_attr":
                owner = str(node.target).rsplit(".", 1)[0] if "." in str(node.target) else ""
                self.attr_reads.setdefault(owner, []).append(node)
        self._producers = [
            n
            for n in gm.graph.nodes
            if isinstance(self.module(n), (nn.Linear, nn.Conv2d))
            and not isinstance(self.module(n), nn.modules.linear.NonDynamicallyQuantizableLinear)
        ]

    def module(self, node: fx.Node) -> Optional[nn.Module]:
        return self.modules.get(str(node.target)) if node.op == "call_module" else None

    def producers(self) -> list[fx.Node]:
        """Calls of prunable layers (nn.Linear / nn.Conv2d), in graph order."""
        return list(self._producers)

    def reaches_output(self, producer: fx.Node) -> bool:
        """Whether the model output depends on this layer other than through another
        Linear/Conv2d: then it is an output layer (its channels are outputs, or are mixed into
        them by e.g. a LayerNorm) and channel removal must leave it alone."""
        layers = set(self._producers)
        stack, seen = [producer], {producer}
        while stack:
            for user in stack.pop().users:
                if user.op == "output":
                    return True
                if user not in seen and user not in layers:
                    seen.add(user)
                    stack.append(user)
        return False

    def _usage_problem(self, node: fx.Node) -> Optional[str]:
        """Modules whose parameters we slice must be called once and not read via get_attr."""
        name = str(node.target)
        if self.calls.get(name, 0) != 1:
            return f"module '{name}' is called {self.calls.get(name, 0)} times (shared weights)"
        for owner, reads in self.attr_reads.items():
            if owner == name or owner.startswith(name + "."):
                return f"parameters of '{name}' are read directly by {describe(reads[0])}"
        return None

    def chain(self, producer: fx.Node) -> Chain:
        chain = Chain(producer)
        mod = self.module(producer)
        shape = _shape(producer)
        problem = self._usage_problem(producer)
        if problem is not None:
            chain.blockers.append((producer, problem))
        if mod is None or shape is None:
            chain.blockers.append((producer, "no shape information"))
            return chain
        if isinstance(mod, nn.Conv2d) and mod.groups != 1:
            chain.blockers.append((producer, "grouped/depthwise Conv2d output"))
            return chain
        dim = 1 if isinstance(mod, nn.Conv2d) else len(shape) - 1
        self._walk(producer, Layout(len(shape), dim), chain)
        return chain

    def _walk(self, src: fx.Node, layout: Layout, chain: Chain) -> None:
        for user in list(src.users):
            nxt = self._step(src, user, layout, chain)
            if nxt is not None:
                self._walk(user, nxt, chain)

    def _step(self, src: fx.Node, user: fx.Node, layout: Layout, chain: Chain) -> Optional[Layout]:
        """Classify one use of the channels; returns the layout to keep walking with, or None."""
        if user.op == "output":
            chain.blockers.append((user, "the channels are model outputs"))
            return None
        per_channel_4d = not layout.flat and layout.rank == 4 and layout.dim == 1
        mod = self.module(user)
        if mod is not None:
            if user.args[0] is not src or len(user.args) != 1 or user.kwargs:
                chain.blockers.append((user, "module called with several inputs"))
                return None
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and not layout.flat:
                if layout.dim == 1:
                    problem = self._usage_problem(user)
                    if problem is None:
                        chain.batchnorms.append(user)
                        return layout
                    chain.blockers.append((user, problem))
                    return None
            elif isinstance(mod, nn.Linear):
                if layout.flat or layout.dim == layout.rank - 1:
                    problem = self._usage_problem(user)
                    if problem is not None:
                        chain.blockers.append((user, problem))
                        return None
                    want = mod.in_features
                    src_shape = _shape(src)
                    if src_shape is None or src_shape[-1] != want:
                        chain.blockers.append((user, "Linear input size does not match"))
                        return None
                    chain.consumers.append(Consumer(user, layout.spatial))
                    return None
            elif isinstance(mod, nn.Conv2d):
                if per_channel_4d and mod.groups == 1:
                    problem = self._usage_problem(user)
                    if problem is not None:
                        chain.blockers.append((user, problem))
                        return None
                    chain.consumers.append(Consumer(user, 0))
                    return None
            elif isinstance(mod, _ELEMENTWISE_MODULES):
                return layout
            elif isinstance(mod, _POOL_MODULES) and per_channel_4d:
                if not getattr(mod, "return_indices", False):
                    return layout
            elif isinstance(mod, nn.Flatten) and not layout.flat:
                return self._flatten(user, layout, mod.start_dim, mod.end_dim, chain)
            chain.blockers.append((user, f"{type(mod).__name__} cannot follow these channels"))
            return None
        if user.op == "call_function":
            if user.target in _ELEMENTWISE_FUNCTIONS and _only_first_arg_is(user, src):
                return layout
            if user.target in _POOL_FUNCTIONS and per_channel_4d and _only_first_arg_is(user, src):
                if not user.kwargs.get("return_indices", False):
                    return layout
            if user.target is torch.flatten and _only_first_arg_is(user, src) and not layout.flat:
                start, end = _flatten_dims(user)
                return self._flatten(user, layout, start, end, chain)
            if user.target is operator.getitem:
                chain.blockers.append((user, "indexing into the channels"))
                return None
            chain.blockers.append((user, "operation mixes or reshapes the channels"))
            return None
        if user.op == "call_method" and user.args and user.args[0] is src:
            name = str(user.target)
            if name in _ELEMENTWISE_METHODS and _only_first_arg_is(user, src):
                return layout
            if name == "flatten" and _only_first_arg_is(user, src) and not layout.flat:
                start, end = _flatten_dims(user)
                return self._flatten(user, layout, start, end, chain)
            if name == "size" and user.args[1:] in ((0,), (-layout.rank,)) and layout.dim != 0:
                return None  # reads the batch size only
            if name in ("view", "reshape") and not layout.flat and self._is_batch_flatten(user):
                return self._flatten(user, layout, 1, -1, chain)
        chain.blockers.append((user, "operation mixes or reshapes the channels"))
        return None

    def _is_batch_flatten(self, node: fx.Node) -> bool:
        """x.view(x.size(0), -1) / x.reshape(N, -1): flattens all but the batch dim without a
        hard-coded feature count (a literal count would break once channels are removed)."""
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        return len(sizes) == 2 and isinstance(sizes[1], int) and sizes[1] == -1

    def _flatten(
        self, node: fx.Node, layout: Layout, start: Any, end: Any, chain: Chain
    ) -> Optional[Layout]:
        in_shape = _shape(node.args[0]) if isinstance(node.args[0], fx.Node) else None
        out_shape = _shape(node)
        end_ok = end in (-1, layout.rank - 1)
        if start != 1 or not end_ok or layout.dim != 1 or in_shape is None or out_shape is None:
            chain.blockers.append((node, "flatten other than start_dim=1 to the last dim"))
            return None
        spatial = math.prod(in_shape[2:])
        if len(out_shape) != 2 or out_shape[1] != in_shape[1] * spatial:
            chain.blockers.append((node, "unexpected flatten result shape"))
            return None
        return Layout(2, 1, spatial)
