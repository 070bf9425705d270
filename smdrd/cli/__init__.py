"""The ``smdrd`` command line: one sub-command per module in this package.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from smdrd import __version__
from smdrd.errors import SmdrdError

#: command modules, in the order `--help` lists them.
COMMANDS = (
    "run",
    "check_config",
    "import_",
    "parse",
    "simulate",
    "rate",
    "report",
    "export",
    "backup",
    "rebuild",
    "prune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smdrd",
        description="Call-accounting daemon for office PBXs: collects SMDR/CDR call records, "
        "journals them in SQLite, parses, rates, reports and alerts.",
    )
    parser.add_argument("--version", action="version", version=f"smdrd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"smdrd.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status: int = args.func(args)
    except SmdrdError as exc:
        print(f"smdrd: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return status
