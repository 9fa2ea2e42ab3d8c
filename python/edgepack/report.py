"""One honest report of what compression bought: size, latency, memory and the user's metric.

What is measured and how:
- bytes on disk: the original saved with `torch.save(model.state_dict())`, each compressed model
  with `edgepack.save` (the file a user ships); ratio = original bytes / compressed bytes.
- parameters / nonzeros: weights as stored (packed int8 layers report their logical weight
  count and nonzeros; float layers count their parameters).
- latency: wall time of `model(x)` under torch.inference_mode, p50 and p90 over `repeats` runs
  after `warmup` runs, for every (batch size, thread count); threads are set for torch
  (torch.set_num_threads) AND edgepack (edgepack.set_num_threads), then restored.
- peak memory: tensor bytes held by the model (parameters + buffers) plus the growth of the
  resident set size during one forward pass at the largest batch, measured in a forked child
  after one unmeasured forward there (Linux: the VmHWM high-water mark is reset through
  /proc/self/clear_refs, then read back from /proc/self/status). tracemalloc cannot see
  torch's allocations, RSS can. Memory the allocator already holds from earlier runs in the
  parent is reused, so the forward part is a lower bound; the child runs on one thread
  (thread pools do not survive fork).
  Reported as None where the platform does not allow the measurement.
- metric: `eval_fn(model)`, whatever the user measures (accuracy, Spearman, ...).
"""

from __future__ import annotations

import json
import math
import os
import select
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

Example = Any  # Tensor, tuple/list of tensors, or dict of tensors (model(**x))


@dataclass
class Latency:
    batch: int
    threads: int
    p50_ms: float
    p90_ms: float


@dataclass
class ModelStats:
    name: str
    file_bytes: int
    file_format: str
    params: int
    nonzeros: int
    latency: list[Latency]
    model_bytes: int
    forward_peak_bytes: Optional[int]
    metric: Optional[float]

    @property
    def peak_bytes(self) -> Optional[int]:
        if self.forward_peak_bytes is None:
            return None
        return self.model_bytes + self.forward_peak_bytes

    def lat(self, batch: int, threads: int) -> Optional[Latency]:
        for lt in self.latency:
            if lt.batch == batch and lt.threads == threads:
                return lt
        return None


@dataclass
class Report:
    """Rows: the original first, then each compressed variant. str(report) is the table."""

    rows: list[ModelStats]
    batch_sizes: tuple[int, ...]
    threads: tuple[int, ...]
    metric_name: str = "metric"
    notes: list[str] = field(default_factory=list)

    @property
    def original(self) -> ModelStats:
        return self.rows[0]

    def ratio(self, name: str) -> float:
        return self.original.file_bytes / max(1, self[name].file_bytes)

    def speedup(self, name: str, batch: int | None = None, threads: int | None = None) -> float:
        b = self.batch_sizes[0] if batch is None else batch
        t = self.threads[0] if threads is None else threads
        a, c = self.original.lat(b, t), self[name].lat(b, t)
        if a is None or c is None:
            raise KeyError(f"no latency measured at batch {b}, {t} threads")
        return a.p50_ms / c.p50_ms

    def __getitem__(self, name: str) -> ModelStats:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_sizes": list(self.batch_sizes),
            "threads": list(self.threads),
            "metric_name": self.metric_name,
            "notes": list(self.notes),
            "models": [],
        }
        for r in self.rows:
            d = asdict(r)
            d["peak_bytes"] = r.peak_bytes
            d["size_ratio"] = self.original.file_bytes / max(1, r.file_bytes)
            d["speedup_p50"] = {
                f"b{lt.batch}_t{lt.threads}": (self.original.lat(lt.batch, lt.threads).p50_ms  # type: ignore[union-attr]
                                               / lt.p50_ms)
                for lt in r.latency if self.original.lat(lt.batch, lt.threads) is not None
            }
            if r.metric is not None and self.original.metric is not None:
                d["metric_delta"] = r.metric - self.original.metric
            out["models"].append(d)
        return out

    def to_json(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    def table(self) -> str:
        hdr = ["model", "size", "x smaller", "params", "nonzero"]
        for t in self.threads:
            for b in self.batch_sizes:
                hdr.append(f"b{b} {t}t ms p50/p90")
        hdr += ["b1 speedup", "peak mem", self.metric_name, "delta"]
        rows: list[list[str]] = []
        base_bytes = self.original.file_bytes
        for r in self.rows:
            cells = [r.name, _fmt_bytes(r.file_bytes), f"{base_bytes / max(1, r.file_bytes):.1f}",
                     _fmt_count(r.params), _fmt_count(r.nonzeros)]
            for t in self.threads:
                for b in self.batch_sizes:
                    lt = r.lat(b, t)
                    cells.append("-" if lt is None else f"{lt.p50_ms:.3g}/{lt.p90_ms:.3g}")
            try:
                cells.append(f"{self.speedup(r.name):.2f}x")
            except KeyError:
                cells.append("-")
            cells.append("-" if r.peak_bytes is None else _fmt_bytes(r.peak_bytes))
            if r.metric is None:
                cells += ["-", "-"]
            else:
                cells.append(f"{r.metric:.4g}")
                base = self.original.metric
                delta = "" if base is None or r is self.original else f"{r.metric - base:+.3g}"
                cells.append(delta)
            rows.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in rows)) for i, h in enumerate(hdr)]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths)))

        line = fmt(hdr)
        sep = "-" * len(line)
        body = [fmt(cells) for cells in rows]
        fmts = sorted({r.file_format for r in self.rows[1:]})
        foot = [f"sizes: {self.original.name} torch.save(state_dict), others "
                f"{', '.join(fmts) or '-'}; {platform_line()}"]
        return "\n".join([line, sep, *body, *foot, *self.notes])

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | os.PathLike[str]) -> None:
        """PNG: size vs metric and batch-1 latency vs metric (matplotlib, Agg backend)."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        b, t = self.batch_sizes[0], self.threads[0]
        for r in self.rows:
            if r.metric is None:
                continue
            lt = r.lat(b, t)
            axes[0].scatter(r.file_bytes / 1024, r.metric)
            axes[0].annotate(r.name, (r.file_bytes / 1024, r.metric), fontsize=8,
                             xytext=(4, 4), textcoords="offset points")
            if lt is not None:
                axes[1].scatter(lt.p50_ms, r.metric)
                axes[1].annotate(r.name, (lt.p50_ms, r.metric), fontsize=8,
                                 xytext=(4, 4), textcoords="offset points")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("file size (KiB, log)")
        axes[1].set_xlabel(f"latency p50 (ms), batch {b}, {t} thread(s)")
        for ax in axes:
            ax.set_ylabel(self.metric_name)
            ax.grid(alpha=0.3)
        fig.suptitle("edgepack: size and latency vs " + self.metric_name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def platform_line() -> str:
    try:
        import edgepack

        isa = edgepack.cpu_info()["isa"]
    except Exception:  # the report must not fail for lack of the native core
        isa = "?"
    return f"{os.cpu_count()} CPUs, edgepack ISA {isa}, torch {torch.__version__}"


def _fmt_bytes(n: int) -> str:
    for unit, div in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _fmt_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


# --- measurements ---------------------------------------------------------------------------


def _packed_stats(m: nn.Module) -> tuple[int, int] | None:
    """(weights, nonzeros) of a layer holding packed int8 weights, None for other modules."""
    stats = getattr(m, "weight_stats", None)
    if callable(stats):
        n, z = stats()
        return int(n), int(z)
    packed = getattr(m, "packed", None)
    unpack = getattr(packed, "unpack", None)
    if callable(unpack):  # QuantLinear (dense or sparse packing)
        w_q, _, bias = unpack()
        w = torch.as_tensor(np.asarray(w_q))
        n, z = w.numel(), int(torch.count_nonzero(w))
        if bias is not None:
            b = torch.as_tensor(np.asarray(bias))
            n, z = n + b.numel(), z + int(torch.count_nonzero(b))
        return n, z
    w_q = getattr(m, "weight_q", None)
    if isinstance(w_q, torch.Tensor):  # QuantEmbedding
        return w_q.numel(), int(torch.count_nonzero(w_q))
    return None


def count_weights(model: nn.Module) -> tuple[int, int]:
    """(weights, nonzeros): packed int8 layers count their logical weights (and bias), other
    modules their own parameters. A module may describe itself with weight_stats() -> (n, nnz)."""
    total = nnz = 0
    for m in model.modules():
        st = _packed_stats(m)
        if st is not None:
            total += st[0]
            nnz += st[1]
            continue
        for p in m.parameters(recurse=False):
            total += p.numel()
            nnz += int(torch.count_nonzero(p.detach()))
    return total, nnz


def _tensor_bytes(model: nn.Module) -> int:
    """Bytes of the model's tensors in memory: parameters, buffers and packed weights."""
    seen: set[int] = set()
    n = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        n += t.numel() * t.element_size()
    for m in model.modules():  # packed weights live outside torch (numpy buffers)
        extra = getattr(m, "packed_nbytes", None)
        if callable(extra):
            extra = extra()
        if isinstance(extra, int):
            n += extra
    return n


def _file_size(model: nn.Module, is_original: bool, tmp: str, name: str) -> tuple[int, str]:
    path = os.path.join(tmp, f"{abs(hash(name))}.bin")
    if is_original:
        torch.save(model.state_dict(), path)
        return os.path.getsize(path), "torch.save(state_dict)"
    import edgepack

    return edgepack.save(model, path), "edgepack.save"


def batch_of(example: Example, b: int) -> Example:
    """The example input resized to batch `b` along dim 0 (rows repeated as needed)."""
    if isinstance(example, torch.Tensor):
        if example.dim() == 0:
            raise ValueError("example_input needs a batch dimension")
        n = example.shape[0]
        if n == 0:
            raise ValueError("example_input has an empty batch")
        reps = math.ceil(b / n)
        return example.repeat(reps, *([1] * (example.dim() - 1)))[:b].contiguous()
    if isinstance(example, Mapping):
        return {k: batch_of(v, b) if isinstance(v, torch.Tensor) else v for k, v in example.items()}
    if isinstance(example, (tuple, list)):
        return type(example)(batch_of(v, b) if isinstance(v, torch.Tensor) else v
                             for v in example)
    raise TypeError(f"example_input must be a Tensor, a tuple/list or dict of Tensors, "
                    f"got {type(example).__name__}")


def _call(model: nn.Module, x: Example) -> Any:
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _set_threads(n: int) -> None:
    torch.set_num_threads(n)
    try:
        import edgepack

        edgepack.set_num_threads(n)
    except (ImportError, AttributeError):  # pragma: no cover
        pass


def time_forward(model: nn.Module, x: Example, *, warmup: int, repeats: int,
                 min_time_s: float = 0.0) -> tuple[float, float]:
    """(p50_ms, p90_ms) of model(x)."""
    with torch.inference_mode():
        for _ in range(warmup):
            _call(model, x)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < repeats or (time.perf_counter() - start < min_time_s
                                       and len(times) < 50 * repeats):
            t0 = time.perf_counter()
            _call(model, x)
            times.append(time.perf_counter() - t0)
    times.sort()
    p50 = times[len(times) // 2]
    p90 = times[min(len(times) - 1, int(math.ceil(0.9 * len(times))) - 1)]
    return p50 * 1e3, p90 * 1e3


def _read_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def forward_peak_bytes(model: nn.Module, x: Example, timeout_s: float = 120.0) -> Optional[int]:
    """RSS growth (bytes) during one forward, in a forked child; None where not measurable."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 1
        try:
            os.close(r)
            torch.set_num_threads(1)
            try:
                import edgepack

                edgepack.set_num_threads(1)
            except Exception:
                pass
            with torch.inference_mode():
                _call(model, x)  # one-time set-up after fork (thread-local buffers) is not
                # the model's cost: it was paid in the parent already
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the VmHWM peak to the current RSS
                base = _read_status_kb("VmRSS")
                _call(model, x)
            peak = _read_status_kb("VmHWM")
            msg = "none" if base is None or peak is None else str(max(0, peak - base) * 1024)
            os.write(w, msg.encode())
            code = 0
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    try:
        ready, _, _ = select.select([r], [], [], timeout_s)
        if ready:
            data = os.read(r, 64)
    finally:
        os.close(r)
        if not data:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    text = data.decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _check_model(m: object, name: str) -> nn.Module:
    if not isinstance(m, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    for p in list(m.parameters())[:1] + list(m.buffers())[:1]:
        if p.device.type != "cpu":
            raise ValueError(f"{name} is on device '{p.device}'; the report measures CPU models")
    return m


def report(
    original: nn.Module,
    compressed: nn.Module | Mapping[str, nn.Module],
    *,
    eval_fn: Callable[[nn.Module], float] | None,
    example_input: Example,
    batch_sizes: tuple[int, ...] = (1, 32),
    threads: tuple[int, ...] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
    metric_name: str = "metric",
    original_name: str = "fp32",
    warmup: int = 3,
    repeats: int = 20,
    min_time_s: float = 0.2,
    memory: bool = True,
    progress: bool = True,
) -> Report:
    """Measure `original` and each compressed model; returns a Report (str() is the table).

    compressed: one model (named "compressed") or {name: model} for several variants.
    threads: default (1, all cores). The models are only run (eval mode, inference_mode).
    """
    _check_model(original, "original")
    variants: dict[str, nn.Module]
    if isinstance(compressed, nn.Module):
        variants = {"compressed": compressed}
    elif isinstance(compressed, Mapping):
        variants = dict(compressed)
        if not variants:
            raise ValueError("compressed is an empty mapping")
    else:
        raise TypeError(f"compressed must be a Module or a dict of name -> Module, "
                        f"got {type(compressed).__name__}")
    for k, v in variants.items():
        _check_model(v, f"compressed[{k!r}]")
    if original_name in variants:
        raise ValueError(f"variant name {original_name!r} is taken by the original")
    bs = tuple(int(b) for b in batch_sizes)
    if not bs or any(b < 1 for b in bs):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    all_threads = os.cpu_count() or 1
    ths = tuple(dict.fromkeys(int(t) for t in (threads or (1, all_threads))))
    if any(t < 1 for t in ths):
        raise ValueError(f"threads must be positive ints, got {threads!r}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError("eval_fn must be a callable model -> float")
    inputs = {b: batch_of(example_input, b) for b in bs}
    models = {original_name: original, **variants}

    # the models must accept the example before anything is timed
    for name, m in models.items():
        try:
            with torch.inference_mode():
                _call(m.eval(), inputs[bs[0]])
        except Exception as e:
            raise ValueError(f"model {name!r} fails on example_input: {e}") from e

    import edgepack

    old_torch = torch.get_num_threads()
    old_ep = edgepack.get_num_threads()
    steps = len(models) * (len(bs) * len(ths) + 2)
    bar = _bar(steps, progress)
    rows: list[ModelStats] = []
    try:
        with tempfile.TemporaryDirectory(prefix="edgepack-report-") as tmp:
            for name, m in models.items():
                is_orig = name == original_name
                size, fmt = _file_size(m, is_orig, tmp, name)
                n, nz = count_weights(m)
                lats: list[Latency] = []
                for t in ths:
                    _set_threads(t)
                    for b in bs:
                        bar.set_description(f"report {name} b{b} {t}t")
                        p50, p90 = time_forward(m, inputs[b], warmup=warmup, repeats=repeats,
                                                min_time_s=min_time_s)
                        lats.append(Latency(b, t, p50, p90))
                        bar.update(1)
                peak = forward_peak_bytes(m, inputs[max(bs)]) if memory else None
                bar.update(1)
                _set_threads(max(ths))
                metric = None
                if eval_fn is not None:
                    bar.set_description(f"report {name} metric")
                    with torch.inference_mode():
                        metric = float(eval_fn(m))
                bar.update(1)
                rows.append(ModelStats(name, size, fmt, n, nz, lats, _tensor_bytes(m), peak,
                                       metric))
    finally:
        bar.close()
        torch.set_num_threads(old_torch)
        edgepack.set_num_threads(old_ep)
    rep = Report(rows, bs, ths, metric_name)
    if json_path is not None:
        rep.to_json(json_path)
    if plot_path is not None:
        rep.plot(plot_path)
    return rep


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_description(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, leave=False, dynamic_ncols=True)
        except ImportError:
            pass
    return _NoBar()
