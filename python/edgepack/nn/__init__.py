"""nn modules that run on edgepack's int8 kernels."""

from __future__ import annotations

from .conv import QuantConv2d
from .embedding import QuantEmbedding
from .linear import QuantLinear
from .pool import MaxPool2d

__all__ = ["MaxPool2d", "QuantConv2d", "QuantEmbedding", "QuantLinear"]
