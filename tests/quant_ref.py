"""numpy statement of the quantization spec, written independently of the native code.

quantize:   q = clamp(rint(x * (1/scale)) + zp, qmin, qmax), reciprocal and product in float32,
            rint half to even (clamping before rint is equivalent: the bounds are integers).
dequantize: x = float32(q - zp) * float32(scale).
"""

from __future__ import annotations

import numpy as np

RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
NP_DTYPE = {"int8": np.int8, "uint8": np.uint8}


def _bcast(v: object, ndim: int, axis: int | None) -> np.ndarray:
    a = np.asarray(v)
    if axis is None or a.ndim == 0:
        return a.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return a.reshape(shape)


def quantize(x: np.ndarray, scale: object, zp: object = 0, axis: int | None = None,
             dtype: str = "int8") -> np.ndarray:
    qmin, qmax = RANGES[dtype]
    s = _bcast(np.asarray(scale, np.float32), x.ndim, axis)
    z = _bcast(np.asarray(zp, np.int64), x.ndim, axis)
    inv = (np.float32(1.0) / s).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        v = (x.astype(np.float32) * inv).astype(np.float32)
    v = np.clip(v, (qmin - z).astype(np.float32), (qmax - z).astype(np.float32))
    return (np.rint(v).astype(np.int64) + z).astype(NP_DTYPE[dtype])


def dequantize(q: np.ndarray, scale: object, zp: object = 0,
               axis: int | None = None) -> np.ndarray:
    s = _bcast(np.asarray(scale, np.float32), q.ndim, axis)
    z = _bcast(np.asarray(zp, np.int64), q.ndim, axis)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def qparams(mn: float, mx: float, dtype: str, symmetric: bool) -> tuple[float, int]:
    """qparams_from_minmax, computed in float64 like the C++ spec."""
    qmin, qmax = RANGES[dtype]
    lo, hi = min(float(mn), 0.0), max(float(mx), 0.0)
    if symmetric:
        scale = max(-lo, hi) / 127.0
        zp = 0 if dtype == "int8" else 128
    else:
        scale = (hi - lo) / float(qmax - qmin)
        zp = 0
    s = np.float32(scale)
    if s == 0:
        s = np.float32(1.0)
    s = max(s, np.finfo(np.float32).tiny)
    if not symmetric:
        zp = int(min(max(qmin - np.rint(lo / float(s)), qmin), qmax))
    return float(s), zp


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality, including the sign of zero, for float32 arrays."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == np.float32:
        return bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    return bool(np.array_equal(a, b))
