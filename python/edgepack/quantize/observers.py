"""Activation observers for static (calibrated, per-tensor) quantization.

Every observer sees float32 activations batch by batch and produces uint8 asymmetric
(scale, zero_point) from a clipping range [lo, hi] with the same formula as the kernels
(edgepack._core.qparams_from_minmax): the range is widened to include 0, so zero padding is exact.

- MinMaxObserver: the full observed range.
- PercentileObserver: the range between the (100 - p) and p percentiles of the observed values.
- MSEObserver: the shrink of the min/max range that minimises the quantization mean squared error.

Percentile and MSE work on a bounded, deterministic random sample of the values (reservoir of
`max_samples`), which keeps memory flat for long calibration runs.
"""

from __future__ import annotations

import math

import torch

from .. import _core  # type: ignore[attr-defined]


def qparams_uint8(lo: float, hi: float) -> tuple[float, int]:
    """uint8 asymmetric (scale, zero_point) of the clipping range [lo, hi]."""
    s, z = _core.qparams_from_minmax(float(lo), float(hi), "uint8", False)
    return float(s), int(z)


class Observer:
    """Base: tracks the exact min/max and a bounded sample of values."""

    def __init__(self, name: str = "", max_samples: int = 1 << 18, seed: int = 0) -> None:
        self.name = name
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.max_samples = int(max_samples)
        self._gen = torch.Generator().manual_seed(seed)
        self._samples: list[torch.Tensor] = []
        self._nsamples = 0

    def observe(self, x: torch.Tensor) -> None:
        v = x.detach().reshape(-1).to(torch.float32)
        if v.numel() == 0:
            return
        if bool(torch.isnan(v).any()):
            where = f" at {self.name}" if self.name else ""
            raise ValueError(f"calibration activations hold NaN{where}")
        if not bool(torch.isfinite(v).all()):
            where = f" at {self.name}" if self.name else ""
            raise ValueError(f"calibration activations hold inf{where}")
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        self.count += v.numel()
        if self.needs_samples:
            self._add_samples(v)

    needs_samples = False

    def _add_samples(self, v: torch.Tensor) -> None:
        if v.numel() > self.max_samples:
            idx = torch.randint(0, v.numel(), (self.max_samples,), generator=self._gen)
            v = v[idx]
        self._samples.append(v.clone())
        self._nsamples += v.numel()
        if self._nsamples > 2 * self.max_samples:
            allv = torch.cat(self._samples)
            idx = torch.randperm(allv.numel(), generator=self._gen)[: self.max_samples]
            self._samples = [allv[idx]]
            self._nsamples = self.max_samples

    def samples(self) -> torch.Tensor:
        return torch.cat(self._samples) if self._samples else torch.zeros(0)

    def _check(self) -> None:
        if self.count == 0:
            where = f" for {self.name}" if self.name else ""
            raise ValueError(f"no calibration activations were observed{where}")

    def range(self) -> tuple[float, float]:
        self._check()
        return self.min, self.max

    def qparams(self) -> tuple[float, int]:
        lo, hi = self.range()
        return qparams_uint8(lo, hi)


class MinMaxObserver(Observer):
    pass


class PercentileObserver(Observer):
    needs_samples = True

    def __init__(self, percentile: float = 99.99, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = float(percentile)

    def range(self) -> tuple[float, float]:
        self._check()
        s = self.samples().to(torch.float64)
        p = self.percentile / 100.0
        q = torch.tensor([1.0 - p, p], dtype=torch.float64)
        lo, hi = torch.quantile(s, q).tolist()
        return max(float(lo), self.min), min(float(hi), self.max)


class MSEObserver(Observer):
    needs_samples = True

    def __init__(self, steps: int = 40, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.steps = int(steps)

    def range(self) -> tuple[float, float]:
        self._check()
        x = self.samples()
        best = (math.inf, self.min, self.max)
        for i in range(self.steps):
            # shrink both ends toward 0 by the same factor, from 1.0 down to 0.2
            f = 1.0 - 0.8 * i / max(self.steps - 1, 1)
            lo, hi = self.min * f, self.max * f
            s, z = qparams_uint8(lo, hi)
            q = torch.clamp(torch.round(x / s) + z, 0, 255)
            err = float(((q - z) * s - x).pow(2).mean())
            if err < best[0]:
                best = (err, lo, hi)
        return best[1], best[2]


def make_observer(kind: str, name: str = "", percentile: float = 99.99) -> Observer:
    if kind == "minmax":
        return MinMaxObserver(name=name)
    if kind == "percentile":
        return PercentileObserver(percentile=percentile, name=name)
    if kind == "mse":
        return MSEObserver(name=name)
    raise ValueError(f"observer must be 'minmax', 'percentile' or 'mse', got {kind!r}")
