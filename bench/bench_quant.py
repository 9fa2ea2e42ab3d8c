"""Quantization kernels vs torch / numpy (pytest-benchmark), from the same registry as
`edgepack bench` (edgepack._bench.ENTRIES).

    pytest bench/bench_quant.py --benchmark-group-by=param:case --benchmark-columns=median

Each case is verified against its numpy spec once before timing. Gelem/s and GB/s are stored
in extra_info (and shown with --benchmark-verbose / in the JSON)."""

from __future__ import annotations

import pytest

import edgepack
from edgepack import _bench

SIZES = [1 << 16, 1 << 20, 1 << 24]
CASES = [(e.name, n) for e in _bench.ENTRIES for n in SIZES]


def _impls(name: str, n: int) -> list[str]:
    case = next(e for e in _bench.ENTRIES if e.name == name).make(min(n, 1 << 10))
    return ["edgepack", *case.peers]


@pytest.mark.parametrize(
    ("case", "impl"),
    [(f"{name}-{n}", impl) for name, n in CASES for impl in _impls(name, n)],
)
def test_bench(benchmark, case: str, impl: str) -> None:
    name, n_s = case.rsplit("-", 1)
    n = int(n_s)
    c = next(e for e in _bench.ENTRIES if e.name == name).make(n)
    assert c.check(), f"{name} n={n} does not match its numpy spec"
    fn = c.edgepack if impl == "edgepack" else c.peers[impl]
    benchmark.extra_info.update(
        isa=edgepack.cpu_info()["isa"], threads=1, elements=n, op=c.op, impl=impl)
    benchmark.pedantic(fn, rounds=15 if n >= 1 << 24 else 50, warmup_rounds=1)
    med = benchmark.stats.stats.median
    benchmark.extra_info["gelem_s"] = n / med / 1e9
    benchmark.extra_info["gb_s"] = c.bytes_moved / med / 1e9
    gbs = c.bytes_moved / med / 1e9
    print(f"\n{c.op} n={n} {impl}: {n / med / 1e9:.2f} Gelem/s, {gbs:.1f} GB/s")
