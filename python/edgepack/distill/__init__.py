"""Knowledge distillation: Hinton soft targets, optional feature hints, DDP-ready trainer."""

from .losses import hint_loss, kd_loss
from .trainer import distill

__all__ = ["distill", "hint_loss", "kd_loss"]
