"""The `edgepack` command."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(_: argparse.Namespace) -> int:
    import edgepack

    print(json.dumps(edgepack.cpu_info(), indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import _bench

    print("checking every kernel against its numpy spec, on every ISA this CPU runs:")
    results = _bench.check_all_isas()
    for isa, ok in results.items():
        print(f"  {isa:12} {'ok' if ok else 'MISMATCH'}")
    if not all(results.values()):
        return 1
    if args.check_only:
        return 0
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else _bench.SIZES
    print()
    _bench.run(sizes=sizes, threads=args.threads, budget_s=args.budget)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgepack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="detected CPU features and the kernels in use").set_defaults(
        func=_cmd_info
    )
    b = sub.add_parser("bench", help="check every kernel, then time it next to torch/numpy")
    b.add_argument("--threads", type=int, default=1, help="threads for edgepack and torch")
    b.add_argument("--sizes", default="", help="comma-separated element counts")
    b.add_argument("--budget", type=float, default=0.5, help="seconds per measurement")
    b.add_argument("--check-only", action="store_true", help="only check, do not time")
    b.set_defaults(func=_cmd_bench)
    from .cli_demo import add_subcommands

    add_subcommands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
