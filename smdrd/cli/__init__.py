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
from typing import NoReturn

from smdrd import __version__
from smdrd.errors import SmdrdError

#: command modules, in the order `--help` lists them.
COMMANDS = (
    "run",
    "central",
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
    "user",
    "failed",
    "tariff",
    "directory",
)


#: command name -> (its module, its one-line help), in the order `--help` lists them.
SUMMARIES: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon (collect, journal, parse, rate) until SIGTERM"),
    "central": ("central", "store what every site publishes ([mqtt] publish_journal) into one PostgreSQL store, "
                           "until SIGTERM"),
    "check-config": ("check_config", "validate a configuration file (with environment overrides)"),
    "import": ("import_", "backfill saved PBX logs into the database"),
    "parse": ("parse", "parse PBX output and print one JSON object per call record"),
    "formats": ("parse", "list the PBX formats this smdrd understands"),
    "detect": ("parse", "recognise the format of a file from its first lines"),
    "simulate": ("simulate", "play a PBX: write generated call records in a format"),
    "demo": ("simulate", "run the daemon on an embedded default, fed by the simulator"),
    "rate": ("rate", "rate numbers with the configured tariff (or a rate deck)"),
    "report": ("report", "call-accounting reports (extensions, departments, calls, destinations, trunks, days, "
                         "extension-details, department-details)"),
    "export": ("export", "export the calls of a time range as CSV or JSON lines"),
    "backup": ("backup", "copy the live database to FILE (safe while the daemon runs)"),
    "restore": ("backup", "replace the database with a backup (stop the daemon first)"),
    "rerate": ("rebuild", "re-rate stored calls after a tariff change and say what changed"),
    "reparse": ("rebuild", "rebuild calls from the raw journal after a parser fix"),
    "prune": ("prune", "delete call details and raw lines older than [retention] says (reports stay exact)"),
    "user": ("user", "add, list, change the password of, or remove the console's users"),
    "errors": ("failed", "list the journalled lines that could not be parsed, and why"),
    "tariff": ("tariff", "import, export or list the versions of the tariff kept in the database"),
    "directory": ("directory", "import or export the directory (departments, memberships, extension names) as CSV"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line saying what is wrong and where to look (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser.

    Args:
        command: the command about to run: only its module is imported, every other command is listed by its
            name and `SUMMARIES` help (all that ``--help`` and an unknown command need). ``None`` imports every
            command module.
    """
    parser = _Parser(
        prog="smdrd",
        description="Call-accounting daemon for office PBXs: collects SMDR/CDR call records, "
        "journals them in SQLite (or PostgreSQL: [database] url), parses, rates, reports and alerts.",
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
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser(command)
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so the line points at its --help
        _subparser(parser, getattr(args, "command", None)).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    who = f"smdrd {args.command}"
    try:
        status: int = args.func(args)
    except SmdrdError as exc:
        print(f"{who}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file a user named: missing, unreadable, a folder, a full disk
        print(f"{who}: {_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
            raise
        named = getattr(args, "database", None)
        print(f"{who}: {f'{named}: ' if named else ''}the database cannot be used: {exc} (is it an smdrd SQLite "
              "file, in a folder this user can write?)", file=sys.stderr)
        return 1
    return status


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            chosen: argparse.ArgumentParser = action.choices[command]
            return chosen
    return parser


def _os_error(exc: OSError) -> str:
    """``exc`` as one line: the file, then what is wrong with it (``[Errno 2] No such file...`` reworded)."""
    import errno

    reason = {errno.ENOENT: "no such file or folder", errno.EACCES: "permission denied",
              errno.EISDIR: "is a folder, not a file", errno.ENOSPC: "no space left on the device"}.get(
        exc.errno or 0, (exc.strerror or type(exc).__name__).lower())
    name = exc.filename if exc.filename is not None else ""
    return f"{name}: {reason}" if name else reason
