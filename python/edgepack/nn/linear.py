"""QuantLinear: an nn.Linear replacement that runs on edgepack's int8 kernels.

Weights: int8 per-output-channel symmetric, packed once. Activations:
- dynamic (default): per-row uint8 range at run time, one fused kernel call
  (quantize -> int8 GEMM -> dequantize + bias + optional ReLU), edgepack.linear_int8;
- static: one calibrated per-tensor uint8 (scale, zero_point); x is quantized with it
  (edgepack.quantize), then one native call runs the int8 GEMM and linear_int8's fp32 epilogue
  (_core.linear_u8); dense packing only.
Inference only: outputs carry no autograd history.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _core  # type: ignore[attr-defined]
from ..kernels import quantize
from ..quantize.config import MAX_ROWS_PER_CALL
from ..quantize.weights import effective_weight, quantize_weight
from . import _backend


def check_float_input(x: object, owner: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise ValueError(f"{owner}: input is on device '{x.device}'; edgepack runs on CPU")
    if not torch.is_floating_point(x):
        raise TypeError(f"{owner}: input must be floating point, got {x.dtype}")
    return x


class QuantLinear(nn.Module):
    """int8 linear layer on packed weights; input [..., in_features] -> [..., out_features]."""

    weight_scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        packed: Any,
        in_features: int,
        out_features: int,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        relu: bool = False,
        act_scale: float | None = None,
        act_zero_point: int | None = None,
        sparse_policy: str | None = None,
        rows_per_call: int = 1,
    ) -> None:
        super().__init__()
        # How the packing was chosen (pack_linear's `sparse`); "auto" is a speed measurement of
        # the CPU that packed the layer, which edgepack.load repeats on the CPU that loads it.
        # None: a packing handed in as is.
        if sparse_policy not in (None, "auto", "smaller", "never", "always"):
            raise ValueError(
                f"sparse_policy must be None, 'auto', 'smaller', 'never' or 'always', got "
                f"{sparse_policy!r}")
        self.sparse_policy = sparse_policy
        if isinstance(rows_per_call, bool) or not 1 <= int(rows_per_call) <= MAX_ROWS_PER_CALL:
            raise ValueError(f"rows_per_call must be in [1, 2**20], got {rows_per_call!r}")
        self.rows_per_call = int(rows_per_call)  # the rows "auto" timed the choice at
        self.packed = packed  # property: also caches the raw buffer of dense packings
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.relu = bool(relu)
        if (act_scale is None) != (act_zero_point is None):
            raise ValueError("act_scale and act_zero_point go together (static activations)")
        self.act_scale = None if act_scale is None else float(act_scale)
        self.act_zero_point = None if act_zero_point is None else int(act_zero_point)
        self.register_buffer("weight_scale", weight_scale.detach().to(torch.float32).contiguous())
        b = None if bias is None else bias.detach().to(torch.float32).contiguous()
        self.register_buffer("bias", b)

    @classmethod
    def from_float(
        cls,
        mod: nn.Linear,
        *,
        relu: bool = False,
        sparse: str = "auto",
        act_qparams: tuple[float, int] | None = None,
        rows_per_call: int = 1,
    ) -> QuantLinear:
        """Quantize an nn.Linear (pruning masks honoured). sparse="auto" picks dense or sparse
        by speed at `rows_per_call` rows per call (see CompressionConfig.rows_per_call)."""
        w_q, scale = quantize_weight(effective_weight(mod))
        bias = None if mod.bias is None else effective_weight(mod, "bias")
        packed = _backend.pack_linear(w_q, scale, bias, sparse, rows_per_call)
        a_s, a_z = act_qparams if act_qparams is not None else (None, None)
        return cls(packed, mod.in_features, mod.out_features, scale, bias, relu=relu,
                   act_scale=a_s, act_zero_point=a_z, sparse_policy=sparse,
                   rows_per_call=rows_per_call)

    @property
    def packed(self) -> Any:
        return self._packed

    @packed.setter
    def packed(self, value: Any) -> None:
        self._packed = value
        self._bind_native()

    def _bind_native(self) -> None:
        # What the hot paths hand to the native calls, looked up once: the dense buffer
        # (_dense_buf) or the core PackedSparse (_sparse_core), and the matching float linear.
        self._dense_buf = _backend.dense_buffer(self._packed)
        self._sparse_core = None if self._dense_buf is not None else (
            _backend.native_weights(self._packed))
        self._native = self._dense_buf if self._dense_buf is not None else self._sparse_core
        self._native_linear = (_core.linear_int8 if self._dense_buf is not None
                               else _core.sparse_linear_int8)

    def __getstate__(self) -> dict[str, Any]:
        # the cached handles are views of the packed object: rebuild them, never copy twice
        state = dict(self.__dict__)
        for key in ("_dense_buf", "_sparse_core", "_native", "_native_linear"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._bind_native()

    @property
    def is_static(self) -> bool:
        return self.act_scale is not None

    @property
    def packed_kind(self) -> str:
        return _backend.packed_kind(self.packed)

    @property
    def packed_nbytes(self) -> int:
        return _backend.packed_nbytes(self.packed)

    def matmul_2d(self, x2: torch.Tensor) -> torch.Tensor:
        """float32 [M, K] contiguous -> float32 [M, N]."""
        if x2.shape[0] == 0:
            return x2.new_zeros((0, self.out_features))
        if self.act_scale is None:
            if self._native is not None:  # hot path: one native call, no wrapper layers
                return torch.from_numpy(self._native_linear(x2.numpy(), self._native, self.relu))
            return _backend.run_dynamic(x2, self.packed, self.relu)
        zp = int(self.act_zero_point or 0)
        a = np.asarray(quantize(x2.numpy(), self.act_scale, zp, dtype="uint8"))
        m = a.shape[0]
        return self.matmul_u8(a, np.full(m, self.act_scale, np.float32), np.full(m, zp, np.int32))

    def matmul_u8(self, a: np.ndarray, row_scale: np.ndarray, row_zp: np.ndarray) -> torch.Tensor:
        """uint8 [M, K] contiguous, row r quantized with (row_scale[r], row_zp[r]) -> float32
        [M, N] with this layer's bias / ReLU epilogue (dense or block-sparse packing, the same
        numbers bit for bit)."""
        if self._sparse_core is not None:
            return torch.from_numpy(_core.sparse_linear_u8(a, self._sparse_core, row_scale,
                                                           row_zp, self.relu))
        if self._dense_buf is None:
            raise RuntimeError("pre-quantized (static / conv) activations need a native packing")
        return _backend.dense_u8(a, self._dense_buf, row_scale, row_zp, self.relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buf = self._native
        if (buf is not None and self.act_scale is None and type(x) is torch.Tensor
                and x.dtype is torch.float32 and x.is_cpu and x.is_contiguous()):
            # hot path (batch 1 is dominated by Python, not the GEMM): one native call on a
            # numpy view of x, a fresh output array each call (no aliasing between calls)
            xn = x.detach().numpy()
            k = self.in_features
            if xn.ndim == 2 and xn.shape[1] == k and xn.shape[0]:
                return torch.from_numpy(self._native_linear(xn, buf, self.relu))
            if xn.ndim > 2 and xn.shape[-1] == k and xn.size:
                yn = self._native_linear(xn.reshape(-1, k), buf, self.relu)
                return torch.from_numpy(yn.reshape(*xn.shape[:-1], self.out_features))
        if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or not x.is_floating_point():
            check_float_input(x, "QuantLinear")
        k = self.in_features
        if x.dim() == 0 or x.shape[-1] != k:
            raise ValueError(f"QuantLinear: input has shape {tuple(x.shape)}, expected [..., {k}]")
        x2 = x.detach()
        if x2.dtype != torch.float32:
            x2 = x2.to(torch.float32)
        x2 = x2.reshape(-1, k)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        y = self.matmul_2d(x2)
        if x.dim() != 2:
            y = y.view(*x.shape[:-1], self.out_features)
        return y if x.dtype == torch.float32 else y.to(x.dtype)

    def extra_repr(self) -> str:
        act = "dynamic"
        if self.is_static:
            act = f"static(scale={self.act_scale:.4g}, zp={self.act_zero_point})"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, relu={self.relu}, act={act}, "
                f"packed={self.packed_kind}")
