"""Array-facing wrappers over the native quantization kernels.

Spec (identical on every ISA): q = clamp(rint(x * (1/scale)) + zero_point), the reciprocal
taken in float32, rint rounding half to even; x = (q - zero_point) * scale. Bit-identical to
torch.quantize_per_channel, and to torch.quantize_per_tensor when zero_point is 0 (with a nonzero
zero point torch's FBGEMM path rounds fma(x, 1/scale, zp) once, so near-ties may differ by one).

NaN policy: NaN is never quantized silently. `quantize`, `quantize_dynamic` and
`choose_qparams` raise ValueError when the input holds NaN; `quantize_dynamic` and
`choose_qparams` also raise on +-inf (no finite scale exists), while `quantize` saturates +-inf
to the end of the integer range.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _core
from ._arrays import ArrayLike, check_dtype_name, is_torch, like, normalize_axis, to_numpy

_FLOAT = (np.float32,)
_QINT = (np.int8, np.uint8)


def _params(
    scale: Any, zero_point: Any, axis: int, dtype: str, nch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, zero_point) as float32 / int32 arrays of length `nch`.

    Values (scale finite and > 0, zero_point in range) are checked by _core, which names them.
    """
    s = scale if type(scale) is np.ndarray else _as_1d(scale, "scale")
    z = zero_point if type(zero_point) is np.ndarray else _as_1d(zero_point, "zero_point")
    if s.dtype != np.float32 or s.ndim != 1 or not s.flags.c_contiguous:
        if s.dtype.kind not in "iuf":
            raise TypeError(f"scale must hold numbers, got dtype {s.dtype}")
        with np.errstate(over="ignore"):  # an overflowing scale becomes inf: _core rejects it
            s = np.ascontiguousarray(s, dtype=np.float32).reshape(-1)
    if z.dtype != np.int32 or z.ndim != 1 or not z.flags.c_contiguous:
        z = np.asarray(z).reshape(-1)
        if z.dtype.kind not in "iub":
            if z.dtype.kind != "f" or not np.all(np.isfinite(z)) or not np.all(z == np.round(z)):
                raise ValueError("zero_point must hold integers")
        lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
        if z.size and (z.min() < lo or z.max() > hi):
            raise ValueError(f"zero_point out of range [{lo}, {hi}] for {dtype}")
        z = z.astype(np.int32)
    if s.size == 1 and nch != 1:
        s = np.full(nch, s[0], np.float32)
    if z.size == 1 and nch != 1:
        z = np.full(nch, z[0], np.int32)
    if s.size != nch:
        raise ValueError(f"scale has {s.size} entries but axis {axis} has length {nch}")
    if z.size != nch:
        raise ValueError(f"zero_point has {z.size} entries but axis {axis} has length {nch}")
    return s, z


def _scalar_params(scale: Any, zero_point: Any) -> tuple[float, int]:
    """Per-tensor (scale, zero_point) as Python numbers; range checks happen in _core."""
    if type(scale) is not float:
        s = _as_1d(scale, "scale")
        if s.size != 1:
            raise ValueError(f"per-tensor quantization takes one scale, got {s.size}")
        scale = float(s[0])
    if type(zero_point) is not int:
        z = _as_1d(zero_point, "zero_point")
        if z.size != 1:
            raise ValueError(f"per-tensor quantization takes one zero_point, got {z.size}")
        if z.dtype.kind not in "iub" and not (np.isfinite(z[0]) and z[0] == np.round(z[0])):
            raise ValueError(f"zero_point must be an integer, got {z[0]!r}")
        zero_point = int(z[0])
    return scale, zero_point


def _as_1d(v: Any, name: str) -> np.ndarray:
    if is_torch(v):
        v = v.detach().cpu().numpy()
    a = np.asarray(v).reshape(-1)
    if a.dtype.kind not in "iufb":
        raise TypeError(f"{name} must be a number or an array of numbers, got {a.dtype}")
    return a


def _plain_cpu_tensor(x: Any, dtype: str) -> Any:
    """x if it is a contiguous CPU torch tensor of `dtype` without lazy conj/neg views."""
    torch = sys.modules.get("torch")
    if torch is None or type(x) is not torch.Tensor:
        return None
    if not x.is_cpu or x.dtype is not getattr(torch, dtype) or not x.is_contiguous():
        return None
    if x.is_neg():
        return None
    return x


def _out(out: Any, name: str = "out") -> Any:
    """numpy view of an `out` argument (None stays None)."""
    if out is None or isinstance(out, np.ndarray):
        return out
    if is_torch(out):
        if out.device.type != "cpu":
            raise ValueError(f"{name} is on device '{out.device}'; edgepack kernels run on CPU")
        return out.detach().numpy()
    raise TypeError(f"{name} must be a numpy array, a torch tensor or None")


def quantize(
    x: ArrayLike,
    scale: Any,
    zero_point: Any = 0,
    *,
    axis: int | None = None,
    dtype: str = "int8",
    out: ArrayLike | None = None,
) -> ArrayLike:
    """fp32 -> int8/uint8, per tensor (axis=None) or per channel along `axis` (negative ok).

    `out` (optional): a C-contiguous int8/uint8 array of x's shape to write into (returned).
    """
    if (  # fast path (about 0.5 us): _core checks dtype, scale and zero_point itself
        axis is None
        and type(x) is np.ndarray
        and type(scale) is float
        and type(zero_point) is int
        and out is None
        and x.flags.c_contiguous
    ):
        return _core.quantize_tensor(x, scale, zero_point, dtype)
    if axis is None and out is None and type(scale) is float and type(zero_point) is int:
        t = _plain_cpu_tensor(x, "float32")
        if t is not None:  # torch fast path: raw addresses, no numpy round trip
            # Output memory from numpy: torch's CPU allocator returns big blocks to the OS, so
            # every fresh torch.empty page-faults (measured 4x slower at 4 MiB); numpy's reuses.
            qn = _core.quantize_raw(t.data_ptr(), t.shape, scale, zero_point, dtype)
            return sys.modules["torch"].from_numpy(qn)
    a = to_numpy(x, "x", _FLOAT)
    o = _out(out)
    if axis is None:
        s, z = _scalar_params(scale, zero_point)
        q = _core.quantize_tensor(a, s, z, check_dtype_name(dtype), o)
    else:
        check_dtype_name(dtype)
        ax = normalize_axis(axis, a.ndim)
        sv, zv = _params(scale, zero_point, ax, dtype, a.shape[ax])
        q = _core.quantize(a, sv, zv, ax, dtype, o)
    return out if out is not None else like(q, x)


def dequantize(
    q: ArrayLike,
    scale: Any,
    zero_point: Any = 0,
    *,
    axis: int | None = None,
    out: ArrayLike | None = None,
) -> ArrayLike:
    """int8/uint8 -> fp32: (q - zero_point) * scale. `out`: optional float32 destination."""
    if (
        axis is None
        and type(q) is np.ndarray
        and type(scale) is float
        and type(zero_point) is int
        and out is None
        and q.flags.c_contiguous
    ):
        return _core.dequantize_tensor(q, scale, zero_point)
    if axis is None and out is None and type(scale) is float and type(zero_point) is int:
        t = _plain_cpu_tensor(q, "int8")
        if t is None:
            t = _plain_cpu_tensor(q, "uint8")
        if t is not None:
            torch: Any = sys.modules["torch"]
            qd = "int8" if t.dtype is torch.int8 else "uint8"
            xn = _core.dequantize_raw(t.data_ptr(), t.shape, scale, zero_point, qd)
            return torch.from_numpy(xn)  # numpy memory: see quantize()
    a = to_numpy(q, "q", _QINT)
    o = _out(out)
    if axis is None:
        s, z = _scalar_params(scale, zero_point)
        x = _core.dequantize_tensor(a, s, z, o)
    else:
        ax = normalize_axis(axis, a.ndim)
        dtype = "int8" if a.dtype == np.int8 else "uint8"
        sv, zv = _params(scale, zero_point, ax, dtype, a.shape[ax])
        x = _core.dequantize(a, sv, zv, ax, o)
    return out if out is not None else like(x, q)


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
    scales, zps = _core.choose_qparams_axis(a, ax, dtype, symmetric)
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
