"""Mask-based pruning criteria: unstructured magnitude, 1xB blocks along K, and N:M.

All three work IN PLACE, like torch.nn.utils.prune (which they use underneath): each pruned
layer gets ``weight_orig`` (a Parameter) and ``weight_mask`` (a buffer) and computes with
``weight_orig * weight_mask``, so pruned weights stay zero through fine-tuning (their gradient
is masked too). ``remove(model)`` makes the zeros permanent.

Scores always read the *effective* weight (weight_orig * weight_mask), and entries or blocks that
are already masked are pruned first, so calls compound: a mask never grows back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._common import (
    LayerFilter,
    apply_masks,
    as_matrix,
    check_amount,
    check_model,
    check_positive_int,
    current_mask,
    effective_weight,
    from_matrix,
    select_layers,
    smallest,
)

# A criterion turns one layer into scores over "units" (weights or blocks; lower = pruned first)
# and a way to map kept units back to a weight-shaped mask.


@dataclass
class _Units:
    module: nn.Module
    scores: torch.Tensor  # 1-D, one score per unit; already-masked units score -1
    expand: Callable[[torch.Tensor], torch.Tensor]  # bool keep[units] -> bool mask[weight.shape]
    old_mask: torch.Tensor  # bool, weight-shaped


def check_scope(scope: object) -> str:
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    assert isinstance(scope, str)
    return scope


def _element_units(module: nn.Module) -> _Units:
    weight = effective_weight(module)
    old = current_mask(module)
    scores = weight.abs().float().flatten()
    scores[~old.flatten()] = -1.0
    shape = weight.shape
    return _Units(module, scores, lambda keep: keep.reshape(shape), old)


def check_block(block: object) -> tuple[int, int]:
    """``block`` as (rows, cols): positive ints; rows run along the output dim, cols along K."""
    if (
        not isinstance(block, (tuple, list))
        or len(block) != 2
        or any(isinstance(b, bool) or not isinstance(b, int) for b in block)
    ):
        raise ValueError(f"block must be a (rows, cols) pair of ints, e.g. (1, 4); got {block!r}")
    rows, cols = int(block[0]), int(block[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"block sizes must be >= 1, got {block!r}")
    if rows * cols == 1:
        raise ValueError("block=(1, 1) is unstructured pruning: use prune.magnitude instead")
    return rows, cols


def _block_units(module: nn.Module, block: tuple[int, int]) -> _Units:
    br, bc = block
    weight = effective_weight(module)
    old = current_mask(module)
    mat = as_matrix(weight).abs().float()
    rows, k = mat.shape
    nr, nc = -(-rows // br), -(-k // bc)
    pad = (0, nc * bc - k, 0, nr * br - rows)
    # L1 per block; a partial block at the bottom/right edge is scaled up to a full block's
    # worth (its mean |w| times br*bc) so being short neither protects nor condemns it.
    l1 = torch.nn.functional.pad(mat, pad).reshape(nr, br, nc, bc).sum(dim=(1, 3))
    present = torch.nn.functional.pad(torch.ones_like(mat), pad).reshape(nr, br, nc, bc)
    count = present.sum(dim=(1, 3))
    scores = l1 * (br * bc) / count
    live = torch.nn.functional.pad(as_matrix(old).float(), pad).reshape(nr, br, nc, bc)
    scores[live.sum(dim=(1, 3)) == 0] = -1.0  # blocks masked already go first
    shape = weight.shape

    def expand(keep: torch.Tensor) -> torch.Tensor:
        grid = keep.reshape(nr, nc).repeat_interleave(br, 0).repeat_interleave(bc, 1)
        return from_matrix(grid[:rows, :k], shape)

    return _Units(module, scores.flatten(), expand, old)


def _prune_units(units: Sequence[_Units], amount: float, scope: str) -> None:
    """Prune round(amount * units) lowest-scored units per layer (or over all layers), apply."""
    plan: list[tuple[nn.Module, torch.Tensor]] = []
    if scope == "layer":
        for u in units:
            keep = ~smallest(u.scores, round(amount * u.scores.numel()))
            plan.append((u.module, u.expand(keep) & u.old_mask))
    else:
        scores = torch.cat([u.scores for u in units])
        keep_all = ~smallest(scores, round(amount * scores.numel()))
        start = 0
        for u in units:
            n = u.scores.numel()
            plan.append((u.module, u.expand(keep_all[start : start + n]) & u.old_mask))
            start += n
    apply_masks(plan)


def magnitude(
    model: nn.Module, amount: float, *, scope: str = "layer", layers: LayerFilter = None
) -> nn.Module:
    """Unstructured L1 (magnitude) pruning of nn.Linear / nn.Conv2d weights, in place.

    ``amount`` is the fraction of the WHOLE weight that is zero afterwards (not of the weights
    still alive): ``magnitude(m, 0.5)`` then ``magnitude(m, 0.8)`` leaves 80% zeros, not 90%.
    Per layer (``scope="layer"``) exactly ``round(amount * numel)`` weights are masked; with
    ``scope="global"`` the smallest ``round(amount * total)`` weights over all chosen layers are
    masked, so layers end up with different sparsities. Already-masked weights count towards the
    amount and are never revived; an amount below the current sparsity changes nothing.
    Biases are not pruned. ``layers`` restricts the layers (module types and/or qualified names,
    fnmatch globs allowed). Returns ``model``.
    """
    check_model(model)
    amount = check_amount(amount)
    scope = check_scope(scope)
    chosen = select_layers(model, layers)
    _prune_units([_element_units(m) for _, m in chosen], amount, scope)
    return model


def blocks(
    model: nn.Module,
    amount: float,
    *,
    block: tuple[int, int] = (1, 4),
    scope: str = "layer",
    layers: LayerFilter = None,
) -> nn.Module:
    """Block pruning matched to the sparse int8 kernels, in place.

    The weight is seen as the [out, K] matrix the kernels pack. Conv2d: [out, kh*kw*in] with K
    in (kh, kw, in) order, input channel innermost (``weight.permute(0, 2, 3, 1)``), the column
    order of QuantConv2d's NHWC im2col; so a 1x4 block is 4 consecutive input channels at one
    kernel tap (when in % 4 == 0; otherwise blocks straddle taps), not 4 neighbouring taps of
    torch's (in, kh, kw) memory order. ``block=(1, 4)`` = 1 output row x 4 consecutive K
    entries. Each block is scored by the L1 norm of its (effective) weights and the
    ``round(amount * blocks)`` lowest blocks are zeroed whole; ``amount`` is the fraction of
    BLOCKS, which equals the fraction of weights when the block divides the matrix. When K (or
    out) is not a multiple of the block, the last block of each row is partial: it is scored by
    its mean |w| times the full block size, i.e. as if it were a full block of the same average
    magnitude, and pruned whole. Blocks already fully masked are pruned first; calls compound
    like ``magnitude``.
    """
    check_model(model)
    amount = check_amount(amount)
    shape = check_block(block)
    scope = check_scope(scope)
    chosen = select_layers(model, layers)
    _prune_units([_block_units(m, shape) for _, m in chosen], amount, scope)
    return model


def check_n_m(n: object, m: object) -> tuple[int, int]:
    m_ = check_positive_int(m, "m")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 1 <= n < m_:
        raise ValueError(f"n must satisfy 1 <= n < m (got n={n}, m={m_})")
    return n, m_


def n_of_m_mask(module: nn.Module, n: int, m: int) -> torch.Tensor:
    """Mask keeping the n largest |w| of every m consecutive K entries (old zeros stay zero).

    K in kernel order (``as_matrix``: Conv2d (kh, kw, in), input channel innermost)."""
    weight = effective_weight(module)
    old = current_mask(module)
    mat = as_matrix(weight).abs().float()
    rows, k = mat.shape
    groups = -(-k // m)
    scores = mat.masked_fill(~as_matrix(old), -1.0)
    # Padding scores below any real entry: a short tail group keeps its n largest (all of it
    # when it has <= n entries), which still has at most n non-zeros per group.
    scores = torch.nn.functional.pad(scores, (0, groups * m - k), value=-2.0)
    top = scores.reshape(rows, groups, m).topk(n, dim=-1).indices
    keep = torch.zeros(rows, groups, m, dtype=torch.bool).scatter_(-1, top, True)
    return from_matrix(keep.reshape(rows, groups * m)[:, :k], weight.shape) & old


def n_of_m(model: nn.Module, n: int = 2, m: int = 4, *, layers: LayerFilter = None) -> nn.Module:
    """N:M pruning, in place: in every group of m consecutive K entries keep the n largest |w|.

    Groups run along K of the [out, K] matrix (Conv2d in the kernels' (kh, kw, in) K order, input
    channel innermost, as in ``blocks``). If K is not a
    multiple of m the last group of each row is shorter and keeps its n largest entries, so
    every group has at most n non-zeros. Weights masked before stay masked (a group may then
    hold fewer than n non-zeros). Returns ``model``.
    """
    check_model(model)
    n, m = check_n_m(n, m)
    chosen = select_layers(model, layers)
    apply_masks([(mod, n_of_m_mask(mod, n, m)) for _, mod in chosen])
    return model
