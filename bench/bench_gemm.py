"""int8 linear layer benchmark: edgepack.linear_int8 against torch fp32 nn.Linear and torch's
dynamic int8 Linear (torch.ao.quantization.quantize_dynamic, x86/FBGEMM engine), 1 and 2 threads.

Run:  PYTHONPATH=python python -m pytest bench/bench_gemm.py --benchmark-only -q
      (add --benchmark-timer=time.thread_time -k t1 to time 1-thread cases in CPU time, which
      shields them from other processes on a shared machine; EDGEPACK_AMX=0 times the AVX-512
      VNNI kernels on a machine where AMX-INT8 would otherwise run)

Each case checks once, then times (pytest-benchmark medians). At the end of the module a table
gives GOP/s (2*M*K*N per call, dynamic activation quantization included for both int8 paths),
the ISA edgepack dispatched, and edgepack's ratio to each peer in the same run.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

import edgepack as ep
from edgepack import reference as R

SHAPES = [
    (1, 768, 768),
    (1, 1024, 1024),
    (1, 4096, 4096),
    (1, 8192, 8192),
    (8, 1024, 1024),
    (32, 768, 3072),
    (128, 768, 3072),
    (512, 768, 3072),
    (128, 4096, 4096),
]
THREADS = [1, 2]
IMPLS = ["torch_fp32", "torch_int8", "edgepack"]

_results: dict[tuple[int, int, int, int, str], float] = {}
_layers: dict[tuple[int, int], tuple[torch.nn.Linear, torch.nn.Module, ep.PackedLinear]] = {}


def _engine() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else "fbgemm"


def _layer(k: int, n: int) -> tuple[torch.nn.Linear, torch.nn.Module, ep.PackedLinear]:
    """One nn.Linear per (K, N), its torch dynamic-int8 twin and edgepack's packed copy."""
    if (k, n) not in _layers:
        _layers.clear()  # keep memory flat: shapes are visited in order
        torch.manual_seed(0)
        lin = torch.nn.Linear(k, n).eval()
        torch.backends.quantized.engine = _engine()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qlin = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
            ).eval()
        w_q, scale = ep.quantize_weights(lin.weight.detach())
        packed = ep.pack_weights(w_q, scale, bias=lin.bias.detach())
        _layers[(k, n)] = (lin, qlin, packed)
    return _layers[(k, n)]


def _check(x: torch.Tensor, lin: torch.nn.Linear, packed: ep.PackedLinear) -> None:
    """edgepack equals its spec bit for bit (first rows) and tracks fp32 closely."""
    w_q, scale, bias = packed.unpack()
    rows = x[:2].numpy()
    y = ep.linear_int8(x, packed).numpy()
    ref = R.linear_int8_ref(rows, w_q, scale, bias)
    assert np.array_equal(y[:2].view(np.int32), ref.view(np.int32))
    with torch.no_grad():
        y32 = lin(x).numpy()
    err = np.abs(y - y32).max() / (np.abs(y32).max() + 1e-12)
    assert err < 0.05, f"relative error {err:.3g} vs fp32"


class _Summary:
    """Prints the ratio table in pytest's terminal summary (registered by the fixture below)."""

    def __init__(self, timer: str) -> None:
        self.timer = timer

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001
        if not _results:
            return
        tr = terminalreporter
        isa = ep.cpu_info()["kernels"]["gemm"]
        wide = ep._core.kernel_families()["gemm"].get("wide")
        tr.write_sep("-", "edgepack linear_int8 vs torch")
        tr.write_line(
            f"ISA {isa} (two-panel kernel: {wide}), torch engine {_engine()}, timer {self.timer}; "
            "GOP/s = 2*M*K*N / median time; x 2thr = edgepack 1-thread time / 2-thread time"
        )
        tr.write_line(
            f"{'M':>4} {'K':>5} {'N':>5} {'thr':>3} {'fp32':>8} {'int8':>8} {'edgepack':>9}"
            f" {'vs fp32':>8} {'vs int8':>8} {'x 2thr':>7}"
        )
        for m, k, n in SHAPES:
            for t in THREADS:
                times = [_results.get((m, k, n, t, impl)) for impl in IMPLS]
                if any(v is None for v in times):
                    continue
                tf, ti, te = (float(v) for v in times)  # type: ignore[arg-type]
                gop = 2.0 * m * k * n / 1e9
                one = _results.get((m, k, n, 1, "edgepack"))
                scale2 = f"{one / te:7.2f}" if (t == 2 and one) else ""
                tr.write_line(
                    f"{m:>4} {k:>5} {n:>5} {t:>3} {gop / tf:8.1f} {gop / ti:8.1f}"
                    f" {gop / te:9.1f} {tf / te:7.2f}x {ti / te:7.2f}x {scale2}"
                )


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("edgepack_gemm_summary"):
        timer = str(request.config.getoption("benchmark_timer", default="time.perf_counter"))
        pm.register(_Summary(timer), "edgepack_gemm_summary")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", THREADS, ids=[f"t{t}" for t in THREADS])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
def test_linear(benchmark, shape: tuple[int, int, int], threads: int, impl: str) -> None:
    m, k, n = shape
    lin, qlin, packed = _layer(k, n)
    torch.set_num_threads(threads)
    ep.set_num_threads(threads)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m * k))
    if impl == "edgepack" and threads == 1:
        _check(x, lin, packed)
    if impl == "torch_fp32":
        fn = lambda: lin(x)  # noqa: E731
    elif impl == "torch_int8":
        fn = lambda: qlin(x)  # noqa: E731
    else:
        fn = lambda: ep.linear_int8(x, packed)  # noqa: E731
    gop = 2.0 * m * k * n / 1e9
    with torch.no_grad():
        fn()  # warm: weights into cache, thread pools started
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        rounds = max(5, min(200, int(0.3 / max(once, 1e-6))))
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)
    if benchmark.stats is None:  # --benchmark-disable: the call above was the smoke test
        return
    med = benchmark.stats.stats.median
    _results[(m, k, n, threads, impl)] = med
    benchmark.extra_info.update(
        {"gop": gop, "gops": gop / med, "isa": ep.cpu_info()["kernels"]["gemm"], "threads": threads}
    )
