"""Distillation losses (Hinton et al. 2015; FitNets hints, Romero et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y).

    The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones when T
    changes (the gradient of the softened KL shrinks as 1/T^2). KL is averaged over the batch
    ("batchmean", the mathematically correct KL). Logits of shape [B, ..., C] are flattened to
    [B * ..., C]. labels may be None only when alpha == 1.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student output shape {tuple(student_logits.shape)} differs from teacher output "
            f"shape {tuple(teacher_logits.shape)}"
        )
    t = float(temperature)
    c = student_logits.shape[-1]
    s2 = student_logits.reshape(-1, c)
    t2 = teacher_logits.detach().reshape(-1, c)
    soft = F.kl_div(
        F.log_softmax(s2 / t, dim=-1), F.log_softmax(t2 / t, dim=-1),
        reduction="batchmean", log_target=True,
    ) * (t * t)
    if alpha >= 1.0:
        return alpha * soft
    if labels is None:
        raise ValueError("alpha < 1 mixes in the hard-label loss, but the data has no labels")
    hard = F.cross_entropy(s2, labels.reshape(-1).long())
    return alpha * soft + (1.0 - alpha) * hard


def hint_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
    """Sum over pairs of the mean squared error between (adapted) student and teacher features."""
    if len(student_feats) != len(teacher_feats):
        raise ValueError("student_feats and teacher_feats must pair up")
    total = student_feats[0].new_zeros(())
    for s, t in zip(student_feats, teacher_feats):
        total = total + F.mse_loss(s, t.detach())
    return total
