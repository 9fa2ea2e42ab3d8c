"""Bad input gets a clear Python exception naming the argument, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgepack as ep

X = np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 8)
Q = np.arange(64, dtype=np.int8).reshape(8, 8)


@pytest.mark.parametrize("x", [X.astype(np.float64), X.astype(np.float16), Q, X.astype(">f4")])
def test_quantize_wrong_dtype(x: np.ndarray) -> None:
    with pytest.raises(TypeError, match="x must have dtype float32"):
        ep.quantize(x, 0.1)


def test_wrong_container() -> None:
    with pytest.raises(TypeError, match="x must be a numpy array or a torch tensor"):
        ep.quantize([1.0, 2.0], 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="q must have dtype int8 or uint8"):
        ep.dequantize(X, 0.1)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        ep.quantize(torch.zeros(3, dtype=torch.float64), 0.1)
    with pytest.raises(TypeError, match="quantized"):
        ep.dequantize(torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.qint8), 0.1)


def test_non_cpu_device() -> None:
    for fn in (lambda t: ep.quantize(t, 0.1), lambda t: ep.quantize_dynamic(t),
               lambda t: ep.choose_qparams(t)):
        with pytest.raises(ValueError, match="device 'meta'"):
            fn(torch.empty(4, device="meta"))
    with pytest.raises(ValueError, match="device 'meta'"):
        ep.dequantize(torch.empty(4, dtype=torch.int8, device="meta"), 0.1)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), 1e-46, 1e39])
def test_bad_scale(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        ep.quantize(X, scale)
    with pytest.raises(ValueError, match="scale"):
        ep.dequantize(Q, scale)
    with pytest.raises(ValueError, match="scale"):
        ep.quantize(X, np.full(8, scale), axis=0)
    with pytest.raises(ValueError, match="scale"):
        ep.dequantize(Q, np.array([0.1] * 7 + [scale]), axis=1)


@pytest.mark.parametrize(("dtype", "zp"), [("int8", 128), ("int8", -129), ("uint8", -1),
                                           ("uint8", 256), ("int8", 2**40)])
def test_zero_point_out_of_range(dtype: str, zp: int) -> None:
    with pytest.raises(ValueError, match="zero_point"):
        ep.quantize(X, 0.1, zp, dtype=dtype)
    with pytest.raises(ValueError, match="zero_point"):
        ep.quantize(X, 0.1, np.full(8, zp, np.int64), axis=1, dtype=dtype)
    q = Q if dtype == "int8" else Q.view(np.uint8)
    with pytest.raises(ValueError, match="zero_point"):
        ep.dequantize(q, 0.1, zp)


def test_zero_point_not_integer() -> None:
    with pytest.raises(ValueError, match="zero_point"):
        ep.quantize(X, 0.1, 1.5)
    with pytest.raises(ValueError, match="zero_point"):
        ep.quantize(X, 0.1, [0.5] * 8, axis=0)


def test_scale_count() -> None:
    with pytest.raises(ValueError, match="one scale"):
        ep.quantize(X, [0.1, 0.2])
    with pytest.raises(ValueError, match="scale has 3 entries but axis 1 has length 8"):
        ep.quantize(X, [0.1, 0.2, 0.3], axis=1)
    with pytest.raises(ValueError, match="zero_point has 2 entries"):
        ep.quantize(X, np.full(8, 0.1, np.float32), [0, 1], axis=0)
    with pytest.raises(ValueError, match="scale has 5 entries"):
        ep.dequantize(Q, np.full(5, 0.1, np.float32), axis=-1)


@pytest.mark.parametrize("axis", [2, -3, 100])
def test_axis_out_of_range(axis: int) -> None:
    for fn in (lambda: ep.quantize(X, 0.1, axis=axis), lambda: ep.dequantize(Q, 0.1, axis=axis),
               lambda: ep.choose_qparams(X, axis=axis)):
        with pytest.raises(ValueError, match=f"axis {axis} is out of range"):
            fn()


def test_axis_wrong_type() -> None:
    with pytest.raises(TypeError, match="axis"):
        ep.quantize(X, 0.1, axis=1.0)  # type: ignore[arg-type]


def test_bad_dtype_name() -> None:
    with pytest.raises(ValueError, match="dtype must be 'int8' or 'uint8'"):
        ep.quantize(X, 0.1, dtype="int4")
    with pytest.raises(ValueError, match="dtype"):
        ep.quantize_dynamic(X, dtype="float8")


def test_nan_policy() -> None:
    """NaN is never quantized silently: quantize, quantize_dynamic and choose_qparams raise
    ValueError (the C++ std::domain_error maps to ValueError); +-inf saturates in quantize but
    has no finite scale in quantize_dynamic / choose_qparams."""
    for n in (1, 5, 64, 1000, 100_000):
        x = np.zeros(n, np.float32)
        x[n // 2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            ep.quantize(x, 0.1)
        with pytest.raises(ValueError, match="NaN"):
            ep.quantize(x.reshape(1, -1), np.ones(1, np.float32), axis=0)
        with pytest.raises(ValueError, match="NaN"):
            ep.quantize(x.reshape(-1, 1), np.ones(1, np.float32), axis=1)
        with pytest.raises(ValueError, match="NaN"):
            ep.quantize_dynamic(x)
        with pytest.raises(ValueError, match="NaN"):
            ep.quantize_dynamic(x.reshape(1, -1), per_row=True)
        with pytest.raises(ValueError, match="NaN"):
            ep.choose_qparams(x)
        with pytest.raises(ValueError, match="NaN"):
            ep.choose_qparams(x.reshape(1, -1), axis=0)
        x[n // 2] = np.inf
        assert ep.quantize(x, 0.1)[n // 2] == 127
        with pytest.raises(ValueError, match="inf|non-finite"):
            ep.quantize_dynamic(x)
        with pytest.raises(ValueError, match="inf|non-finite"):
            ep.quantize_dynamic(x.reshape(1, -1), per_row=True)
        with pytest.raises(ValueError, match="non-finite"):
            ep.choose_qparams(x)


def test_huge_negative_is_not_nan() -> None:
    """-inf and values below -2^31 * scale take the SIMD kernels' rescan path: no false NaN."""
    x = np.full(1000, -np.inf, np.float32)
    x[::3] = -3e9
    assert np.all(ep.quantize(x, 1.0) == -128)
    assert np.all(ep.quantize(x, 1.0, 7, dtype="uint8") == 0)


def test_out_must_not_alias_or_be_readonly() -> None:
    ro = np.empty(64, np.int8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ep.quantize(X.reshape(-1), 0.1, out=ro)
    with pytest.raises(TypeError, match="out"):
        ep.quantize(X, 0.1, out=[0] * 64)  # type: ignore[arg-type]
