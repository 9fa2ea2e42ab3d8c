from __future__ import annotations

import hashlib
import json
import random
import struct

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import edgepack
from _models import Residual, mlp, mnist_cnn, randomize_bn
from edgepack import CompressionConfig
from edgepack.io import MAGIC, loads
from edgepack.nn import QuantConv2d, QuantEmbedding, QuantLinear


def _roundtrip(model: nn.Module, x: torch.Tensor, tmp_path) -> nn.Module:
    p = tmp_path / "m.ep"
    n = edgepack.save(model, p)
    assert n == p.stat().st_size
    loaded = edgepack.load(p)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    return loaded


def test_compressed_cnn_roundtrip_bit_identical(tmp_path):
    torch.manual_seed(0)
    m = mnist_cnn().eval()
    c = edgepack.compress(m)
    loaded = _roundtrip(c, torch.randn(3, 1, 28, 28), tmp_path)
    assert type(loaded) is nn.Sequential
    assert [type(a) for a in loaded] == [type(b) for b in c]
    edgepack.save(m, tmp_path / "fp32.ep")
    ratio = (tmp_path / "fp32.ep").stat().st_size / (tmp_path / "m.ep").stat().st_size
    assert ratio > 3.5  # int8 weights + scales vs fp32


def test_fp32_and_mixed_modules_roundtrip(tmp_path):
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Sequential(nn.Embedding(20, 8), nn.LayerNorm(8)), nn.Flatten(), nn.Linear(32, 16),
        nn.BatchNorm1d(16), nn.GELU(approximate="tanh"), nn.Dropout(0.1), nn.Linear(16, 5),
    )
    randomize_bn(m)
    m.eval()
    x = torch.randint(0, 20, (5, 4))
    _roundtrip(m, x, tmp_path)
    c = edgepack.compress(m)
    assert isinstance(c[0][0], QuantEmbedding)
    _roundtrip(c, x, tmp_path)
    d = nn.ModuleDict({"a": nn.ModuleList([nn.Linear(2, 3), nn.ReLU()]), "b-c d": nn.Tanh()})
    edgepack.save(d, tmp_path / "d.ep")
    d2 = edgepack.load(tmp_path / "d.ep")
    assert type(d2) is nn.ModuleDict and type(d2["a"]) is nn.ModuleList
    assert torch.equal(d2["a"][0].weight, d["a"][0].weight)


def test_static_and_pruned_roundtrip(tmp_path):
    torch.manual_seed(2)
    m = mnist_cnn().eval()
    prune.l1_unstructured(m[9], "weight", amount=0.8)
    calib = [torch.randn(2, 1, 28, 28)]
    c = edgepack.compress(m, CompressionConfig(activations="static"), calib_data=calib)
    loaded = _roundtrip(c, torch.randn(2, 1, 28, 28), tmp_path)
    assert isinstance(loaded[0], QuantConv2d) and loaded[0].linear.is_static
    _roundtrip(m, torch.randn(2, 1, 28, 28), tmp_path)  # pruned fp32: masks resolved


def test_fx_graph_model_roundtrip(tmp_path):
    torch.manual_seed(3)
    m = Residual().eval()
    randomize_bn(m)
    x = torch.randn(4, 16)
    loaded = _roundtrip(m, x, tmp_path)
    assert isinstance(loaded, torch.fx.GraphModule)
    c = edgepack.compress(m, example_input=x)
    loaded = _roundtrip(c, x, tmp_path)
    assert isinstance(loaded.get_submodule("a"), QuantLinear)


class _Exotic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(self.lin(x)).real


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="not allowed"):
        edgepack.save(_Exotic(), tmp_path / "b.ep")
    with pytest.raises(TypeError, match="LSTM"):
        edgepack.save(nn.Sequential(nn.LSTM(4, 4)), tmp_path / "c.ep")


def _rewrite_header(buf: bytes, edit) -> bytes:
    """Tamper with the JSON header and fix up its length and checksum (a deliberate forgery)."""
    _, version, reserved, hlen, _ = struct.unpack_from("<8sIIQ32s", buf, 0)
    header = json.loads(buf[56:56 + hlen])
    data = buf[56 + hlen:]
    edit(header)
    hb = json.dumps(header).encode()
    digest = hashlib.sha256(hb + data).digest()
    return struct.pack("<8sIIQ32s", MAGIC, version, reserved, len(hb), digest) + hb + data


def test_tampered_headers_raise_value_error(tmp_path):
    torch.manual_seed(4)
    c = edgepack.compress(mlp().eval())
    p = tmp_path / "m.ep"
    edgepack.save(c, p)
    buf = p.read_bytes()
    assert torch.equal(loads(_rewrite_header(buf, lambda h: None))(torch.ones(2, 32)),
                       c(torch.ones(2, 32)))

    def set_type(h):
        h["model"]["children"][0][1]["type"] = "os.system"

    def shape(h):
        h["sections"][1][1] = [3]

    def features(h):
        h["model"]["children"][0][1]["in_features"] = 31

    def fx_func(h):
        h["model"] = {"type": "fx", "modules": {}, "attrs": {}, "nodes": [
            {"op": "placeholder", "name": "x", "target": "x", "args": {"t": []},
             "kwargs": {"d": []}},
            {"op": "call_function", "name": "y", "target": "builtins.eval",
             "args": {"t": ["1"]}, "kwargs": {"d": []}},
            {"op": "output", "name": "output", "target": "output", "args": {"t": [{"n": "y"}]},
             "kwargs": {"d": []}}]}

    def kind(h):
        h["model"]["children"][0][1]["packed_kind"] = "pickle"

    for edit in (set_type, shape, features, fx_func, kind):
        with pytest.raises(ValueError, match="invalid edgepack file"):
            loads(_rewrite_header(buf, edit))
    with pytest.raises(ValueError, match="bad magic"):
        loads(b"PK\3\4" + buf[4:])


def test_fuzz_flips_and_truncations(tmp_path):
    torch.manual_seed(5)
    c = edgepack.compress(mnist_cnn().eval())
    p = tmp_path / "m.ep"
    edgepack.save(c, p)
    buf = p.read_bytes()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        ref = c(x)
    rng = random.Random(0)
    loaded_ok = 0
    for trial in range(300):
        b = bytearray(buf)
        if trial % 3 == 0:
            b = b[: rng.randrange(len(b))]
        else:
            for _ in range(rng.choice([1, 1, 2, 8])):
                i = rng.randrange(len(b)) if trial % 3 == 1 else rng.randrange(min(len(b), 600))
                b[i] ^= 1 << rng.randrange(8)
        try:
            m = loads(bytes(b))
        except ValueError:
            continue
        with torch.no_grad():
            assert torch.equal(m(x), ref)
        loaded_ok += 1
    assert loaded_ok < 300


class _Gated(nn.Module):
    """Control flow on tensor values: no graph; saved weights-only."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        self.gate = nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 1.0]))
        self.register_buffer("offset", torch.arange(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y * self.gate + self.offset if float(x.mean()) > -100 else y


def test_weights_only_for_untraceable_models(tmp_path):
    torch.manual_seed(6)
    m = _Gated().eval()
    c = edgepack.compress(m)
    p = tmp_path / "g.ep"
    with pytest.warns(UserWarning, match="weights only"):
        edgepack.save(c, p)
    with pytest.raises(ValueError, match="into="):
        edgepack.load(p)
    fresh = _Gated()  # another instance: random weights, plain Linear layers
    loaded = edgepack.load(p, into=fresh)
    assert type(loaded) is _Gated and isinstance(loaded.body[0], QuantLinear)
    assert isinstance(fresh.body[0], nn.Linear)  # `into` untouched
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), c(x))
    with pytest.raises(ValueError, match="another architecture"):
        edgepack.load(p, into=mnist_cnn())


def _packed_layers(model: nn.Module) -> list[QuantLinear]:
    return [m for m in model.modules() if isinstance(m, QuantLinear)]


@pytest.mark.parametrize("sparse", ["never", "always"])
@pytest.mark.parametrize("zeros", ["none", "blocks", "scattered"])
def test_repacked_weights_are_byte_identical_and_stored_once(tmp_path, sparse, zeros):
    if sparse == "always" and not hasattr(edgepack, "pack_sparse"):
        pytest.skip("no sparse kernels in this build")
    torch.manual_seed(6)
    lin = nn.Linear(30, 256)  # K not a multiple of the sparse block: padding is derived
    with torch.no_grad():
        if zeros == "blocks":
            lin.weight[:, 4:28] = 0  # whole zero blocks
        elif zeros == "scattered":
            lin.weight[torch.rand_like(lin.weight) < 0.9] = 0
    q = nn.Sequential(QuantLinear.from_float(lin, sparse=sparse))
    enc = {"none": "dense", "blocks": "blocks", "scattered": "elements"}[zeros]
    assert q[0].packed_kind == ("dense" if sparse == "never" else "sparse")
    loaded = _roundtrip(q, torch.randn(3, 30), tmp_path)  # saves to m.ep: n == its size
    p = tmp_path / "m.ep"
    n = p.stat().st_size
    assert f'"weight_enc":"{enc}"'.encode() in p.read_bytes()
    for a, b in zip(_packed_layers(q), _packed_layers(loaded)):
        assert a.packed_kind == b.packed_kind
        assert a.packed.to_bytes() == b.packed.to_bytes()
        assert torch.equal(a.weight_scale, b.weight_scale) and torch.equal(a.bias, b.bias)
    # int8 weights (fewer for sparse) + scale + bias once + a small header, no packed buffer
    assert n <= 256 * 30 + 2 * 4 * 256 + 1024, n
    assert n < q[0].packed_nbytes + 2 * 4 * 256


@pytest.mark.skipif(not hasattr(edgepack, "pack_auto"), reason="no sparse kernels in this build")
def test_auto_packing_is_chosen_again_on_the_loading_cpu(tmp_path, monkeypatch):
    """A layer packed with sparse="auto" got the saving CPU's timed dense/sparse pick; load
    times it again here (the crossover is per CPU), while forced picks stay as saved."""
    import edgepack.sparse as sp

    torch.manual_seed(7)
    lin = nn.Linear(256, 256)
    with torch.no_grad():  # 90% of the 1 x 4 blocks zero: sparse is the smaller packing
        keep = (torch.rand(256, 64) >= 0.9).repeat_interleave(4, dim=1)
        lin.weight.mul_(keep)
    x = torch.randn(5, 256)

    batches: list[int] = []

    def timed(crossover: float):
        def crossover_at(n, k, *, batch=1, **kw):
            batches.append(batch)
            return crossover
        return crossover_at

    monkeypatch.setattr(sp, "sparse_crossover", timed(0.0))  # the saving CPU: sparse wins
    saver = nn.Sequential(QuantLinear.from_float(lin, sparse="auto", rows_per_call=48),
                          QuantLinear.from_float(lin, sparse="never"))
    assert [m.packed_kind for m in saver] == ["sparse", "dense"] and batches == [48]
    assert saver[0].sparse_policy == "auto" and saver[1].sparse_policy == "never"
    p = tmp_path / "auto.ep"
    edgepack.save(saver, p)
    assert p.read_bytes().count(b'"packing":"auto","packing_rows":48') == 1

    monkeypatch.setattr(sp, "sparse_crossover", timed(1.0))  # here: dense always wins
    here = edgepack.load(p)
    assert [m.packed_kind for m in here] == ["dense", "dense"] and batches == [48, 48]
    assert here[0].sparse_policy == "auto" and here[1].sparse_policy is None
    assert here[0].rows_per_call == 48
    with torch.no_grad():
        assert torch.equal(here(x), saver(x))  # the same outputs, bit for bit
    monkeypatch.setattr(sp, "sparse_crossover", timed(0.0))
    assert [m.packed_kind for m in edgepack.load(p)] == ["sparse", "dense"]

    buf = p.read_bytes()

    def bad_choice(h):
        h["model"]["children"][0][1]["packing"] = "fastest"

    def bad_rows(h):
        h["model"]["children"][0][1]["packing_rows"] = 0

    def rows_without_auto(h):
        h["model"]["children"][1][1]["packing_rows"] = 8

    with pytest.raises(ValueError, match="unknown packing choice"):
        loads(_rewrite_header(buf, bad_choice))
    for edit in (bad_rows, rows_without_auto):
        with pytest.raises(ValueError, match="bad packing_rows"):
            loads(_rewrite_header(buf, edit))


def test_old_format_version_is_refused_clearly(tmp_path):
    p = tmp_path / "m.ep"
    edgepack.save(nn.Sequential(nn.Linear(3, 2)), p)
    buf = bytearray(p.read_bytes())
    struct.pack_into("<I", buf, 8, 1)
    with pytest.raises(ValueError, match="version 1.*save the model again"):
        loads(bytes(buf))


def test_unreferenced_sections_are_refused(tmp_path):
    p = tmp_path / "m.ep"
    edgepack.save(nn.Sequential(nn.Linear(3, 2)), p)
    buf = p.read_bytes()

    def extra(h):
        h["sections"].append(["int8", [0]])

    with pytest.raises(ValueError, match="sections no module uses"):
        loads(_rewrite_header(buf, extra))
