import json
import sys

import pytest
import torch
import torch.nn as nn

import edgepack
from edgepack.report import batch_of, count_weights, forward_peak_bytes, report


def _mlp(h=64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, h), nn.ReLU(), nn.Linear(h, 10)).eval()


def test_report_table_json_plot(tmp_path):
    m = _mlp(256)
    small = _mlp(8)
    q = edgepack.compress(m)
    x = torch.randn(4, 32)

    def acc(model):
        return float((model(x).argmax(1) == m(x).argmax(1)).float().mean() * 100)

    threads_before = torch.get_num_threads(), edgepack.get_num_threads()
    rep = report(m, {"int8": q, "small": small}, eval_fn=acc, example_input=x,
                 batch_sizes=(1, 16), threads=(1, 2), json_path=tmp_path / "r.json",
                 plot_path=tmp_path / "r.png", repeats=3, min_time_s=0, progress=False,
                 metric_name="agree %")
    assert (torch.get_num_threads(), edgepack.get_num_threads()) == threads_before
    assert [r.name for r in rep.rows] == ["fp32", "int8", "small"]
    assert rep.original.metric == 100.0
    # int8 weights: smaller on disk than the fp32 state_dict (4x less the file's overhead)
    # the packed file holds padding, column sums and scales next to the int8 weights
    assert 2.0 < rep.ratio("int8") < 4.5
    assert rep["int8"].params == rep.original.params == 32 * 256 + 256 + 256 * 10 + 10
    for r in rep.rows:
        assert len(r.latency) == 4
        assert all(lt.p90_ms >= lt.p50_ms > 0 for lt in r.latency)
    text = rep.table()
    assert "int8" in text and "small" in text and "agree %" in text
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["models"][1]["name"] == "int8" and d["models"][1]["file_format"] == "edgepack.save"
    assert d["models"][1]["size_ratio"] == pytest.approx(rep.ratio("int8"))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_count_weights_sees_packed_zeros():
    m = _mlp()
    with torch.no_grad():
        m[0].weight[:, :16] = 0
    q = edgepack.compress(m)
    n, nz = count_weights(q)
    n0, nz0 = count_weights(m)
    assert n == n0
    assert nz0 == n0 - 64 * 16
    # zeros stay zero; a few tiny weights round to 0 in int8
    assert nz0 - 0.02 * n0 < nz <= nz0


def test_batch_of():
    x = torch.arange(6.0).reshape(3, 2)
    assert batch_of(x, 1).shape == (1, 2)
    y = batch_of(x, 7)
    assert y.shape == (7, 2) and torch.equal(y[3], x[0])
    d = batch_of({"a": x, "n": 3}, 2)
    assert d["a"].shape == (2, 2) and d["n"] == 3
    with pytest.raises(ValueError, match="batch"):
        batch_of(torch.tensor(1.0), 2)
    with pytest.raises(TypeError, match="example_input"):
        batch_of("text", 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS high-water mark is Linux")
def test_forward_peak_sees_torch_allocations():
    class Big(nn.Module):
        def forward(self, x):
            return x.repeat(1, 16384)  # a 64 MiB output: above glibc's largest mmap threshold,
            # so always fresh pages (smaller ones may reuse free heap memory: a lower bound)

    x = torch.randn(1024, 1)
    peak = forward_peak_bytes(Big(), x)
    assert peak is not None and peak >= 0.9 * 64 * 1024 * 1024


def test_report_bad_input():
    m = _mlp()
    x = torch.randn(2, 32)
    with pytest.raises(TypeError, match="original"):
        report("m", m, eval_fn=None, example_input=x)
    with pytest.raises(TypeError, match="compressed"):
        report(m, [m], eval_fn=None, example_input=x)
    with pytest.raises(ValueError, match="empty"):
        report(m, {}, eval_fn=None, example_input=x)
    with pytest.raises(ValueError, match="fails on example_input"):
        report(m, {"a": _mlp()}, eval_fn=None, example_input=torch.randn(2, 5), progress=False)
    with pytest.raises(ValueError, match="batch_sizes"):
        report(m, {"a": _mlp()}, eval_fn=None, example_input=x, batch_sizes=(0,))
