"""`edgepack bench`: check every kernel against its numpy spec, then time it next to torch/numpy.

A benchmark is a `BenchEntry` in `ENTRIES`: later kernel families (GEMM, sparse) add theirs with
`register()`, and the CLI and bench/ pick them up. Timings are medians of repeated runs at one
thread count; ratios against the peer measured in the same run are what to compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Fn = Callable[[], object]


@dataclass
class Case:
    """One operation at one size: the edgepack call, its peers, and a correctness check."""

    op: str
    n: int  # elements
    bytes_moved: int  # bytes read + written by one call (for GB/s)
    edgepack: Fn
    check: Callable[[], bool]
    peers: dict[str, Fn] = field(default_factory=dict)
    # Other ways to call edgepack, e.g. "out=" (preallocated output, no page faults).
    variants: dict[str, Fn] = field(default_factory=dict)


def memcpy_peer(nbytes: int) -> Fn:
    """np.copyto of nbytes / 2 bytes: reads + writes the same total bytes as the operation."""
    m = max(nbytes // 2, 1)
    src = np.ones(m, np.uint8)
    dst = np.empty(m, np.uint8)
    return lambda: np.copyto(dst, src)


@dataclass
class BenchEntry:
    name: str
    family: str
    make: Callable[[int], Case]


ENTRIES: list[BenchEntry] = []


def register(entry: BenchEntry) -> BenchEntry:
    ENTRIES.append(entry)
    return entry


def _torch() -> object:
    import torch

    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    return torch


# ---- quant entries ------------------------------------------------------------------------------

SCALE = 0.02
MEMCPY = "memcpy, same bytes (vs out=)"


def _data(n: int) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(n) * 1.5).astype(np.float32)


def _quant_per_tensor(n: int) -> Case:
    import edgepack as ep

    from .reference import quantize_ref

    torch: object = _torch()
    x = _data(n)
    xt = torch.from_numpy(x)  # type: ignore[attr-defined]
    inv = np.float32(1.0) / np.float32(SCALE)
    qint8 = torch.qint8  # type: ignore[attr-defined]
    qpt = torch.quantize_per_tensor  # type: ignore[attr-defined]
    out = np.empty(n, np.int8)
    return Case(
        "quantize per-tensor int8", n, 5 * n,
        edgepack=lambda: ep.quantize(x, SCALE, 0),
        check=lambda: bool(np.array_equal(
            ep.quantize(x, SCALE, 0),
            quantize_ref(x, np.array(SCALE, np.float32), np.array(0, np.int32), -128, 127)
            .astype(np.int8))),
        peers={
            "torch.quantize_per_tensor": lambda: qpt(xt, SCALE, 0, qint8),
            "numpy": lambda: np.clip(np.rint(x * inv), -128, 127).astype(np.int8),
            MEMCPY: memcpy_peer(5 * n),
        },
        variants={"out=": lambda: ep.quantize(x, SCALE, 0, out=out),
                  "torch in/out": lambda: ep.quantize(xt, SCALE, 0)},
    )


def _quant_per_channel(n: int, last: bool = False) -> Case:
    import edgepack as ep

    from .reference import quantize_ref

    torch: object = _torch()
    import math

    # axis 0: a square-ish weight matrix [c, n / c] quantized per row, like a Linear weight;
    # last: [n / c, c] with c = 256 channels on the last axis (per-element scale vectors)
    if last:
        c = 256 if n % 256 == 0 else 1
    else:
        c = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    x = _data(n).reshape(-1, c) if last else _data(n).reshape(c, -1)
    ax = 1 if last else 0
    s = np.random.default_rng(1).uniform(0.01, 0.03, c).astype(np.float32)
    z = np.zeros(c, np.int32)
    xt = torch.from_numpy(x)  # type: ignore[attr-defined]
    st = torch.from_numpy(s).double()  # type: ignore[attr-defined]
    zt = torch.from_numpy(z).long()  # type: ignore[attr-defined]
    qpc = torch.quantize_per_channel  # type: ignore[attr-defined]
    qint8 = torch.qint8  # type: ignore[attr-defined]
    shp = (1, c) if last else (c, 1)
    inv = (np.float32(1.0) / s).reshape(shp)
    return Case(
        f"quantize per-channel int8 [{x.shape[0]}x{x.shape[1]}] axis {ax}", n, 5 * n,
        edgepack=lambda: ep.quantize(x, s, z, axis=ax),
        check=lambda: bool(np.array_equal(
            ep.quantize(x, s, z, axis=ax),
            quantize_ref(x, s.reshape(shp), z.reshape(shp), -128, 127).astype(np.int8))),
        peers={
            "torch.quantize_per_channel": lambda: qpc(xt, st, zt, ax, qint8),
            "numpy": lambda: np.clip(np.rint(x * inv), -128, 127).astype(np.int8),
        },
    )


def _dequant(n: int) -> Case:
    import edgepack as ep

    torch: object = _torch()
    x = _data(n)
    q = ep.quantize(x, SCALE, 0)
    qt = torch.quantize_per_tensor(torch.from_numpy(x), SCALE, 0, torch.qint8)  # type: ignore[attr-defined]
    s32 = np.float32(SCALE)
    out = np.empty(n, np.float32)
    qtr = torch.from_numpy(q)  # type: ignore[attr-defined]
    return Case(
        "dequantize per-tensor int8", n, 5 * n,
        edgepack=lambda: ep.dequantize(q, SCALE, 0),
        check=lambda: bool(np.array_equal(
            ep.dequantize(q, SCALE, 0).view(np.uint32),
            (q.astype(np.float32) * s32).astype(np.float32).view(np.uint32))),
        peers={
            "torch dequantize": lambda: qt.dequantize(),
            "numpy": lambda: q.astype(np.float32) * s32,
            MEMCPY: memcpy_peer(5 * n),
        },
        variants={"out=": lambda: ep.dequantize(q, SCALE, 0, out=out),
                  "torch in/out": lambda: ep.dequantize(qtr, SCALE, 0)},
    )


def _dynamic(n: int) -> Case:
    import edgepack as ep

    from .reference import quantize_ref

    torch: object = _torch()
    x = _data(n)
    xt = torch.from_numpy(x)  # type: ignore[attr-defined]
    qptd = torch.quantize_per_tensor_dynamic  # type: ignore[attr-defined]
    quint8 = torch.quint8  # type: ignore[attr-defined]

    def check() -> bool:
        q, s, z = ep.quantize_dynamic(x, dtype="uint8")
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        want_s = np.float32((hi - lo) / 255.0)
        s32, z32 = np.array(s, np.float32), np.array(z, np.int32)
        want = quantize_ref(x, s32, z32, 0, 255).astype(np.uint8)
        return bool(s == want_s and np.array_equal(q, want))

    return Case(
        "quantize_dynamic per-tensor uint8", n, 9 * n,
        edgepack=lambda: ep.quantize_dynamic(x, dtype="uint8"),
        check=check,
        peers={"torch.quantize_per_tensor_dynamic": lambda: qptd(xt, quint8, False)},
    )


register(BenchEntry("quantize", "quant", _quant_per_tensor))
register(BenchEntry("quantize_per_channel", "quant", _quant_per_channel))
register(BenchEntry("quantize_per_channel_last", "quant",
                    lambda n: _quant_per_channel(n, last=True)))
register(BenchEntry("dequantize", "quant", _dequant))
register(BenchEntry("quantize_dynamic", "quant", _dynamic))


# ---- timing -------------------------------------------------------------------------------------

def time_many(fns: list[Fn], budget_s: float = 0.25, repeats: int = 7) -> list[float]:
    """Median seconds per call of each fn. Batches of the fns are interleaved, so on a shared,
    noisy machine all of them see the same interference and their ratios stay meaningful."""
    numbers = []
    for fn in fns:
        fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        numbers.append(max(1, int(budget_s / repeats / len(fns) / one)))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(numbers[i]):
                fn()
            samples[i].append((time.perf_counter() - t0) / numbers[i])
    return [float(np.median(s)) for s in samples]


# ---- kernel checks on every ISA ----------------------------------------------------------------

_CHECK_SNIPPET = """
import sys
from edgepack._bench import check_current_isa
sys.exit(0 if check_current_isa() else 1)
"""


def check_current_isa() -> bool:
    """Every registered case at odd and round sizes vs its numpy spec (this process's ISA)."""
    ok = True
    for entry in ENTRIES:
        for n in (1, 63, 1000, 65537):
            if not entry.make(n).check():
                print(f"  MISMATCH {entry.name} n={n}")
                ok = False
    return ok


def check_all_isas() -> dict[str, bool]:
    """Run check_current_isa() under EDGEPACK_ISA=<level> for every level this CPU supports."""
    import edgepack as ep

    results = {}
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(ep.__file__)))
    for isa in ep.cpu_info()["supported_isas"]:
        env = dict(os.environ, EDGEPACK_ISA=isa)
        env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
        r = subprocess.run([sys.executable, "-c", _CHECK_SNIPPET], env=env,
                           capture_output=True, text=True)
        results[isa] = r.returncode == 0
        if r.returncode != 0:
            print(r.stdout + r.stderr)
    return results


# ---- the table ----------------------------------------------------------------------------------

SIZES = (1 << 16, 1 << 20, 1 << 24)


def run(sizes: tuple[int, ...] = SIZES, threads: int = 1, families: tuple[str, ...] = (),
        budget_s: float = 0.5) -> list[dict[str, object]]:
    """Time every registered case; returns rows (also printed as a table)."""
    import edgepack as ep

    torch: object = _torch()
    old = ep.get_num_threads()
    old_torch = torch.get_num_threads()  # type: ignore[attr-defined]
    ep.set_num_threads(threads)
    torch.set_num_threads(threads)  # type: ignore[attr-defined]
    rows: list[dict[str, object]] = []
    try:
        print(f"edgepack {ep.__version__}  isa={ep.cpu_info()['isa']}  threads={threads}  "
              f"(median of 7 interleaved batches; x peer = peer time / edgepack time)")
        print(f"{'op':44} {'elems':>9} {'impl':34} {'Gelem/s':>8} {'GB/s':>7} {'x peer':>7}")
        for entry in ENTRIES:
            if families and entry.family not in families:
                continue
            for n in sizes:
                case = entry.make(n)
                fns = {"edgepack": case.edgepack}
                fns.update({f"edgepack {k}": v for k, v in case.variants.items()})
                fns.update(case.peers)
                times = dict(zip(fns, time_many(list(fns.values()),
                                                budget_s * (2 if n >= 1 << 24 else 1))))
                for name, t in times.items():
                    if name.startswith("edgepack"):
                        ratio = None
                    elif name == MEMCPY:
                        ratio = t / times.get("edgepack out=", times["edgepack"])
                    else:
                        ratio = t / times["edgepack"]
                    rows.append(_row(case, name, t, ratio))
    finally:
        ep.set_num_threads(old)
        torch.set_num_threads(old_torch)  # type: ignore[attr-defined]
    return rows


def _row(case: Case, impl: str, t: float, ratio: float | None) -> dict[str, object]:
    row = {"op": case.op, "n": case.n, "impl": impl, "seconds": t, "gelem_s": case.n / t / 1e9,
           "gb_s": case.bytes_moved / t / 1e9, "edgepack_speedup": ratio}
    r = "" if ratio is None else f"{ratio:6.2f}x"
    print(f"{case.op:44} {case.n:9d} {impl:34} {row['gelem_s']:8.2f} {row['gb_s']:7.1f} {r:>7}")
    return row
