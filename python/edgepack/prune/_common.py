"""Argument checks, layer selection and mask plumbing shared by the pruning criteria.

Every public entry point validates everything (and computes every new mask) before it touches
the model, so a bad argument never leaves a half-pruned model behind.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Optional, Union

import torch
from torch import nn
from torch.nn.utils import prune as tprune

# Layers whose ``weight`` the criteria prune. Subclasses count (isinstance), except the
# out-projection of nn.MultiheadAttention: MHA reads ``out_proj.weight`` directly without calling
# the module, so a torch.nn.utils.prune forward pre-hook on it would never apply the mask.
PRUNABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
_UNHOOKABLE: tuple[type[nn.Module], ...] = (nn.modules.linear.NonDynamicallyQuantizableLinear,)

LayerSpec = Union[str, type[nn.Module]]
LayerFilter = Union[LayerSpec, Sequence[LayerSpec], None]


def check_amount(amount: object, name: str = "amount") -> float:
    """``amount`` as a float in [0, 1); a clear error otherwise (1.0 would delete whole layers)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(amount).__name__}")
    value = float(amount)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {amount!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_model(model: object) -> nn.Module:
    """The model must be an nn.Module with every parameter and buffer on the CPU."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for pname, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if tensor.device.type != "cpu":
            raise ValueError(
                f"model must be on the CPU (edgepack prunes for CPU deployment); "
                f"{pname!r} is on {tensor.device}. Call model.cpu() first."
            )
    return model


def _layer_specs(layers: LayerFilter) -> list[LayerSpec]:
    if isinstance(layers, (str, type)):
        items: list[object] = [layers]
    elif isinstance(layers, Iterable):
        items = list(layers)
    else:
        raise TypeError(
            f"layers must be a module name/glob, a module type, or a sequence of those; "
            f"got {type(layers).__name__}"
        )
    specs: list[LayerSpec] = []
    for item in items:
        if isinstance(item, str) or (isinstance(item, type) and issubclass(item, nn.Module)):
            specs.append(item)
        else:
            raise TypeError(
                f"layers entries must be module names (str) or nn.Module subclasses, got {item!r}"
            )
    return specs


def is_prunable(module: nn.Module) -> bool:
    return isinstance(module, PRUNABLE) and not isinstance(module, _UNHOOKABLE)


def select_layers(model: nn.Module, layers: LayerFilter = None) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of the prunable layers chosen by ``layers``.

    ``layers=None`` picks every nn.Linear / nn.Conv2d. Otherwise each entry is either a module
    type (``nn.Conv2d``: every prunable layer of that type) or a qualified module name, which may
    be an fnmatch glob (``"features.*"``). A name that matches nothing, or only layers that cannot
    be pruned, is an error rather than a silent no-op.
    """
    named = list(model.named_modules())
    prunable = [(n, m) for n, m in model.named_modules() if is_prunable(m)]
    if layers is None:
        chosen = prunable
    else:
        specs = _layer_specs(layers)
        for spec in specs:
            if isinstance(spec, str):
                hits = [m for n, m in named if fnmatch.fnmatchcase(n, spec)]
                if not hits:
                    raise ValueError(f"layers: no module named {spec!r} in the model")
                if not any(is_prunable(m) for m in hits):
                    kinds = sorted({type(m).__name__ for m in hits})
                    raise ValueError(
                        f"layers: {spec!r} matches only {', '.join(kinds)}; "
                        "only nn.Linear and nn.Conv2d weights can be pruned"
                    )

        def wanted(name: str, module: nn.Module) -> bool:
            for spec in specs:
                if isinstance(spec, str):
                    if fnmatch.fnmatchcase(name, spec):
                        return True
                elif isinstance(module, spec):
                    return True
            return False

        chosen = [(n, m) for n, m in prunable if wanted(n, m)]
    if not chosen:
        raise ValueError(
            "no prunable layers: the model (after the layers= filter) has no nn.Linear or nn.Conv2d"
        )
    return chosen


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight the layer computes with: weight_orig * weight_mask when masked, else weight.

    Read from the parametrization rather than ``module.weight``: that attribute is only
    refreshed by the forward pre-hook, so it is stale right after an optimizer step.
    """
    orig = getattr(module, "weight_orig", None)
    mask = getattr(module, "weight_mask", None)
    if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
        return (orig * mask).detach()
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()


def current_mask(module: nn.Module) -> torch.Tensor:
    """The layer's existing weight mask as bool (all True when not pruned yet)."""
    mask = getattr(module, "weight_mask", None)
    if isinstance(mask, torch.Tensor):
        return mask.detach() != 0
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return torch.ones(weight.shape, dtype=torch.bool)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The [out, K] matrix the int8 kernels pack, in THEIR K order.

    Linear: the weight itself. Conv2d [out, in/groups, kh, kw]: K runs in (kh, kw, in) order,
    input channel innermost, i.e. ``weight.permute(0, 2, 3, 1).reshape(out, -1)``: the column
    order of QuantConv2d's NHWC im2col (edgepack.nn.conv), so 1xB blocks and N:M groups along K
    are contiguous in the packed sparse weight. (Grouped convs stay fp32 in compress; they use
    the same order for consistency.) ``from_matrix`` is the inverse.
    """
    if weight.dim() == 4:
        return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight.reshape(weight.shape[0], -1)


def from_matrix(mat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of ``as_matrix``: an [out, K] tensor in kernel K order back to ``shape``."""
    if len(shape) == 4:
        out, cin, kh, kw = shape
        return mat.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return mat.reshape(shape)


def smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k smallest of 1-D ``scores``; ties go to the earliest positions.

    kthvalue + a tie fix-up instead of a full argsort: global scope ranks every weight of the
    model at once, and an argsort's int64 index array would cost 8 bytes per weight.
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool)
    if k >= n:
        return torch.ones(n, dtype=torch.bool)
    threshold = scores.kthvalue(k).values
    chosen = scores < threshold
    ties = (scores == threshold).nonzero().flatten()
    chosen[ties[: k - int(chosen.sum())]] = True
    return chosen


def _weight_hook(module: nn.Module) -> Optional[tprune.BasePruningMethod]:
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, tprune.BasePruningMethod) and hook._tensor_name == "weight":
            return hook
    return None


def apply_masks(plan: Sequence[tuple[nn.Module, torch.Tensor]]) -> None:
    """Install masks through torch.nn.utils.prune (weight = weight_orig * weight_mask).

    The first time a layer is pruned, custom_from_mask sets up the parametrization. Later calls
    write the new mask into the existing ``weight_mask`` buffer (callers pass masks that already
    contain the old zeros) instead of stacking another method into a PruningContainer, which
    would keep one full-size mask per call alive (hundreds over a gradual schedule).
    """
    for module, mask in plan:
        hook = _weight_hook(module)
        old = getattr(module, "weight_mask", None)
        if hook is not None and isinstance(old, torch.Tensor):
            with torch.no_grad():
                old.copy_(mask.to(dtype=old.dtype))
            # what the forward pre-hook would do: refresh the attribute used until then
            module.weight = hook.apply_mask(module)
            continue
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        tprune.custom_from_mask(module, "weight", mask.to(dtype=weight.dtype))


def clone_model(model: nn.Module) -> nn.Module:
    """copy.deepcopy that also works on a model pruned with torch.nn.utils.prune.

    A pruned layer's ``weight`` is a plain attribute holding weight_orig * weight_mask with a
    grad_fn, and deepcopy refuses non-leaf tensors; the copy gets a detached clone instead (the
    forward pre-hook recomputes it from the copied weight_orig and weight_mask anyway).
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def remove(model: nn.Module) -> nn.Module:
    """Make every torch.nn.utils.prune mask in ``model`` permanent, in place.

    Each pruned parameter becomes a plain parameter again holding weight_orig * weight_mask (the
    zeros are now real zeros; fine-tuning afterwards may make them non-zero). Modules that are
    not pruned are left alone. Returns ``model`` for chaining.
    """
    check_model(model)
    for module in model.modules():
        names = [
            hook._tensor_name
            for hook in list(module._forward_pre_hooks.values())
            if isinstance(hook, tprune.BasePruningMethod)
        ]
        for name in names:
            tprune.remove(module, name)
    return model
