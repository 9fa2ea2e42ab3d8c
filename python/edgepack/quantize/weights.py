"""Weight quantization: int8, symmetric, one scale per output channel (row).

The scale of row n is max|w[n]| / 127 (edgepack.choose_qparams, symmetric int8); a zero row gets
scale 1. Zeros (e.g. pruned weights) quantize to exactly 0, so masks survive quantization.
"""

from __future__ import annotations

import torch

from ..kernels import choose_qparams, quantize


def effective_weight(module: torch.nn.Module, name: str = "weight") -> torch.Tensor:
    """The weight the module computes with: honours torch.nn.utils.prune masks
    (weight_orig * weight_mask), detached, float32, contiguous, on CPU."""
    orig = getattr(module, name + "_orig", None)
    mask = getattr(module, name + "_mask", None)
    if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
        w = orig.detach() * mask.detach().to(orig.dtype)
    else:
        t = getattr(module, name)
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{type(module).__name__}.{name} is not a tensor")
        w = t.detach()
    return w.to(torch.float32).contiguous().clone()


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 of a weight [N, ...] (flattened to [N, K]).

    Returns (w_q int8 [N, K], scale float32 [N]).
    """
    if not torch.is_floating_point(w):
        raise TypeError(f"weight must be floating point, got {w.dtype}")
    w2 = w.detach().to(torch.float32).reshape(w.shape[0], -1).contiguous()
    if not bool(torch.isfinite(w2).all()):
        raise ValueError("weight holds NaN or inf; cannot quantize it")
    scale, _ = choose_qparams(w2, dtype="int8", symmetric=True, axis=0)
    q = torch.as_tensor(quantize(w2, scale, 0, axis=0, dtype="int8"))
    return q, torch.as_tensor(scale, dtype=torch.float32)
