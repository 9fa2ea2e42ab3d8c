"""Pruning on torch models: masks that the compression path keeps, and real channel removal.

In place (torch.nn.utils.prune masks, weight = weight_orig * weight_mask):
    magnitude(model, amount, scope=...), blocks(model, amount, block=(1, 4)), n_of_m(model, n, m)
    remove(model) makes the masks permanent.
New model: channels(model, amount, example_input=...) physically removes channels.
Schedule: GradualPruner(model, final_amount, start_step=..., end_step=..., frequency=...).
Inspection: sparsity_report(model).
"""

from ._common import remove
from .criteria import blocks, magnitude, n_of_m
from .report import LayerSparsity, SparsityReport, sparsity_report
from .schedule import GradualPruner
from .structured import channels

__all__ = [
    "GradualPruner",
    "LayerSparsity",
    "SparsityReport",
    "blocks",
    "channels",
    "magnitude",
    "n_of_m",
    "remove",
    "sparsity_report",
]
