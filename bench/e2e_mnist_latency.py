"""Batch-1 / batch-N latency of the issue-5 MNIST CNN: torch fp32 eager vs edgepack.compress,
same thread count for both, measured interleaved (torch block, edgepack block, ...) and reported
as medians, so machine noise hits both sides alike. Untrained weights: latency only.

    PYTHONPATH=python python3 bench/e2e_mnist_latency.py [--threads 1 2] [--batch 1 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

import edgepack
from edgepack.demo import reference_cnn


def _block(f: Callable[[], object], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = reference_cnn().eval()
    comp = edgepack.compress(model)
    print(f"cpu: {edgepack.cpu_info()['kernels']}")
    for th in args.threads:
        torch.set_num_threads(th)
        edgepack.set_num_threads(th)
        for bs in args.batch:
            x = torch.randn(bs, 1, 28, 28)
            n = max(5, 200 // bs)
            with torch.inference_mode():
                for _ in range(20):
                    model(x)
                    comp(x)
                tt, te = [], []
                for _ in range(args.reps):
                    tt.append(_block(lambda x=x: model(x), n))
                    te.append(_block(lambda x=x: comp(x), n))
            a, b = statistics.median(tt), statistics.median(te)
            print(f"threads={th} batch={bs}: torch fp32 {a:.1f} us, edgepack int8 {b:.1f} us, "
                  f"speedup {a / b:.2f}x")


if __name__ == "__main__":
    main()
