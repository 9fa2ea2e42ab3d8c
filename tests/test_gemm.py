"""The int8 GEMM path against its executable spec (edgepack.reference, int64 numpy), bit for bit:
edge shapes, adversarial values, strided and torch inputs, threads, every ISA of this CPU (in
subprocesses with EDGEPACK_ISA), hypothesis properties, errors and the packed-bytes format."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edgepack as ep
from edgepack import reference as R

PYDIR = str(Path(ep.__file__).resolve().parent.parent)
KS = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 255, 513]
NS = [1, 15, 16, 17, 33, 50]


def rand_w(rng, n, k):
    return rng.integers(-128, 128, (n, k)).astype(np.int8)


def packed(rng, n, k, bias=True):
    w = rand_w(rng, n, k)
    s = rng.uniform(1e-3, 5e-2, n).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32) if bias else None
    return w, s, b, ep.pack_weights(w, s, bias=b)


def bits_equal(a, b):
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.int32), b.view(np.int32))


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    saved = ep.get_num_threads()
    ep.set_num_threads(request.param)
    yield request.param
    ep.set_num_threads(saved)


# ---- gemm_s32 -----------------------------------------------------------------------------


@pytest.mark.parametrize("m", list(range(1, 11)) + [17])
def test_gemm_s32_edges(m, threads):
    rng = np.random.default_rng(m)
    for i, k in enumerate(KS):
        n = NS[(i + m) % len(NS)]
        w, _, _, p = packed(rng, n, k)
        a = rng.integers(0, 256, (m, k)).astype(np.uint8)
        for zp in (0, 128, 255):
            assert np.array_equal(ep.gemm_s32(a, p, a_zero_point=zp), R.gemm_s32_ref(a, w, zp))
        a8 = rng.integers(-128, 128, (m, k)).astype(np.int8)
        for zp in (-128, 0, 127):
            assert np.array_equal(ep.gemm_s32(a8, p, a_zero_point=zp), R.gemm_s32_ref(a8, w, zp))


@pytest.mark.parametrize("k", [1, 8, 1000, 65536])
def test_gemm_s32_adversarial(k, threads):
    """Values that break any int16 intermediate: a = 255/0 (or -128/127) against w = -128/127."""
    m, n = 3, 20
    patterns = [
        (np.full((m, k), 255, np.uint8), np.full((n, k), -128, np.int8), 0),
        (np.full((m, k), 0, np.uint8), np.full((n, k), -128, np.int8), 255),
        (np.full((m, k), 255, np.uint8), np.full((n, k), 127, np.int8), 0),
        (np.full((m, k), -128, np.int8), np.full((n, k), -128, np.int8), 127),
        (np.full((m, k), 127, np.int8), np.full((n, k), -128, np.int8), -128),
    ]
    alt = np.where(np.arange(k) % 2 == 0, 127, -128).astype(np.int8)
    patterns.append((np.full((m, k), 255, np.uint8), np.tile(alt, (n, 1)), 0))
    for a, w, zp in patterns:
        p = ep.pack_weights(w, np.ones(n, np.float32))
        assert np.array_equal(ep.gemm_s32(a, p, a_zero_point=zp), R.gemm_s32_ref(a, w, zp))


def test_gemm_s32_strided_torch_and_batch():
    rng = np.random.default_rng(1)
    w, _, _, p = packed(rng, 37, 40)
    big = rng.integers(0, 256, (6, 80)).astype(np.uint8)
    a = big[:, ::2]  # strided rows
    assert np.array_equal(ep.gemm_s32(a, p, a_zero_point=3), R.gemm_s32_ref(a, w, 3))
    at = torch.from_numpy(rng.integers(-128, 128, (40, 6)).astype(np.int8)).t()  # transposed
    out = ep.gemm_s32(at, p, a_zero_point=-5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int32
    assert np.array_equal(out.numpy(), R.gemm_s32_ref(at.numpy(), w, -5))
    a3 = rng.integers(0, 256, (2, 3, 40)).astype(np.uint8)
    out3 = ep.gemm_s32(a3, p)
    assert out3.shape == (2, 3, 37)
    assert np.array_equal(out3.reshape(6, 37), R.gemm_s32_ref(a3.reshape(6, 40), w, 0))
    assert ep.gemm_s32(np.zeros((0, 40), np.uint8), p).shape == (0, 37)


# ---- linear_int8 ---------------------------------------------------------------------------


@pytest.mark.parametrize("m", list(range(1, 11)) + [33])
def test_linear_int8_matches_reference(m, threads):
    rng = np.random.default_rng(100 + m)
    for i, k in enumerate(KS):
        n = NS[(i + 2 * m) % len(NS)]
        bias, relu = bool(i % 2), bool((i // 2) % 2)
        w, s, b, p = packed(rng, n, k, bias)
        x = (rng.normal(size=(m, k)) * rng.uniform(0.01, 10)).astype(np.float32)
        if m > 2:
            x[1] = 0.0  # zero row: scale 1, zero point 0
            x[2] = np.abs(x[2]) + 0.5  # positive row: zero point 0
        y = ep.linear_int8(x, p, relu=relu)
        assert bits_equal(y, R.linear_int8_ref(x, w, s, b, relu)), (m, k, n)


def test_linear_int8_uses_quantize_dynamic_qparams():
    """The activation quantization is exactly edgepack.quantize_dynamic(uint8, per-row, asym)."""
    rng = np.random.default_rng(5)
    w, s, _, p = packed(rng, 24, 50, bias=False)
    x = rng.normal(size=(4, 50)).astype(np.float32) * 3
    q, qs, qz = ep.quantize_dynamic(x, dtype="uint8", per_row=True, symmetric=False)
    acc = R.gemm_s32_ref(q.astype(np.int64) - qz[:, None], w, 0)
    assert bits_equal(ep.linear_int8(x, p), R.epilogue_ref(acc, qs, s, None, False))


def test_linear_int8_torch_batch_and_strides():
    rng = np.random.default_rng(2)
    w, s, b, p = packed(rng, 70, 64)
    xt = torch.randn(2, 5, 128)[..., ::2]  # non-contiguous, leading batch dims
    y = ep.linear_int8(xt, p, relu=True)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 5, 70) and y.dtype == torch.float32
    ref = R.linear_int8_ref(xt.reshape(-1, 64).numpy(), w, s, b, True)
    assert bits_equal(y.reshape(-1, 70).numpy(), ref)
    assert ep.linear_int8(np.zeros((3, 0, 64), np.float32), p).shape == (3, 0, 70)
    x1 = rng.normal(size=64).astype(np.float32)  # a single vector
    assert bits_equal(ep.linear_int8(x1, p), R.linear_int8_ref(x1[None], w, s, b)[0])


@pytest.mark.parametrize("m,k,n", [(64, 768, 300), (300, 40, 24), (2, 4096, 520)])
def test_linear_int8_threads_identical(m, k, n):
    rng = np.random.default_rng(m)
    w, s, b, p = packed(rng, n, k)
    x = rng.normal(size=(m, k)).astype(np.float32)
    saved = ep.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            ep.set_num_threads(t)
            outs.append(ep.linear_int8(x, p))
    finally:
        ep.set_num_threads(saved)
    assert bits_equal(outs[0], R.linear_int8_ref(x, w, s, b))
    assert all(bits_equal(o, outs[0]) for o in outs[1:])


def test_linear_int8_rejects_nan_inf():
    rng = np.random.default_rng(3)
    _, _, _, p = packed(rng, 8, 16)
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones((3, 16), np.float32)
        x[1, 4] = bad
        with pytest.raises(ValueError, match="NaN|inf"):
            ep.linear_int8(x, p)


# ---- linear_q ------------------------------------------------------------------------------


@pytest.mark.parametrize("out_dtype", ["int8", "uint8"])
@pytest.mark.parametrize("in_dtype", [np.int8, np.uint8])
def test_linear_q_matches_reference(in_dtype, out_dtype, threads):
    rng = np.random.default_rng(7)
    info = np.iinfo(in_dtype)
    oinfo = np.iinfo(np.dtype(out_dtype))
    for i, k in enumerate(KS):
        m = 1 + i % 10
        n = NS[i % len(NS)]
        bias, relu = bool(i % 2), bool((i // 2) % 2)
        w, s, b, p = packed(rng, n, k, bias)
        a = rng.integers(info.min, int(info.max) + 1, (m, k)).astype(in_dtype)
        a_zp = int(rng.integers(info.min, int(info.max) + 1))
        out_zp = int(rng.integers(oinfo.min, int(oinfo.max) + 1))
        a_scale = float(rng.uniform(0.005, 0.1))
        out_scale = float(rng.choice([0.01, 0.3, 1.7, 25.0]))
        q = ep.linear_q(a, a_scale, a_zp, p, out_scale, out_zp, relu=relu, out_dtype=out_dtype)
        ref = R.linear_q_ref(a, a_scale, a_zp, w, s, b, out_scale, out_zp, relu, out_dtype)
        assert q.dtype == ref.dtype and np.array_equal(q, ref), (k, m, n)


def test_linear_q_torch():
    rng = np.random.default_rng(8)
    w, s, b, p = packed(rng, 20, 30)
    a = torch.randint(-128, 128, (4, 30), dtype=torch.int8)
    q = ep.linear_q(a, 0.05, 2, p, 0.4, -3)
    assert isinstance(q, torch.Tensor) and q.dtype == torch.int8
    ref = R.linear_q_ref(a.numpy(), 0.05, 2, w, s, b, 0.4, -3)
    assert np.array_equal(q.numpy(), ref)


# ---- hypothesis ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 12),
    k=st.integers(1, 300),
    n=st.integers(1, 70),
    seed=st.integers(0, 2**31 - 1),
    signed=st.booleans(),
    extreme=st.booleans(),
)
def test_gemm_s32_property(m, k, n, seed, signed, extreme):
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 127) if signed else (0, 255)
    if extreme:
        a = rng.choice([lo, hi], (m, k)).astype(np.int8 if signed else np.uint8)
        w = rng.choice([-128, 127], (n, k)).astype(np.int8)
    else:
        a = rng.integers(lo, hi + 1, (m, k)).astype(np.int8 if signed else np.uint8)
        w = rand_w(rng, n, k)
    zp = int(rng.integers(lo, hi + 1))
    p = ep.pack_weights(w, np.ones(n, np.float32))
    assert np.array_equal(ep.gemm_s32(a, p, a_zero_point=zp), R.gemm_s32_ref(a, w, zp))


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 12),
    k=st.integers(1, 300),
    n=st.integers(1, 70),
    seed=st.integers(0, 2**31 - 1),
    mag=st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e6]),
    shift=st.sampled_from([0.0, 1.0, -5.0]),
    bias=st.booleans(),
    relu=st.booleans(),
)
def test_linear_int8_property(m, k, n, seed, mag, shift, bias, relu):
    rng = np.random.default_rng(seed)
    w, s, b, p = packed(rng, n, k, bias)
    x = ((rng.normal(size=(m, k)) + shift) * mag).astype(np.float32)
    assert bits_equal(ep.linear_int8(x, p, relu=relu), R.linear_int8_ref(x, w, s, b, relu))


# ---- every ISA of this CPU, each in its own process -----------------------------------------

_ISA_SCRIPT = textwrap.dedent(
    """
    import numpy as np, edgepack as ep
    from edgepack import reference as R
    assert ep.cpu_info()["kernels"]["gemm"] == "{isa}", ep.cpu_info()["kernels"]
    print("wide:", ep._core.kernel_families()["gemm"]["wide"])
    rng = np.random.default_rng(0)
    for t in (1, 2):
        ep.set_num_threads(t)
        for m, k, n in [(1, 1, 1), (3, 7, 17), (10, 33, 50), (17, 100, 33), (5, 1000, 16),
                        (40, 256, 130), (1, 2048, 700), (35, 200, 64), (16, 64, 32)]:
            w = rng.integers(-128, 128, (n, k)).astype(np.int8)
            s = rng.uniform(1e-3, 0.1, n).astype(np.float32)
            b = rng.normal(size=n).astype(np.float32)
            p = ep.pack_weights(w, s, bias=b)
            a = rng.integers(0, 256, (m, k)).astype(np.uint8)
            for zp in (0, 128, 255):
                assert np.array_equal(ep.gemm_s32(a, p, a_zero_point=zp), R.gemm_s32_ref(a, w, zp))
            a8 = rng.integers(-128, 128, (m, k)).astype(np.int8)
            assert np.array_equal(ep.gemm_s32(a8, p, a_zero_point=-7), R.gemm_s32_ref(a8, w, -7))
            hi = np.full((m, k), 255, np.uint8)
            wl = np.full((n, k), -128, np.int8)
            pl = ep.pack_weights(wl, s)
            assert np.array_equal(ep.gemm_s32(hi, pl), R.gemm_s32_ref(hi, wl, 0))
            x = rng.normal(size=(m, k)).astype(np.float32)
            y = ep.linear_int8(x, p, relu=True)
            r = R.linear_int8_ref(x, w, s, b, True)
            assert np.array_equal(y.view(np.int32), r.view(np.int32))
            q = ep.linear_q(a8, 0.03, 5, p, 0.5, -2, out_dtype="int8")
            assert np.array_equal(q, R.linear_q_ref(a8, 0.03, 5, w, s, b, 0.5, -2))
    print("OK")
    """
)


@pytest.mark.parametrize(
    "isa", ["scalar", "avx2", "avx512vnni", "avx512vnni-noamx", "neon", "neondot", "i8mm"]
)
def test_every_isa_subprocess(isa):
    """Each ISA in its own process; 'avx512vnni-noamx' sets EDGEPACK_AMX=0 so the AVX-512 VNNI
    two-panel kernel runs where AMX would otherwise take over."""
    isa, _, variant = isa.partition("-")
    if isa not in ep.cpu_info()["supported_isas"]:
        pytest.skip(f"{isa} is not supported by this CPU")
    env = dict(os.environ, EDGEPACK_ISA=isa)
    if variant == "noamx":
        env["EDGEPACK_AMX"] = "0"
    env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", _ISA_SCRIPT.format(isa=isa)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]
    if variant == "noamx":
        assert "wide: amx" not in res.stdout


def test_packed_bytes_portable_across_isas(tmp_path):
    """Bytes packed here (dispatched ISA) run unchanged under every other ISA of this CPU."""
    rng = np.random.default_rng(21)
    w, s, b, p = packed(rng, 45, 300)
    x = rng.normal(size=(7, 300)).astype(np.float32)
    (tmp_path / "w.bin").write_bytes(p.to_bytes())
    np.save(tmp_path / "x.npy", x)
    want = ep.linear_int8(x, p)
    script = textwrap.dedent(
        f"""
        import numpy as np, edgepack as ep
        p = ep.PackedLinear.from_bytes(open({str(tmp_path / "w.bin")!r}, "rb").read())
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, ep.linear_int8(x, p))
        """
    )
    for isa in ep.cpu_info()["supported_isas"]:
        env = dict(os.environ, EDGEPACK_ISA=isa)
        env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
        res = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert bits_equal(np.load(tmp_path / "y.npy"), want), isa


# ---- packed weights ------------------------------------------------------------------------


def test_packed_properties_and_unpack():
    rng = np.random.default_rng(9)
    w, s, b, p = packed(rng, 33, 70)
    assert p.shape == (33, 70) and p.out_features == 33 and p.in_features == 70
    assert p.layout == "c4n16" and p.has_bias
    assert p.nbytes == len(p.to_bytes()) == 128 + 12 * 48 + 48 * 72
    w2, s2, b2 = p.unpack()
    assert np.array_equal(w2, w) and np.array_equal(s2, s) and np.array_equal(b2, b)
    assert ep.pack_weights(w, s).unpack()[2] is None
    assert "PackedLinear" in repr(p)


def test_to_bytes_roundtrip_and_pickle():
    rng = np.random.default_rng(10)
    w, s, b, p = packed(rng, 19, 45)
    x = rng.normal(size=(3, 45)).astype(np.float32)
    for q in (
        ep.PackedLinear.from_bytes(p.to_bytes()),
        ep.PackedLinear.from_bytes(bytearray(p.to_bytes())),
        ep.PackedLinear.from_bytes(np.frombuffer(p.to_bytes(), np.uint8)),
        pickle.loads(pickle.dumps(p)),
    ):
        assert q.shape == p.shape and q.to_bytes() == p.to_bytes()
        assert bits_equal(ep.linear_int8(x, q), ep.linear_int8(x, p))


def test_from_bytes_rejects_corruption():
    rng = np.random.default_rng(11)
    _, _, _, p = packed(rng, 19, 45)
    raw = p.to_bytes()
    # Every header byte and a sample of payload bytes: one flipped bit is always caught.
    for pos in list(range(128)) + list(range(128, len(raw), 97)):
        bad = bytearray(raw)
        bad[pos] ^= 0x04
        with pytest.raises(ValueError):
            ep.PackedLinear.from_bytes(bytes(bad))
    for cut in (0, 1, 64, 127, 128, 500, len(raw) - 1):
        with pytest.raises(ValueError):
            ep.PackedLinear.from_bytes(raw[:cut])
    with pytest.raises(ValueError):
        ep.PackedLinear.from_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="magic"):
        ep.PackedLinear.from_bytes(b"x" * len(raw))
    with pytest.raises(TypeError):
        ep.PackedLinear.from_bytes("not bytes")  # type: ignore[arg-type]


# ---- errors --------------------------------------------------------------------------------


def test_argument_errors():
    rng = np.random.default_rng(12)
    w, s, _, p = packed(rng, 8, 16)
    x = np.zeros((2, 16), np.float32)
    with pytest.raises(ValueError, match="K = 16"):
        ep.linear_int8(np.zeros((2, 15), np.float32), p)
    with pytest.raises(ValueError, match="K = 16"):
        ep.gemm_s32(np.zeros((2, 17), np.uint8), p)
    with pytest.raises(TypeError, match="float32"):
        ep.linear_int8(x.astype(np.float64), p)
    with pytest.raises(TypeError, match="int8 or uint8"):
        ep.gemm_s32(np.zeros((2, 16), np.int16), p)
    with pytest.raises(TypeError, match="PackedLinear"):
        ep.linear_int8(x, w)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        ep.linear_int8(torch.zeros(2, 16, device="meta"), p)
    with pytest.raises(ValueError, match="out of range"):
        ep.gemm_s32(np.zeros((2, 16), np.uint8), p, a_zero_point=256)
    with pytest.raises(ValueError, match="out of range"):
        ep.gemm_s32(np.zeros((2, 16), np.int8), p, a_zero_point=128)
    with pytest.raises(TypeError):
        ep.gemm_s32(np.zeros((2, 16), np.uint8), p, a_zero_point=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one dimension"):
        ep.linear_int8(np.array(1.0, np.float32), p)
    # M * N past 2**31 is refused before anything is copied.
    huge = np.broadcast_to(np.zeros((1, 16), np.uint8), (2**28, 16))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        ep.gemm_s32(huge, p)


def test_pack_errors():
    w = np.zeros((4, 8), np.int8)
    s = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="int8"):
        ep.pack_weights(w.astype(np.float32), s)
    with pytest.raises(ValueError, match="2-D"):
        ep.pack_weights(w.reshape(-1), s)
    with pytest.raises(ValueError, match="entries"):
        ep.pack_weights(w, np.ones(3, np.float32))
    for bad in (np.nan, np.inf, 0.0, -1.0):
        with pytest.raises(ValueError, match="scale"):
            ep.pack_weights(w, np.array([1, 1, bad, 1], np.float32))
    with pytest.raises(ValueError, match="bias"):
        ep.pack_weights(w, s, bias=np.array([0, np.nan, 0, 0], np.float32))
    with pytest.raises(ValueError, match="65536"):
        ep.pack_weights(np.zeros((1, 65537), np.int8), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        ep.pack_weights(np.zeros((0, 8), np.int8), np.ones(0, np.float32))
    p = ep.pack_weights(w, 0.5)  # one scale for all channels
    assert np.array_equal(p.unpack()[1], np.full(4, 0.5, np.float32))


def test_linear_q_errors():
    rng = np.random.default_rng(13)
    _, _, _, p = packed(rng, 8, 16)
    a = np.zeros((2, 16), np.int8)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="a_scale"):
            ep.linear_q(a, bad, 0, p, 1.0, 0)
        with pytest.raises(ValueError, match="out_scale"):
            ep.linear_q(a, 1.0, 0, p, bad, 0)
    with pytest.raises(ValueError, match="out_zero_point"):
        ep.linear_q(a, 1.0, 0, p, 1.0, 200, out_dtype="int8")
    with pytest.raises(ValueError, match="out_dtype"):
        ep.linear_q(a, 1.0, 0, p, 1.0, 0, out_dtype="int16")
    p_big = ep.pack_weights(np.ones((8, 16), np.int8), np.full(8, 100.0, np.float32))
    with pytest.raises(ValueError, match="overflows"):
        ep.linear_q(a, 3e37, 0, p_big, 1.0, 0)


def test_quantize_weights():
    w = torch.randn(12, 30)
    wq, s = ep.quantize_weights(w)
    assert isinstance(wq, torch.Tensor) and wq.dtype == torch.int8 and s.shape == (12,)
    s_ref, _ = ep.choose_qparams(w.numpy(), dtype="int8", symmetric=True, axis=0)
    assert np.array_equal(s.numpy(), s_ref)
    assert np.array_equal(wq.numpy(), ep.quantize(w.numpy(), s_ref, 0, axis=0, dtype="int8"))
    assert int(wq.abs().max()) <= 127
