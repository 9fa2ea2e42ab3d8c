"""Pruning on torch models: masks that the compression path keeps, and real channel removal.

In place (torch.nn.utils.prune masks, weight = weight_orig * weight_mask):
    magnitude(model, amount, scope=...), blocks(model, amount, block=(1, 4)), n_of_m(model, n, m)
    remove(model) makes the masks permanent.
New model: channels(model, amount, example_input=...) physically removes channels.
Schedule: GradualPruner(model, final_amount, start_step=..., end_step=..., frequency=...).
Inspection: sparsity_report(model); effective_weight(layer) is the weight a layer computes
with (weight_orig * weight_mask when masked): what a compression path must quantize so that
pruned weights stay zero.

Example (fine-tuning with a gradual 1x4 block schedule, then freezing the masks)::

    pruner = edgepack.prune.GradualPruner(
        model, 0.9, start_step=0, end_step=2000, frequency=100, criterion="blocks"
    )
    for step, (x, y) in enumerate(loader):
        loss_fn(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        pruner.step()
    edgepack.prune.remove(model)
    print(edgepack.prune.sparsity_report(model))
"""

from ._common import effective_weight, remove
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
    "effective_weight",
    "magnitude",
    "n_of_m",
    "remove",
    "sparsity_report",
]
