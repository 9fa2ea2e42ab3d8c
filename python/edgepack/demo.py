"""The reference case: a small CNN, trained, then compressed five ways and reported.

Used by `edgepack demo` (scikit-learn's bundled digits, offline, about a minute on 2 cores) and
by examples/mnist_compress.py (full MNIST). The model is the issue's reference CNN:
Conv(1,32,3)-ReLU-MaxPool-Conv(32,64,3)-ReLU-MaxPool-Conv(64,64,3)-ReLU-Flatten-Linear(576,64)-
ReLU-Linear(64,10) on 1x28x28 images (digits' 8x8 images are upsampled to 28x28).

Variants (all built from the trained fp32 model, which is never modified):
  int8       edgepack.compress(model): every Conv2d / Linear on the int8 kernels
  pruned     block pruning (1x4 blocks, the sparse kernels' tile) raised gradually while
             fine-tuning, then edgepack.compress (sparse packing where it pays) -- pruned + int8
  distilled  a half-width student (fp32) trained from the fp32 teacher by this module's own
             loop (train, on edgepack.distill's kd_loss)
  optimized  edgepack.optimize(model): eval-mode clean-up, fp32
  all        distilled student -> block pruning + quantization-aware fine-tuning under
             distillation -> edgepack.compress
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def reference_cnn(widths: tuple[int, int, int] = (32, 64, 64), hidden: int = 64,
                  num_classes: int = 10) -> nn.Sequential:
    """The reference CNN for 1x28x28 inputs (28 -> 26 -> 13 -> 11 -> 5 -> 3)."""
    c1, c2, c3 = widths
    return nn.Sequential(
        nn.Conv2d(1, c1, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c3 * 3 * 3, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


# --- data -------------------------------------------------------------------------------------


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return ((x - MNIST_MEAN) / MNIST_STD).to(torch.float32).contiguous()


def load_digits_28(seed: int = 0, test_fraction: float = 0.2) -> Data:
    """scikit-learn's bundled 8x8 digits (1797 images, offline), upsampled to 1x28x28."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - the demo extra installs it
        raise ImportError("the demo needs scikit-learn: pip install 'edgepack[demo]'") from e
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed,
                              stratify=d.target)
    xn = _normalize(x)
    return xn[tr], y[tr], xn[te], y[te]


def _read_idx(path: Path) -> np.ndarray:
    import gzip

    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * nd)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: size does not match its IDX header {dims}")
    return body.reshape(dims)


def load_mnist(path: str | os.PathLike[str]) -> Data:
    """MNIST from an .npz (x_train, y_train, x_test, y_test) or a directory of IDX files
    (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)."""
    p = Path(path)
    if p.is_dir():
        def find(stem: str) -> Path:
            for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
                if (p / name).exists():
                    return p / name
            raise FileNotFoundError(f"{stem}[.gz] not found in {p}")
        arrays = [_read_idx(find(s)) for s in ("train-images-idx3-ubyte",
                                               "train-labels-idx1-ubyte",
                                               "t10k-images-idx3-ubyte",
                                               "t10k-labels-idx1-ubyte")]
        xtr, ytr, xte, yte = arrays
    elif p.is_file():
        with np.load(p, allow_pickle=False) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ValueError(f"{p} lacks the arrays {sorted(missing)}")
            xtr, ytr, xte, yte = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    else:
        raise FileNotFoundError(f"MNIST path {p} does not exist")
    for name, x in (("x_train", xtr), ("x_test", xte)):
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{name} must be N x 28 x 28, got {x.shape}")

    def imgs(a: np.ndarray) -> torch.Tensor:
        return _normalize(torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return imgs(xtr), labels(ytr), imgs(xte), labels(yte)


# --- training -----------------------------------------------------------------------------------


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
        except ImportError:
            pass
    return None


def random_shift(x: torch.Tensor, max_px: int, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random translation by up to max_px pixels (zero fill, integer shifts)."""
    if max_px <= 0:
        return x
    n, _, h, w = x.shape
    bg = float(x.min())
    pad = F.pad(x, (max_px, max_px, max_px, max_px), value=bg)
    dx = torch.randint(0, 2 * max_px + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_px + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # [n, h]
    cols = (dx[:, None] + torch.arange(w)[None, :])  # [n, w]
    bidx = torch.arange(n)[:, None, None]
    return pad[bidx, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 2e-3,
          batch_size: int = 64, seed: int = 0, shift: int = 0, progress: bool = True,
          desc: str = "train", step_callback: Callable[[int], object] | None = None,
          teacher: nn.Module | None = None, temperature: float = 4.0,
          alpha: float = 0.5) -> nn.Module:
    """Adam with a one-cycle schedule; optional distillation from `teacher` (edgepack.distill's
    loss) and a per-step callback (pruning schedules). Trains in place; returns model."""
    from .distill import kd_loss

    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs *
                                                steps_per_epoch), pct_start=0.15)
    if teacher is not None:
        teacher.eval()
    model.train()
    step = 0
    bar = _bar(epochs * steps_per_epoch, desc, progress)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = random_shift(x[idx], shift, gen), y[idx]
            out = model(xb)
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(xb)
                loss = kd_loss(out, t_out, yb, temperature=temperature, alpha=alpha)
            else:
                loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step_callback is not None:
                step_callback(step)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return model


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return 100.0 * correct / max(1, x.shape[0])


# --- the pipeline -------------------------------------------------------------------------------


@dataclass
class Recipe:
    """Budgets of the pipeline. The defaults fit `edgepack demo` on digits."""

    epochs: int = 12                   # fp32 training
    finetune_epochs: int = 6           # pruning / distillation / QAT fine-tuning
    lr: float = 3e-3
    finetune_lr_scale: float = 1.0
    batch_size: int = 64
    shift: int = 0                     # random-translation augmentation (pixels)
    prune_amount: float = 0.8          # block sparsity of the "pruned" variant
    all_prune_amount: float = 0.8      # block sparsity of the "all" variant
    block: tuple[int, int] = (1, 4)
    # the three big layers (conv2, conv3, fc1: 99% of the weights); conv1 (9 weights per
    # filter) and the classifier stay dense
    prune_layers: tuple[str, ...] = ("3", "6", "9")
    train_threads: int = 1             # small batches do not scale; avoids oversubscription
    student_widths: tuple[int, int, int] = (16, 32, 32)
    student_hidden: int = 32
    temperature: float = 4.0
    alpha: float = 0.7
    seed: int = 0
    report_batch: int = 64
    threads: tuple[int, ...] | None = None  # report threads; None: (1, all cores)
    # pruned layers are stored block-sparse wherever that is smaller (the file is the point;
    # unpruned layers stay dense); "auto" would pick per layer by measured speed
    sparse: str = "smaller"
    repeats: int = 30
    min_time_s: float = 0.2           # per latency cell, at least this long (or repeats runs)
    variants: tuple[str, ...] = ("int8", "pruned", "distilled", "optimized", "all")
    log: list[str] = field(default_factory=list)


def _prune_while_training(model: nn.Module, x: torch.Tensor, y: torch.Tensor, r: Recipe,
                          amount: float, epochs: int, progress: bool, desc: str,
                          teacher: nn.Module | None = None) -> nn.Module:
    """Gradual (cubic) block pruning to `amount` during the first 70% of the fine-tuning steps,
    the rest fine-tunes with the final mask; masks made permanent at the end."""
    from . import prune

    steps = epochs * math.ceil(x.shape[0] / r.batch_size)
    end = max(2, int(0.7 * steps))
    pruner = prune.GradualPruner(model, amount, start_step=0, end_step=end,
                                 frequency=max(1, end // 10), criterion="blocks", block=r.block,
                                 layers=list(r.prune_layers))

    train(model, x, y, epochs=epochs, lr=r.lr * r.finetune_lr_scale, batch_size=r.batch_size,
          seed=r.seed + 1,
          shift=r.shift, progress=progress, desc=desc, step_callback=pruner.step,
          teacher=teacher, temperature=r.temperature, alpha=r.alpha)
    prune.remove(model)
    return model


def build_variants(teacher: nn.Module, data: Data, r: Recipe, *,
                   progress: bool = True) -> dict[str, nn.Module]:
    """The compressed variants of a trained `teacher` (not modified)."""
    import edgepack

    from .quantize.qat import prepare_qat, strip_qat

    xtr, ytr, _, _ = data
    teacher = teacher.eval()
    out: dict[str, nn.Module] = {}
    example = xtr[:8]
    t0 = time.perf_counter()
    if "int8" in r.variants:
        out["int8"] = edgepack.compress(teacher)
    if "pruned" in r.variants:
        pruned = _prune_while_training(copy.deepcopy(teacher), xtr, ytr, r, r.prune_amount,
                                       r.finetune_epochs, progress, "prune + fine-tune",
                                       teacher=teacher)
        out[f"pruned{round(100 * r.prune_amount)}+int8"] = edgepack.compress(
            pruned, edgepack.CompressionConfig(sparse=r.sparse))
    student: nn.Module | None = None
    if "distilled" in r.variants or "all" in r.variants:
        torch.manual_seed(r.seed + 2)
        student = reference_cnn(r.student_widths, r.student_hidden)
        train(student, xtr, ytr, epochs=r.epochs, lr=r.lr, batch_size=r.batch_size,
              seed=r.seed + 2, shift=r.shift, progress=progress, desc="distill student",
              teacher=teacher, temperature=r.temperature, alpha=r.alpha)
        if "distilled" in r.variants:
            out["distilled"] = copy.deepcopy(student)
    if "optimized" in r.variants:
        out["optimized"] = edgepack.optimize(teacher, example)
    if "all" in r.variants:
        assert student is not None
        # dense and block-sparse convs both quantize one range per image: train with it
        qat = prepare_qat(student, conv_activations="per_image")
        _prune_while_training(qat, xtr, ytr, r, r.all_prune_amount, r.finetune_epochs,
                              progress, "all: prune + QAT + distill", teacher=teacher)
        out["all"] = edgepack.compress(strip_qat(qat).eval(),
                                       edgepack.CompressionConfig(sparse=r.sparse))
    r.log.append(f"variants built in {time.perf_counter() - t0:.1f} s")
    return out


def run(data: Data, r: Recipe, *, progress: bool = True, json_path: str | None = None,
        plot_path: str | None = None, teacher: nn.Module | None = None) -> Any:
    """Train (unless `teacher` is given), compress, report. Returns (report, teacher, variants)."""
    import edgepack

    xtr, ytr, xte, yte = data
    torch.manual_seed(r.seed)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, r.train_threads))
    try:
        if teacher is None:
            teacher = reference_cnn()
            train(teacher, xtr, ytr, epochs=r.epochs, lr=r.lr, batch_size=r.batch_size,
                  seed=r.seed, shift=r.shift, progress=progress, desc="train fp32 CNN")
        r.log.append(f"fp32 model trained in {time.perf_counter() - t0:.1f} s")
        variants = build_variants(teacher, data, r, progress=progress)
    finally:
        torch.set_num_threads(threads)

    def eval_fn(m: nn.Module) -> float:
        return accuracy(m, xte, yte)

    rep = edgepack.report(teacher, variants, eval_fn=eval_fn, example_input=xte[:r.report_batch],
                          batch_sizes=(1, r.report_batch), threads=r.threads,
                          json_path=json_path,
                          plot_path=plot_path, metric_name="test acc %", repeats=r.repeats,
                          min_time_s=r.min_time_s,
                          progress=progress)
    return rep, teacher, variants
