"""edgepack.compress: a compressed copy of a model whose layers run on the int8 kernels.

The copy keeps the user's class (deepcopy, then submodules swapped), so the model's own methods
(e.g. SentenceTransformer.encode) keep working. Linear -> QuantLinear, Conv2d (groups=1) ->
QuantConv2d, Embedding -> QuantEmbedding. Everything else stays fp32 and is listed in
`compressed.edgepack_report_`; layers with weights that cannot be compressed also raise a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .._copy import deepcopy_model
from ..nn import MaxPool2d, QuantConv2d, QuantEmbedding, QuantLinear
from ..optimize import optimize_inplace, set_submodule
from ..optimize.graph import Plan
from .calibrate import calibrate
from .config import CompressionConfig

# Modules whose forward reads their children's weights directly (swapping a child would break
# them), kept fp32 as a whole.
OPAQUE = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
          nn.RNNBase)
QUANT_TYPES = (QuantLinear, QuantConv2d, QuantEmbedding)


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type != "cpu":
            raise ValueError(f"model is on device '{t.device}'; edgepack compresses CPU models "
                             "(call model.cpu() first)")
    return model


def _scan(
    model: nn.Module, cfg: CompressionConfig
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(candidates, unsupported {name: why}, kept {name: why}) over the module tree."""
    cands: list[str] = []
    unsupported: dict[str, str] = {}
    kept: dict[str, str] = {}
    opaque: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in opaque):
            continue
        if isinstance(m, OPAQUE):
            opaque.append(name)
            unsupported[name] = f"{type(m).__name__} uses its weights directly"
            continue
        if isinstance(m, QUANT_TYPES):
            continue
        if name in cfg.skip:
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
                kept[name] = "skipped by config"
            continue
        if isinstance(m, nn.Linear):
            cands.append(name)
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1:
                unsupported[name] = f"Conv2d with groups={m.groups}"
            else:
                cands.append(name)
        elif isinstance(m, nn.Embedding):
            if not cfg.quantize_embeddings:
                kept[name] = "quantize_embeddings=False"
            elif m.max_norm is not None:
                unsupported[name] = "Embedding with max_norm"
            else:
                cands.append(name)
        else:
            own = [p for n, p in m.named_parameters(recurse=False) if p.dim() >= 2]
            if own:
                unsupported[name] = f"{type(m).__name__} is not supported"
    return cands, unsupported, kept


def _build(
    model: nn.Module, name: str, relu: bool, cfg: CompressionConfig,
    act: tuple[float, int] | None
) -> nn.Module:
    m = model.get_submodule(name)
    sparse = cfg.sparse
    if isinstance(m, nn.Embedding):
        return QuantEmbedding.from_float(m)
    if isinstance(m, nn.Conv2d):
        gran = "image" if cfg.conv_activations == "per_image" else "row"
        return QuantConv2d.from_float(m, relu=relu, sparse=sparse, act_qparams=act,
                                      act_granularity=gran)
    if isinstance(m, nn.Linear):
        return QuantLinear.from_float(m, relu=relu, sparse=sparse, act_qparams=act,
                                      rows_per_call=cfg.rows_per_call)
    raise TypeError(f"cannot quantize {type(m).__name__}")


def _metric(eval_fn: Callable[[nn.Module], float], model: nn.Module) -> float:
    with torch.no_grad():
        v = float(eval_fn(model))
    if v != v:
        raise ValueError("eval_fn returned NaN")
    return v


def _relu_map(plan: Plan) -> dict[str, str]:
    return {layer: relu for layer, relu in plan.relu_fusions}


def compress(
    model: nn.Module,
    config: CompressionConfig | None = None,
    *,
    calib_data: Iterable[Any] | None = None,
    eval_fn: Callable[[nn.Module], float] | None = None,
    example_input: Any = None,
) -> nn.Module:
    """A compressed copy of `model` (same class, eval mode); `model` is not changed.

    calib_data: batches for static activations (see edgepack.quantize.calibrate).
    eval_fn: model -> metric, required for mode="local" (mixed precision).
    example_input: optional, lets optimize fold BatchNorm1d after Linear.
    """
    cfg = config if config is not None else CompressionConfig()
    if not isinstance(cfg, CompressionConfig):
        raise TypeError(f"config must be a CompressionConfig, got {type(cfg).__name__}")
    cfg.validate()
    _check_model(model)
    if cfg.mode == "local" and eval_fn is None:
        raise ValueError("mode='local' needs eval_fn (model -> metric)")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError("eval_fn must be callable")

    work = deepcopy_model(model).eval()
    plan = optimize_inplace(work, example_input) if cfg.optimize else Plan()
    relu_of = _relu_map(plan)
    cands, unsupported, kept = _scan(work, cfg)
    for name, why in unsupported.items():
        warnings.warn(f"edgepack.compress: keeping '{name}' fp32: {why}", stacklevel=2)

    acts: dict[str, tuple[float, int]] = {}
    if cfg.activations == "static":
        need = [n for n in cands if not isinstance(work.get_submodule(n), nn.Embedding)]
        acts = calibrate(work, need, calib_data, cfg.observer, cfg.percentile)
    elif calib_data is not None:
        warnings.warn("edgepack.compress: calib_data is unused with dynamic activations",
                      stacklevel=2)

    fp32 = {n: work.get_submodule(n) for n in cands}
    quant = {n: _build(work, n, n in relu_of, cfg, acts.get(n)) for n in cands}

    report: dict[str, Any] = {"config": dict(vars(cfg)), "optimize": getattr(
        work, "edgepack_optimize_report_", None), "unsupported": unsupported}
    chosen = list(cands)
    if cfg.mode == "local":
        assert eval_fn is not None and cfg.max_metric_drop is not None
        chosen, sens = _mixed(work, fp32, quant, eval_fn, cfg)
        report["sensitivity"] = sens
        for n in cands:
            if n not in chosen:
                kept[n] = "sensitivity (mixed precision)"
    for n in cands:
        set_submodule(work, n, quant[n] if n in chosen else fp32[n])
    fused: list[str] = []
    for n in chosen:
        q = quant[n]
        lin = q.linear if isinstance(q, QuantConv2d) else q
        if isinstance(lin, QuantLinear) and lin.relu:
            set_submodule(work, relu_of[n], nn.Identity())
            fused.append(n)
    for n in cands:  # layers left fp32 keep their own ReLU module: unset the fused flag
        if n not in chosen:
            q = quant[n]
            lin = q.linear if isinstance(q, QuantConv2d) else q
            if isinstance(lin, QuantLinear):
                lin.relu = False
    # torch's max_pool2d is slow on the channels_last maps QuantConv2d returns: pool natively
    # (bit-identical; other inputs still go to torch)
    pools = {n: m for n, m in work.named_modules()
             if n and type(m) is nn.MaxPool2d and not m.return_indices}
    for n, m in pools.items():
        set_submodule(work, n, MaxPool2d.from_float(m))
    report["quantized"] = {n: _describe(quant[n]) for n in chosen}
    report["native_pools"] = list(pools)
    report["relu_fused"] = fused
    report["kept_fp32"] = kept
    work.edgepack_report_ = report  # type: ignore[assignment]
    return work


def _describe(m: nn.Module) -> dict[str, Any]:
    if isinstance(m, QuantEmbedding):
        return {"type": "QuantEmbedding", "bytes": m.weight_q.numel() + 4 * m.weight_scale.numel()}
    lin = m.linear if isinstance(m, QuantConv2d) else m
    assert isinstance(lin, QuantLinear)
    return {"type": type(m).__name__, "format": lin.packed_kind, "bytes": lin.packed_nbytes,
            "activations": "static" if lin.is_static else "dynamic"}


def _mixed(
    work: nn.Module,
    fp32: dict[str, nn.Module],
    quant: dict[str, nn.Module],
    eval_fn: Callable[[nn.Module], float],
    cfg: CompressionConfig,
) -> tuple[list[str], dict[str, Any]]:
    """Greedy mixed precision: quantize all, then return the most sensitive layers to fp32 until
    the metric drop is within budget. Fused ReLU modules stay in place while measuring
    (ReLU twice is ReLU), so every candidate configuration computes what it will ship."""
    sign = 1.0 if cfg.higher_is_better else -1.0
    budget = float(cfg.max_metric_drop or 0.0)

    def drop(v: float) -> float:
        return sign * (base - v)

    base = _metric(eval_fn, work)
    per_layer: dict[str, float] = {}
    for n in fp32:
        set_submodule(work, n, quant[n])
        per_layer[n] = drop(_metric(eval_fn, work))
        set_submodule(work, n, fp32[n])
    for n in fp32:
        set_submodule(work, n, quant[n])
    chosen = list(fp32)
    cur = _metric(eval_fn, work)
    steps = [{"fp32": [], "metric": cur}]
    for n in sorted(per_layer, key=lambda k: per_layer[k], reverse=True):
        if drop(cur) <= budget:
            break
        set_submodule(work, n, fp32[n])
        chosen.remove(n)
        cur = _metric(eval_fn, work)
        steps.append({"fp32": [c for c in fp32 if c not in chosen], "metric": cur})
    if drop(cur) > budget:
        warnings.warn("edgepack.compress: the metric budget is not met even with every layer "
                      "fp32", stacklevel=3)
    return chosen, {"base_metric": base, "per_layer_drop": per_layer, "final_metric": cur,
                    "steps": steps}
