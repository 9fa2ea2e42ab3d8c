"""The `edgepack` command."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(_: argparse.Namespace) -> int:
    import edgepack

    print(json.dumps(edgepack.cpu_info(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgepack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="detected CPU features and the kernels in use").set_defaults(
        func=_cmd_info
    )
    from .cli_demo import add_subcommands

    add_subcommands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
