"""edgepack: compress PyTorch models and run them on exact, fast int8 CPU kernels."""

from __future__ import annotations

from typing import Any

from . import _core
from . import prune as prune
from .distill import distill  # the function shadows the subpackage attribute
from .gemm import (
    PackedLinear,
    gemm_s32,
    linear_int8,
    linear_q,
    pack_weights,
    quantize_weights,
)
from .io import load, save
from .kernels import choose_qparams, dequantize, quantize, quantize_dynamic
from .optimize import optimize
from .quantize import CompressionConfig
from .quantize.compress import compress
from .quantize.qat import convert_qat, prepare_qat, strip_qat
from .report import report
from .sparse import (
    PackedSparseLinear,
    linear_auto,
    pack_auto,
    pack_sparse,
    sparse_crossover,
    sparse_linear_int8,
)

__version__ = "0.1.0"


def cpu_info() -> dict[str, Any]:
    """Detected CPU features, the selected ISA level, and per kernel family the ISA in use."""
    import platform

    families = _core.kernel_families()
    return {
        "arch": platform.machine(),
        "features": _core.cpu_features(),
        "isa": _core.selected_isa(),
        "isa_ladder": _core.isa_ladder(),
        "supported_isas": _core.supported_isas(),
        "kernels": {name: fam["selected"] for name, fam in families.items()},
        "available_kernels": {name: fam["available"] for name, fam in families.items()},
        "num_threads": _core.get_num_threads(),
    }


def set_num_threads(n: int) -> None:
    """Threads used by edgepack kernels (the library's own pool, not torch's)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    return int(_core.get_num_threads())


__all__ = [
    "CompressionConfig",
    "PackedLinear",
    "PackedSparseLinear",
    "choose_qparams",
    "compress",
    "convert_qat",
    "cpu_info",
    "dequantize",
    "distill",
    "gemm_s32",
    "get_num_threads",
    "linear_auto",
    "linear_int8",
    "linear_q",
    "load",
    "optimize",
    "pack_auto",
    "pack_sparse",
    "pack_weights",
    "prepare_qat",
    "quantize",
    "quantize_dynamic",
    "quantize_weights",
    "report",
    "save",
    "set_num_threads",
    "sparse_crossover",
    "sparse_linear_int8",
    "strip_qat",
]
