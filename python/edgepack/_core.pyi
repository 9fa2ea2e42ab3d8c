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
