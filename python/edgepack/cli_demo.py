"""`edgepack demo`, `edgepack compress` and `edgepack report` (registered by edgepack.cli)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any


def add_subcommands(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="train the reference CNN on digits (or MNIST), compress it five ways, report",
        description="Train the reference CNN on scikit-learn's bundled digits (offline) or on "
        "MNIST (--mnist), build int8 / pruned / distilled / optimized / all-combined variants "
        "and print the report table (also written as JSON and PNG to --out).",
    )
    d.add_argument("--mnist", metavar="PATH", help="MNIST .npz (x_train, y_train, x_test, "
                   "y_test) or a directory of IDX files, instead of digits")
    d.add_argument("--epochs", type=int, default=None, help="fp32 training epochs")
    d.add_argument("--finetune-epochs", type=int, default=None,
                   help="epochs of each pruning / distillation fine-tuning")
    d.add_argument("--out", default="edgepack-demo", help="folder for report.json / report.png")
    d.add_argument("--quick", action="store_true",
                   help="tiny budgets (a smoke test: seconds, accuracy not meaningful)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser(
        "compress",
        help="compress a saved model into an edgepack file",
        description="Load a model (a state_dict plus --arch to build the module, or a whole "
        "pickled module with --allow-pickle), compress it with edgepack.compress and save the "
        "result with edgepack.save.",
    )
    c.add_argument("model", help="state_dict (.pt) or pickled nn.Module")
    c.add_argument("output", help="edgepack file to write")
    _model_args(c)
    c.add_argument("--config", metavar="JSON", help="a recipe: JSON file of "
                   "edgepack.CompressionConfig fields, e.g. {\"sparse\": \"always\", "
                   "\"skip\": [\"classifier\"]}; --activations/--sparse/--rows-per-call "
                   "override it")
    c.add_argument("--activations", choices=("dynamic", "static"), default=None)
    c.add_argument("--sparse", choices=("auto", "smaller", "never", "always"), default=None)
    c.add_argument("--rows-per-call", type=int, default=None, metavar="ROWS",
                   help="rows a linear layer sees per call in deployment (tokens x sequences "
                   "for a transformer); --sparse auto times dense vs sparse at this many")
    c.add_argument("--prune", type=float, default=0.0, metavar="AMOUNT",
                   help="block-prune (1x4) this fraction of every Conv2d/Linear first, without "
                   "fine-tuning (accuracy is the user's to check)")
    c.add_argument("--input-shape", help="e.g. 1,1,28,28: random calibration input for "
                   "--activations static and an output check")
    c.set_defaults(func=cmd_compress)

    r = sub.add_parser(
        "report",
        help="size / latency / memory report of an original model against compressed files",
        description="ORIGINAL is a TorchScript file, a state_dict with --arch, or a pickled "
        "module with --allow-pickle; each COMPRESSED is an edgepack file (name=path to label).",
    )
    r.add_argument("original")
    r.add_argument("compressed", nargs="+")
    _model_args(r)
    r.add_argument("--input-shape", required=True, help="example input shape, batch first")
    r.add_argument("--batch", type=int, default=32, help="the larger batch size measured")
    r.add_argument("--threads", default=None, help="comma-separated thread counts "
                   "(default: 1 and all cores)")
    r.add_argument("--eval", choices=("digits",), default=None,
                   help="measure test accuracy on scikit-learn digits (1x28x28 models)")
    r.add_argument("--mnist", metavar="PATH", help="measure test accuracy on this MNIST")
    r.add_argument("--json", help="write the report as JSON here")
    r.add_argument("--plot", help="write the PNG plot here")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_report)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", metavar="MODULE:CALLABLE",
                   help="builds the empty model for a state_dict, e.g. "
                   "edgepack.demo:reference_cnn")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load a whole pickled module (runs code from the file: trusted files "
                   "only)")


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise SystemExit(
            f"--input-shape: expected integers like 1,1,28,28, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise SystemExit(f"--input-shape: dimensions must be positive, got {text!r}")
    return dims


def _load_model(path: str, arch: str | None, allow_pickle: bool, allow_script: bool) -> Any:
    import torch

    if not os.path.exists(path):
        raise SystemExit(f"{path}: no such file")
    if arch:
        mod_name, _, fn_name = arch.partition(":")
        if not fn_name:
            raise SystemExit("--arch must look like package.module:callable")
        try:
            factory = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise SystemExit(f"--arch {arch}: {e}") from e
        model = factory()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise SystemExit(f"{path} does not hold a state_dict")
        model.load_state_dict(state)
        return model.eval()
    if allow_script:
        try:
            return torch.jit.load(path, map_location="cpu").eval()
        except RuntimeError:
            pass
    if allow_pickle:
        obj = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(obj, torch.nn.Module):
            raise SystemExit(f"{path} does not hold an nn.Module")
        return obj.eval()
    raise SystemExit(f"{path}: pass --arch MODULE:CALLABLE to rebuild the model for this "
                     "state_dict, or --allow-pickle for a pickled module")


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    progress = not args.no_progress
    t0 = time.perf_counter()
    if args.mnist:
        data = demo.load_mnist(args.mnist)
        recipe = demo.Recipe(epochs=6, finetune_epochs=2, shift=1, batch_size=128,
                             report_batch=64)
    else:
        data = demo.load_digits_28(seed=args.seed)
        recipe = demo.Recipe(epochs=8, finetune_epochs=6, shift=2)
    if args.quick:
        n = 256
        data = (data[0][:n], data[1][:n], data[2][:128], data[3][:128])
        recipe.epochs, recipe.finetune_epochs, recipe.repeats = 1, 1, 3
        recipe.report_batch = 8
        recipe.threads = (1,)
        recipe.min_time_s = 0.0
    if args.epochs is not None:
        recipe.epochs = args.epochs
    if args.finetune_epochs is not None:
        recipe.finetune_epochs = args.finetune_epochs
    recipe.seed = args.seed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = f"MNIST ({args.mnist})" if args.mnist else "scikit-learn digits (8x8 -> 28x28)"
    print(f"edgepack demo: reference CNN on {src}: {len(data[1])} train / {len(data[3])} test "
          "images", flush=True)
    rep, _, _ = demo.run(data, recipe, progress=progress, json_path=str(out / "report.json"),
                         plot_path=str(out / "report.png"))
    print()
    print(rep.table())
    print()
    for line in recipe.log:
        print(line)
    print(f"wrote {out / 'report.json'} and {out / 'report.png'} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    import torch

    import edgepack

    model = _load_model(args.model, args.arch, args.allow_pickle, allow_script=False)
    example = torch.randn(_shape(args.input_shape)) if args.input_shape else None
    if not 0.0 <= args.prune < 1.0:
        raise SystemExit("--prune must be in [0, 1)")
    if args.prune > 0:
        edgepack.prune.blocks(model, args.prune, block=(1, 4))
        edgepack.prune.remove(model)
    fields: dict[str, Any] = {}
    if args.config:
        import json

        try:
            with open(args.config) as f:
                fields = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--config {args.config}: {e}") from e
        if not isinstance(fields, dict):
            raise SystemExit("--config must hold a JSON object of CompressionConfig fields")
        if "skip" in fields:
            fields["skip"] = tuple(fields["skip"])
    if args.activations:
        fields["activations"] = args.activations
    if args.sparse:
        fields["sparse"] = args.sparse
    if args.rows_per_call is not None:
        fields["rows_per_call"] = args.rows_per_call
    try:
        cfg = edgepack.CompressionConfig(**fields)
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--config: {e}") from e
    calib = None
    if cfg.activations == "static":
        if example is None:
            raise SystemExit("--activations static needs --input-shape (random calibration "
                             "data; use the Python API for real calibration batches)")
        calib = [example]
    compressed = edgepack.compress(model, cfg, calib_data=calib)
    if example is not None:
        with torch.inference_mode():
            ref, got = model(example), compressed(example)
        err = float((ref - got).abs().max() / ref.abs().max().clamp_min(1e-12))
        print(f"max relative output difference vs fp32 on a random input: {err:.3g}")
    n = edgepack.save(compressed, args.output)
    fp32 = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(f"wrote {args.output}: {n} bytes ({fp32 / max(n, 1):.1f}x smaller than the fp32 "
          "tensors)")
    info = getattr(compressed, "edgepack_report_", {})
    for name, why in (info.get("kept_fp32") or {}).items():
        print(f"  kept fp32: {name}: {why}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import torch

    import edgepack

    from . import demo

    original = _load_model(args.original, args.arch, args.allow_pickle, allow_script=True)
    variants: dict[str, Any] = {}
    for item in args.compressed:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        variants[name] = edgepack.load(path)
    shape = _shape(args.input_shape)
    example = torch.randn(shape)
    eval_fn = None
    metric = "metric"
    if args.eval or args.mnist:
        data = demo.load_mnist(args.mnist) if args.mnist else demo.load_digits_28()
        xte, yte = data[2], data[3]

        def eval_fn(m: Any) -> float:
            return demo.accuracy(m, xte, yte)

        metric = "test acc %"
    rep = edgepack.report(original, variants, eval_fn=eval_fn, example_input=example,
                          batch_sizes=(1, args.batch), json_path=args.json,
                          threads=_shape(args.threads) if args.threads else None,
                          plot_path=args.plot if eval_fn is not None else None,
                          metric_name=metric, progress=not args.no_progress)
    print(rep.table())
    if args.plot and eval_fn is None:
        print("no plot: it needs a metric (--eval digits or --mnist PATH)", file=sys.stderr)
    return 0
