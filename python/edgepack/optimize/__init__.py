"""edgepack.optimize: eval-mode clean-up before compression.

- Conv2d/Linear + BatchNorm folding (BatchNorm1d after Linear only when an example input shows
  the Linear output is 2-D, where BN1d normalizes the Linear's features);
- Dropout removal (identity in eval mode anyway);
- ReLU fusion: a ReLU module that directly and only follows a Conv2d/Linear is recorded in
  `model.edgepack_optimize_report_["relu_fusions"]`; compress then runs it in the kernel epilogue
  (relu=True) and drops the module.
The result is a copy of the same class; the input model is not changed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._copy import deepcopy_model
from .fold import fold_bn
from .graph import Plan, make_plan


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def optimize_inplace(model: nn.Module, example_input: object = None) -> Plan:
    """Apply the clean-up to `model` itself (eval mode); returns what was done."""
    model.eval()
    plan = make_plan(model, example_input)
    for layer_name, bn_name in plan.bn_folds:
        fold_bn(model.get_submodule(layer_name), model.get_submodule(bn_name))
        set_submodule(model, bn_name, nn.Identity())
    for name in plan.dropouts:
        set_submodule(model, name, nn.Identity())
    model.edgepack_optimize_report_ = {  # type: ignore[assignment]
        "graph": plan.source,
        "bn_folds": [list(p) for p in plan.bn_folds],
        "dropouts_removed": list(plan.dropouts),
        "relu_fusions": [list(p) for p in plan.relu_fusions],
    }
    return plan


def _check_cpu(model: nn.Module, what: str) -> None:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type != "cpu":
            raise ValueError(f"{what} is on device '{t.device}'; edgepack works on CPU models "
                             "(call model.cpu() first)")


def optimize(model: nn.Module, example_input: Any = None, *, check: bool = True) -> nn.Module:
    """Eval-mode copy of `model` with BatchNorm folded and Dropout removed (see module doc).

    With `example_input` (a tensor, a tuple of positional inputs or a dict of keyword inputs)
    the copy is checked to reproduce the original output within fp32 rounding.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_cpu(model, "model")
    out = deepcopy_model(model)
    optimize_inplace(out, example_input)
    if check and example_input is not None:
        from .graph import _call

        ref_model = deepcopy_model(model).eval()
        with torch.no_grad():
            ref, got = _call(ref_model, example_input), _call(out, example_input)
        if isinstance(ref, torch.Tensor) and isinstance(got, torch.Tensor) and ref.numel():
            tol = 1e-4 * max(1.0, float(ref.abs().max()))
            if ref.shape != got.shape or float((ref - got).abs().max()) > tol:
                raise RuntimeError("optimize changed the model output beyond fp32 rounding; "
                                   "please report this model")
    return out


__all__ = ["Plan", "make_plan", "optimize", "optimize_inplace", "set_submodule"]
