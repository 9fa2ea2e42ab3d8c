"""Executable specs (numpy) of the int8 linear operations. The native kernels must equal these
bit for bit; tests compare against them. Slow by design: clarity over speed.

Operation order (float32 throughout, no FMA), which makes exact equality achievable:
  dynamic activation quantization (linear_int8): per row of x, uint8 asymmetric
      (a_scale[m], a_zp[m]) = qparams_from_minmax(min(row), max(row), "uint8", symmetric=False)
      a[m, k] = quantize(x[m, k], a_scale[m], a_zp[m])            (see edgepack.kernels)
  integer product (exact, int32; bounded by K <= 65536):
      acc[m, n] = sum_k (a[m, k] - a_zp[m]) * w[n, k]
  dequantize + epilogue:
      y = float32(acc[m, n]) * float32(a_scale[m] * w_scale[n])   (the product rounded to fp32)
      y = y + bias[n]                                              (if bias)
      y = max(y, 0)                                                (if relu)
  static requantization (linear_q): q = quantize(y, out_scale, out_zp) with the same clamp/rint
      spec as edgepack.quantize (reciprocal of out_scale in float32).
"""

from __future__ import annotations

import numpy as np

MAX_K = 65536  # |a - zp| <= 255 and |w| <= 128: K * 32640 < 2**31 keeps int32 exact


def gemm_s32_ref(a: np.ndarray, w: np.ndarray, a_zero_point: int = 0) -> np.ndarray:
    """int32 [M, N] = (a - a_zero_point) @ w.T, computed in int64 and checked to fit int32."""
    acc = (a.astype(np.int64) - int(a_zero_point)) @ w.astype(np.int64).T
    assert np.all(np.abs(acc) < 2**31)
    return acc.astype(np.int32)


def quantize_ref(
    x: np.ndarray, scale: np.ndarray, zp: np.ndarray, qmin: int, qmax: int
) -> np.ndarray:
    """The quantize spec with broadcastable float32 scale / int32 zp."""
    inv = (np.float32(1.0) / scale.astype(np.float32)).astype(np.float32)
    v = (x.astype(np.float32) * inv).astype(np.float32)
    lo = (qmin - zp).astype(np.float32)
    hi = (qmax - zp).astype(np.float32)
    v = np.minimum(np.maximum(v, lo), hi)
    return (np.rint(v).astype(np.int32) + zp).astype(np.int32)


def qparams_uint8_asym_ref(mn: np.ndarray, mx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized qparams_from_minmax(mn, mx, 'uint8', symmetric=False)."""
    lo = np.minimum(mn.astype(np.float64), 0.0)
    hi = np.maximum(mx.astype(np.float64), 0.0)
    s = ((hi - lo) / 255.0).astype(np.float32)
    s = np.where(s == 0, np.float32(1.0), s)
    s = np.maximum(s, np.finfo(np.float32).tiny).astype(np.float32)
    z = np.clip(0.0 - np.rint(lo / s.astype(np.float64)), 0, 255).astype(np.int32)
    return s, z


def dynamic_quant_rows_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row uint8 asymmetric quantization of a 2-D float32 array: (a, a_scale, a_zp)."""
    s, z = qparams_uint8_asym_ref(x.min(axis=1), x.max(axis=1))
    a = quantize_ref(x, s[:, None], z[:, None], 0, 255)
    return a.astype(np.uint8), s, z


def epilogue_ref(
    acc: np.ndarray,
    a_scale: np.ndarray,
    w_scale: np.ndarray,
    bias: np.ndarray | None,
    relu: bool,
) -> np.ndarray:
    mult = (a_scale.astype(np.float32)[:, None] * w_scale.astype(np.float32)[None, :]).astype(
        np.float32
    )
    y = (acc.astype(np.float32) * mult).astype(np.float32)
    if bias is not None:
        y = (y + bias.astype(np.float32)[None, :]).astype(np.float32)
    if relu:
        y = np.maximum(y, np.float32(0.0))
    return y


def linear_int8_ref(
    x: np.ndarray,
    w_q: np.ndarray,
    w_scale: np.ndarray,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """Dynamic int8 linear: x float32 [M, K], w_q int8 [N, K], w_scale float32 [N]."""
    a, s, z = dynamic_quant_rows_ref(x)
    acc = gemm_s32_ref(a.astype(np.int64) - z[:, None], w_q, 0)
    return epilogue_ref(acc, s, w_scale, bias, relu)


def linear_q_ref(
    a_q: np.ndarray,
    a_scale: float,
    a_zero_point: int,
    w_q: np.ndarray,
    w_scale: np.ndarray,
    bias: np.ndarray | None,
    out_scale: float,
    out_zero_point: int,
    relu: bool = False,
    out_dtype: str = "int8",
) -> np.ndarray:
    """Static all-integer linear: int8/uint8 in, int8/uint8 out."""
    acc = gemm_s32_ref(a_q, w_q, a_zero_point)
    m = acc.shape[0]
    y = epilogue_ref(acc, np.full(m, a_scale, np.float32), w_scale, bias, relu)
    qmin, qmax = (-128, 127) if out_dtype == "int8" else (0, 255)
    s32, z32 = np.array(out_scale, np.float32), np.array(out_zero_point, np.int32)
    q = quantize_ref(y, s32, z32, qmin, qmax)
    return q.astype(np.int8 if out_dtype == "int8" else np.uint8)
