"""Quantization recipes: weight quantization, activation observers, the compression config,
quantization-aware training."""

from __future__ import annotations

from .config import CompressionConfig
from .observers import MinMaxObserver, MSEObserver, Observer, PercentileObserver, make_observer
from .qat import QATConv2d, QATLinear, convert_qat, prepare_qat, strip_qat
from .weights import effective_weight, quantize_weight

__all__ = [
    "QATConv2d",
    "QATLinear",
    "convert_qat",
    "prepare_qat",
    "strip_qat",
    "CompressionConfig",
    "MSEObserver",
    "MinMaxObserver",
    "Observer",
    "PercentileObserver",
    "effective_weight",
    "make_observer",
    "quantize_weight",
]
