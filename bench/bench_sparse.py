"""Sparse int8 linear vs dense peers, 1 thread (pytest-benchmark; checks, then times).

    PYTHONPATH=python python3 -m pytest bench/bench_sparse.py --benchmark-only -s \
        --benchmark-timer=time.process_time        # CPU time: robust on a shared machine
    PYTHONPATH=python python3 bench/bench_sparse.py [--quick]      # table + crossover, no plugin

Shapes: K = N in {1024, 4096}, M in {1, 8, 32, 128}; 1x4 block-pruned weights at 50/60/70/80/90/95%.
Peers, in the same run: edgepack's dense linear_int8 (when this build has it), torch dynamic int8
(torch.ao.quantization.quantize_dynamic on nn.Linear) and torch.ao.nn.sparse's dynamic sparse
linear (1x4 blocks; it only has a QNNPACK engine on x86, and only at 90%, as it is slow).
Ratios, not absolute times, mean something on a shared machine. The last test prints the table
and, per (K, M), the crossover sparsity from which sparse beats each dense peer.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np
import pytest

import edgepack
from edgepack.reference import dynamic_quant_rows_ref, epilogue_ref

warnings.filterwarnings("ignore")  # torch.ao deprecation noise

KS = (1024, 4096)
MS = (1, 8, 32, 128)
SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # 60%: the crossover target
HAVE_DENSE = hasattr(edgepack, "linear_int8") and hasattr(edgepack, "pack_weights")
RESULTS: dict[tuple[str, int, int, float], float] = {}  # (impl, K, M, sparsity) -> seconds


def block_pruned(n: int, k: int, sparsity: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = rng.random((n, k // 4)) >= sparsity
    w = rng.integers(-127, 128, size=(n, k), dtype=np.int16).astype(np.int8)
    return np.ascontiguousarray(w * np.repeat(keep, 4, axis=1).astype(np.int8))


_LAYERS: dict[tuple[int, float], tuple[np.ndarray, np.ndarray, np.ndarray, Any]] = {}


def layer(k: int, sparsity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    key = (k, sparsity)
    if key not in _LAYERS:
        w = block_pruned(k, k, sparsity, seed=int(sparsity * 100))
        scale = np.full(k, 0.01, np.float32)
        bias = np.linspace(-1, 1, k, dtype=np.float32)
        _LAYERS.clear()  # keep memory bounded: one layer at a time
        _LAYERS[key] = (w, scale, bias, edgepack.pack_sparse(w, scale, bias=bias))
    return _LAYERS[key]


def exact_ref(x: np.ndarray, w: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """reference.linear_int8_ref with the integer product done in float64 (exact: every partial
    sum is an integer below 2**53), so checking 4096 x 4096 takes BLAS time, not minutes."""
    a, s, z = dynamic_quant_rows_ref(x)
    acc = (a.astype(np.float64) - z[:, None]) @ w.astype(np.float64).T
    return epilogue_ref(acc.astype(np.int32), s, scale, bias, False)


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    edgepack.set_num_threads(1)


def torch_dense_dynamic(w: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> Any:
    import torch

    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w.astype(np.float32) * scale[:, None]))
        lin.bias.copy_(torch.from_numpy(bias))
    return torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
    )


def torch_sparse_dynamic(w: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> Any | None:
    """torch.ao.nn.sparse dynamic linear (1x4), or None where no engine runs it."""
    import torch
    import torch.ao.nn.sparse.quantized.dynamic as sqd

    old = torch.backends.quantized.engine
    try:
        if "qnnpack" not in torch.backends.quantized.supported_engines:
            return None
        torch.backends.quantized.engine = "qnnpack"
        wf = torch.from_numpy(w.astype(np.float32) * float(scale.max()))
        m = sqd.Linear(w.shape[1], w.shape[0], 1, 4)
        qw = torch.quantize_per_tensor(wf, float(scale.max()), 0, torch.qint8)
        m.set_weight_bias(qw, torch.from_numpy(bias), 1, 4)
        m(torch.zeros(1, w.shape[1]))
        return m
    except Exception:  # noqa: BLE001 - "where it runs"
        return None
    finally:
        torch.backends.quantized.engine = old


def _median(fn: Callable[[], Any], min_time: float = 0.2, max_reps: int = 200) -> float:
    """Median CPU time of one call (1 thread everywhere, so CPU time = compute time; unlike
    wall time it does not count the time other jobs on this shared machine hold the core)."""
    fn()
    ts: list[float] = []
    start = time.perf_counter()
    while len(ts) < 3 or (time.perf_counter() - start < min_time and len(ts) < max_reps):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return float(np.median(ts))


def _record(benchmark: Any, key: tuple[str, int, int, float], fn: Callable[[], Any]) -> None:
    one_thread()
    k, m = key[1], key[2]
    if key[0] == "torch_sparse":
        benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn)
    if benchmark.stats is None:  # --benchmark-disable: the call above was the smoke test
        return
    t = float(benchmark.stats.stats.median)
    RESULTS[key] = t
    benchmark.extra_info.update(
        impl=key[0],
        K=k,
        N=k,
        M=m,
        sparsity=key[3],
        threads=1,
        isa=edgepack.cpu_info()["kernels"].get("sparse"),
        dense_equiv_gops=2.0 * m * k * k / t / 1e9,
    )


# ---- pytest-benchmark -------------------------------------------------------------------------


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_edgepack_sparse(benchmark, k, m, sparsity):
    w, scale, bias, p = layer(k, sparsity)
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    np.testing.assert_array_equal(edgepack.sparse_linear_int8(x, p), exact_ref(x, w, scale, bias))
    benchmark.extra_info["packed_over_dense_bytes"] = p.nbytes / (k * k)
    _record(
        benchmark, ("edgepack_sparse", k, m, sparsity), lambda: edgepack.sparse_linear_int8(x, p)
    )


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", MS)
def test_edgepack_dense(benchmark, k, m):
    if not HAVE_DENSE:
        pytest.skip("edgepack.linear_int8 (dense GEMM) is not in this build")
    w, scale, bias, _ = layer(k, 0.5)
    d = edgepack.pack_weights(w, scale, bias=bias)
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    _record(benchmark, ("edgepack_dense", k, m, 0.0), lambda: edgepack.linear_int8(x, d))


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", MS)
def test_torch_dynamic_int8(benchmark, k, m):
    torch = pytest.importorskip("torch")
    w, scale, bias, _ = layer(k, 0.5)
    q = torch_dense_dynamic(w, scale, bias)
    x = torch.from_numpy(np.random.default_rng(m).standard_normal((m, k)).astype(np.float32))

    def run() -> Any:
        with torch.no_grad():
            return q(x)

    _record(benchmark, ("torch_int8", k, m, 0.0), run)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", MS)
def test_torch_sparse_dynamic(benchmark, k, m):
    torch = pytest.importorskip("torch")
    w, scale, bias, _ = layer(k, 0.9)
    mod = torch_sparse_dynamic(w, scale, bias)
    if mod is None:
        pytest.skip("torch.ao.nn.sparse dynamic linear has no engine here")
    x = torch.from_numpy(np.random.default_rng(m).standard_normal((m, k)).astype(np.float32))
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"
    try:
        _record(benchmark, ("torch_sparse", k, m, 0.9), lambda: mod(x))
    finally:
        torch.backends.quantized.engine = old


@pytest.fixture(scope="module", autouse=True)
def _print_report_at_end():
    """Prints the ratio table and crossovers after the module's benchmarks (also under
    --benchmark-only, which skips plain tests)."""
    yield
    if RESULTS:
        print("\n" + report(RESULTS))


# ---- table --------------------------------------------------------------------------------------


def crossover(res: dict[tuple[str, int, int, float], float], peer: str, k: int, m: int) -> str:
    """Lowest measured sparsity from which sparse is faster than `peer` at every higher level."""
    t_peer = res.get((peer, k, m, 0.0))
    if t_peer is None:
        return "n/a"
    wins = [s for s in SPARSITIES if res.get(("edgepack_sparse", k, m, s), np.inf) < t_peer]
    lowest = None
    for s in sorted(SPARSITIES, reverse=True):
        if s in wins:
            lowest = s
        else:
            break
    return f"{lowest:.0%}" if lowest is not None else "> 95%"


def report(res: dict[tuple[str, int, int, float], float]) -> str:
    isa = edgepack.cpu_info()["kernels"].get("sparse")
    amx = "off (EDGEPACK_AMX=0)" if os.environ.get("EDGEPACK_AMX") == "0" else "where usable"
    lines = [
        f"sparse int8 linear, 1 thread, ISA {isa}, 1x4 blocks, K = N; times in us; "
        "ratio = peer time / sparse time (> 1: sparse faster)",
        f"edgepack_dense: linear_int8, AMX {amx}",
    ]
    head = f"{'K':>5} {'M':>4} {'sparsity':>8} {'sparse':>9} {'GOP/s*':>7}"
    peers = [
        p
        for p in ("edgepack_dense", "torch_int8", "torch_sparse")
        if any(key[0] == p for key in res)
    ]
    for p in peers:
        head += f" {p:>15} {'ratio':>6}"
    lines.append(head)
    for k in KS:
        for m in MS:
            for s in SPARSITIES:
                t = res.get(("edgepack_sparse", k, m, s))
                if t is None:
                    continue
                row = f"{k:>5} {m:>4} {s:>8.0%} {t * 1e6:>9.1f} {2 * m * k * k / t / 1e9:>7.1f}"
                for p in peers:
                    tp = res.get((p, k, m, 0.9 if p == "torch_sparse" else 0.0))
                    if tp is None or (p == "torch_sparse" and s != 0.9):
                        row += f" {'':>15} {'':>6}"
                    else:
                        row += f" {tp * 1e6:>15.1f} {tp / t:>6.2f}"
                lines.append(row)
    lines.append("GOP/s* = dense-equivalent (2*M*N*K / time)")
    lines.append("crossover (lowest sparsity from which sparse wins):")
    for k in KS:
        for m in MS:
            cs = ", ".join(
                f"vs {p}: {crossover(res, p, k, m)}" for p in ("edgepack_dense", "torch_int8")
            )
            lines.append(f"  K=N={k} M={m}: {cs}")
    return "\n".join(lines)


def _interleaved(fns: dict[Any, Callable[[], Any]], rounds: int) -> dict[Any, float]:
    """Median per-call time of each fn, timed round-robin (one call of each per round), so a
    burst of load from other jobs on this shared machine hits every peer alike. Timer:
    time.thread_time (CPU time of this thread; everything runs on 1 thread)."""
    for fn in fns.values():
        fn()
    ts: dict[Any, list[float]] = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.thread_time()
            fn()
            ts[key].append(time.thread_time() - t0)
    return {key: float(np.median(v)) for key, v in ts.items()}


def main(argv: list[str]) -> None:
    """Script mode: per (K, M), every implementation timed interleaved (see _interleaved)."""
    import torch

    one_thread()
    quick = "--quick" in argv
    res: dict[tuple[str, int, int, float], float] = {}
    sizes: dict[tuple[int, float], float] = {}
    for k in KS:
        w, scale, bias, _ = layer(k, 0.5)
        q = torch_dense_dynamic(w, scale, bias)
        d = edgepack.pack_weights(w, scale, bias=bias) if HAVE_DENSE else None
        packs = {}
        for s in SPARSITIES:
            ws, _, _, p = layer(k, s)  # same seed, scale and bias as w, scale, bias above
            packs[s] = (ws, p)
            sizes[(k, s)] = packs[s][1].nbytes / (k * k)
        mod = None if quick else torch_sparse_dynamic(packs[0.9][0], scale, bias)
        for m in MS:
            x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
            xt = torch.from_numpy(x)
            fns: dict[Any, Callable[[], Any]] = {}

            def tq(q: Any = q, xt: Any = xt) -> Any:
                with torch.no_grad():
                    return q(xt)

            fns[("torch_int8", k, m, 0.0)] = tq
            if d is not None:
                fns[("edgepack_dense", k, m, 0.0)] = lambda x=x, d=d: edgepack.linear_int8(x, d)
            for s in SPARSITIES:
                ws, p = packs[s]
                if m <= 8:
                    np.testing.assert_array_equal(
                        edgepack.sparse_linear_int8(x, p), exact_ref(x, ws, scale, bias)
                    )
                fns[("edgepack_sparse", k, m, s)] = lambda x=x, p=p: edgepack.sparse_linear_int8(
                    x, p
                )
            macs = m * k * k
            rounds = int(min(200, max(9, 3e9 / macs))) // (3 if quick else 1) + 3
            res.update(_interleaved(fns, rounds))
            if mod is not None:
                old = torch.backends.quantized.engine
                torch.backends.quantized.engine = "qnnpack"
                res[("torch_sparse", k, m, 0.9)] = _median(lambda mod=mod, xt=xt: mod(xt), 0.0, 3)
                torch.backends.quantized.engine = old
            print(f"done K={k} M={m} rounds={rounds}", file=sys.stderr, flush=True)
    print(report(res))
    print("packed sparse bytes / dense int8 bytes (K*N):")
    for k in KS:
        print(f"  K=N={k}: " + ", ".join(f"{s:.0%}: {sizes[(k, s)]:.3f}" for s in SPARSITIES))


if __name__ == "__main__":
    main(sys.argv[1:])
