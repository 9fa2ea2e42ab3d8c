"""quantize / dequantize / choose_qparams / quantize_dynamic against the numpy spec
(quant_ref.py) and, bit for bit, against torch's quantized tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgepack as ep
import quant_ref as ref

DTYPES = ["int8", "uint8"]
TORCH_Q = {"int8": torch.qint8, "uint8": torch.quint8}
SIZES = list(range(0, 65)) + [2**n + d for n in range(7, 17) for d in (-1, 1)]
ZPS = {"int8": [0, 3, -128, 127], "uint8": [0, 128, 255]}
RNG = np.random.default_rng(0)


def data(n: int, spread: float = 3.0) -> np.ndarray:
    return (RNG.standard_normal(n) * spread).astype(np.float32)


def edge_values() -> np.ndarray:
    """+-0, denormals, exact .5 boundaries (scale 1 and 0.5 keep them exact), the ends of both
    integer ranges, the +-32000 / +-32768 / 2^31 points the SIMD kernels treat specially, +-inf."""
    halves = np.arange(-300, 300, dtype=np.float32) + np.float32(0.5)
    special = np.array(
        [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, np.finfo(np.float32).tiny,
         127.49999, 127.5, 126.5, -128.5, -127.5, 255.5, 254.5, -0.5, 0.5, 1.5, 2.5,
         31999.5, 32000.5, -32000.5, 32767.5, -32768.5, 65535.5, 2.0**31, -(2.0**31),
         3e9, -3e9, 1e30, -1e30, np.finfo(np.float32).max, -np.finfo(np.float32).max,
         np.inf, -np.inf], dtype=np.float32)
    return np.concatenate([special, halves, special[::-1]])


# ---- per tensor -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_sizes(dtype: str, threads: int) -> None:
    for n in SIZES:
        x = data(n)
        for zp in ZPS[dtype]:
            q = ep.quantize(x, 0.05, zp, dtype=dtype)
            assert q.dtype == ref.NP_DTYPE[dtype] and q.shape == x.shape
            assert np.array_equal(q, ref.quantize(x, 0.05, zp, dtype=dtype)), (n, zp)
            d = ep.dequantize(q, 0.05, zp)
            assert ref.same_bits(d, ref.dequantize(q, 0.05, zp)), (n, zp)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.37, 3e-3, 250.0])
def test_quantize_edge_values(dtype: str, scale: float, threads: int) -> None:
    base = edge_values()
    for reps in (1, 7, 1000):  # short (scalar tails) and long (SIMD blocks, threads) arrays
        x = np.tile(base, reps)
        for zp in ZPS[dtype]:
            q = ep.quantize(x, scale, zp, dtype=dtype)
            assert np.array_equal(q, ref.quantize(x, scale, zp, dtype=dtype)), (reps, zp)


@pytest.mark.parametrize("dtype", DTYPES)
def test_int_range_extremes_dequantize(dtype: str) -> None:
    lo, hi = ref.RANGES[dtype]
    q = np.tile(np.arange(lo, hi + 1), 3).astype(ref.NP_DTYPE[dtype])
    for zp in ZPS[dtype]:
        for scale in (1.0, 0.0123, 7.5):
            assert ref.same_bits(ep.dequantize(q, scale, zp), ref.dequantize(q, scale, zp))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_per_tensor(dtype: str, threads: int) -> None:
    """Bit-identical to torch.quantize_per_tensor when the zero point is 0 (symmetric int8).

    With a nonzero zero point torch's FBGEMM path computes rint(fma(x, 1/scale, zp)): one
    rounding instead of two, so near-ties can land one step apart. edgepack keeps
    rint(x * (1/scale)) + zp (the spec, quant_ref.py)."""
    x = np.concatenate([data(100_003, 20.0), edge_values()[np.isfinite(edge_values())]])
    xt = torch.from_numpy(x)
    for scale in (0.05, 0.37, 1.0, 0.1):
        for zp in ZPS[dtype]:
            want = torch.quantize_per_tensor(xt, scale, zp, TORCH_Q[dtype])
            got = ep.quantize(xt, scale, zp, dtype=dtype)
            assert isinstance(got, torch.Tensor)
            if zp == 0:
                assert torch.equal(got, want.int_repr()), scale
                # torch dequantizes with an FMA on -zp*scale; with zp 0 that is the plain product
                assert torch.equal(ep.dequantize(got, scale, zp), want.dequantize())
            else:
                diff = (got.int() - want.int_repr().int()).abs().numpy()
                assert diff.max() <= 1
                v = x[diff > 0].astype(np.float64) / np.float32(scale)
                assert np.all(np.abs(np.abs(v - np.floor(v)) - 0.5) < 1e-3)  # near-ties only


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_per_channel(dtype: str, threads: int) -> None:
    x = torch.from_numpy(data(64 * 33 * 5, 10.0).reshape(64, 33, 5))
    for axis in range(3):
        c = x.shape[axis]
        scales = torch.from_numpy(RNG.uniform(0.01, 0.2, c).astype(np.float32)).double()
        lo, hi = ref.RANGES[dtype]
        zps = torch.from_numpy(RNG.integers(lo, hi + 1, c)).long()
        want = torch.quantize_per_channel(x, scales, zps, axis, TORCH_Q[dtype]).int_repr()
        got = ep.quantize(x, scales, zps, axis=axis, dtype=dtype)
        # torch's per-channel kernel rounds near-ties its own way (consistent with adding the
        # zero point in float before rint), so a near-tie can land one step from the spec's
        # rint(x * inv) + zp, as in the per-tensor test. Anywhere else the two must agree bit
        # for bit (the fixed seed passed by luck before; run alone, the test drew
        # x / scale = 14.499991 with zp 157: torch 172, spec 171).
        diff = (got.int() - want.int()).abs()
        assert int(diff.max()) <= 1, axis
        shape = [1, 1, 1]
        shape[axis] = c
        v = (x / scales.float().reshape(shape)).double()[diff > 0]
        assert bool(torch.all((v.abs() - v.abs().floor() - 0.5).abs() < 1e-4)), axis
        got_neg = ep.quantize(x, scales, zps, axis=axis - 3, dtype=dtype)
        assert torch.equal(got_neg, got), axis - 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_channel_every_axis(dtype: str, threads: int) -> None:
    for shape in [(7,), (3, 5), (4, 1, 33), (2, 3, 4, 65), (130, 257)]:
        x = data(int(np.prod(shape))).reshape(shape)
        x.flat[::11] = edge_values()[: x.size // 11 + 1][: len(x.flat[::11])]
        for axis in list(range(x.ndim)) + [-1, -x.ndim]:
            c = x.shape[axis]
            s = RNG.uniform(0.01, 1.0, c).astype(np.float32)
            lo, hi = ref.RANGES[dtype]
            z = RNG.integers(lo, hi + 1, c).astype(np.int32)
            q = ep.quantize(x, s, z, axis=axis, dtype=dtype)
            assert np.array_equal(q, ref.quantize(x, s, z, axis % x.ndim, dtype)), (shape, axis)
            d = ep.dequantize(q, s, z, axis=axis)
            assert ref.same_bits(d, ref.dequantize(q, s, z, axis % x.ndim)), (shape, axis)


def test_per_channel_scalar_params_broadcast() -> None:
    x = data(40).reshape(5, 8)
    assert np.array_equal(ep.quantize(x, 0.1, 2, axis=1), ref.quantize(x, 0.1, 2))
    assert np.array_equal(ep.quantize(x, [0.1] * 8, 2, axis=1), ref.quantize(x, 0.1, 2))


def test_strided_and_transposed_views(threads: int) -> None:
    base = data(300 * 257).reshape(300, 257)
    views = [base[::2], base[:, ::3], base.T, base[::-1], base[5:-3, 7:100]]
    for v in views:
        assert not v.flags.c_contiguous or v is base
        assert np.array_equal(ep.quantize(v, 0.02, 1), ref.quantize(v, 0.02, 1))
        s = RNG.uniform(0.01, 0.1, v.shape[1]).astype(np.float32)
        assert np.array_equal(ep.quantize(v, s, 0, axis=1), ref.quantize(v, s, 0, axis=1))
        q = ref.quantize(np.ascontiguousarray(v), 0.02, 1)
        qv = np.ascontiguousarray(np.tile(q, (1, 2))[:, ::2])  # noqa: F841 (kept simple)
    qbase = ep.quantize(base, 0.02, 0)
    for qv in (qbase.T, qbase[::3, 1::2]):
        assert ref.same_bits(ep.dequantize(qv, 0.02, 0), ref.dequantize(qv, 0.02, 0))
    t = torch.from_numpy(base).t()
    assert not t.is_contiguous()
    assert torch.equal(ep.quantize(t, 0.02, 0), torch.from_numpy(ref.quantize(base.T, 0.02, 0)))


def test_torch_in_torch_out() -> None:
    x = torch.randn(17, 9)
    q = ep.quantize(x, 0.1)
    assert isinstance(q, torch.Tensor) and q.dtype == torch.int8 and q.shape == x.shape
    d = ep.dequantize(q, 0.1)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float32
    s, z = ep.choose_qparams(x, axis=0)
    assert isinstance(s, torch.Tensor) and isinstance(z, torch.Tensor)
    q2, s2, z2 = ep.quantize_dynamic(x, per_row=True)
    assert all(isinstance(t, torch.Tensor) for t in (q2, s2, z2))
    xg = torch.randn(5, requires_grad=True)
    assert isinstance(ep.quantize(xg, 0.1), torch.Tensor)
    # scale/zero_point may be torch tensors or numpy scalars
    assert torch.equal(ep.quantize(x, torch.tensor(0.1), torch.tensor(0)), q)
    assert torch.equal(ep.quantize(x, np.float32(0.1), np.int64(0)), q)


def test_out_argument() -> None:
    x = data(1000)
    out = np.empty(1000, np.int8)
    r = ep.quantize(x, 0.1, out=out)
    assert r is out and np.array_equal(out, ref.quantize(x, 0.1))
    fo = np.empty(1000, np.float32)
    assert ep.dequantize(out, 0.1, out=fo) is fo
    assert ref.same_bits(fo, ref.dequantize(out, 0.1))
    tout = torch.empty(1000, dtype=torch.uint8)
    ep.quantize(torch.from_numpy(x), 0.1, 128, dtype="uint8", out=tout)
    assert np.array_equal(tout.numpy(), ref.quantize(x, 0.1, 128, dtype="uint8"))
    with pytest.raises(TypeError, match="out"):
        ep.quantize(x, 0.1, out=np.empty(1000, np.uint8))
    with pytest.raises(ValueError, match="out"):
        ep.quantize(x, 0.1, out=np.empty(999, np.int8))
    with pytest.raises(ValueError, match="out"):
        ep.quantize(x, 0.1, out=np.empty(2000, np.int8)[::2])


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=70),
                 elements=st.floats(width=32, allow_nan=False, allow_infinity=True,
                                    allow_subnormal=True)),
    scale=st.floats(2.0**-20, 2.0**20, width=32),
    dtype=st.sampled_from(DTYPES),
    data_=st.data(),
)
def test_property_matches_reference(x: np.ndarray, scale: float, dtype: str,
                                    data_: st.DataObject) -> None:
    lo, hi = ref.RANGES[dtype]
    zp = data_.draw(st.integers(lo, hi))
    q = ep.quantize(x, scale, zp, dtype=dtype)
    assert np.array_equal(q, ref.quantize(x, scale, zp, dtype=dtype))
    assert ref.same_bits(ep.dequantize(q, scale, zp), ref.dequantize(q, scale, zp))
    if x.ndim:
        axis = data_.draw(st.integers(-x.ndim, x.ndim - 1))
        c = x.shape[axis]
        s = np.full(c, scale, np.float32) * np.linspace(1, 2, c, dtype=np.float32)
        qa = ep.quantize(x, s, zp, axis=axis, dtype=dtype)
        assert np.array_equal(qa, ref.quantize(x, s, zp, axis % x.ndim, dtype))


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=100),
                 elements=st.floats(-2.0**20, 2.0**20, width=32, allow_subnormal=True)),
    dtype=st.sampled_from(DTYPES),
    symmetric=st.booleans(),
)
def test_property_dynamic_and_qparams(x: np.ndarray, dtype: str, symmetric: bool) -> None:
    s, z = ep.choose_qparams(x, dtype=dtype, symmetric=symmetric)
    mn, mx = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    assert (s, z) == ref.qparams(mn, mx, dtype, symmetric)
    q, s2, z2 = ep.quantize_dynamic(x, dtype=dtype, symmetric=symmetric)
    assert (s2, z2) == (s, z)
    assert np.array_equal(q, ref.quantize(x, s, z, dtype=dtype))
    qr, sr, zr = ep.quantize_dynamic(x, dtype=dtype, symmetric=symmetric, per_row=True)
    rows = x.reshape(-1, x.shape[-1])
    for i, row in enumerate(rows):
        want = ref.qparams(row.min(), row.max(), dtype, symmetric) if row.size else (1.0, 0)
        assert (float(sr.reshape(-1)[i]), int(zr.reshape(-1)[i])) == want
        assert np.array_equal(qr.reshape(rows.shape)[i], ref.quantize(row, want[0], want[1],
                                                                      dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_large_and_threads(dtype: str, threads: int) -> None:
    x = data(3 * 70_001, 4.0).reshape(3, 70_001)
    q, s, z = ep.quantize_dynamic(x, dtype=dtype)
    assert (s, z) == ref.qparams(x.min(), x.max(), dtype, dtype == "int8")
    assert np.array_equal(q, ref.quantize(x, s, z, dtype=dtype))
    sc, zc = ep.choose_qparams(x, dtype=dtype, axis=0, symmetric=False)
    for i in range(3):
        assert (float(sc[i]), int(zc[i])) == ref.qparams(x[i].min(), x[i].max(), dtype, False)


def test_empty_arrays() -> None:
    for shape in [(0,), (0, 5), (5, 0), (2, 0, 3)]:
        x = np.zeros(shape, np.float32)
        q = ep.quantize(x, 0.1)
        assert q.shape == shape and q.dtype == np.int8
        assert ep.dequantize(q, 0.1).shape == shape
        if len(shape) > 1:
            c = shape[1]
            assert ep.quantize(x, np.ones(c, np.float32), 0, axis=1).shape == shape
        assert ep.choose_qparams(x) == (1.0, 0)
        q2, s2, z2 = ep.quantize_dynamic(x)
        assert q2.shape == shape and (s2, z2) == (1.0, 0)
    assert ep.quantize(torch.zeros(0), 0.1).shape == (0,)


def test_every_alignment() -> None:
    """Contiguous slices starting at each float offset: the SIMD kernels peel a head to align."""
    base = np.tile(edge_values(), 3)
    qbase = ref.quantize(base, 0.5, 3)
    for k in range(17):
        for n in (5, 70, 1000):
            x = base[k: k + n]
            assert np.array_equal(ep.quantize(x, 0.5, 3), ref.quantize(x, 0.5, 3)), (k, n)
            q = qbase[k: k + n]
            assert ref.same_bits(ep.dequantize(q, 0.5, 3), ref.dequantize(q, 0.5, 3)), (k, n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_fast_path_values(dtype: str, threads: int) -> None:
    """Contiguous CPU tensors go through raw addresses: same values as the numpy path."""
    x = np.tile(edge_values(), 200)
    for zp in ZPS[dtype]:
        q = ep.quantize(torch.from_numpy(x), 0.37, zp, dtype=dtype)
        assert q.dtype == (torch.int8 if dtype == "int8" else torch.uint8)
        assert np.array_equal(q.numpy(), ref.quantize(x, 0.37, zp, dtype=dtype))
        d = ep.dequantize(q, 0.37, zp)
        assert d.dtype == torch.float32
        assert ref.same_bits(d.numpy(), ref.dequantize(q.numpy(), 0.37, zp))
    with pytest.raises(ValueError, match="NaN"):
        ep.quantize(torch.tensor([1.0, float("nan")] * 40), 0.1)
    with pytest.raises(ValueError, match="scale"):
        ep.dequantize(torch.zeros(4, dtype=torch.int8), -1.0)


def test_dequantize_large(threads: int) -> None:
    """A 32 MiB+ output per thread chunk (DRAM-sized, where store tricks would kick in)."""
    n = (1 << 23) * threads + 77
    q = np.resize(np.arange(-128, 128, dtype=np.int8), n)
    d = ep.dequantize(q, 0.37, 3)
    assert ref.same_bits(d, ref.dequantize(q, 0.37, 3))
