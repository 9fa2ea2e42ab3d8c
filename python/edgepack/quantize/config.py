"""CompressionConfig: the recipe edgepack.compress follows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_ROWS_PER_CALL = 1 << 20  # CompressionConfig.rows_per_call, QuantLinear, the file's packing_rows


@dataclass
class CompressionConfig:
    """How to compress a model.

    weights: "int8" (per-output-channel symmetric; the only weight format).
    activations: "dynamic" (per-row uint8 range computed at run time, the default) or "static"
        (one per-tensor uint8 range per layer from calibration data, see `observer`).
    conv_activations: dynamic ranges of Conv2d inputs: "per_image" (one range per image,
        quantized once before im2col: the fast default) or "per_row" (one range per output
        position, as linear layers do per row: finer, slower).
    observer: static only: "minmax", "percentile" (with `percentile`) or "mse".
    mode: "global" (every supported layer int8) or "local" (mixed precision: a per-layer
        sensitivity analysis with the user's eval_fn; the layers that hurt the metric most stay
        fp32 until the metric drop is at most `max_metric_drop`).
    higher_is_better: direction of eval_fn's metric ("local" mode).
    sparse: "auto" (edgepack.pack_auto picks dense or sparse per layer by measured speed; convs,
        whose rows per call are unknown at packing, by size), "smaller" (sparse exactly where
        the block-sparse packing is smaller than the dense one: the file-size-first choice),
        "never", "always".
    rows_per_call: the rows a linear layer sees per call in deployment (1 for batch-1 MLP or
        CNN-head inference; tokens x sequences for a transformer): sparse="auto" measures the
        dense/sparse crossover at this many rows, since it moves with them (on an AMX CPU a
        60%-sparse layer is faster sparse at 1 row and 2x slower at 128).
    quantize_embeddings: nn.Embedding tables to int8 (per-row scale, dequantized on lookup).
    optimize: run edgepack.optimize's clean-up first (BN folding, dropout removal, ReLU fusion).
    skip: module names (as in model.named_modules()) kept fp32.
    """

    weights: str = "int8"
    activations: str = "dynamic"
    conv_activations: str = "per_image"
    observer: str = "minmax"
    percentile: float = 99.99
    mode: str = "global"
    max_metric_drop: float | None = None
    higher_is_better: bool = True
    sparse: str = "auto"
    rows_per_call: int = 1
    quantize_embeddings: bool = True
    optimize: bool = True
    skip: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        def one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise ValueError(
                    f"CompressionConfig.{name} must be one of {allowed}, got {value!r}"
                )

        one_of("weights", self.weights, ("int8",))
        one_of("activations", self.activations, ("dynamic", "static"))
        one_of("conv_activations", self.conv_activations, ("per_image", "per_row"))
        one_of("observer", self.observer, ("minmax", "percentile", "mse"))
        one_of("mode", self.mode, ("global", "local"))
        one_of("sparse", self.sparse, ("auto", "smaller", "never", "always"))
        r = self.rows_per_call
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_ROWS_PER_CALL:
            raise ValueError(
                f"CompressionConfig.rows_per_call must be an int in [1, 2**20], got {r!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ValueError(
                f"CompressionConfig.percentile must be in (50, 100], got {self.percentile}"
            )
        if self.mode == "local":
            d = self.max_metric_drop
            if d is None or isinstance(d, bool) or not isinstance(d, (int, float)):
                raise ValueError(
                    "CompressionConfig.max_metric_drop (a number) is required in 'local' mode"
                )
            if not math.isfinite(d) or d < 0:
                raise ValueError(
                    f"CompressionConfig.max_metric_drop must be finite and >= 0, got {d}"
                )
        if isinstance(self.skip, str) or not all(isinstance(s, str) for s in self.skip):
            raise TypeError("CompressionConfig.skip must be a sequence of module names")
