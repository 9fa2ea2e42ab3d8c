"""The int8 GEMM inference path: packed weights and the exact int8 linear operations.

Weights are packed once (`pack_weights`) into the layout every micro-kernel reads ("c4n16": 16
output channels x 4 k per 64-byte group; the same bytes run on AVX2, AVX-512 VNNI, NEON,
dotprod and i8mm, so nothing is re-packed across machines). The operations equal the numpy
specs in `edgepack.reference` bit for bit, on every ISA and for any thread count:

- `gemm_s32(a, packed, a_zero_point=z)`: int32 (a - z) @ w.T, int8 or uint8 `a`.
- `linear_int8(x, packed)`: dynamic int8 linear; per-row uint8 asymmetric activation
  quantization (as `quantize_dynamic(x, dtype='uint8', per_row=True, symmetric=False)`), exact
  integer GEMM, y = float(acc) * float32(a_scale[m] * w_scale[n]) + bias, optional ReLU.
- `linear_q(...)`: static all-integer linear, requantized like `edgepack.quantize`.

Exactness bound: K <= 65536 (|a - zp| <= 255, |w| <= 128, so the int32 sum cannot overflow).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _core
from ._arrays import ArrayLike, int8_weights, is_torch, like, per_channel, to_numpy
from .kernels import choose_qparams, quantize

MAX_K: int = int(_core.GEMM_MAX_K)
MAX_OUTPUTS: int = int(_core.GEMM_MAX_OUTPUTS)
LAYOUT = "c4n16"

_QINT = (np.int8, np.uint8)
_F32 = (np.float32,)


class PackedLinear:
    """Packed int8 weights [N, K] with per-output-channel scales and optional bias.

    Holds one self-describing byte buffer (versioned header + column sums, scales, bias and the
    weight panels). Create with `pack_weights` or `PackedLinear.from_bytes`.
    """

    __slots__ = ("_buf", "_n", "_k", "_has_bias")

    def __init__(self, buf: np.ndarray, *, _verify: bool = True) -> None:
        if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
            raise TypeError(
                "PackedLinear wraps a 1-D uint8 buffer; use pack_weights() or from_bytes()"
            )
        try:
            info = _core.gemm_packed_info(buf, _verify)
        except ValueError as e:
            raise ValueError(str(e)) from None
        buf.flags.writeable = False
        self._buf = buf
        self._n = int(info["n"])
        self._k = int(info["k"])
        self._has_bias = bool(info["has_bias"])

    @property
    def shape(self) -> tuple[int, int]:
        """(N, K): output features, input features (like the weight of nn.Linear)."""
        return (self._n, self._k)

    @property
    def out_features(self) -> int:
        return self._n

    @property
    def in_features(self) -> int:
        return self._k

    @property
    def has_bias(self) -> bool:
        return self._has_bias

    @property
    def nbytes(self) -> int:
        """Size of the packed buffer in bytes (header, sums, scales, bias, panels)."""
        return int(self._buf.nbytes)

    @property
    def layout(self) -> str:
        return LAYOUT

    @property
    def buffer(self) -> np.ndarray:
        """The packed bytes as a read-only uint8 array (no copy)."""
        return self._buf

    def to_bytes(self) -> bytes:
        return self._buf.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | np.ndarray) -> PackedLinear:
        """Rebuild from `to_bytes()` output; the header and checksum are verified first.

        A truncated, corrupted or foreign buffer raises ValueError.
        """
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                raise TypeError(f"data must be bytes or a uint8 array, got dtype {data.dtype}")
            raw = data.reshape(-1)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = np.frombuffer(data, dtype=np.uint8)
        else:
            raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
        buf = _core.gemm_alloc(raw.size)  # own copy, aligned (huge pages when large)
        buf[:] = raw
        return cls(buf, _verify=True)

    def unpack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(w_q int8 [N, K], scale float32 [N], bias float32 [N] or None)."""
        w, s, b = _core.gemm_unpack(self._buf)
        return w, s, b

    def __getstate__(self) -> bytes:
        return self.to_bytes()

    def __setstate__(self, state: bytes) -> None:
        other = PackedLinear.from_bytes(state)
        self._buf, self._n, self._k, self._has_bias = (
            other._buf,
            other._n,
            other._k,
            other._has_bias,
        )

    def __repr__(self) -> str:
        return (
            f"PackedLinear(out_features={self._n}, in_features={self._k}, "
            f"bias={self._has_bias}, layout={LAYOUT!r}, nbytes={self.nbytes})"
        )


def _check_packed(packed: object) -> PackedLinear:
    if not isinstance(packed, PackedLinear):
        raise TypeError(
            f"packed must be a PackedLinear (from pack_weights), got {type(packed).__name__}"
        )
    return packed


def _int_arg(v: Any, name: str) -> int:
    if is_torch(v):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    return int(v)


def _float_arg(v: Any, name: str) -> float:
    if is_torch(v):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    f = float(np.float32(v))
    if not np.isfinite(f) or f <= 0.0:
        raise ValueError(f"{name} must be finite and > 0 in float32, got {v}")
    return f


def _check_outputs(x: Any, name: str, n: int) -> None:
    """Reject M * N past the supported bound before any copy of x is made."""
    shape = tuple(getattr(x, "shape", ()))
    if hasattr(x, "shape") and len(shape) == 0:
        raise ValueError(f"{name} must have at least one dimension (the last one is K)")
    m = 1
    for d in shape[:-1]:
        m *= int(d)
    if m * n >= MAX_OUTPUTS:
        raise ValueError(
            f"{name} has {m} rows: M * N = {m} * {n} outputs exceeds the supported 2**31"
        )


def _rows(a: np.ndarray, name: str, k: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Collapse leading dims: [..., K] -> ([M, K], leading shape)."""
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the last one is K)")
    if a.shape[-1] != k:
        raise ValueError(
            f"{name} has shape {tuple(a.shape)}: last dimension {a.shape[-1]} does not match "
            f"the packed weights' K = {k}"
        )
    lead = tuple(a.shape[:-1])
    return a.reshape(-1, k), lead


def _activations(
    x: Any, name: str, dtypes: tuple[type, ...], p: PackedLinear
) -> tuple[np.ndarray, tuple[int, ...] | None, bool]:
    """(rows [M, K], leading shape or None when x already was [M, K], x is a torch tensor).

    Hot path: a C-contiguous 2-D numpy array, or a plain CPU torch tensor, costs about a
    microsecond; anything else (strided, batched, grad, other devices) takes the general route
    through to_numpy with its checks. The native call re-checks K, dtype and M * N.
    """
    if type(x) is np.ndarray:
        if x.ndim == 2 and x.flags.c_contiguous and x.dtype.type in dtypes:
            return x, None, False
    elif is_torch(x):
        try:
            arr = x.numpy()  # raises for grad, conj/neg bits, quantized and non-CPU tensors
        except (RuntimeError, TypeError):
            arr = None
        if (
            arr is not None
            and arr.ndim == 2
            and arr.flags.c_contiguous
            and arr.dtype.type in dtypes
        ):
            return arr, None, True
    _check_outputs(x, name, p.out_features)
    a2, lead = _rows(to_numpy(x, name, dtypes), name, p.in_features)
    return a2, lead, is_torch(x)


def _wrap(out: np.ndarray, lead: tuple[int, ...] | None, n: int, torch_out: bool) -> ArrayLike:
    if lead is not None:
        out = out.reshape(*lead, n)
    if torch_out:
        return sys.modules["torch"].from_numpy(out)
    return out


def quantize_weights(w: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """Per-output-channel symmetric int8 quantization of a float32 weight [N, K].

    Returns (w_q int8 [N, K], scale float32 [N]) with choose_qparams(axis=0) semantics
    (scale = max|w_row| / 127, zero point 0). Same array kind out as in.
    """
    a = to_numpy(w, "w", (np.float32,))
    if a.ndim != 2:
        raise ValueError(f"w must be 2-D [N, K], got shape {tuple(a.shape)}")
    scale, _ = choose_qparams(a, dtype="int8", symmetric=True, axis=0)
    q = quantize(a, scale, 0, axis=0, dtype="int8")
    return like(np.asarray(q), w), like(np.asarray(scale, dtype=np.float32), w)


def pack_weights(w_q: ArrayLike, scale: Any, *, bias: Any = None) -> PackedLinear:
    """Pack int8 weights [N, K] (per-output-channel scales, symmetric) for the GEMM kernels.

    scale: float32 [N] (or one value for all channels), finite and > 0; bias: float [N] or None.
    """
    w, n, _ = int8_weights(w_q, MAX_K)
    s = per_channel(scale, "scale", n, positive=True)
    b = None if bias is None else per_channel(bias, "bias", n, positive=False)
    return PackedLinear(_core.gemm_pack(w, s, b), _verify=False)


def gemm_s32(a: ArrayLike, packed: PackedLinear, *, a_zero_point: int = 0) -> ArrayLike:
    """int32 [..., N] = (a - a_zero_point) @ w.T exactly, for int8 or uint8 `a` [..., K]."""
    p = packed if type(packed) is PackedLinear else _check_packed(packed)
    a2, lead, t = _activations(a, "a", _QINT, p)
    out = _core.gemm_s32(a2, p._buf, _int_arg(a_zero_point, "a_zero_point"))
    return _wrap(out, lead, p._n, t)


def linear_int8(x: ArrayLike, packed: PackedLinear, *, relu: bool = False) -> ArrayLike:
    """Dynamic int8 linear layer: float32 x [..., K] -> float32 [..., N] (see module docs).

    Raises ValueError if x holds NaN or inf.
    """
    p = packed if type(packed) is PackedLinear else _check_packed(packed)
    x2, lead, t = _activations(x, "x", _F32, p)
    out = _core.linear_int8(x2, p._buf, bool(relu))
    return _wrap(out, lead, p._n, t)


def linear_q(
    a_q: ArrayLike,
    a_scale: float,
    a_zero_point: int,
    packed: PackedLinear,
    out_scale: float,
    out_zero_point: int,
    *,
    relu: bool = False,
    out_dtype: str = "int8",
) -> ArrayLike:
    """Static int8 linear: int8/uint8 a_q [..., K] (per-tensor a_scale, a_zero_point) ->
    int8/uint8 [..., N] requantized with (out_scale, out_zero_point)."""
    p = packed if type(packed) is PackedLinear else _check_packed(packed)
    if out_dtype not in ("int8", "uint8"):
        raise ValueError(f"out_dtype must be 'int8' or 'uint8', got {out_dtype!r}")
    a2, lead, t = _activations(a_q, "a_q", _QINT, p)
    out = _core.linear_q(
        a2,
        p._buf,
        _float_arg(a_scale, "a_scale"),
        _int_arg(a_zero_point, "a_zero_point"),
        _float_arg(out_scale, "out_scale"),
        _int_arg(out_zero_point, "out_zero_point"),
        bool(relu),
        out_dtype,
    )
    return _wrap(out, lead, p._n, t)


__all__ = [
    "MAX_K",
    "PackedLinear",
    "gemm_s32",
    "linear_int8",
    "linear_q",
    "pack_weights",
    "quantize_weights",
]
