"""MaxPool2d that pools channels_last float32 maps natively.

QuantConv2d returns NCHW-shaped views of NHWC memory (channels_last), and torch's max_pool2d on
such a map costs ~10 us at batch 1 for a 16 x 26 x 26 map, a tenth of a small int8 CNN's whole
forward. This subclass runs edgepack's NHWC loop on channels_last float32 CPU inputs (torch's
semantics: -inf padding, dilation, ceil_mode, NaN propagates; same values bit for bit, as max
only selects) and returns the same channels_last layout; anything else (other dtypes or layouts,
autograd, return_indices) goes to torch. compress() swaps every nn.MaxPool2d for it.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _core  # type: ignore[attr-defined]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (-1, -1)
    return int(v), int(v)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d with a native path for channels_last float32 CPU inputs."""

    @classmethod
    def from_float(cls, mod: nn.MaxPool2d) -> MaxPool2d:
        if mod.return_indices:
            raise ValueError("MaxPool2d with return_indices=True stays torch's")
        return cls(mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                   ceil_mode=mod.ceil_mode)

    def _params(self) -> tuple[int, ...] | None:
        p = getattr(self, "_native_params", None)
        if p is None:
            k, s = _pair(self.kernel_size), _pair(self.stride)  # nn.MaxPool2d: None -> kernel
            pad, d = _pair(self.padding), _pair(self.dilation)
            vals = k + s + pad + d
            ok = (not self.return_indices and min(k + s + d) >= 1 and min(pad) >= 0
                  and 2 * pad[0] <= k[0] and 2 * pad[1] <= k[1])
            p = vals if ok else ()
            self._native_params = p
        return p or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        p = self._params()
        if (p is not None and type(x) is torch.Tensor and x.dtype is torch.float32 and x.is_cpu
                and x.dim() == 4 and not x.requires_grad
                and x.is_contiguous(memory_format=torch.channels_last)):
            n, c, h, w = x.shape
            kh, kw, sh, sw, ph, pw, dh, dw = p
            if (h + 2 * ph - dh * (kh - 1) - 1 >= 0 and w + 2 * pw - dw * (kw - 1) - 1 >= 0
                    and n * c):
                return torch.from_numpy(_core.maxpool2d_nhwc_raw(
                    x.data_ptr(), n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, self.ceil_mode))
        return super().forward(x)
