"""Gradual pruning with Zhu & Gupta's cubic schedule ("To prune, or not to prune", 2017).

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3,   t = t0, t0 + dt, ..., t0 + n*dt

Pruning fast early (when redundancy is high) and slowly near the end lets fine-tuning recover.
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from ._common import check_amount, check_model, check_positive_int, select_layers
from .criteria import blocks, check_block, check_n_m, check_scope, magnitude, n_of_m

_CRITERIA = ("magnitude", "blocks", "n_of_m")


def _check_step(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class GradualPruner:
    """Drive a pruning criterion along the cubic schedule inside the user's training loop.

    Call ``.step()`` once per training step (after ``optimizer.step()``). At steps
    ``start_step, start_step + frequency, ...`` up to ``end_step`` (and at ``end_step`` itself,
    even when ``end_step - start_step`` is not a multiple of ``frequency``) the model is pruned
    in place to ``sparsity(t)``; between those steps masks persist, so pruned weights stay zero
    while the rest fine-tunes. Before ``start_step`` nothing is pruned.

    ``criterion``: ``"magnitude"`` (kwargs: scope, layers), ``"blocks"`` (kwargs: block, scope,
    layers) or ``"n_of_m"`` (kwargs: m=4, layers). For N:M the schedule moves in whole weights
    per group: at step t each group of m keeps ``m - round(sparsity(t) * m)`` weights, so
    ``final_amount * m`` must be a whole number (e.g. 0.5 with m=4 ends at 2:4).
    """

    def __init__(
        self,
        model: nn.Module,
        final_amount: float,
        *,
        start_step: int,
        end_step: int,
        frequency: int,
        criterion: str = "magnitude",
        initial_amount: float = 0.0,
        **criterion_kwargs: Any,
    ) -> None:
        self.model = check_model(model)
        self.final_amount = check_amount(final_amount, "final_amount")
        self.initial_amount = check_amount(initial_amount, "initial_amount")
        if self.initial_amount > self.final_amount:
            raise ValueError(
                f"initial_amount ({initial_amount}) must be <= final_amount ({final_amount})"
            )
        self.start_step = _check_step(start_step, "start_step")
        self.end_step = _check_step(end_step, "end_step")
        if self.end_step <= self.start_step:
            raise ValueError(f"end_step ({end_step}) must be > start_step ({start_step})")
        self.frequency = check_positive_int(frequency, "frequency")
        if criterion not in _CRITERIA:
            raise ValueError(f"criterion must be one of {_CRITERIA}, got {criterion!r}")
        self.criterion = criterion
        self.criterion_kwargs = dict(criterion_kwargs)
        if criterion == "n_of_m":
            if "n" in criterion_kwargs:
                raise ValueError(
                    "criterion='n_of_m' takes m only; n follows from final_amount "
                    "(n = m - final_amount * m)"
                )
            m = self.criterion_kwargs.setdefault("m", 4)
            check_n_m(1, m)
            pruned = self.final_amount * m
            if abs(pruned - round(pruned)) > 1e-9:
                raise ValueError(
                    f"final_amount * m must be a whole number for N:M (got {final_amount} * {m})"
                )
        self.last_step = -1  # the step most recently passed to step()
        self._validate_kwargs()

    def _validate_kwargs(self) -> None:
        # Surface bad criterion kwargs now (not at the first pruning step, hours into training),
        # without touching the model.
        allowed = {
            "magnitude": {"scope", "layers"},
            "blocks": {"block", "scope", "layers"},
            "n_of_m": {"m", "layers"},
        }[self.criterion]
        unknown = sorted(set(self.criterion_kwargs) - allowed)
        if unknown:
            raise TypeError(
                f"unexpected keyword(s) for criterion={self.criterion!r}: {', '.join(unknown)} "
                f"(accepted: {', '.join(sorted(allowed))})"
            )
        kw = self.criterion_kwargs
        if "scope" in kw:
            check_scope(kw["scope"])
        if "block" in kw:
            check_block(kw["block"])
        select_layers(self.model, kw.get("layers"))

    def sparsity(self, t: int) -> float:
        """Target sparsity at step t: s_i at start_step, cubic ramp, s_f from end_step on."""
        if t <= self.start_step:
            return self.initial_amount
        if t >= self.end_step:
            return self.final_amount
        frac = (t - self.start_step) / (self.end_step - self.start_step)
        s_i, s_f = self.initial_amount, self.final_amount
        return s_f + (s_i - s_f) * (1.0 - frac) ** 3

    def is_pruning_step(self, t: int) -> bool:
        if t < self.start_step or t > self.end_step:
            return False
        return (t - self.start_step) % self.frequency == 0 or t == self.end_step

    def _prune(self, model: nn.Module, amount: float) -> None:
        kw = self.criterion_kwargs
        if self.criterion == "magnitude":
            magnitude(model, amount, **kw)
        elif self.criterion == "blocks":
            blocks(model, amount, **kw)
        else:
            kwargs = dict(kw)
            m = int(kwargs.pop("m"))
            keep = m - round(amount * m)
            if keep < m:
                n_of_m(model, keep, m, **kwargs)

    def step(self, t: Optional[int] = None) -> Optional[float]:
        """Advance to step ``t`` (default: the previous step + 1, starting at 0) and prune if
        the schedule says so. Returns the sparsity applied, or None when this step prunes
        nothing."""
        t = self.last_step + 1 if t is None else _check_step(t, "t")
        self.last_step = t
        if not self.is_pruning_step(t):
            return None
        amount = self.sparsity(t)
        self._prune(self.model, amount)
        return amount

    def state_dict(self) -> dict[str, int]:
        """The position in the schedule (masks themselves live in the model's state_dict)."""
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.last_step = int(state["last_step"])
