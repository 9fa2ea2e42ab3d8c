"""QuantConv2d: Conv2d as im2col (torch unfold) into the int8 GEMM of QuantLinear.

Row m of the im2col matrix is one output position's receptive field (C*kh*kw values, channel
major, matching weight.reshape(O, -1)); dynamic activations therefore get one range per output
position. groups > 1 is not supported here (compress keeps such convs fp32 with a warning).
The output is an NCHW-shaped view in channels_last memory (no extra copy).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
    ) -> None:
        super().__init__()
        self.linear = linear
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.pads = tuple(int(p) for p in padding)
        if len(self.pads) != 4 or min(self.pads) < 0:
            raise ValueError(f"padding must be 4 non-negative ints, got {padding!r}")
        self.dilation = _pair(dilation)
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        self.padding_mode = padding_mode
        if linear.in_features != self.in_channels * self.kernel_size[0] * self.kernel_size[1]:
            raise ValueError("linear.in_features must equal in_channels * kh * kw")

    @classmethod
    def from_float(
        cls,
        mod: nn.Conv2d,
        *,
        relu: bool = False,
        sparse: str = "auto",
        act_qparams: tuple[float, int] | None = None,
    ) -> QuantConv2d:
        if mod.groups != 1:
            raise ValueError("QuantConv2d supports groups=1 only")
        ks = _pair(mod.kernel_size)
        dil = _pair(mod.dilation)
        k = mod.in_channels * ks[0] * ks[1]
        shim = nn.Linear(k, mod.out_channels, bias=mod.bias is not None)
        # weights (pruning masks honoured) reshaped [O, C*kh*kw] in unfold's order
        from ..quantize.weights import effective_weight

        with torch.no_grad():
            shim.weight.copy_(effective_weight(mod).reshape(mod.out_channels, -1))
            if mod.bias is not None and shim.bias is not None:
                shim.bias.copy_(effective_weight(mod, "bias"))
        lin = QuantLinear.from_float(shim, relu=relu, sparse=sparse, act_qparams=act_qparams)
        return cls(lin, mod.in_channels, mod.out_channels, ks, _pair(mod.stride),
                   conv_pads(mod.padding, ks, dil), dil, mod.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_input(x, "QuantConv2d")
        batched = x.dim() == 4
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"QuantConv2d: input has shape {tuple(x.shape)}, expected "
                f"[N, {self.in_channels}, H, W] or [{self.in_channels}, H, W]"
            )
        xb = (x if batched else x.unsqueeze(0)).detach().to(torch.float32)
        if any(self.pads):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            xb = F.pad(xb, self.pads, mode=mode)
        n, _, h, w = xb.shape
        kh, kw = self.kernel_size
        oh = (h - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"QuantConv2d: input {tuple(x.shape)} is smaller than the kernel")
        cols = F.unfold(xb, (kh, kw), dilation=self.dilation, stride=self.stride)  # [N, CK, L]
        a = cols.transpose(1, 2).reshape(n * oh * ow, -1).contiguous()
        y = self.linear.matmul_2d(a)  # [N*L, O]
        out = y.reshape(n, oh, ow, self.out_channels).permute(0, 3, 1, 2)
        if not batched:
            out = out.squeeze(0)
        return out if x.dtype == torch.float32 else out.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, pads={self.pads}, dilation={self.dilation}, "
                f"relu={self.linear.relu}")
