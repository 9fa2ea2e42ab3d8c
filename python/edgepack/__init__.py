"""edgepack: compress PyTorch models and run them on exact, fast int8 CPU kernels."""

from __future__ import annotations

from typing import Any

from . import _core
from .distill import distill  # the function shadows the subpackage attribute
from .kernels import choose_qparams, dequantize, quantize, quantize_dynamic
from .quantize.qat import convert_qat, prepare_qat, strip_qat

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
    "choose_qparams",
    "convert_qat",
    "cpu_info",
    "dequantize",
    "distill",
    "get_num_threads",
    "prepare_qat",
    "quantize",
    "quantize_dynamic",
    "set_num_threads",
    "strip_qat",
]
