"""Quantization recipes: weight quantization, activation observers, the compression config."""

from __future__ import annotations

from .config import CompressionConfig
from .observers import MinMaxObserver, MSEObserver, Observer, PercentileObserver, make_observer
from .weights import effective_weight, quantize_weight

__all__ = [
    "CompressionConfig",
    "MSEObserver",
    "MinMaxObserver",
    "Observer",
    "PercentileObserver",
    "effective_weight",
    "make_observer",
    "quantize_weight",
]
