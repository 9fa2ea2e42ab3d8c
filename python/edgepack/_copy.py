"""deepcopy of a user's model that also works for pruned models.

torch.nn.utils.prune keeps `weight` as a plain, non-leaf tensor (weight_orig * weight_mask,
recomputed before each forward), and deepcopy refuses non-leaf tensors. Those tensors are seeded
into deepcopy's memo as detached clones; the copy's own pruning hook recomputes them anyway.
The user's model is never modified.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def deepcopy_model(model: M) -> M:
    memo: dict[int, Any] = {}
    for m in model.modules():
        for val in vars(m).values():
            if isinstance(val, torch.Tensor) and not val.is_leaf:
                memo[id(val)] = val.detach().clone()
    return copy.deepcopy(model, memo)
