"""QuantConv2d: Conv2d as uint8 im2col into the int8 GEMM of QuantLinear, in NHWC.

Activations are quantized BEFORE im2col, once per input element rather than kh*kw times: one
uint8 asymmetric range per image (dynamic: from the image's min/max, widened to include 0, so
zero padding is exact; static: the calibrated range). The padded NHWC uint8 image is then
unfolded with one strided view and one byte copy; row m of the im2col matrix is one output
position's receptive field in (kh, kw, C) order, matching the packed weight
weight.permute(0, 2, 3, 1).reshape(O, kh*kw*C). The GEMM and the fp32 epilogue (bias, ReLU)
run in one native call with the image's (scale, zero point) on each of its rows.

Spec per image i (tests/test_compress.py checks it bit for bit): s, z = qparams(min, max of x_i);
a = quantize(pad(x_i), s, z) in NHWC; acc = sum (a - z) * w over the receptive field;
y = float(acc) * float(s * w_scale) + bias, ReLU.

The input is read as NHWC (free for channels_last tensors, which is what QuantConv2d returns:
an NCHW-shaped view of NHWC memory, so conv -> pool -> conv chains never transpose).
Dense and block-sparse packings take the same path (conv2d_u8 runs linear_u8_op or
sparse_linear_u8_op) and give the same numbers bit for bit. act_granularity="row" runs the float
im2col through the float linear: one dynamic range per output position (row of the im2col
matrix), finer but slower (the quantization runs kh*kw times per input element).
groups > 1 is not supported (compress keeps such convs fp32 with a warning).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import _core  # type: ignore[attr-defined]
from .linear import QuantLinear, check_float_input


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected 2 values, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv_pads(
    padding: Any, kernel_size: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero/mode padding amounts for Conv2d's `padding`."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        out = []
        for k, d in ((kernel_size[1], dilation[1]), (kernel_size[0], dilation[0])):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return (out[0], out[1], out[2], out[3])
    ph, pw = _pair(padding)
    return (pw, pw, ph, ph)


def im2col_index(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int], oh: int, ow: int) -> np.ndarray:
    """Pixel index (row * w + col) of every (output position, kh, kw) tap, flattened."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    i = np.arange(oh)[:, None, None, None] * sh + np.arange(kh)[None, None, :, None] * dh
    j = np.arange(ow)[None, :, None, None] * sw + np.arange(kw)[None, None, None, :] * dw
    return np.ascontiguousarray((i * w + j).reshape(-1).astype(np.intp))


def _im2col(pixels: np.ndarray, idx: np.ndarray | None, taps: int) -> np.ndarray:
    """[N, H*W, C] pixels (any dtype) -> [N*oh*ow, kh*kw*C] receptive fields: one gather of
    C-contiguous pixel rows (np.take beats strided tensor copies at small C)."""
    n, hw, c = pixels.shape
    if idx is None:  # 1x1, stride 1: the input is the im2col matrix
        return pixels.reshape(n * hw, c)
    return np.take(pixels, idx, axis=1).reshape(-1, taps * c)


class QuantConv2d(nn.Module):
    """int8 Conv2d (groups=1) via im2col + QuantLinear's GEMM."""

    def __init__(
        self,
        linear: QuantLinear,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int, int, int] = (0, 0, 0, 0),
        dilation: tuple[int, int] = (1, 1),
        padding_mode: str = "zeros",
        act_granularity: str = "image",
    ) -> None:
        super().__init__()
        if act_granularity not in ("image", "row"):
            raise ValueError(f"act_granularity must be 'image' or 'row', got {act_granularity!r}")
        self.act_granularity = act_granularity
        self.linear = linear
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.pads = tuple(int(p) for p in padding)
        if len(self.pads) != 4 or min(self.pads) < 0:
            raise ValueError(f"padding must be 4 non-negative ints, got {padding!r}")
        self.dilation = _pair(dilation)
        if min(self.kernel_size + self.stride + self.dilation) < 1:
            raise ValueError("kernel_size, stride and dilation must be >= 1")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        self.padding_mode = padding_mode
        if linear.in_features != self.in_channels * self.kernel_size[0] * self.kernel_size[1]:
            raise ValueError("linear.in_features must equal in_channels * kh * kw")
        self._idx_key: tuple[int, int] | None = None
        # the one-call hot path's constants, fixed at construction (no padding, per image)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        self._hot: tuple[int, ...] | None = (
            (self.in_channels, dh * (kh - 1), dw * (kw - 1), kh, kw, sh, sw, dh, dw)
            if not any(self.pads) and act_granularity == "image" else None)
        self._idx: np.ndarray | None = None

    @classmethod
    def from_float(
        cls,
        mod: nn.Conv2d,
        *,
        relu: bool = False,
        sparse: str = "auto",
        act_qparams: tuple[float, int] | None = None,
        act_granularity: str = "image",
    ) -> QuantConv2d:
        if mod.groups != 1:
            raise ValueError("QuantConv2d supports groups=1 only")
        ks = _pair(mod.kernel_size)
        dil = _pair(mod.dilation)
        k = mod.in_channels * ks[0] * ks[1]
        shim = nn.Linear(k, mod.out_channels, bias=mod.bias is not None)
        # weights (pruning masks honoured) as [O, kh*kw*C], the im2col column order: the K order
        # pruning uses too (as_matrix), so 1x4 blocks pruned there are whole blocks here
        from ..prune._common import as_matrix
        from ..quantize.weights import effective_weight

        with torch.no_grad():
            shim.weight.copy_(as_matrix(effective_weight(mod)))
            if mod.bias is not None and shim.bias is not None:
                shim.bias.copy_(effective_weight(mod, "bias"))
        # "auto" decides by size for a conv: pack_auto's timing is for a given number of rows
        # per call, which a conv only knows at run time (output positions x images). Dense and
        # sparse packings compute the same numbers, so the choice never changes the outputs.
        lin = QuantLinear.from_float(shim, relu=relu, sparse="smaller" if sparse == "auto"
                                     else sparse, act_qparams=act_qparams)
        return cls(lin, mod.in_channels, mod.out_channels, ks, _pair(mod.stride),
                   conv_pads(mod.padding, ks, dil), dil, mod.padding_mode, act_granularity)

    def _index(self, h: int, w: int, oh: int, ow: int) -> np.ndarray | None:
        """The im2col gather index for an input of h x w (after padding), cached per size."""
        if self.kernel_size == (1, 1) and self.stride == (1, 1):
            return None
        if self._idx_key != (h, w):
            self._idx = im2col_index(h, w, self.kernel_size, self.stride, self.dilation, oh, ow)
            self._idx_key = (h, w)
        return self._idx

    def _quantize_images(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 images [N, P] with the layer's calibrated (static) range, and the per-image
        (scale [N], zero_point [N]) the kernels take. Dynamic per-image ranges are quantized
        inside _core.conv2d_u8 (forward's native path)."""
        lin = self.linear
        n = flat.shape[0]
        s = np.full(n, lin.act_scale, np.float32)
        z = np.full(n, int(lin.act_zero_point or 0), np.int32)
        return _core.quantize(flat, s, z, 0, "uint8"), s, z

    def _padded_nhwc(self, xb: torch.Tensor) -> torch.Tensor:
        """NHWC (contiguous) view/copy of NCHW-shaped xb, with the conv's padding applied."""
        left, right, top, bottom = self.pads
        if not any(self.pads):
            return xb.permute(0, 2, 3, 1).contiguous()
        if self.padding_mode != "zeros":
            return F.pad(xb, self.pads, mode=self.padding_mode).permute(0, 2, 3, 1).contiguous()
        n, c, h, w = xb.shape
        out = xb.new_zeros((n, h + top + bottom, w + left + right, c))
        out[:, top:top + h, left:left + w, :] = xb.permute(0, 2, 3, 1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lin: QuantLinear = self._modules["linear"]  # type: ignore[assignment]  # no __getattr__
        buf = lin._native
        hot = self._hot
        if (hot is not None and buf is not None and type(x) is torch.Tensor
                and x.dtype is torch.float32 and x.is_cpu and not x.requires_grad
                and x.dim() == 4 and lin.act_scale is None):
            # hot path (batch 1 is dominated by Python): one native call on the NCHW-shaped
            # channels_last memory (what this module returns, so conv -> pool -> conv chains
            # never permute), returning the same kind of view; the kernels of the general path
            n_, c_, h_, w_ = x.shape
            cin, reach_h, reach_w, kh, kw, sh, sw, dh, dw = hot
            if c_ == cin and h_ > reach_h and w_ > reach_w:
                if not x.is_contiguous(memory_format=torch.channels_last):
                    x = x.contiguous(memory_format=torch.channels_last)
                return torch.from_numpy(_core.conv2d_u8_raw(
                    x.data_ptr(), n_, c_, h_, w_, buf, kh, kw, sh, sw, dh, dw, lin.relu))
        if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or not x.is_floating_point():
            check_float_input(x, "QuantConv2d")
        batched = x.dim() == 4
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"QuantConv2d: input has shape {tuple(x.shape)}, expected "
                f"[N, {self.in_channels}, H, W] or [{self.in_channels}, H, W]"
            )
        xb = (x if batched else x.unsqueeze(0)).detach()
        if xb.dtype != torch.float32:
            xb = xb.to(torch.float32)
        nhwc = self._padded_nhwc(xb)
        n, h, w, c = nhwc.shape
        kh, kw = self.kernel_size
        (sh, sw), (dh, dw) = self.stride, self.dilation
        oh = (h - dh * (kh - 1) - 1) // sh + 1
        ow = (w - dw * (kw - 1) - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"QuantConv2d: input {tuple(x.shape)} is smaller than the kernel")
        lin = self.linear
        if lin._native is not None and self.act_granularity == "image" and not lin.is_static:
            # hot path: quantize per image, im2col and GEMM + epilogue in one native call (the
            # same kernels as the composition below, bit-identical; no Python per step)
            y = torch.from_numpy(_core.conv2d_u8(nhwc.numpy(), lin._native, kh, kw, sh, sw,
                                                 dh, dw, lin.relu))
            out = y.permute(0, 3, 1, 2)
            if not batched:
                out = out.squeeze(0)
            return out if x.dtype == torch.float32 else out.to(x.dtype)
        idx = self._index(h, w, oh, ow)
        if lin._native is not None and lin.is_static:  # dynamic per-image returned above
            q, scale, zp = self._quantize_images(nhwc.reshape(n, -1).numpy())
            a = _im2col(q.reshape(n, h * w, c), idx, kh * kw)
            rows = oh * ow
            y = lin.matmul_u8(a, np.repeat(scale, rows), np.repeat(zp, rows))
        else:
            a = _im2col(nhwc.numpy().reshape(n, h * w, c), idx, kh * kw)
            y = lin.matmul_2d(torch.from_numpy(a))
        out = y.reshape(n, oh, ow, self.out_channels).permute(0, 3, 1, 2)
        if not batched:
            out = out.squeeze(0)
        return out if x.dtype == torch.float32 else out.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, pads={self.pads}, dilation={self.dilation}, "
                f"relu={self.linear.relu}, act_granularity={self.act_granularity}")
