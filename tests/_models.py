"""Small models shared by the model-level tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgepack.demo import reference_cnn


def mnist_cnn() -> nn.Sequential:
    """The reference CNN of issue 5 (28x28 grayscale in, 10 logits out)."""
    return reference_cnn()


def mlp(d_in: int = 32, hidden: int = 48, d_out: int = 7) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)


class Residual(nn.Module):
    """A forward that is not a plain chain: functional ReLU, a skip connection, a parameter."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, d))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(d, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.a(x))
        h = self.bn(self.b(h)) + x * self.scale
        return self.head(h).flatten(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A method of the user's class that must keep working after compress."""
        return F.normalize(self.forward(x), dim=-1)


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
