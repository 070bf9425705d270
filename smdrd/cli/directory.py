"""``smdrd directory import|export``: the directory kept in the database (``[directory] source = "database"``).

``import`` reads a CSV (columns extension, name, department, parent, budget, valid_from, valid_until; see
docs/reports.md) and replaces the departments and memberships with it, setting the names it gives (as edited
names, which the PBX never overwrites); ``--from-config`` copies the configuration's ``[[departments]]``
instead. ``export`` writes the directory as that CSV. Each import is checked as the configuration is (unknown
parents, cycles, ties), refused whole with the line and column of the first problem, and audited as
``cli:<login>``. A running daemon takes it within seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from smdrd.cli._common import database_actions, input_file, settings_from, store_of
from smdrd.errors import SmdrdError

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.store.api import DirectoryStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``directory`` command and its sub-commands to the ``smdrd`` parser."""
    p = sub.add_parser(
        "directory", help="import or export the directory (departments, memberships, extension names) as CSV",
        description="Move the directory kept in the database ([directory] source = \"database\") in and out as "
        "CSV with the columns extension, name, department, parent, budget, valid_from, valid_until and, "
        "optionally, site (docs/reports.md).")
    action = database_actions(p, run)

    imp = action("import", "replace the departments and memberships with a CSV's, and set the names it gives")
    imp.add_argument("file", nargs="?", help="the CSV file ('-' for standard input)")
    imp.add_argument("--from-config", action="store_true",
                     help="copy the configuration's [[departments]] instead of reading a file")
    action("export", "write the directory as CSV to standard output")


def run(args: argparse.Namespace) -> int:
    from smdrd.directory import export_csv
    from smdrd.store import open_store

    if args.action == "import":
        input_file(args.file)
    settings, _ = settings_from(args, existing_database=args.action != "import")
    store = open_store(store_of(args, settings)).directory()
    try:
        if args.action == "export":
            snapshot = store.snapshot()
            sys.stdout.writelines(export_csv(snapshot, store.names()))
            return 0
        if args.from_config == (args.file is not None):
            args.parser.error("give a CSV file or --from-config (one of them)")
        return _import(args, settings, store)
    finally:
        store.close()


def _import(args: argparse.Namespace, settings: Settings, store: DirectoryStore) -> int:
    from smdrd.cli.user import _actor as actor
    from smdrd.directory import DATABASE, from_config, read_csv, replace_all

    if args.from_config:
        source = "[[departments]]"
        departments, memberships = from_config(settings.departments)
        names: list[tuple[str, str, str]] = []
    else:
        source = "<stdin>" if args.file == "-" else args.file
        try:
            data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
            text = data.decode("utf-8-sig")
        except OSError as exc:
            raise SmdrdError(f"{source}: cannot read it: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SmdrdError(f"{source}: not UTF-8 text (save the file as UTF-8 CSV)") from None
        departments, memberships, names = read_csv(text.splitlines(keepends=True), source)  # DirectoryError
    snapshot = store.snapshot()
    change = replace_all(snapshot, departments, memberships, names, source=Path(source).name[:200])
    version = change.write(store, snapshot, at=int(time.time()), actor=actor())
    print(f"directory version {version}: {len(departments)} departments, {len(memberships)} memberships, "
          f"{len(names)} names (from {source})")
    if settings.directory.source != DATABASE:
        print("note: [directory] source is \"files\": reports use [[departments]] until it is \"database\"",
              file=sys.stderr)
    return 0
