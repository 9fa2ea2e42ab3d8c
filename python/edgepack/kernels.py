"""Array-facing wrappers over the native quantization kernels.

Spec (identical on every ISA, and to torch.quantize_per_tensor / quantize_per_channel for the
same scales): q = clamp(rint(x * (1/scale)) + zero_point), the reciprocal taken in float32,
rint rounding half to even; x = (q - zero_point) * scale.

NaN policy: NaN is never quantized silently. `quantize`, `quantize_dynamic` and
`choose_qparams` raise ValueError when the input holds NaN; `quantize_dynamic` and
`choose_qparams` also raise on +-inf (no finite scale exists), while `quantize` saturates +-inf
to the end of the integer range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._arrays import ArrayLike, check_dtype_name, is_torch, like, normalize_axis, to_numpy

_FLOAT = (np.float32,)
_QINT = (np.int8, np.uint8)


def _params(
    scale: Any, zero_point: Any, axis: int, dtype: str, nch: int
) -> tuple[np.ndarray, np.ndarray]:
    if is_torch(scale):
        scale = scale.detach().cpu().numpy()
    if is_torch(zero_point):
        zero_point = zero_point.detach().cpu().numpy()
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    z = np.asarray(zero_point).reshape(-1)
    if z.dtype.kind not in "iub":
        if not np.all(np.isfinite(z)) or not np.all(z == np.round(z)):
            raise ValueError("zero_point must hold integers")
    z = z.astype(np.int64)
    n = 1 if axis < 0 else nch
    if axis >= 0 and s.size == 1 and n != 1:
        s = np.repeat(s, n)
    if axis >= 0 and z.size == 1 and n != 1:
        z = np.repeat(z, n)
    if s.size != n:
        raise ValueError(f"scale has {s.size} entries, expected {n}")
    if z.size != n:
        raise ValueError(f"zero_point has {z.size} entries, expected {n}")
    if not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError("scale must be finite and > 0")
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    if np.any(z < lo) or np.any(z > hi):
        raise ValueError(f"zero_point out of range [{lo}, {hi}] for {dtype}")
    s32 = s.astype(np.float32)
    if np.any(s32 == 0) or not np.all(np.isfinite(1.0 / s32.astype(np.float32))):
        raise ValueError("scale is too small for float32 (its reciprocal is not finite)")
    return s32, z.astype(np.int32)


def quantize(
    x: ArrayLike, scale: Any, zero_point: Any = 0, *, axis: int | None = None, dtype: str = "int8"
) -> ArrayLike:
    """fp32 -> int8/uint8, per tensor (axis=None) or per channel along `axis`."""
    check_dtype_name(dtype)
    a = to_numpy(x, "x", _FLOAT)
    ax = normalize_axis(axis, a.ndim)
    s, z = _params(scale, zero_point, ax, dtype, a.shape[ax] if ax >= 0 else 1)
    try:
        q = _core.quantize(a, s, z, ax, dtype)
    except ArithmeticError as e:  # pragma: no cover - mapped below
        raise ValueError(str(e)) from e
    return like(q, x)


def dequantize(
    q: ArrayLike, scale: Any, zero_point: Any = 0, *, axis: int | None = None
) -> ArrayLike:
    """int8/uint8 -> fp32: (q - zero_point) * scale."""
    a = to_numpy(q, "q", _QINT)
    ax = normalize_axis(axis, a.ndim)
    dtype = "int8" if a.dtype == np.int8 else "uint8"
    s, z = _params(scale, zero_point, ax, dtype, a.shape[ax] if ax >= 0 else 1)
    return like(_core.dequantize(a, s, z, ax), q)


def choose_qparams(
    x: ArrayLike, *, dtype: str = "int8", symmetric: bool = True, axis: int | None = None
) -> tuple[Any, Any]:
    """(scale, zero_point) from the min/max of `x` (widened to include 0).

    symmetric: scale = max|x| / 127, zero_point 0 (int8) or 128 (uint8).
    asymmetric: scale = (max - min) / (qmax - qmin), zero_point = qmin - rint(min / scale).
    Per tensor: Python float and int. Per channel: float32 and int32 arrays (torch tensors for
    torch input). Empty input gives scale 1. NaN or inf in `x` raises ValueError.
    """
    check_dtype_name(dtype)
    a = to_numpy(x, "x", _FLOAT)
    ax = normalize_axis(axis, a.ndim)
    if ax < 0:
        if a.size == 0:
            return _core.qparams_from_minmax(0.0, 0.0, dtype, symmetric)
        mn, mx = _core.minmax(a)
        return _core.qparams_from_minmax(mn, mx, dtype, symmetric)
    rows = np.moveaxis(a, ax, 0).reshape(a.shape[ax], -1)
    scales = np.empty(a.shape[ax], np.float32)
    zps = np.empty(a.shape[ax], np.int32)
    for c in range(rows.shape[0]):
        row = np.ascontiguousarray(rows[c])
        mn, mx = _core.minmax(row) if row.size else (0.0, 0.0)
        scales[c], zps[c] = _core.qparams_from_minmax(mn, mx, dtype, symmetric)
    return like(scales, x), like(zps, x)


def quantize_dynamic(
    x: ArrayLike, *, dtype: str = "int8", per_row: bool = False, symmetric: bool | None = None
) -> tuple[Any, Any, Any]:
    """Min/max and quantization fused: returns (q, scale, zero_point).

    per_row=True gives one (scale, zero_point) per row (the last dimension is the row), the
    activation path of a dynamic int8 linear layer. symmetric defaults to True for int8 and
    False for uint8. Per tensor, scale and zero_point are a Python float and int.
    """
    check_dtype_name(dtype)
    sym = (dtype == "int8") if symmetric is None else bool(symmetric)
    a = to_numpy(x, "x", _FLOAT)
    if per_row and a.ndim == 0:
        raise ValueError("per_row=True needs an array with at least one dimension")
    q, s, z = _core.quantize_dynamic(a, dtype, sym, bool(per_row))
    if not per_row:
        return like(q, x), float(s), int(z)
    return like(q, x), like(s, x), like(z, x)
