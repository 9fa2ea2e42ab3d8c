"""The one place where nn modules meet the packed-weight kernels.

`pack_linear` packs an int8 weight dense or sparse (the sparse kernels plug in here through
edgepack.pack_sparse / edgepack.pack_auto when the build has them); `run_dynamic` and
`run_s32` call the kernel that matches the packed object. There is no numpy fallback: a build
without the int8 GEMM raises a clear RuntimeError.
"""

from __future__ import annotations

from typing import Any

import torch


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
    w_q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, sparse: str = "auto"
) -> Any:
    """Pack int8 weights [N, K] (+ float32 scale [N], bias [N]) for the kernels.

    sparse: "never" -> dense; "always" -> block-sparse (needs the sparse kernels); "auto" ->
    edgepack.pack_auto's measured choice when the build has it, else dense.
    """
    w_q = w_q.contiguous()
    scale = scale.to(torch.float32).contiguous()
    b = None if bias is None else bias.detach().to(torch.float32).contiguous()
    if sparse == "always":
        return _need("pack_sparse")(w_q, scale, bias=b)
    if sparse == "auto" and hasattr(_ep(), "pack_auto"):
        return _ep().pack_auto(w_q, scale, bias=b)
    if sparse not in ("auto", "never"):
        raise ValueError(f"sparse must be 'auto', 'never' or 'always', got {sparse!r}")
    return _need("pack_weights")(w_q, scale, bias=b)


def run_dynamic(x2d: torch.Tensor, packed: object, relu: bool) -> torch.Tensor:
    """float32 [M, K] -> float32 [M, N]: dynamic per-row int8 linear with fused bias/ReLU."""
    fn = _need("sparse_linear_int8") if is_sparse(packed) else _need("linear_int8")
    out: torch.Tensor = fn(x2d, packed, relu=relu)
    return out


def run_s32(a_u8: torch.Tensor, packed: object, a_zero_point: int) -> torch.Tensor:
    """uint8 [M, K] -> int32 [M, N] = (a - zp) @ w.T (dense packing only)."""
    if is_sparse(packed):
        raise RuntimeError("static activations need dense packing (no sparse int32 GEMM)")
    out: torch.Tensor = _need("gemm_s32")(a_u8, packed, a_zero_point=a_zero_point)
    return out


def packed_nbytes(packed: Any) -> int:
    return int(packed.nbytes)


def packed_to_bytes(packed: Any) -> bytes:
    return bytes(packed.to_bytes())


def packed_from_bytes(kind: str, data: bytes) -> Any:
    if kind == "dense":
        return _need("PackedLinear").from_bytes(data)
    if kind == "sparse":
        return _need("PackedSparseLinear").from_bytes(data)
    raise ValueError(f"unknown packed weight kind {kind!r}")
