"""Array plumbing shared by the kernel wrappers: numpy arrays and CPU torch tensors in (zero-copy
where the layout allows), the same kind out. No math lives here."""

from __future__ import annotations

import sys
from typing import Any, Union

import numpy as np

ArrayLike = Union[np.ndarray, "Any"]  # np.ndarray or torch.Tensor


def is_torch(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: object, name: str, dtypes: tuple[type, ...] | None = None) -> np.ndarray:
    """Return a C-contiguous numpy view (or copy, for strided input) of `x`.

    Raises TypeError for anything but a numpy array / CPU torch tensor of an allowed dtype, and
    ValueError for a tensor on another device.
    """
    if type(x) is np.ndarray:  # fast path: the common case costs a few hundred ns
        if dtypes is not None and x.dtype.type not in dtypes:
            want = " or ".join(np.dtype(d).name for d in dtypes)
            raise TypeError(f"{name} must have dtype {want}, got {x.dtype}")
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)
    if is_torch(x):
        t: Any = x
        if not t.is_cpu:
            raise ValueError(
                f"{name} is on device '{t.device}'; edgepack kernels run on CPU tensors"
            )
        if t.is_quantized:
            raise TypeError(f"{name} is a torch quantized tensor; pass its int_repr() instead")
        if t.requires_grad:
            t = t.detach()
        if t.is_conj() or t.is_neg():  # lazy views numpy cannot see
            t = t.resolve_conj().resolve_neg()
        arr = t.numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if dtypes is not None and arr.dtype.type not in dtypes:
        want = " or ".join(np.dtype(d).name for d in dtypes)
        raise TypeError(f"{name} must have dtype {want}, got {arr.dtype}")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def like(out: np.ndarray, ref: object) -> ArrayLike:
    """Wrap `out` as the same kind of array as `ref` (torch tensor in -> torch tensor out)."""
    if is_torch(ref):
        import torch

        return torch.from_numpy(out)
    return out


def check_dtype_name(dtype: str) -> str:
    if dtype not in ("int8", "uint8"):
        raise ValueError(f"dtype must be 'int8' or 'uint8', got {dtype!r}")
    return dtype


def normalize_axis(axis: int | None, ndim: int) -> int:
    """Per-channel axis, negative allowed; -1 is returned for per-tensor (axis=None)."""
    if axis is None:
        return -1
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def int8_weights(w_q: object, max_k: int) -> tuple[np.ndarray, int, int]:
    """int8 weights [N, K] to pack (dense or sparse): (contiguous numpy array, N, K). K is
    bounded by max_k, the bound that keeps the kernels' int32 accumulation exact."""
    w = to_numpy(w_q, "w_q", (np.int8,))
    if w.ndim != 2:
        raise ValueError(f"w_q must be 2-D [N, K], got shape {tuple(w.shape)}")
    n, k = w.shape
    if n == 0 or k == 0:
        raise ValueError(f"w_q must be non-empty, got shape {tuple(w.shape)}")
    if k > max_k:
        raise ValueError(f"w_q has K = {k} > {max_k}, the bound that keeps int32 accumulation "
                         "exact")
    return w, int(n), int(k)


def per_channel(v: Any, name: str, n: int, *, positive: bool) -> np.ndarray:
    """A per-output-channel float32 vector [n] (one value is repeated n times): numeric, finite
    in float32, and > 0 when `positive` (scales; biases may have any sign)."""
    if is_torch(v):
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64).reshape(-1)
    if a.size == 1 and n != 1:
        a = np.repeat(a, n)
    if a.size != n:
        raise ValueError(f"{name} has {a.size} entries, expected one per output channel ({n})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    a32 = a.astype(np.float32)
    if not np.all(np.isfinite(a32)):
        raise ValueError(f"{name} is out of float32 range")
    if positive and not np.all(a32 > 0):
        raise ValueError(f"{name} must be > 0 for every output channel")
    return np.ascontiguousarray(a32)
