"""channels(): structured pruning that physically removes output channels / neurons.

Reference semantics ("the masked model"): the original model with the removed output channels
of each pruned layer zeroed (weight rows and bias entries set to 0), everything else unchanged.
A removed channel is then a constant downstream, not necessarily zero: BatchNorm (eval) turns 0
into beta - mean * gamma / sqrt(var + eps), an activation f turns 0 into f(0) (sigmoid: 0.5).
The shrunk model drops those channels everywhere and folds the constant into the bias of the
layer that reads them (Linear: + W[:, removed] @ c; Conv2d: + sum over the kernel of
W[:, removed] * c). That fold is exact only where the consumer sees the constant at every
position: a Conv2d with zero padding sees 0 at the borders instead, so a non-zero constant
there is refused (bn_shift="drop" avoids the BatchNorm constant; see channels()).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils._pytree import tree_flatten

from ._common import LayerFilter, check_amount, check_model, clone_model, remove, select_layers
from ._graph import Chain, ChannelGraph, Consumer, describe

Importance = Union[str, Callable[[nn.Module], torch.Tensor]]


def _as_inputs(example_input: object) -> tuple[torch.Tensor, ...]:
    items = example_input if isinstance(example_input, tuple) else (example_input,)
    for i, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise TypeError(
                f"example_input must be a tensor or a tuple of tensors; item {i} is "
                f"{type(item).__name__}"
            )
        if item.device.type != "cpu":
            raise ValueError(f"example_input must be on the CPU, item {i} is on {item.device}")
    return tuple(items)


def _opt(module: nn.Module, name: str) -> Optional[torch.Tensor]:
    value = getattr(module, name, None)
    assert value is None or isinstance(value, torch.Tensor)
    return value


def _req(module: nn.Module, name: str) -> torch.Tensor:
    value = _opt(module, name)
    assert value is not None, name
    return value


def _scores(module: nn.Module, importance: Importance) -> torch.Tensor:
    weight = _req(module, "weight").detach()
    rows = weight.reshape(weight.shape[0], -1).float()
    if importance == "l1":
        return rows.abs().sum(dim=1)
    if importance == "l2":
        return rows.norm(dim=1)
    if callable(importance):
        scores = importance(module)
        if not isinstance(scores, torch.Tensor) or scores.shape != (weight.shape[0],):
            raise ValueError(
                f"importance callable must return a tensor of shape ({weight.shape[0]},) for "
                f"{type(module).__name__}, got {getattr(scores, 'shape', type(scores).__name__)}"
            )
        return scores.detach().float().cpu()
    raise ValueError(f"importance must be 'l1', 'l2' or a callable, got {importance!r}")


def _feature_index(channels: torch.Tensor, spatial: int) -> torch.Tensor:
    """Flattened feature indices of channels (channel-major, ``spatial`` features each)."""
    if spatial <= 1:
        return channels
    return (channels[:, None] * spatial + torch.arange(spatial)[None, :]).flatten()


def _has_zero_padding(conv: nn.Conv2d) -> bool:
    if conv.padding_mode != "zeros":
        return False  # reflect / replicate / circular padding of a constant is that constant
    if isinstance(conv.padding, str):
        return conv.padding == "same" and any(k > 1 for k in conv.kernel_size)
    return any(p > 0 for p in conv.padding)


def _set_param(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    requires_grad = old.requires_grad if isinstance(old, torch.Tensor) else True
    setattr(module, name, nn.Parameter(value.contiguous(), requires_grad=requires_grad))


def _slice_out(module: nn.Module, keep: torch.Tensor) -> None:
    _set_param(module, "weight", _req(module, "weight").detach()[keep])
    bias = _opt(module, "bias")
    if bias is not None:
        _set_param(module, "bias", bias.detach()[keep])
    if isinstance(module, nn.Linear):
        module.out_features = int(keep.numel())
    else:
        assert isinstance(module, nn.Conv2d)
        module.out_channels = int(keep.numel())


def _slice_bn(bn: nn.Module, keep: torch.Tensor) -> None:
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    if bn.affine:
        _set_param(bn, "weight", _req(bn, "weight").detach()[keep])
        _set_param(bn, "bias", _req(bn, "bias").detach()[keep])
    if bn.track_running_stats:
        bn.running_mean = _req(bn, "running_mean")[keep].clone()
        bn.running_var = _req(bn, "running_var")[keep].clone()
    bn.num_features = int(keep.numel())


def _slice_in(module: nn.Module, keep_features: torch.Tensor) -> None:
    _set_param(module, "weight", _req(module, "weight").detach()[:, keep_features])
    if isinstance(module, nn.Linear):
        module.in_features = int(keep_features.numel())
    else:
        assert isinstance(module, nn.Conv2d)
        module.in_channels = int(keep_features.numel())


def _constant(values: torch.Tensor, where: str) -> torch.Tensor:
    """values: [samples, k]; the per-column constant, or an error when a column varies."""
    first = values[0]
    spread = (values - first).abs().amax(dim=0) if values.shape[0] else torch.zeros_like(first)
    if bool((spread > 1e-6 * first.abs().clamp(min=1.0)).any()):
        raise ValueError(
            f"channels: removed channels reach {where} with values that vary over the batch or "
            "positions (e.g. average pooling with zero padding), so they cannot be folded into "
            "a bias exactly; restrict the pruned layers with layers="
        )
    return values.mean(dim=0, dtype=torch.float64)


def _absorb(
    model: nn.Module, consumer: Consumer, removed: torch.Tensor, seen: torch.Tensor,
    producer: str, bn_shift: str,
) -> None:  # fmt: skip
    """Fold the constant that the removed channels still contribute into the consumer's bias."""
    module = model.get_submodule(str(consumer.node.target))
    where = describe(consumer.node)
    weight = _req(module, "weight").detach().double()
    if isinstance(module, nn.Linear):
        cols = _feature_index(removed, consumer.spatial)
        const = _constant(seen[..., cols].reshape(-1, cols.numel()), where)
        delta = weight[:, cols] @ const
    else:
        assert isinstance(module, nn.Conv2d)
        x = seen[:, removed]  # [N, k, H, W]
        const = _constant(x.transpose(0, 1).reshape(removed.numel(), -1).T, where)
        if bool((const != 0).any()) and _has_zero_padding(module):
            hint = (
                " Pass bn_shift='drop' to remove the BatchNorm output too."
                if bn_shift == "absorb"
                else ""
            )
            raise ValueError(
                f"channels: removed channels of '{producer}' reach {where} as non-zero constants "
                f"(e.g. BatchNorm shift or f(0) != 0), and that Conv2d pads with zeros, so their "
                f"effect differs at the borders and cannot be folded into its bias exactly.{hint}"
                f" Or exclude '{producer}' with layers=."
            )
        delta = weight[:, removed].sum(dim=(2, 3)) @ const
    if not bool((delta != 0).any()):
        return
    dtype = _req(module, "weight").dtype
    bias = _opt(module, "bias")
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=dtype)
    _set_param(module, "bias", (bias.detach().double() + delta).to(dtype))


def _outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    with torch.no_grad():
        leaves, _ = tree_flatten(model(*inputs))
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


def _trace(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> ChannelGraph:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types; the message is what helps
        raise ValueError(
            f"channels() needs a model torch.fx can trace (symbolic_trace failed: {exc})"
        ) from exc
    with torch.no_grad():
        ShapeProp(gm).propagate(*inputs)
    return ChannelGraph(gm)


def channels(
    model: nn.Module,
    amount: float,
    *,
    example_input: Union[torch.Tensor, tuple[torch.Tensor, ...]],
    importance: Importance = "l1",
    layers: LayerFilter = None,
    bn_shift: str = "absorb",
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> nn.Module:
    """Remove ``round(amount * out)`` output channels / neurons of every prunable layer and
    shrink each layer that reads them. Returns a new model (a deep copy); ``model`` is untouched.

    - Covers nn.Linear and nn.Conv2d (groups=1) producers whose channels reach, through
      BatchNorm, element-wise activations, dropout, pooling and flatten, only nn.Linear or
      nn.Conv2d consumers: Linear->Linear, Conv->BN->Conv, Conv->ReLU->Pool->Flatten->Linear
      (the Linear loses channels x spatial-size inputs). Found by torch.fx symbolic_trace.
    - Layers whose output reaches the model output are never pruned. A dependency the tracer
      cannot follow (residual add, concat, shared module, unknown op) is refused with a
      ValueError listing those nodes; ``layers=`` (types and/or qualified names) restricts the
      pruned layers to the ones that can be followed.
    - ``importance``: "l1" / "l2" norm of each channel's weights, or a callable
      ``module -> Tensor[out]`` (higher = keep). At least one channel per layer is kept.
    - ``bn_shift``: "absorb" (default) keeps the reference semantics in the module docstring:
      a removed conv channel is zeroed BEFORE its BatchNorm, whose shift the next layer absorbs
      into its bias. "drop" zeroes the channel AFTER the BatchNorm (beta and gamma too), the
      usual choice when the next Conv2d pads with zeros (where a constant cannot be absorbed).
    - Verification: the shrunk model and the masked reference run on ``example_input`` in eval
      mode (in float64 where possible, so summation order does not blur the check) and must
      agree within the fp32 rounding of the folded biases (torch.allclose with ``rtol`` and
      ``atol`` times the output's magnitude); otherwise a RuntimeError. Equality is for eval
      mode: in training mode BatchNorm uses batch statistics; the folds assume running ones.
    - Masks from ``magnitude``/``blocks``/``n_of_m`` are made permanent on the copy first.
    """
    check_model(model)
    amount = check_amount(amount)
    inputs = _as_inputs(example_input)
    if bn_shift not in ("absorb", "drop"):
        raise ValueError(f"bn_shift must be 'absorb' or 'drop', got {bn_shift!r}")
    if not (isinstance(importance, str) or callable(importance)):
        raise ValueError(f"importance must be 'l1', 'l2' or a callable, got {importance!r}")
    if isinstance(importance, str) and importance not in ("l1", "l2"):
        raise ValueError(f"importance must be 'l1', 'l2' or a callable, got {importance!r}")

    flags = [m.training for m in model.modules()]
    result = remove(clone_model(model)).eval()
    selected = {name for name, _ in select_layers(result, layers)}
    graph = _trace(copy.deepcopy(result), inputs)
    chains: list[Chain] = []
    problems: list[str] = []
    for node in graph.producers():
        if str(node.target) not in selected:
            continue
        if graph.reaches_output(node):
            continue  # an output layer: the model's outputs depend on its channels directly
        chain = graph.chain(node)
        if chain.blockers:
            problems += [f"{node.target}: {describe(n)}: {why}" for n, why in chain.blockers]
        else:
            chains.append(chain)
    if problems:
        raise ValueError(
            "channels: cannot follow the channel dependencies of these layers (pass layers= to "
            "prune only the others):\n  " + "\n  ".join(problems)
        )
    if not chains:
        raise ValueError("channels: no prunable layer whose channels feed only Linear/Conv2d")

    plan: list[tuple[Chain, torch.Tensor, torch.Tensor]] = []
    for chain in chains:
        module = result.get_submodule(str(chain.producer.target))
        scores = _scores(module, importance)
        out = scores.numel()
        n_remove = min(round(amount * out), out - 1)
        order = torch.argsort(scores, stable=True)
        removed = order[:n_remove].sort().values
        keep = order[n_remove:].sort().values
        plan.append((chain, keep, removed))

    masked = _masked_model(result, plan, bn_shift)
    seen = _consumer_inputs(masked, plan, inputs)

    for chain, _keep, removed in plan:
        if removed.numel() == 0:
            continue
        producer = str(chain.producer.target)
        for consumer in chain.consumers:
            _absorb(result, consumer, removed, seen[consumer.node.name], producer, bn_shift)
    for chain, keep, removed in plan:
        if removed.numel() == 0:
            continue
        _slice_out(result.get_submodule(str(chain.producer.target)), keep)
        for bn in chain.batchnorms:
            _slice_bn(result.get_submodule(str(bn.target)), keep)
        for consumer in chain.consumers:
            target = result.get_submodule(str(consumer.node.target))
            _slice_in(target, _feature_index(keep, consumer.spatial))

    _verify(result, masked, inputs, rtol, atol)
    for module, flag in zip(result.modules(), flags):
        module.training = flag
    return result


def _masked_model(
    model: nn.Module, plan: Sequence[tuple[Chain, torch.Tensor, torch.Tensor]], bn_shift: str
) -> nn.Module:
    masked = copy.deepcopy(model).eval()
    with torch.no_grad():
        for chain, _, removed in plan:
            producer = masked.get_submodule(str(chain.producer.target))
            _req(producer, "weight")[removed] = 0
            bias = _opt(producer, "bias")
            if bias is not None:
                bias[removed] = 0
            if bn_shift == "drop":
                for bn_node in chain.batchnorms:
                    bn = masked.get_submodule(str(bn_node.target))
                    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
                    if bn.affine:
                        _req(bn, "weight")[removed] = 0
                        _req(bn, "bias")[removed] = 0
                    elif bn.track_running_stats:  # zero the normalized channel via its stats
                        _req(bn, "running_mean")[removed] = 0
                        _req(bn, "running_var")[removed] = float("inf")
    return masked


def _consumer_inputs(
    masked: nn.Module,
    plan: Sequence[tuple[Chain, torch.Tensor, torch.Tensor]],
    inputs: tuple[torch.Tensor, ...],
) -> dict[str, torch.Tensor]:
    """The input each consumer sees in the masked model (where the removed constants show)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for chain, _, _ in plan:
        for consumer in chain.consumers:
            name = consumer.node.name

            def hook(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                seen[name] = args[0].detach().clone()

            module = masked.get_submodule(str(consumer.node.target))
            handles.append(module.register_forward_pre_hook(hook))
    try:
        _outputs(masked, inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def _verify(
    model: nn.Module, masked: nn.Module, inputs: tuple[torch.Tensor, ...],
    rtol: float, atol: float,
) -> None:  # fmt: skip
    """Shrunk vs masked on the example input, both in float64 when the model allows it.

    float64 takes summation order out of the comparison (the shrunk layers add fewer terms in
    another order, which in fp32 differs by about sqrt(K) ulps on wide layers), so what remains
    is the fp32 rounding of the folded biases: a tight tolerance then separates rounding from a
    real mismatch. Models that cannot run in float64 are compared in their own precision.
    """
    wide = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    try:
        got = _outputs(copy.deepcopy(model).double(), wide)
        reference = _outputs(copy.deepcopy(masked).double(), wide)
    except (RuntimeError, TypeError):
        got, reference = _outputs(model, inputs), _outputs(masked, inputs)
    if len(got) != len(reference):
        raise RuntimeError("channels: the shrunk model returns a different output structure")
    for i, (a, b) in enumerate(zip(got, reference)):
        scale = float(b.abs().max()) if b.numel() else 1.0
        if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol * max(scale, 1.0)):
            err = float((a - b).abs().max()) if a.shape == b.shape else float("nan")
            raise RuntimeError(
                f"channels: verification failed, output {i} of the shrunk model differs from "
                f"the masked model (shapes {tuple(a.shape)} vs {tuple(b.shape)}, max |diff| "
                f"{err:.3g}, output scale {scale:.3g}); this is a bug, please report it"
            )
