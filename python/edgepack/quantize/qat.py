"""Quantization-aware fine-tuning: fake-quant Linear / Conv2d sharing the kernels' exact rounding.

The forward pass of a fake-quant layer computes, in float32 torch ops, the same numbers as the
native dynamic int8 path (see edgepack.reference.linear_int8_ref):

  weights      per output channel, symmetric int8:
               w_scale[n] = float32(max_k |w[n, k]| / 127)   (in float64, 0 -> 1)
               w_q = rint(clamp(w * float32(1 / w_scale), -128, 127))
  activations  per row, uint8 asymmetric (dynamic_quant_rows_ref):
               a_scale[m] = float32((max(row, 0) - min(row, 0)) / 255)
               a_zp[m] = clip(-rint(min(row, 0) / a_scale[m]), 0, 255)
               a_c = rint(clamp(x * float32(1 / a_scale), -a_zp, 255 - a_zp))   (= a - a_zp)
  product      y = (a_c @ w_q.T) * float32(a_scale[m] * w_scale[n]) + bias

The integer product is computed in float32 on integer-valued tensors, which is exact while the
partial sums stay below 2**24 (K * 255 * 128 < 2**24, i.e. K <= 513); beyond that it differs from
the int32 kernel only by float32 rounding of the accumulation.

Rounding uses a straight-through estimator: d rint(clamp(v))/dv = 1 (the clamp range is the
row's own min/max, so it trims only float32 rounding and must not block the largest value),
and the scales are treated as constants (they are recomputed from the data every step, as the
dynamic kernels do at inference).

Conv2d is fake-quantized as im2col + the linear above, with the activation range chosen like
edgepack.nn.QuantConv2d: act_granularity="image" (the default, CompressionConfig
conv_activations="per_image") gives one uint8 range per image (its min/max widened to 0, so zero
padding stays exact); "row" gives one range per output position (the patch of Cin*kh*kw values
it reads, zero padding included). Integer sums do not depend on the order of K, so the (C, kh,
kw) order here equals the kernels' (kh, kw, C) order bit for bit.

Usage::

    qat_model = edgepack.prepare_qat(model)       # a copy; `model` is untouched
    ... train qat_model as usual ...
    compressed = edgepack.convert_qat(qat_model)  # strip fake-quant, then edgepack.compress
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "QATConv2d",
    "QATLinear",
    "convert_qat",
    "fake_quant_act_rows",
    "fake_quant_weight_rows",
    "prepare_qat",
    "strip_qat",
]

_TINY = torch.finfo(torch.float32).tiny


class _RoundClampSTE(torch.autograd.Function):
    """rint(clamp(v, lo, hi)) (half to even, like the kernels) with an identity gradient."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, lo: Any, hi: Any) -> torch.Tensor:
        if isinstance(lo, torch.Tensor):
            return torch.round(torch.maximum(torch.minimum(v, hi), lo))
        return torch.round(torch.clamp(v, lo, hi))

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return g, None, None


def _round_ste(
    v: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor
) -> torch.Tensor:
    return cast(torch.Tensor, _RoundClampSTE.apply(v, lo, hi))


def _finite_scale(s64: torch.Tensor) -> torch.Tensor:
    """float64 scale -> float32 with the kernels' fixes: 0 -> 1, at least FLT_MIN."""
    s = s64.to(torch.float32)
    s = torch.where(s == 0, torch.ones_like(s), s)
    return torch.clamp_min(s, _TINY)


def weight_scale_rows(w2d: torch.Tensor) -> torch.Tensor:
    """Per-row symmetric int8 scale, float32(max|w| / 127) computed in float64."""
    with torch.no_grad():
        amax = w2d.detach().abs().amax(dim=1).to(torch.float64)
        return _finite_scale(amax / 127.0)


def fake_quant_weight_rows(w2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_q as integer-valued float32 with STE gradient, w_scale float32 [N])."""
    if not torch.isfinite(w2d).all():
        raise ValueError("weight holds NaN or inf; cannot quantize it")
    scale = weight_scale_rows(w2d)
    inv = (1.0 / scale).to(torch.float32)
    v = w2d * inv[:, None]
    # The range is the row's own max, so the clamp only trims float32 rounding (127.00001):
    # it sits inside the straight-through estimate and never blocks the gradient of the
    # largest weight.
    return _round_ste(v, -128.0, 127.0), scale


def act_qparams_rows(x2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row uint8 asymmetric (scale float32 [M], zero_point float32 [M]) like the kernels."""
    with torch.no_grad():
        xd = x2d.detach()
        if xd.shape[1] == 0:
            mn = torch.zeros(xd.shape[0], dtype=torch.float64, device=xd.device)
            mx = mn
        else:
            mn = xd.amin(dim=1).to(torch.float64)
            mx = xd.amax(dim=1).to(torch.float64)
        lo = torch.clamp_max(mn, 0.0)
        hi = torch.clamp_min(mx, 0.0)
        s = _finite_scale((hi - lo) / 255.0)
        zp = torch.clamp(0.0 - torch.round(lo / s.to(torch.float64)), 0, 255).to(torch.float32)
        return s, zp


def fake_quant_act_rows(x2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a - a_zp as integer-valued float32 with STE gradient, a_scale float32 [M])."""
    if not torch.isfinite(x2d).all():
        raise ValueError("activation holds NaN or inf; cannot quantize it")
    s, zp = act_qparams_rows(x2d)
    inv = (1.0 / s).to(torch.float32)
    v = x2d * inv[:, None]
    # clamp to [-zp, 255 - zp] per row: the row's own min/max, so only rounding is trimmed
    return _round_ste(v, -zp[:, None], (255.0 - zp)[:, None]), s


def _qlinear_2d(x2d: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    a_c, a_s = fake_quant_act_rows(x2d)
    w_q, w_s = fake_quant_weight_rows(weight.reshape(weight.shape[0], -1))
    acc = a_c @ w_q.t()
    mult = (a_s[:, None] * w_s[None, :]).to(torch.float32)
    y = acc * mult
    if bias is not None:
        y = y + bias[None, :]
    return y


class QATLinear(nn.Linear):
    """nn.Linear whose forward is the int8 kernel's math with straight-through gradients.

    Same parameters and state_dict keys as nn.Linear, so optimizers, checkpoints and
    `strip_qat` work unchanged.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.shape[-1] != self.in_features:
            raise ValueError(
                f"input has {input.shape[-1]} features in its last dimension, "
                f"expected {self.in_features}"
            )
        lead = input.shape[:-1]
        x2d = input.reshape(-1, self.in_features).to(torch.float32)
        y = _qlinear_2d(x2d, self.weight, self.bias)
        return y.reshape(*lead, self.out_features)

    @classmethod
    def from_float(cls, m: nn.Linear) -> QATLinear:
        return cast(QATLinear, _retype(m, cls))


class QATConv2d(nn.Conv2d):
    """nn.Conv2d fake-quantized as im2col + the int8 linear.

    act_granularity: "image" (one activation range per image, QuantConv2d's default) or "row"
    (one per output position). Only groups == 1 and zero padding are fake-quantized;
    prepare_qat leaves other convs fp32.
    """

    act_granularity: str = "image"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 or input.shape[1] != self.in_channels:
            raise ValueError(
                f"input must be [N, {self.in_channels}, H, W], got {tuple(input.shape)}"
            )
        n, _, h, w = input.shape
        kh, kw = cast(tuple[int, int], self.kernel_size)
        pad = cast(tuple[int, int], self.padding)
        ho = (h + 2 * pad[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * pad[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        if self.act_granularity == "row":
            cols = F.unfold(input.to(torch.float32), (kh, kw), dilation=self.dilation,
                            padding=pad, stride=self.stride)  # [N, Cin*kh*kw, L]
            x2d = cols.transpose(1, 2).reshape(-1, cols.shape[1])
            y = _qlinear_2d(x2d, self.weight, self.bias)  # [N*L, Cout]
        else:
            # quantize each image once (range from its own values; padding zeros map to
            # a - zp == 0 exactly), then unfold the integer codes
            xf = input.to(torch.float32)
            a_c, a_s = fake_quant_act_rows(xf.reshape(n, -1))
            a_cols = F.unfold(a_c.reshape(xf.shape), (kh, kw), dilation=self.dilation,
                              padding=pad, stride=self.stride)
            a2d = a_cols.transpose(1, 2).reshape(-1, a_cols.shape[1])
            w_q, w_s = fake_quant_weight_rows(self.weight.reshape(self.out_channels, -1))
            mult = (a_s.repeat_interleave(ho * wo)[:, None] * w_s[None, :]).to(torch.float32)
            y = (a2d @ w_q.t()) * mult
            if self.bias is not None:
                y = y + self.bias[None, :]
        return y.reshape(n, ho * wo, self.out_channels).transpose(1, 2).reshape(
            n, self.out_channels, ho, wo
        )

    @classmethod
    def from_float(cls, m: nn.Conv2d, act_granularity: str = "image") -> QATConv2d:
        if act_granularity not in ("image", "row"):
            raise ValueError(f"act_granularity must be 'image' or 'row', got {act_granularity!r}")
        q = cast(QATConv2d, _retype(m, cls))
        q.act_granularity = act_granularity
        return q


def _convertible_conv(m: nn.Conv2d) -> bool:
    return m.groups == 1 and m.padding_mode == "zeros" and isinstance(m.padding, tuple)


def _swap(module: nn.Module, to_qat: bool, gran: str = "image") -> None:
    for name, child in list(module.named_children()):
        new: nn.Module | None = None
        if to_qat:
            if type(child) is nn.Linear:
                new = QATLinear.from_float(child)
            elif type(child) is nn.Conv2d and _convertible_conv(child):
                new = QATConv2d.from_float(child, gran)
        else:
            if isinstance(child, QATLinear):
                new = _retype(child, nn.Linear)
            elif isinstance(child, QATConv2d):
                new = _retype(child, nn.Conv2d)
        if new is not None:
            setattr(module, name, new)
        else:
            _swap(child, to_qat, gran)


def _retype(m: nn.Module, cls: type[nn.Module]) -> nn.Module:
    out = cls.__new__(cls)
    out.__dict__ = copy.copy(m.__dict__)
    out._parameters = dict(m._parameters)
    out._buffers = dict(m._buffers)
    out._modules = dict(m._modules)
    return out


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for p in model.parameters():
        if p.device.type != "cpu":
            raise ValueError(f"model has parameters on device '{p.device}'; edgepack runs on CPU")
        break
    return model


def prepare_qat(model: nn.Module, *, inplace: bool = False,
                conv_activations: str = "per_image") -> nn.Module:
    """A copy of `model` (or `model` itself with inplace=True) whose nn.Linear and nn.Conv2d
    layers (groups == 1) run fake-quant int8 forward passes. Train it as usual.

    conv_activations: "per_image" or "per_row", as CompressionConfig.conv_activations (dense
    convs deploy with it; block-sparse packed convs always run per row)."""
    m = _check_model(model)
    if conv_activations not in ("per_image", "per_row"):
        raise ValueError("conv_activations must be 'per_image' or 'per_row', got "
                         f"{conv_activations!r}")
    gran = "image" if conv_activations == "per_image" else "row"
    if not inplace:
        m = copy.deepcopy(m)
    if type(m) is nn.Linear:
        return QATLinear.from_float(m)
    if type(m) is nn.Conv2d and _convertible_conv(m):
        return QATConv2d.from_float(m, gran)
    _swap(m, True, gran)
    return m


def strip_qat(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """The plain float model (QATLinear -> nn.Linear, QATConv2d -> nn.Conv2d), same weights."""
    m = _check_model(model)
    if not inplace:
        m = copy.deepcopy(m)
    if isinstance(m, QATLinear):
        return _retype(m, nn.Linear)
    if isinstance(m, QATConv2d):
        return _retype(m, nn.Conv2d)
    _swap(m, False)
    return m


def convert_qat(model: nn.Module, config: Any = None, **compress_kwargs: Any) -> nn.Module:
    """Strip fake-quant and compress: the deployed model computes what QAT trained on."""
    import edgepack

    plain = strip_qat(model).eval()
    return cast(nn.Module, edgepack.compress(plain, config, **compress_kwargs))
