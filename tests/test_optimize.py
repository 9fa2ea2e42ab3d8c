from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import edgepack
from _models import Residual, mnist_cnn, randomize_bn


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_conv_bn_fold_exact_within_fp32_rounding():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Dropout(0.5), nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4)).eval()
    randomize_bn(m)
    before = copy.deepcopy(m)
    x = torch.randn(2, 3, 10, 10)
    o = edgepack.optimize(m, x)
    assert _same_state(m, before) and isinstance(m[1], nn.BatchNorm2d)  # input untouched
    assert type(o) is nn.Sequential
    assert [type(c) for c in o] == [nn.Conv2d, nn.Identity, nn.ReLU, nn.Identity, nn.Conv2d,
                                    nn.Identity]
    with torch.no_grad():
        ref, got = m(x), o(x)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    rep = o.edgepack_optimize_report_
    assert rep["bn_folds"] == [["0", "1"], ["4", "5"]]
    assert rep["dropouts_removed"] == ["3"]
    assert rep["relu_fusions"] == [["0", "2"]]


def test_linear_bn1d_fold_needs_2d_evidence():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6), nn.ReLU()).eval()
    randomize_bn(m)
    x = torch.randn(5, 10)
    no_shape = edgepack.optimize(m)
    assert isinstance(no_shape[1], nn.BatchNorm1d)  # not folded without an example input
    assert no_shape.edgepack_optimize_report_["relu_fusions"] == []
    o = edgepack.optimize(m, x)
    assert isinstance(o[1], nn.Identity)
    assert o.edgepack_optimize_report_["relu_fusions"] == [["0", "2"]]
    with torch.no_grad():
        assert torch.allclose(o(x), m(x), rtol=1e-5, atol=1e-6)


def test_fx_graph_patterns_and_class_kept():
    torch.manual_seed(2)
    m = Residual().eval()
    randomize_bn(m)
    x = torch.randn(4, 16)
    o = edgepack.optimize(m, x)
    assert type(o) is Residual
    rep = o.edgepack_optimize_report_
    assert rep["graph"] == "fx"
    assert rep["bn_folds"] == [["b", "bn"]]
    assert rep["relu_fusions"] == []  # F.relu is a function call: left alone
    with torch.no_grad():
        assert torch.allclose(o(x), m(x), rtol=1e-5, atol=1e-6)
        assert torch.allclose(o.encode(x), m.encode(x), rtol=1e-5, atol=1e-6)


class _SharedRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.b(self.act(self.a(x))))


def test_shared_relu_module_is_not_fused():
    o = edgepack.optimize(_SharedRelu())
    assert o.edgepack_optimize_report_["relu_fusions"] == []


class _Branchy(nn.Module):
    """Data-dependent control flow: fx cannot trace it; the Sequential scan still works."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if float(y.sum()) > 0 else -y


def test_untraceable_model_uses_sequential_scan():
    torch.manual_seed(3)
    m = _Branchy().eval()
    randomize_bn(m)
    x = torch.randn(2, 1, 8, 8)
    o = edgepack.optimize(m, x)
    rep = o.edgepack_optimize_report_
    assert rep["graph"] == "sequential"
    assert rep["bn_folds"] == [["body.0", "body.1"]]
    assert rep["relu_fusions"] == [["body.0", "body.2"]]
    with torch.no_grad():
        assert torch.allclose(o(x), m(x), rtol=1e-5, atol=1e-6)


def test_fold_keeps_pruned_weights_zero():
    torch.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6)).eval()
    randomize_bn(m)
    prune.l1_unstructured(m[0], "weight", amount=0.5)
    mask = m[0].weight_mask.clone()
    x = torch.randn(3, 2, 7, 7)
    o = edgepack.optimize(m, x)
    assert hasattr(o[0], "weight_orig")  # reparametrization kept, folded into weight_orig
    assert torch.all(o[0].weight[mask == 0] == 0)
    with torch.no_grad():
        assert torch.allclose(o(x), m(x), rtol=1e-5, atol=1e-6)
    assert m[0].weight_mask.equal(mask)


def test_training_mode_model_left_in_training_mode():
    m = mnist_cnn().train()
    o = edgepack.optimize(m, torch.randn(1, 1, 28, 28))
    assert m.training and not o.training


def test_bad_inputs():
    with pytest.raises(TypeError, match="model"):
        edgepack.optimize(F.relu)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="meta"):
        edgepack.optimize(nn.Linear(3, 3, device="meta"))


class _BranchyShared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        act = nn.ReLU()
        self.body = nn.Sequential(nn.Linear(4, 4), act)
        self.act = act  # the same ReLU also runs below

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.act(y - 1) if float(y.sum()) > -1e9 else y


def test_sequential_scan_skips_shared_modules():
    o = edgepack.optimize(_BranchyShared())
    rep = o.edgepack_optimize_report_
    assert rep["graph"] == "sequential" and rep["relu_fusions"] == []
