"""edgepack.nn.MaxPool2d: the native channels_last path equals torch's max_pool2d bit for bit."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgepack
from edgepack.nn import MaxPool2d


def _x(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    x[x > 2.2] = float("nan")  # NaN propagates like torch's
    x[x < -2.2] = float("-inf")
    x[..., 0, 0] = 0.0
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("k,s,p,d,ceil", [
    (2, None, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True), (2, 1, 0, 2, False),
    ((3, 2), (2, 1), (1, 0), (1, 2), True), (3, 3, 0, 1, True), (1, 1, 0, 1, False),
])
def test_native_maxpool_equals_torch(k, s, p, d, ceil):
    pool = MaxPool2d(k, s, p, d, ceil_mode=ceil)
    for (n, c, h, w), threads in itertools.product(
            [(1, 16, 26, 26), (3, 20, 9, 7), (2, 1, 8, 8), (1, 37, 5, 6), (2, 3, 11, 10)],
            (1, 2)):
        edgepack.set_num_threads(threads)
        x = _x(n, c, h, w, seed=n * 100 + c)
        with torch.inference_mode():
            got = pool(x)
        want = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
        assert got.shape == want.shape
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(got.nan_to_num(nan=7.0), want.nan_to_num(nan=7.0))
        assert torch.equal(got.isnan(), want.isnan())
    edgepack.set_num_threads(1)


def test_other_inputs_go_to_torch():
    pool = MaxPool2d(2)
    x = torch.randn(2, 5, 6, 6)  # NCHW memory: torch's own kernel
    assert torch.equal(pool(x), F.max_pool2d(x, 2))
    xd = x.double().contiguous(memory_format=torch.channels_last)
    assert torch.equal(pool(xd), F.max_pool2d(xd, 2))
    xg = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    pool(xg).sum().backward()  # autograd still works (torch path)
    assert xg.grad is not None
    with pytest.raises(RuntimeError):
        pool(torch.randn(1, 2, 1, 1).contiguous(memory_format=torch.channels_last))
    with pytest.raises(ValueError, match="return_indices"):
        MaxPool2d.from_float(nn.MaxPool2d(2, return_indices=True))
    # stride 0 is torch's error, not a silent stride of kernel_size (a bug caught in review)
    x0 = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="stride should not be zero"):
        MaxPool2d(2, stride=0)(x0)


def test_compress_swaps_pools_and_save_keeps_them(tmp_path):
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 8, 3),
                      nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                      nn.Linear(8 * 2 * 2, 4)).eval()
    c = edgepack.compress(m)
    assert type(c[2]) is MaxPool2d and type(c[5]) is MaxPool2d and type(m[2]) is nn.MaxPool2d
    assert c.edgepack_report_["native_pools"] == ["2", "5"]
    x = torch.randn(2, 3, 14, 14)
    with torch.inference_mode():
        y = c(x)
        ref = c[7](c[6](F.max_pool2d(c[4](c[3](F.max_pool2d(c[1](c[0](x)), 2))), 2,
                                     ceil_mode=True)))
    assert torch.equal(y, ref)
    p = tmp_path / "m.ep"
    edgepack.save(c, p)
    back = edgepack.load(p)
    assert type(back[2]) is MaxPool2d and back[5].ceil_mode
    with torch.inference_mode():
        assert torch.equal(back(x), y)
