"""BatchNorm folding into the preceding Conv2d / Linear (eval-mode statistics).

y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta = conv'(x) with
f = gamma / sqrt(var + eps), w' = w * f (per output channel), b' = (b - mean) * f + beta.
Computed in float64 and rounded once to the parameter dtype, so the folded layer equals the
original pair within fp32 rounding. Pruning reparametrizations (weight_orig * weight_mask) are
folded into weight_orig: since the mask is 0/1, pruned weights stay exactly zero.
"""

from __future__ import annotations

import torch
from torch import nn


def can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or isinstance(bn, nn.SyncBatchNorm):
        return False
    if bn.running_mean is None or bn.running_var is None or not bn.track_running_stats:
        return False
    if isinstance(layer, nn.Conv2d):
        return isinstance(bn, nn.BatchNorm2d) and bn.num_features == layer.out_channels
    if isinstance(layer, nn.Linear):
        return isinstance(bn, nn.BatchNorm1d) and bn.num_features == layer.out_features
    return False


def _param(module: nn.Module, name: str) -> torch.Tensor | None:
    """The stored tensor behind `name` (weight_orig under a pruning reparametrization)."""
    orig = getattr(module, name + "_orig", None)
    if isinstance(orig, torch.Tensor):
        return orig
    t = getattr(module, name, None)
    return t if isinstance(t, torch.Tensor) else None


@torch.no_grad()
def fold_bn(layer: nn.Module, bn: nn.Module) -> None:
    """Fold `bn` into `layer` in place (the caller then replaces bn with Identity)."""
    if not can_fold(layer, bn):
        raise ValueError(f"cannot fold {type(bn).__name__} into {type(layer).__name__}")
    w = _param(layer, "weight")
    assert w is not None
    assert isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d))
    assert bn.running_var is not None and bn.running_mean is not None
    var = bn.running_var.detach().to(torch.float64)
    mean = bn.running_mean.detach().to(torch.float64)
    gamma = bn.weight.detach().to(torch.float64) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().to(torch.float64) if bn.bias is not None else torch.zeros_like(var)
    f = gamma / torch.sqrt(var + float(bn.eps))
    shape = (-1,) + (1,) * (w.dim() - 1)
    w.copy_((w.detach().to(torch.float64) * f.reshape(shape)).to(w.dtype))
    b = _param(layer, "bias")
    b64 = b.detach().to(torch.float64) if b is not None else torch.zeros_like(mean)
    new_b = ((b64 - mean) * f + beta).to(w.dtype)
    if b is None:
        layer.bias = nn.Parameter(new_b, requires_grad=w.requires_grad)
    else:
        b.copy_(new_b)
    # a pruned module recomputes `weight` from weight_orig in its pre-hook; refresh it now too
    for name in ("weight", "bias"):
        orig = getattr(layer, name + "_orig", None)
        mask = getattr(layer, name + "_mask", None)
        if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
            setattr(layer, name, orig * mask)
