"""Which modules can be folded / fused: found on the module graph, never guessed.

The graph comes from torch.fx when the model traces (any forward written with modules), else
from nn.Sequential chains (whose forward is a plain chain by definition). A pattern is used only
when it is provably local: the layer and the BatchNorm / ReLU module are each called exactly once
in the graph and the layer's output feeds nothing else. ReLU written as a function call
(F.relu / torch.relu) stays as it is: fusing it would need a rewritten forward, and compress
keeps the user's class.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from .fold import can_fold

FOLDABLE = (nn.Conv2d, nn.Linear)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)


@dataclass
class Plan:
    bn_folds: list[tuple[str, str]] = field(default_factory=list)  # (layer, bn)
    relu_fusions: list[tuple[str, str]] = field(default_factory=list)  # (layer, relu)
    dropouts: list[str] = field(default_factory=list)
    source: str = "none"  # "fx" or "sequential"


class _Tracer(fx.Tracer):
    """Leaves: every torch.nn / edgepack.nn module (the defaults plus our own)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m).__module__.startswith("edgepack.nn"):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _linear_out_2d(model: nn.Module, example_input: object) -> set[str]:
    """Names of Linear layers whose output is 2-D on the example input (BN1d folding needs it)."""
    if example_input is None:
        return set()
    seen: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    seen[name] = min(seen.get(name, out.dim()), out.dim()) if out.dim() == 2 else -1
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            _call(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    return {n for n, d in seen.items() if d == 2}


def _call(model: nn.Module, inp: object) -> object:
    if isinstance(inp, dict):
        return model(**inp)
    if isinstance(inp, tuple):
        return model(*inp)
    return model(inp)


def _fold_ok(layer_name: str, layer: nn.Module, bn: nn.Module, lin2d: set[str]) -> bool:
    if not can_fold(layer, bn):
        return False
    return not isinstance(layer, nn.Linear) or layer_name in lin2d


def plan_fx(model: nn.Module, lin2d: set[str]) -> Plan | None:
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - any trace failure means: use the Sequential scan
        return None
    mods = dict(model.named_modules())
    calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    plan = Plan(source="fx")

    def mod(node: fx.Node) -> nn.Module | None:
        if node.op != "call_module" or calls[str(node.target)] != 1:
            return None
        return mods.get(str(node.target))

    def sole_user(node: fx.Node) -> fx.Node | None:
        if len(node.users) != 1:
            return None
        user = next(iter(node.users))
        only_input = user.args[:1] == (node,) and len(user.args) == 1 and not user.kwargs
        return user if only_input else None

    for node in graph.nodes:
        layer = mod(node)
        if not isinstance(layer, FOLDABLE):
            continue
        name = str(node.target)
        cur = node
        nxt = sole_user(cur)
        while nxt is not None and isinstance(mod(nxt), DROPOUTS):
            cur, nxt = nxt, sole_user(nxt)
        if nxt is not None:
            bn = mod(nxt)
            if bn is not None and _fold_ok(name, layer, bn, lin2d):
                plan.bn_folds.append((name, str(nxt.target)))
                cur, nxt = nxt, sole_user(nxt)
                while nxt is not None and isinstance(mod(nxt), DROPOUTS):
                    cur, nxt = nxt, sole_user(nxt)
        if nxt is not None and isinstance(mod(nxt), nn.ReLU):
            plan.relu_fusions.append((name, str(nxt.target)))
    plan.dropouts = [n for n, m in model.named_modules() if isinstance(m, DROPOUTS)]
    return plan


def plan_sequential(model: nn.Module, lin2d: set[str]) -> Plan:
    plan = Plan(source="sequential")
    # a module registered at several places may run elsewhere too: never fold/fuse those
    seen = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        items = [(n, m) for n, m in seq.named_children()]
        if any(seen[id(m)] > 1 for _, m in items):
            continue
        pre = seq_name + "." if seq_name else ""
        for i, (cname, layer) in enumerate(items):
            if not isinstance(layer, FOLDABLE):
                continue
            j = i + 1
            while j < len(items) and isinstance(items[j][1], DROPOUTS):
                j += 1
            if j < len(items) and _fold_ok(pre + cname, layer, items[j][1], lin2d):
                plan.bn_folds.append((pre + cname, pre + items[j][0]))
                j += 1
                while j < len(items) and isinstance(items[j][1], DROPOUTS):
                    j += 1
            if j < len(items) and isinstance(items[j][1], nn.ReLU):
                plan.relu_fusions.append((pre + cname, pre + items[j][0]))
    plan.dropouts = [n for n, m in model.named_modules() if isinstance(m, DROPOUTS)]
    return plan


def make_plan(model: nn.Module, example_input: object = None) -> Plan:
    lin2d = _linear_out_2d(model, example_input)
    return plan_fx(model, lin2d) or plan_sequential(model, lin2d)
