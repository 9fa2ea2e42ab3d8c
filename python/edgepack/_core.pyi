"""Typed stub of the native module edgepack._core (cpp/bindings/). Internal: use the wrappers in
edgepack.kernels, which normalize arguments and map torch tensors in and out."""

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

# ---- CPU / dispatch / threads (bind_cpu.cc) ----
def cpu_features() -> dict[str, bool]: ...
def selected_isa() -> str: ...
def isa_ladder() -> list[str]: ...
def supported_isas() -> list[str]: ...
def kernel_families() -> dict[str, dict[str, Any]]: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...

# ---- quantization (bind_quant.cc) ----
# Arrays must be C-contiguous; scale float32 and zero_point int32 arrays of equal length.
def quantize(
    x: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32],
    axis: int,
    dtype: str,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def dequantize(
    q: np.ndarray,
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32],
    axis: int,
    out: Optional[npt.NDArray[np.float32]] = None,
) -> npt.NDArray[np.float32]: ...
def quantize_tensor(
    x: npt.NDArray[np.float32],
    scale: float,
    zero_point: int,
    dtype: str,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def dequantize_tensor(
    q: np.ndarray, scale: float, zero_point: int, out: Optional[npt.NDArray[np.float32]] = None
) -> npt.NDArray[np.float32]: ...
def minmax(x: npt.NDArray[np.float32]) -> tuple[float, float]: ...
def qparams_from_minmax(mn: float, mx: float, dtype: str, symmetric: bool) -> tuple[float, int]: ...
def quantize_dynamic(
    x: npt.NDArray[np.float32], dtype: str, symmetric: bool, per_row: bool
) -> tuple[np.ndarray, npt.NDArray[np.float32], npt.NDArray[np.int32]]: ...
# Internal torch fast path: address of a contiguous CPU tensor of `shape` (float32 / int8 / uint8).
def quantize_raw(
    x_addr: int, shape: Sequence[int], scale: float, zero_point: int, dtype: str
) -> np.ndarray: ...
def dequantize_raw(
    q_addr: int, shape: Sequence[int], scale: float, zero_point: int, dtype: str
) -> npt.NDArray[np.float32]: ...
def choose_qparams_axis(
    x: npt.NDArray[np.float32], axis: int, dtype: str, symmetric: bool
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]: ...

# ---- int8 GEMM (bind_gemm.cc) ----
# `buf` is a packed-weights buffer (1-D uint8, 4-byte aligned); every call re-checks its header.
GEMM_MAX_K: int
GEMM_MAX_OUTPUTS: int

def gemm_alloc(nbytes: int) -> npt.NDArray[np.uint8]: ...
def gemm_pack(
    w_q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    bias: Optional[npt.NDArray[np.float32]],
) -> npt.NDArray[np.uint8]: ...
def gemm_packed_info(buf: npt.NDArray[np.uint8], verify_checksum: bool) -> dict[str, Any]: ...
def gemm_unpack(
    buf: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], Optional[npt.NDArray[np.float32]]]: ...
def gemm_s32(
    a: np.ndarray, buf: npt.NDArray[np.uint8], a_zero_point: int
) -> npt.NDArray[np.int32]: ...
def linear_int8(
    x: npt.NDArray[np.float32], buf: npt.NDArray[np.uint8], relu: bool
) -> npt.NDArray[np.float32]: ...
def conv2d_u8(
    x: npt.NDArray[np.float32], buf: npt.NDArray[np.uint8] | PackedSparse, kh: int, kw: int,
    sh: int, sw: int, dh: int, dw: int, relu: bool, nchw: bool = False,
) -> npt.NDArray[np.float32]: ...
def conv2d_u8_raw(
    x_addr: int, n: int, c: int, h: int, w: int, buf: npt.NDArray[np.uint8] | PackedSparse,
    kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, relu: bool,
) -> npt.NDArray[np.float32]: ...
def linear_q(
    a_q: np.ndarray,
    buf: npt.NDArray[np.uint8],
    a_scale: float,
    a_zero_point: int,
    out_scale: float,
    out_zero_point: int,
    relu: bool,
    out_dtype: str,
) -> np.ndarray: ...
def linear_u8(
    a: npt.NDArray[np.uint8],
    buf: npt.NDArray[np.uint8],
    row_scale: npt.NDArray[np.float32],
    row_zero_point: npt.NDArray[np.int32],
    relu: bool,
) -> npt.NDArray[np.float32]: ...

# ---- sparse (bind_sparse.cc) ----
class PackedSparse:
    @property
    def n(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def block_k(self) -> int: ...
    @property
    def nnz(self) -> int: ...
    @property
    def nnz_blocks(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def has_bias(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: Any) -> PackedSparse: ...
    def unpack(self) -> npt.NDArray[np.int8]: ...
    def scale(self) -> npt.NDArray[np.float32]: ...
    def bias(self) -> Optional[npt.NDArray[np.float32]]: ...

def pack_sparse(
    w_q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    bias: Optional[npt.NDArray[np.float32]],
    block_k: int,
) -> PackedSparse: ...
def sparse_linear_int8(
    x: npt.NDArray[np.float32], packed: PackedSparse, relu: bool
) -> npt.NDArray[np.float32]: ...
def sparse_linear_u8(
    a: npt.NDArray[np.uint8], packed: PackedSparse, row_scale: npt.NDArray[np.float32],
    row_zero_point: npt.NDArray[np.int32], relu: bool
) -> npt.NDArray[np.float32]: ...
def maxpool2d_nhwc_raw(
    x_addr: int, n: int, c: int, h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int,
    pw: int, dh: int, dw: int, ceil_mode: bool,
) -> npt.NDArray[np.float32]: ...
