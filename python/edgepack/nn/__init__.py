"""nn modules that run on edgepack's int8 kernels."""

from __future__ import annotations

from .conv import QuantConv2d
from .embedding import QuantEmbedding
from .linear import QuantLinear

__all__ = ["QuantConv2d", "QuantEmbedding", "QuantLinear"]
