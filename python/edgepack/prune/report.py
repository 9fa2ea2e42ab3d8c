"""sparsity_report: per-layer zeros and the structure the zeros form (what the kernels can use)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._common import as_matrix, check_model, effective_weight, is_prunable

# Block widths along K and N:M patterns looked for, most useful first.
_BLOCK_WIDTHS = (16, 8, 4, 2)
_N_M = ((1, 4), (1, 2), (2, 4), (4, 8), (3, 4))


@dataclass
class LayerSparsity:
    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    zeros: int
    sparsity: float
    structure: str
    masked: bool  # still a torch.nn.utils.prune parametrization (weight_orig * weight_mask)


@dataclass
class SparsityReport:
    layers: list[LayerSparsity] = field(default_factory=list)
    params: int = 0  # weights of the reported layers
    zeros: int = 0
    model_params: int = 0  # every parameter of the model (effective values), biases included
    model_zeros: int = 0

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "params": self.params,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
            "model_params": self.model_params,
            "model_zeros": self.model_zeros,
        }

    def table(self) -> str:
        head = ("layer", "type", "shape", "params", "zeros", "sparsity", "structure")
        rows = [
            (
                layer.name,
                layer.kind,
                "x".join(map(str, layer.shape)),
                str(layer.params),
                str(layer.zeros),
                f"{100 * layer.sparsity:.1f}%",
                layer.structure + (" (masked)" if layer.masked else ""),
            )
            for layer in self.layers
        ]
        model_sparsity = self.model_zeros / self.model_params if self.model_params else 0.0
        rows.append(
            ("total", "", "", str(self.params), str(self.zeros), f"{100 * self.sparsity:.1f}%", "")
        )
        rows.append(
            (
                "model (all params)",
                "",
                "",
                str(self.model_params),
                str(self.model_zeros),
                f"{100 * model_sparsity:.1f}%",
                "",
            )
        )
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        numeric = {3, 4, 5}

        def fmt(row: tuple[str, ...]) -> str:
            cells = [
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths))
            ]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        body = [fmt(r) for r in rows]
        return "\n".join([fmt(head), rule, *body[:-2], rule, *body[-2:]])

    def __str__(self) -> str:
        return self.table()


def _blocks_aligned(zero: torch.Tensor, width: int) -> bool:
    """Every zero lies in a fully-zero 1 x width block along K (tail block may be partial)."""
    rows, k = zero.shape
    groups = -(-k // width)
    pad = (0, groups * width - k)
    # The padding of a partial tail block must agree with either verdict: True for "all zero",
    # False for "no zero".
    all_zero = torch.nn.functional.pad(zero, pad, value=True).reshape(rows, groups, width)
    any_zero = torch.nn.functional.pad(zero, pad, value=False).reshape(rows, groups, width)
    return bool((all_zero.all(dim=-1) | ~any_zero.any(dim=-1)).all())


def _n_of_m_holds(zero: torch.Tensor, n: int, m: int) -> bool:
    rows, k = zero.shape
    groups = -(-k // m)
    nonzero = torch.nn.functional.pad(~zero, (0, groups * m - k), value=False)
    return bool((nonzero.reshape(rows, groups, m).sum(dim=-1) <= n).all())


def structure_of(weight: torch.Tensor) -> str:
    """Name the pattern of zeros in a weight seen as [out, K]: 'dense', 'rows k/n' (whole output
    channels), '1xB blocks', 'N:M', 'unstructured' (or 'all zero').

    K is in the kernels' order (``as_matrix``: Conv2d (kh, kw, in), input channel innermost), so
    the structure reported is the one the sparse int8 conv actually packs."""
    zero = as_matrix(weight) == 0
    n_zero = int(zero.sum())
    if n_zero == 0:
        return "dense"
    if n_zero == zero.numel():
        return "all zero"
    row_zero = zero.all(dim=1)
    if int(row_zero.sum()) * zero.shape[1] == n_zero:
        return f"rows {int(row_zero.sum())}/{zero.shape[0]}"
    for width in _BLOCK_WIDTHS:
        if width <= zero.shape[1] and _blocks_aligned(zero, width):
            return f"1x{width} blocks"
    for n, m in _N_M:
        if m <= zero.shape[1] and _n_of_m_holds(zero, n, m):
            return f"{n}:{m}"
    return "unstructured"


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Zeros per nn.Linear / nn.Conv2d weight (as computed with, i.e. masks applied), their
    structure, and totals. ``print(report)`` shows a table; ``report.to_dict()`` gives plain data.
    """
    check_model(model)
    report = SparsityReport()
    with torch.no_grad():
        for name, module in model.named_modules():
            if not is_prunable(module):
                continue
            weight = effective_weight(module)
            zeros = int((weight == 0).sum())
            report.layers.append(
                LayerSparsity(
                    name=name or "(model)",
                    kind=type(module).__name__,
                    shape=tuple(weight.shape),
                    params=weight.numel(),
                    zeros=zeros,
                    sparsity=zeros / weight.numel() if weight.numel() else 0.0,
                    structure=structure_of(weight),
                    masked=hasattr(module, "weight_mask"),
                )
            )
            report.params += weight.numel()
            report.zeros += zeros
        for module in model.modules():
            for pname, param in module.named_parameters(recurse=False):
                value = param.detach()
                if pname.endswith("_orig"):
                    mask = getattr(module, pname[: -len("_orig")] + "_mask", None)
                    if isinstance(mask, torch.Tensor):
                        value = value * mask
                report.model_params += value.numel()
                report.model_zeros += int((value == 0).sum())
    return report
