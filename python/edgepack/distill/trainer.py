"""The distillation trainer: one function, single process or DistributedDataParallel.

Single process: `distill(teacher, student, data)` trains `student` in place on CPU.

Several processes (torchrun): initialise the process group first, then call the same function;
it wraps the student in DistributedDataParallel (gloo on CPU) and shards the data with a
DistributedSampler, so each rank sees 1/world_size of every epoch and gradients are averaged::

    # torchrun --nproc_per_node=4 train.py
    import torch.distributed as dist
    dist.init_process_group("gloo")
    edgepack.distill(teacher, student, dataset, epochs=3)   # every rank ends with equal weights

`data` is a torch Dataset (or a (inputs, labels) tuple of tensors) batched here with
`batch_size`, or a DataLoader (its dataset, batch size, collate_fn and workers are reused; under
DDP it is rebuilt around a DistributedSampler, so a DataLoader with a custom batch_sampler is
refused there). Outside DDP any re-iterable of batches also works. A batch is `x`, `(x,)` or
`(x, y)`; x is passed to both models as `model(x)`, whose outputs are logits [B, ..., C].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from .losses import hint_loss, kd_loss

FeaturePairs = Union[Mapping[str, str], Sequence[tuple[str, str]]]
OptimizerArg = Union[
    torch.optim.Optimizer, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], None
]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _Adapter(nn.Module):
    """Maps a student feature onto the teacher feature's shape (FitNets regressor).

    [B, C, H, W]: 1x1 conv over channels, then adaptive average pooling if H, W differ.
    [B, ..., C]: a linear layer over the last dimension.
    """

    def __init__(self, s_shape: torch.Size, t_shape: torch.Size) -> None:
        super().__init__()
        self.spatial: tuple[int, int] | None = None
        self.proj: nn.Module
        if len(s_shape) == 4 and len(t_shape) == 4:
            self.proj = (nn.Conv2d(s_shape[1], t_shape[1], 1, bias=False)
                         if s_shape[1] != t_shape[1] else nn.Identity())
            if tuple(s_shape[2:]) != tuple(t_shape[2:]):
                self.spatial = (int(t_shape[2]), int(t_shape[3]))
        elif len(s_shape) == len(t_shape) and s_shape[:-1] == t_shape[:-1]:
            self.proj = (nn.Linear(s_shape[-1], t_shape[-1], bias=False)
                         if s_shape[-1] != t_shape[-1] else nn.Identity())
        else:
            raise ValueError(
                f"cannot adapt a student feature of shape {tuple(s_shape)} to the teacher "
                f"feature of shape {tuple(t_shape)} (supported: [B,C,H,W] pairs, or equal "
                "shapes but the last dimension)"
            )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = self.proj(f)
        if self.spatial is not None:
            f = F.adaptive_avg_pool2d(f, self.spatial)
        return f


class _FeatureTap:
    """Forward hooks that keep the latest output of named submodules."""

    def __init__(self, model: nn.Module, names: list[str], which: str) -> None:
        mods = dict(model.named_modules())
        self.out: dict[str, torch.Tensor] = {}
        self.handles = []
        for n in names:
            if n not in mods:
                raise ValueError(f"feature_pairs names {which} layer '{n}', which does not exist")
            self.handles.append(mods[n].register_forward_hook(self._hook(n)))

    def _hook(self, name: str) -> Callable[..., None]:
        def fn(_m: nn.Module, _i: Any, o: Any) -> None:
            if not isinstance(o, torch.Tensor):
                raise TypeError(f"layer '{name}' returns {type(o).__name__}, not a Tensor")
            self.out[name] = o
        return fn

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class _StudentWithHints(nn.Module):
    """Student + adapters in one module, so DDP synchronises the adapters too."""

    def __init__(self, student: nn.Module, tap: _FeatureTap | None, names: list[str],
                 adapters: nn.ModuleList) -> None:
        super().__init__()
        self.student = student
        self.adapters = adapters
        self._tap = tap
        self._names = names

    def forward(self, x: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.student(x)
        feats: list[torch.Tensor] = []
        if self._tap is not None:
            feats = [a(self._tap.out[n]) for a, n in zip(self.adapters, self._names)]
        return out, feats


def _split(batch: Any) -> tuple[Any, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
    raise TypeError("each batch must be x, (x,) or (x, y)")


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def _batch_size_of(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() else 1
    if isinstance(x, (tuple, list)) and x:
        return _batch_size_of(x[0])
    return 1


def _make_loader(data: Any, batch_size: int, shuffle: bool, seed: int, ddp: bool) -> tuple[
        Iterable[Any], DistributedSampler | None]:
    if (isinstance(data, tuple) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        data = TensorDataset(*data)
    if isinstance(data, DataLoader):
        if not ddp:
            return data, None
        if data.batch_size is None:
            raise ValueError("data: a DataLoader with a custom batch_sampler cannot be sharded "
                             "under DistributedDataParallel; pass its Dataset instead")
        sampler: DistributedSampler[Any] = DistributedSampler(data.dataset, shuffle=shuffle,
                                                              seed=seed)
        return DataLoader(data.dataset, batch_size=data.batch_size, sampler=sampler,
                          collate_fn=data.collate_fn, num_workers=data.num_workers,
                          drop_last=data.drop_last), sampler
    if isinstance(data, Dataset):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if ddp:
            ds: DistributedSampler[Any] = DistributedSampler(data, shuffle=shuffle, seed=seed)
            return DataLoader(data, batch_size=batch_size, sampler=ds), ds
        g = torch.Generator().manual_seed(seed)
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=g), None
    if ddp:
        raise TypeError("data: under DistributedDataParallel pass a Dataset or DataLoader so it "
                        f"can be sharded, got {type(data).__name__}")
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        return data, None
    raise TypeError(f"data must be a Dataset, DataLoader, (x, y) tensors or an iterable of "
                    f"batches, got {type(data).__name__}")


def _progress(it: Iterable[Any], enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        return it
    total = len(it) if hasattr(it, "__len__") else None  # type: ignore[arg-type]
    return tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _check_module(m: object, name: str) -> nn.Module:
    if not isinstance(m, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    return m


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Any,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    epochs: int = 1,
    optimizer: OptimizerArg = None,
    lr: float = 1e-3,
    feature_pairs: FeaturePairs | None = None,
    hint_weight: float = 1.0,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    progress: bool = True,
    history: list[float] | None = None,
    step_callback: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train `student` (in place) to mimic `teacher`; returns `student`.

    loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y)
           + hint_weight * sum_pairs MSE(adapter(student_feature), teacher_feature)

    feature_pairs: {teacher_layer_name: student_layer_name} (names from named_modules()).
        Where the shapes differ a learned adapter (1x1 conv / linear, FitNets style) maps the
        student feature onto the teacher's; it is trained with the student and then discarded.
    optimizer: None (Adam at `lr`), an optimizer over the student's parameters (adapter
        parameters are added as a new group), or a factory called with all trainable params.
    history: if given, the mean loss of each epoch (averaged over all ranks) is appended.
    step_callback: called with the global step number after every optimizer step (e.g.
        ``edgepack.prune.GradualPruner.step`` to prune while distilling).
    Under torch.distributed (see the module docstring) the student is wrapped in
    DistributedDataParallel and the data sharded; all ranks end with identical weights.
    The teacher is only run (no_grad, eval mode); both models get their train/eval mode back.
    """
    _check_module(teacher, "teacher")
    _check_module(student, "student")
    if teacher is student:
        raise ValueError("teacher and student must be different modules")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    params = list(student.parameters())
    if not params:
        raise ValueError("student has no parameters to train")
    device = params[0].device

    ddp = _distributed()
    loader, sampler = _make_loader(data, batch_size, shuffle, seed, ddp)

    pairs: list[tuple[str, str]] = (list(feature_pairs.items())
                                    if isinstance(feature_pairs, Mapping)
                                    else list(feature_pairs or []))
    t_names = [p[0] for p in pairs]
    s_names = [p[1] for p in pairs]
    t_tap = _FeatureTap(teacher, t_names, "teacher") if pairs else None
    s_tap = _FeatureTap(student, s_names, "student") if pairs else None

    was_training = (teacher.training, student.training)
    teacher.eval()
    try:
        adapters = nn.ModuleList()
        if pairs:
            assert t_tap is not None and s_tap is not None
            first = next(iter(loader), None)
            if first is None:
                raise ValueError("data is empty")
            x0, _ = _split(first)
            x0 = _to(x0, device)
            with torch.no_grad():
                teacher(x0)
                student.eval()
                student(x0)
            for tn, sn in pairs:
                adapters.append(_Adapter(s_tap.out[sn].shape, t_tap.out[tn].shape))
            adapters.to(device)
        wrapped: nn.Module = _StudentWithHints(student, s_tap, s_names, adapters)
        if ddp:
            wrapped = nn.parallel.DistributedDataParallel(wrapped)
        opt = _make_optimizer(optimizer, student, adapters, lr)

        wrapped.train()
        rank0 = not ddp or dist.get_rank() == 0
        step = 0
        for epoch in range(epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            total = torch.zeros(2, dtype=torch.float64)
            bar = _progress(loader, progress and rank0, f"distill epoch {epoch + 1}/{epochs}")
            for batch in bar:
                x, y = _split(batch)
                x = _to(x, device)
                y = _to(y, device) if y is not None else None
                with torch.no_grad():
                    t_out = teacher(x)
                    t_feats = [t_tap.out[n] for n in t_names] if t_tap is not None else []
                s_out, s_feats = wrapped(x)
                loss = kd_loss(s_out, t_out, y, temperature=temperature, alpha=alpha)
                if pairs:
                    loss = loss + hint_weight * hint_loss(s_feats, t_feats)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"distillation loss became {float(loss)} "
                                             f"in epoch {epoch + 1}; lower lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step_callback is not None:
                    step_callback(step)
                step += 1
                n = _batch_size_of(x)
                total += torch.tensor([float(loss.detach()) * n, n], dtype=torch.float64)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if ddp:
                dist.all_reduce(total)
            if history is not None:
                history.append(float(total[0]) / max(float(total[1]), 1.0))
    finally:
        if t_tap is not None:
            t_tap.remove()
        if s_tap is not None:
            s_tap.remove()
        teacher.train(was_training[0])
        student.train(was_training[1])
    return student


def _make_optimizer(optimizer: OptimizerArg, student: nn.Module, adapters: nn.ModuleList,
                    lr: float) -> torch.optim.Optimizer:
    extra = [p for p in adapters.parameters() if p.requires_grad]
    trainable = [p for p in student.parameters() if p.requires_grad] + extra
    if optimizer is None:
        return torch.optim.Adam(trainable, lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        if extra:
            optimizer.add_param_group({"params": extra})
        return optimizer
    if callable(optimizer):
        opt = optimizer(trainable)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError("optimizer factory must return a torch.optim.Optimizer")
        return opt
    raise TypeError(f"optimizer must be None, an Optimizer or a factory, got "
                    f"{type(optimizer).__name__}")
