"""The ``smdrd`` command line: one sub-command per module in this package.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit status.

Only the module of the command being run is imported: `SUMMARIES` names every command's module and one-line help,
which is all ``smdrd --help`` shows, so it starts without the daemon, pydantic or aiohttp (``bench/startup.py``).
``tests/test_imports.py`` keeps `SUMMARIES` equal to what the modules register.
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


#: command name -> (its module, its one-line help), in the order `--help` lists them.
SUMMARIES: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon (collect, journal, parse, rate) until SIGTERM"),
    "check-config": ("check_config", "validate a configuration file (with environment overrides)"),
    "import": ("import_", "backfill saved PBX logs into the database"),
    "parse": ("parse", "parse PBX output and print one JSON object per call record"),
    "formats": ("parse", "list the PBX formats this smdrd understands"),
    "detect": ("parse", "recognise the format of a file from its first lines"),
    "simulate": ("simulate", "play a PBX: write generated call records in a format"),
    "demo": ("simulate", "run the daemon on an embedded default, fed by the simulator"),
    "rate": ("rate", "rate numbers with the configured tariff (or a rate deck)"),
    "report": ("report", "call-accounting reports (extensions, departments, calls, destinations, trunks, days)"),
    "export": ("export", "export the calls of a time range as CSV or JSON lines"),
    "backup": ("backup", "copy the live database to FILE (safe while the daemon runs)"),
    "restore": ("backup", "replace the database with a backup (stop the daemon first)"),
    "rerate": ("rebuild", "re-rate stored calls after a tariff change and say what changed"),
    "reparse": ("rebuild", "rebuild calls from the raw journal after a parser fix"),
    "prune": ("prune", "delete call details and raw lines older than [retention] says (reports stay exact)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser.

    Args:
        command: the command about to run: only its module is imported, every other command is listed by its
            name and `SUMMARIES` help (all that ``--help`` and an unknown command need). ``None`` imports every
            command module.
    """
    parser = argparse.ArgumentParser(
        prog="smdrd",
        description="Call-accounting daemon for office PBXs: collects SMDR/CDR call records, "
        "journals them in SQLite, parses, rates, reports and alerts.",
    )
    parser.add_argument("--version", action="version", version=f"smdrd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        names = [name for name, (owner, _) in SUMMARIES.items() if owner == module]
        if command is None or command in names or not names:
            importlib.import_module(f"smdrd.cli.{module}").register(sub)
        else:
            for name in names:
                sub.add_parser(name, help=SUMMARIES[name][1])
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command named in ``argv`` (the first argument that is not an option), or ``""`` for none: the
    top-level parser has no option that takes a value."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_command_in(sys.argv[1:] if argv is None else argv))
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
