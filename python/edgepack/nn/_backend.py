"""The one place where nn modules meet the packed-weight kernels.

`pack_linear` packs an int8 weight dense or sparse (the sparse kernels plug in here through
edgepack.pack_sparse and edgepack.sparse's measured crossover when the build has them);
`run_dynamic` calls the kernel that matches the packed object. There is no numpy fallback: a
build without the int8 GEMM raises a clear RuntimeError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _core  # type: ignore[attr-defined]


def _ep() -> Any:
    import edgepack

    return edgepack


def _need(name: str) -> Any:
    fn = getattr(_ep(), name, None)
    if fn is None:
        raise RuntimeError(f"this edgepack build has no edgepack.{name} (int8 kernel missing)")
    return fn


def has_sparse() -> bool:
    ep = _ep()
    return all(hasattr(ep, n) for n in ("pack_sparse", "sparse_linear_int8", "PackedSparseLinear"))


def is_sparse(packed: object) -> bool:
    cls = getattr(_ep(), "PackedSparseLinear", None)
    return cls is not None and isinstance(packed, cls)


def packed_kind(packed: object) -> str:
    return "sparse" if is_sparse(packed) else "dense"


def pack_linear(
    w_q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, sparse: str = "auto",
    rows: int = 1,
) -> Any:
    """Pack int8 weights [N, K] (+ float32 scale [N], bias [N]) for the kernels.

    sparse: "never" -> dense; "always" -> block-sparse (needs the sparse kernels); "smaller"
    -> sparse exactly when it is smaller than dense (no timing: a deterministic, file-size-first
    choice; also what convs use for "auto", see QuantConv2d.from_float); "auto" -> sparse when
    it is smaller and also faster: pack_auto's measured crossover on this CPU at `rows` rows
    per call (dense when the build has no sparse kernels).
    """
    w_q = w_q.contiguous()
    scale = scale.to(torch.float32).contiguous()
    b = None if bias is None else bias.detach().to(torch.float32).contiguous()
    if sparse == "always":
        return _need("pack_sparse")(w_q, scale, bias=b)
    # Weights without a zero cannot pack smaller sparse. Otherwise both packings are built once:
    # sparse must pay in bytes (strictly smaller), and for "auto" also in time, which is only
    # measured for a layer that passed the first test.
    if sparse in ("auto", "smaller") and has_sparse() and bool((w_q == 0).any()):
        sp = _need("pack_sparse")(w_q, scale, bias=b)
        dense = _need("pack_weights")(w_q, scale, bias=b)
        if packed_nbytes(sp) >= packed_nbytes(dense):
            return dense
        if sparse == "smaller":
            return sp
        from .. import sparse as sparse_mod

        return sp if sparse_mod.faster_than_dense(sp, batch=rows) else dense
    if sparse not in ("auto", "smaller", "never"):
        raise ValueError(
            f"sparse must be 'auto', 'smaller', 'never' or 'always', got {sparse!r}")
    return _need("pack_weights")(w_q, scale, bias=b)


def native_weights(packed: object) -> Any:
    """What the native calls take for this packing: the dense uint8 buffer, or the core
    PackedSparse object of a PackedSparseLinear (None for anything else)."""
    buf = dense_buffer(packed)
    if buf is not None:
        return buf
    if is_sparse(packed):
        return packed._p  # type: ignore[attr-defined]
    return None


def dense_buffer(packed: object) -> Any:
    """The raw packed bytes of a dense PackedLinear (None for other packings)."""
    cls = getattr(_ep(), "PackedLinear", None)
    if cls is not None and type(packed) is cls:
        return packed.buffer  # type: ignore[attr-defined]
    return None


def dense_u8(a_u8: np.ndarray, buf: Any, row_scale: np.ndarray, row_zp: np.ndarray,
             relu: bool) -> torch.Tensor:
    """Float-output linear on uint8 activations [M, K] (C-contiguous) whose row r has the
    quantization (row_scale[r], row_zp[r]): int8 GEMM and linear_int8's fp32 epilogue in one
    native call (reference: gemm_s32_ref per row zero point -> epilogue_ref)."""
    return torch.from_numpy(_core.linear_u8(a_u8, buf, row_scale, row_zp, relu))


def run_dynamic(x2d: torch.Tensor, packed: object, relu: bool) -> torch.Tensor:
    """float32 [M, K] -> float32 [M, N]: dynamic per-row int8 linear with fused bias/ReLU."""
    fn = _need("sparse_linear_int8") if is_sparse(packed) else _need("linear_int8")
    out: torch.Tensor = fn(x2d, packed, relu=relu)
    return out


def packed_nbytes(packed: Any) -> int:
    return int(packed.nbytes)

