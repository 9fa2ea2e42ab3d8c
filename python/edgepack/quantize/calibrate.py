"""Static activation calibration: observers on the inputs of the layers to quantize.

calib_data is an iterable of batches; a batch is a tensor (model(batch)), a tuple/list whose
first element is the input (model(batch[0]), the (inputs, labels) shape of a labelled
DataLoader), or a dict of keyword inputs (model(**batch)).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .observers import Observer, make_observer


def _inputs(batch: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, (tuple, list)) and batch:
        return (batch[0],), {}
    if isinstance(batch, dict):
        return (), dict(batch)
    raise TypeError("calib_data batches must be tensors, (input, ...) tuples/lists or dicts, "
                    f"got {type(batch).__name__}")


def _check_batch(i: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, torch.Tensor):
            if v.device.type != "cpu":
                raise ValueError(f"calib_data batch {i} is on device '{v.device}'; use CPU tensors")
            if torch.is_floating_point(v) and bool(torch.isnan(v).any()):
                raise ValueError(f"calib_data batch {i} holds NaN")


def calibrate(
    model: nn.Module,
    layer_names: list[str],
    calib_data: Iterable[Any] | None,
    observer: str = "minmax",
    percentile: float = 99.99,
) -> dict[str, tuple[float, int]]:
    """Run calib_data through `model` (eval, no_grad) and return per-layer input (scale, zp)."""
    if calib_data is None:
        raise ValueError("static activations need calib_data (an iterable of input batches)")
    if isinstance(calib_data, torch.Tensor):
        raise TypeError("calib_data must be an iterable of batches, e.g. [x] or a DataLoader, "
                        "not a single tensor")
    obs: dict[str, Observer] = {n: make_observer(observer, n, percentile) for n in layer_names}
    hooks = []
    for name in layer_names:
        def pre(_m: nn.Module, inp: tuple[Any, ...], name: str = name) -> None:
            if inp and isinstance(inp[0], torch.Tensor):
                obs[name].observe(inp[0])
        hooks.append(model.get_submodule(name).register_forward_pre_hook(pre))
    nb = 0
    try:
        with torch.no_grad():
            for i, batch in enumerate(calib_data):
                args, kwargs = _inputs(batch)
                _check_batch(i, args, kwargs)
                try:
                    model(*args, **kwargs)
                except (RuntimeError, ValueError, TypeError, IndexError) as e:
                    if "NaN" in str(e) or "inf" in str(e):
                        raise
                    raise ValueError(f"calib_data batch {i} does not fit the model "
                                     f"(wrong input shape?): {e}") from e
                nb += 1
    finally:
        for h in hooks:
            h.remove()
    if nb == 0:
        raise ValueError("calib_data is empty")
    return {n: o.qparams() for n, o in obs.items()}
