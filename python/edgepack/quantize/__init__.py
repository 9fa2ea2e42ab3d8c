"""Quantization: configs, calibration, quantization-aware training."""

from .qat import QATConv2d, QATLinear, convert_qat, prepare_qat, strip_qat

__all__ = ["QATConv2d", "QATLinear", "convert_qat", "prepare_qat", "strip_qat"]
