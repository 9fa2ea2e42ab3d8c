"""edgepack.prune: exact amounts, structure of the zeros, schedules, and channel removal."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from edgepack import prune
from edgepack.nn import _backend

torch.manual_seed(0)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            out.append(prune._common.effective_weight(m))
    return out


def small_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 17),
        nn.ReLU(),
        nn.Linear(17, 6),
    )


# ----------------------------------------------------------------------------- magnitude


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.77, 0.95])
def test_magnitude_layer_scope_exact_counts_and_smallest(amount):
    model = small_model()
    before = [w.clone() for w in _weights(model)]
    prune.magnitude(model, amount)
    for w0, w in zip(before, _weights(model)):
        zeros = w == 0
        assert int(zeros.sum()) == round(amount * w.numel())
        if 0 < int(zeros.sum()) < w.numel():
            assert w0[zeros].abs().max() <= w0[~zeros].abs().min()
            assert torch.equal(w[~zeros], w0[~zeros])  # survivors untouched


def test_magnitude_global_scope_ranks_across_layers():
    model = small_model()
    with torch.no_grad():
        model[5].weight.mul_(100.0)  # the last layer is much larger: global keeps it
    before = [w.clone() for w in _weights(model)]
    prune.magnitude(model, 0.6, scope="global")
    after = _weights(model)
    total = sum(w.numel() for w in after)
    zeros = sum(int((w == 0).sum()) for w in after)
    assert zeros == round(0.6 * total)
    pruned = torch.cat([w0[w == 0].abs() for w0, w in zip(before, after)])
    kept = torch.cat([w0[w != 0].abs() for w0, w in zip(before, after)])
    assert pruned.max() <= kept.min()
    assert int((after[2] == 0).sum()) == 0  # the scaled layer keeps everything
    sparsities = [float((w == 0).float().mean()) for w in after]
    assert max(sparsities) - min(sparsities) > 0.3


def test_magnitude_compounds_on_whole_weight_and_never_revives():
    model = small_model()
    prune.magnitude(model, 0.5)
    first = [(w == 0).clone() for w in _weights(model)]
    prune.magnitude(model, 0.8)
    for z0, w in zip(first, _weights(model)):
        assert int((w == 0).sum()) == round(0.8 * w.numel())  # of the whole weight, not 0.9
        assert bool((w[z0] == 0).all())
    prune.magnitude(model, 0.3)  # below the current sparsity: nothing changes
    for w in _weights(model):
        assert int((w == 0).sum()) == round(0.8 * w.numel())


def test_masks_persist_through_optimizer_steps_and_remove():
    model = small_model()
    prune.magnitude(model, 0.7)
    masks = [(w == 0).clone() for w in _weights(model)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 6, (8,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)
    for m, mask in zip([model[0], model[3], model[5]], masks):
        assert hasattr(m, "weight_orig") and hasattr(m, "weight_mask")
        assert bool((m.weight[mask] == 0).all())
        assert bool((m.weight[~mask] != 0).all())
    prune.remove(model)
    for m, mask in zip([model[0], model[3], model[5]], masks):
        assert not hasattr(m, "weight_orig") and not hasattr(m, "weight_mask")
        assert isinstance(m.weight, nn.Parameter)
        assert bool((m.weight[mask] == 0).all())
        assert not m._forward_pre_hooks


def test_layers_filter_by_type_and_name():
    model = small_model()
    prune.magnitude(model, 0.5, layers=[nn.Conv2d])
    w = _weights(model)
    assert int((w[0] == 0).sum()) > 0 and int((w[1] == 0).sum()) == 0
    model = small_model()
    prune.magnitude(model, 0.5, layers="5")
    w = _weights(model)
    assert int((w[0] == 0).sum()) == 0 and int((w[2] == 0).sum()) == round(0.5 * 17 * 6)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        prune.magnitude(model, 0.5, layers=["nope"])
    with pytest.raises(ValueError, match="only ReLU"):
        prune.magnitude(model, 0.5, layers="1")
    with pytest.raises(TypeError, match="layers entries"):
        prune.magnitude(model, 0.5, layers=[3])


@pytest.mark.parametrize("amount", [1.0, -0.1, float("nan"), 2])
def test_bad_amount(amount):
    model = small_model()
    state = _state(model)
    for fn in (prune.magnitude, prune.blocks):
        with pytest.raises(ValueError, match="amount must be in"):
            fn(model, amount)
    with pytest.raises(ValueError, match="amount must be in"):
        prune.channels(model, amount, example_input=torch.randn(2, 3, 6, 6))
    assert _same_state(model, state)


def test_bad_inputs_clear_errors_and_no_mutation():
    model = small_model()
    state = _state(model)
    with pytest.raises(TypeError, match="amount must be a float"):
        prune.magnitude(model, True)
    with pytest.raises(ValueError, match="scope must be"):
        prune.magnitude(model, 0.5, scope="net")
    for bad in [(0, 4), (1,), "1x4", (1, 4, 1), (1.0, 4), (1, 1)]:
        with pytest.raises(ValueError, match="block"):
            prune.blocks(model, 0.5, block=bad)
    for n, m in [(0, 4), (4, 4), (5, 4)]:
        with pytest.raises(ValueError, match="n must satisfy"):
            prune.n_of_m(model, n, m)
    with pytest.raises(ValueError, match="no prunable layers"):
        prune.magnitude(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.5)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        prune.magnitude("model", 0.5)  # type: ignore[arg-type]
    assert _same_state(model, state)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())
    meta = small_model().to("meta")
    for call in (
        lambda: prune.magnitude(meta, 0.5),
        lambda: prune.blocks(meta, 0.5),
        lambda: prune.n_of_m(meta),
        lambda: prune.channels(meta, 0.5, example_input=torch.randn(1, 3, 6, 6)),
        lambda: prune.sparsity_report(meta),
        lambda: prune.GradualPruner(meta, 0.5, start_step=0, end_step=10, frequency=1),
    ):
        with pytest.raises(ValueError, match="must be on the CPU"):
            call()


# ----------------------------------------------------------------------------- blocks / N:M


def _kernel_k(w: torch.Tensor) -> torch.Tensor:
    """Conv2d weight as QuantConv2d packs it: [out, kh*kw*in], input channel innermost."""
    return (w.permute(0, 2, 3, 1) if w.dim() == 4 else w).reshape(w.shape[0], -1)


def _block_grid(w: torch.Tensor, br: int, bc: int) -> torch.Tensor:
    mat = (_kernel_k(w) == 0).float()
    rows, k = mat.shape
    nr, nc = -(-rows // br), -(-k // bc)
    pad = torch.nn.functional.pad(mat, (0, nc * bc - k, 0, nr * br - rows), value=-1.0)
    return pad.reshape(nr, br, nc, bc).permute(0, 2, 1, 3).reshape(nr, nc, br * bc)


@pytest.mark.parametrize("block", [(1, 4), (1, 8), (2, 2), (4, 1)])
def test_blocks_structure_and_count(block):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    prune.blocks(model, 0.5, block=block)
    for w in _weights(model):
        grid = _block_grid(w, *block)
        present = grid >= 0
        zero_blocks = ((grid == 1) | ~present).all(-1)
        live_blocks = ((grid == 0) | ~present).all(-1)
        assert bool((zero_blocks | live_blocks).all())  # every block all-zero or all-live
        n_blocks = grid.shape[0] * grid.shape[1]
        assert int(zero_blocks.sum()) == round(0.5 * n_blocks)
        assert int((w == 0).sum()) == round(0.5 * n_blocks) * block[0] * block[1]


def test_blocks_conv_flattened_along_k_with_partial_tail():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 4, 3)  # K = 27: six full 1x4 blocks + a tail of 3 per row
    model = nn.Sequential(conv)
    with torch.no_grad():
        conv.weight.uniform_(0.5, 1.0)
        flat = torch.empty(4, 27).uniform_(0.5, 1.0)  # kernel K order (kh, kw, in)
        flat[:, 24:] = 0.6  # tail mean 0.6: scored as 2.4, like a full block of mean 0.6
        flat[:, 0:4] = 0.55  # a full block of mean 0.55 (2.2): lower, pruned first
        flat[:, 4:8] = 0.62  # 2.48: kept over the tail
        conv.weight.copy_(flat.reshape(4, 3, 3, 3).permute(0, 3, 1, 2))
    prune.blocks(model, 2 / 7, block=(1, 4))  # round(2/7 * 28) = 8 blocks = 2 per row
    flat = _kernel_k(prune._common.effective_weight(conv))
    assert bool((flat[:, 0:4] == 0).all()) and bool((flat[:, 24:] == 0).all())
    assert bool((flat[:, 4:24] != 0).all())
    assert prune.sparsity_report(model).layers[0].structure == "1x4 blocks"


def test_blocks_compound_with_magnitude_masks():
    model = small_model()
    prune.blocks(model, 0.5)
    first = [(w == 0).clone() for w in _weights(model)]
    prune.blocks(model, 0.75)
    for z0, w in zip(first, _weights(model)):
        assert bool((w[z0] == 0).all())
        grid = _block_grid(w, 1, 4)
        assert bool((((grid == 1) | (grid < 0)).all(-1) | ((grid == 0) | (grid < 0)).all(-1)).all())


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (3, 4)])
def test_n_of_m_pattern(n, m):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(24, 8), nn.ReLU(), nn.Conv2d(2, 4, 2), nn.Linear(10, 3))
    before = [w.clone() for w in _weights(model)]
    prune.n_of_m(model, n, m)
    for w0, w in zip(before, _weights(model)):
        mat, mat0 = _kernel_k(w), _kernel_k(w0)
        k = mat.shape[1]
        for start in range(0, k, m):
            group, group0 = mat[:, start : start + m], mat0[:, start : start + m]
            width = group.shape[1]
            nz = (group != 0).sum(dim=1)
            assert bool((nz == min(n, width)).all())
            # the kept ones are the largest of their group
            kept_min = group0.abs().masked_fill(group == 0, math.inf).min(dim=1).values
            pruned_max = group0.abs().masked_fill(group != 0, -1).max(dim=1).values
            assert bool((pruned_max <= kept_min).all())
    if (n, m) == (2, 4):
        assert prune.sparsity_report(model).layers[0].structure == "2:4"


def _conv_im2col(x: torch.Tensor, pad: int, kh: int, kw: int) -> torch.Tensor:
    """Float im2col rows in QuantConv2d's (kh, kw, C) column order (stride 1)."""
    xp = torch.nn.functional.pad(x, (pad,) * 4).permute(0, 2, 3, 1)
    n, h, w, _ = xp.shape
    return torch.stack([xp[b, i:i + kh, j:j + kw].reshape(-1) for b in range(n)
                        for i in range(h - kh + 1) for j in range(w - kw + 1)])


@pytest.mark.skipif(not _backend.has_sparse(), reason="sparse kernels not in this build")
@pytest.mark.parametrize("criterion", ["blocks", "n_of_m"])
def test_conv_groups_follow_kernel_k_order_and_pack_small(criterion):
    """Conv2d K is grouped in (kh, kw, C_in) order, the order QuantConv2d packs, so 80% of 1x4
    blocks pruned makes the sparse packing much smaller than dense; outputs stay exact."""
    import numpy as np

    from edgepack import reference
    from edgepack.nn import QuantConv2d
    from edgepack.quantize import quantize_weight

    torch.manual_seed(11)
    conv = nn.Conv2d(32, 64, 3, padding=1)  # C_in a multiple of 4: blocks never straddle taps
    model = nn.Sequential(conv)
    if criterion == "blocks":
        prune.blocks(model, 0.8, block=(1, 4))
        expect = "1x4 blocks"
    else:
        prune.n_of_m(model, 2, 4)
        expect = "2:4"
    w = _kernel_k(prune._common.effective_weight(conv).detach())
    groups = (w != 0).reshape(64, -1, 4).sum(-1)  # 4 consecutive input channels at one tap
    if criterion == "blocks":
        assert bool(((groups == 0) | (groups == 4)).all())
        assert int((groups == 0).sum()) == round(0.8 * groups.numel())
    else:
        assert bool((groups == 2).all())
    assert prune.sparsity_report(model).layers[0].structure == expect
    q = QuantConv2d.from_float(conv, sparse="always")
    assert q.linear.packed_kind == "sparse"
    wq, ws = (t.numpy() for t in quantize_weight(w))
    q_dense = QuantConv2d.from_float(conv, sparse="never")  # pack_weights(wq, ws, bias)
    ratio = q.linear.packed.nbytes / q_dense.linear.packed.nbytes
    if criterion == "blocks":
        assert ratio <= 0.45, ratio  # torch's (C_in, kh, kw) grouping packed at ~0.97x dense
    x = torch.randn(2, 32, 5, 5)
    # per-row ranges over the float im2col in (kh, kw, C) order: the linear spec row by row
    q_row = QuantConv2d.from_float(conv, sparse="always", act_granularity="row")
    with torch.no_grad():
        got = q_row(x).permute(0, 2, 3, 1).reshape(-1, 64).numpy()
        # the default per-image path: the same numbers as the dense packing
        assert torch.equal(q(x), q_dense(x))
    cols = _conv_im2col(x, 1, 3, 3).numpy()
    ref = reference.linear_int8_ref(cols, wq, ws, conv.bias.detach().numpy())
    np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------- schedule


def test_schedule_values():
    model = small_model()
    gp = prune.GradualPruner(
        model, 0.8, start_step=10, end_step=110, frequency=10, initial_amount=0.1
    )
    assert gp.sparsity(0) == pytest.approx(0.1)
    assert gp.sparsity(10) == pytest.approx(0.1)
    assert gp.sparsity(60) == pytest.approx(0.8 + (0.1 - 0.8) * 0.5**3)
    assert gp.sparsity(35) == pytest.approx(0.8 + (0.1 - 0.8) * 0.75**3)
    assert gp.sparsity(110) == pytest.approx(0.8) and gp.sparsity(500) == pytest.approx(0.8)
    assert [t for t in range(130) if gp.is_pruning_step(t)] == list(range(10, 111, 10))
    odd = prune.GradualPruner(model, 0.5, start_step=0, end_step=25, frequency=10)
    assert [t for t in range(40) if odd.is_pruning_step(t)] == [0, 10, 20, 25]


def test_gradual_pruner_in_a_training_loop():
    model = small_model()
    gp = prune.GradualPruner(model, 0.9, start_step=2, end_step=12, frequency=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(4, 3, 6, 6), torch.randint(0, 6, (4,))
    seen = {}
    for t in range(16):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        applied = gp.step()
        rep = prune.sparsity_report(model)
        if applied is not None:
            seen[t] = applied
            for layer in rep.layers:
                assert layer.zeros == round(applied * layer.params)
    assert sorted(seen) == [2, 4, 6, 8, 10, 12]
    assert seen[12] == pytest.approx(0.9)
    assert all(seen[a] < seen[b] for a, b in zip(sorted(seen), sorted(seen)[1:]))
    assert gp.state_dict() == {"last_step": 15}
    for m in (model[0], model[3], model[5]):  # one mask per layer, not one per pruning step
        hooks = list(m._forward_pre_hooks.values())
        assert len(hooks) == 1 and isinstance(hooks[0], torch.nn.utils.prune.CustomFromMask)


def test_gradual_pruner_blocks_and_n_of_m():
    model = small_model()
    gp = prune.GradualPruner(
        model, 0.75, start_step=0, end_step=4, frequency=1, criterion="blocks", block=(1, 4)
    )
    for _ in range(5):
        gp.step()
    assert {layer.structure for layer in prune.sparsity_report(model).layers} <= {
        "1x4 blocks",
        "1x8 blocks",
        "1x16 blocks",
    }
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    gp = prune.GradualPruner(
        model, 0.5, start_step=0, end_step=3, frequency=1, criterion="n_of_m", m=4
    )
    gp.step(0)
    assert prune.sparsity_report(model).zeros == 0
    gp.step(1)  # sparsity(1) = 0.5 - 0.5 * (2/3)^3 = 0.35 -> 1 of every 4 pruned
    rep = prune.sparsity_report(model)
    assert rep.layers[0].structure == "3:4" and rep.sparsity == pytest.approx(0.25)
    gp.step(3)
    rep = prune.sparsity_report(model)
    assert rep.sparsity == pytest.approx(0.5) and rep.layers[0].structure == "2:4"


def test_gradual_pruner_bad_arguments():
    model = small_model()
    kw = {"start_step": 0, "end_step": 10, "frequency": 1}
    with pytest.raises(ValueError, match="final_amount"):
        prune.GradualPruner(model, 1.0, **kw)
    with pytest.raises(ValueError, match="initial_amount"):
        prune.GradualPruner(model, 0.5, initial_amount=0.6, **kw)
    with pytest.raises(ValueError, match="end_step"):
        prune.GradualPruner(model, 0.5, start_step=5, end_step=5, frequency=1)
    with pytest.raises(ValueError, match="frequency"):
        prune.GradualPruner(model, 0.5, start_step=0, end_step=5, frequency=0)
    with pytest.raises(ValueError, match="criterion"):
        prune.GradualPruner(model, 0.5, criterion="random", **kw)
    with pytest.raises(TypeError, match="unexpected keyword"):
        prune.GradualPruner(model, 0.5, blokc=(1, 4), **kw)
    with pytest.raises(ValueError, match="block"):
        prune.GradualPruner(model, 0.5, criterion="blocks", block=(0, 4), **kw)
    with pytest.raises(ValueError, match="whole number"):
        prune.GradualPruner(model, 0.6, criterion="n_of_m", m=4, **kw)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


# ----------------------------------------------------------------------------- report


def test_sparsity_report_structures_and_totals():
    lin = nn.Linear(8, 4)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.weight[1] = 0  # a whole row
        model[2].weight.fill_(1.0)
        model[2].weight[0, 1] = 0
    rep = prune.sparsity_report(model)
    assert [layer.structure for layer in rep.layers] == ["rows 1/4", "unstructured", "dense"]
    assert rep.params == 32 + 16 + 16 and rep.zeros == 9
    assert rep.sparsity == pytest.approx(9 / 64)
    assert rep.model_params == 64 + 12 and rep.model_zeros >= 9
    text = str(rep)
    assert "rows 1/4" in text and "total" in text and "14.1%" in text
    data = rep.to_dict()
    assert data["zeros"] == 9 and data["layers"][0]["name"] == "0"
    prune.blocks(model, 0.5, layers="4")
    assert prune.sparsity_report(model).layers[2].masked


# ----------------------------------------------------------------------------- channels


def mnist_cnn() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _lowest_l1(module: nn.Module, amount: float) -> torch.Tensor:
    w = module.weight.detach().reshape(module.weight.shape[0], -1)
    n = min(round(amount * w.shape[0]), w.shape[0] - 1)
    return torch.argsort(w.abs().sum(1), stable=True)[:n]


def _masked(model: nn.Module, names: list[str], amount: float, after_bn: bool = False):
    """The test's own masked reference: zero the lowest-L1 output channels of the named layers."""
    ref = copy.deepcopy(model).eval()
    mods = dict(ref.named_modules())
    with torch.no_grad():
        for name in names:
            idx = _lowest_l1(mods[name], amount)
            mods[name].weight[idx] = 0
            if mods[name].bias is not None:
                mods[name].bias[idx] = 0
            if after_bn:
                bn = mods[str(int(name) + 1)]
                bn.weight[idx] = 0
                bn.bias[idx] = 0
    return ref


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_channels_mnist_cnn():
    model = mnist_cnn()
    state = _state(model)
    x = torch.randn(6, 1, 28, 28)
    small = prune.channels(model, 0.5, example_input=x)
    assert _same_state(model, state)  # input untouched
    assert [small[i].out_channels for i in (0, 3, 6)] == [16, 32, 32]
    assert [small[i].in_channels for i in (0, 3, 6)] == [1, 16, 32]
    assert (small[9].in_features, small[9].out_features) == (32 * 9, 32)
    assert (small[11].in_features, small[11].out_features) == (32, 10)  # output layer kept
    ref = _masked(model, ["0", "3", "6", "9"], 0.5)
    with torch.no_grad():
        expect, got = ref(x), small(x)
        assert torch.allclose(got, expect, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(x), expect, atol=1e-3)  # pruning did change the model
        other = torch.randn(3, 1, 28, 28)  # exact on unseen inputs too, not only example_input
        assert torch.allclose(small(other), ref(other), rtol=1e-5, atol=1e-5)
    assert _n_params(small) < 0.3 * _n_params(model)
    assert small.training == model.training


def bn_cnn(padding: int) -> nn.Module:
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=padding),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=padding),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    )
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-1.0, 1.0)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.5, 1.0)  # shift after a removed channel: positive, survives ReLU
    return model


def test_channels_cnn_with_batchnorm_absorbs_the_shift():
    model = bn_cnn(padding=0)
    x = torch.randn(4, 3, 12, 12)
    small = prune.channels(model, 0.5, example_input=x)
    assert small.training  # train/eval flags are kept; equality holds in eval mode
    small.eval()
    assert (small[0].out_channels, small[1].num_features, small[3].in_channels) == (4, 4, 4)
    assert (small[3].out_channels, small[4].num_features, small[8].in_features) == (6, 6, 6)
    assert small[1].running_mean.shape == (4,)
    ref = _masked(model, ["0", "3"], 0.5)
    with torch.no_grad():
        expect = ref(x)
        assert torch.allclose(small(x), expect, rtol=1e-5, atol=1e-5)
        # the BN shift of the removed channels matters: dropping the channels without folding
        # their constant into the next bias gives a different model
        dropped = _masked(model, ["0", "3"], 0.5, after_bn=True)
        assert not torch.allclose(dropped(x), expect, atol=1e-3)


def test_channels_batchnorm_before_zero_padded_conv():
    model = bn_cnn(padding=1)
    x = torch.randn(2, 3, 10, 10)
    with pytest.raises(ValueError, match="bn_shift='drop'"):
        prune.channels(model, 0.5, example_input=x)
    small = prune.channels(model, 0.5, example_input=x, bn_shift="drop").eval()
    ref = _masked(model, ["0", "3"], 0.5, after_bn=True)
    with torch.no_grad():
        assert torch.allclose(small(x), ref(x), rtol=1e-5, atol=1e-5)
    assert small[3].in_channels == 4 and small[8].in_features == 6


def test_channels_mlp_with_sigmoid_constant():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Sigmoid(), nn.Linear(16, 4)
    )
    x = torch.randn(5, 20)
    small = prune.channels(model, 0.25, example_input=x)
    assert (small[0].out_features, small[2].in_features, small[2].out_features) == (24, 24, 12)
    assert (small[4].in_features, small[4].out_features) == (12, 4)
    ref = _masked(model, ["0", "2"], 0.25)  # removed sigmoid units output 0.5: absorbed
    with torch.no_grad():
        assert torch.allclose(small(x), ref(x), rtol=1e-5, atol=1e-5)
    small_l2 = prune.channels(model, 0.25, example_input=x, importance="l2")
    assert small_l2[0].out_features == 24
    with pytest.raises(ValueError, match="importance"):
        prune.channels(model, 0.25, example_input=x, importance="l0")


class ViewNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 10)
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = x.view(x.size(0), -1)
        return self.out(torch.nn.functional.relu(self.fc(x)))


def test_channels_custom_module_with_view_flatten():
    model = ViewNet()
    x = torch.randn(3, 1, 6, 6)
    small = prune.channels(model, 0.5, example_input=x)
    assert isinstance(small, ViewNet)
    assert small.conv.out_channels == 3 and small.fc.in_features == 3 * 16
    assert small.fc.out_features == 5 and small.out.out_features == 3
    with torch.no_grad():
        ref = _masked(model, ["conv", "fc"], 0.5)
        assert torch.allclose(small(x), ref(x), rtol=1e-5, atol=1e-5)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        y = self.conv2(torch.relu(self.conv1(x)))
        z = torch.relu(x + y)
        return self.head(z.mean(dim=(2, 3)))


def test_channels_refuses_residual_naming_nodes():
    model = Residual()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError) as info:
        prune.channels(model, 0.5, example_input=x)
    msg = str(info.value)
    assert "stem" in msg and "conv2" in msg and "node 'add'" in msg
    assert "conv1:" not in msg  # conv1 -> relu -> conv2 is followable
    small = prune.channels(model, 0.5, example_input=x, layers=["conv1"])
    assert small.conv1.out_channels == 4 and small.conv2.in_channels == 4
    assert small.conv2.out_channels == 8


def test_channels_verification_catches_a_wrong_shrink(monkeypatch):
    model = bn_cnn(padding=0)
    x = torch.randn(2, 3, 12, 12)
    monkeypatch.setattr(prune.structured, "_absorb", lambda *args: None)  # forget the BN shift
    with pytest.raises(RuntimeError, match="verification failed"):
        prune.channels(model, 0.5, example_input=x)


def test_channels_misc_errors():
    model = mnist_cnn()
    with pytest.raises(TypeError, match="example_input"):
        prune.channels(model, 0.5, example_input=[1, 2])
    with pytest.raises(ValueError, match="bn_shift"):
        prune.channels(model, 0.5, example_input=torch.randn(1, 1, 28, 28), bn_shift="x")

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                return self.fc(x)
            return x

    with pytest.raises(ValueError, match="torch.fx"):
        prune.channels(Branchy(), 0.5, example_input=torch.randn(1, 4))
    with pytest.raises(ValueError, match="no prunable layer"):
        prune.channels(nn.Sequential(nn.Linear(4, 2)), 0.5, example_input=torch.randn(1, 4))


def test_channels_of_masked_model_does_not_touch_input():
    model = mnist_cnn()
    prune.magnitude(model, 0.5)
    state = _state(model)
    x = torch.randn(2, 1, 28, 28)
    small = prune.channels(model, 0.25, example_input=x)
    assert _same_state(model, state) and hasattr(model[0], "weight_mask")
    assert not hasattr(small[0], "weight_mask") and small[0].out_channels == 24


def test_channels_output_layer_behind_layernorm_is_left_alone():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 6), nn.LayerNorm(6))
    x = torch.randn(4, 8)
    small = prune.channels(model, 0.5, example_input=x)
    assert (small[0].out_features, small[2].in_features, small[2].out_features) == (8, 8, 6)
    with torch.no_grad():
        assert torch.allclose(small(x), _masked(model, ["0"], 0.5)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.3, 0.7, 0.9, 0.99])
def test_channels_amounts(amount):
    model = bn_cnn(padding=0)
    x = torch.randn(2, 3, 12, 12)
    small = prune.channels(model, amount, example_input=x).eval()
    expect = [8 - min(round(amount * 8), 7), 12 - min(round(amount * 12), 11)]
    assert [small[0].out_channels, small[3].out_channels] == expect
    with torch.no_grad():
        ref = _masked(model, ["0", "3"], amount)
        assert torch.allclose(small(x), ref(x), rtol=1e-5, atol=1e-5)


def test_channels_mlp_with_batchnorm1d():
    torch.manual_seed(9)
    model = nn.Sequential(
        nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].bias.uniform_(0.2, 0.8)
    x = torch.randn(4, 10)
    small = prune.channels(model, 0.5, example_input=x).eval()
    assert (small[0].out_features, small[1].num_features, small[4].in_features) == (8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(small(x), _masked(model, ["0"], 0.5)(x), rtol=1e-5, atol=1e-5)


def test_ties_are_broken_by_position_and_remove_is_a_noop_on_dense():
    model = nn.Sequential(nn.Linear(5, 4))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    assert prune.remove(model) is model  # nothing pruned yet: no-op
    prune.magnitude(model, 0.5)
    w = model[0].weight.detach().flatten()
    assert bool((w[:10] == 0).all()) and bool((w[10:] == 1).all())
