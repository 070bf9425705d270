"""``smdrd tariff import|export|history``: the tariff kept in the database (``[tariff] source = "database"``).

``import`` reads a CSV deck (smdrd's columns, or Yeastar P-Series' call-rate export, told apart by the header)
and saves it as a new version (replacing the rules, or appending them with ``--append``); ``export`` writes the
current version (or ``--version N``) as CSV, smdrd's columns or ``--yeastar``'s; ``history`` lists the saved
versions. Each save is audited as ``cli:<login>``. A running daemon takes a version saved here at its next
reload (SIGHUP); one saved in the console is swapped in at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from smdrd.cli._common import database_actions, input_file, settings_from, store_of
from smdrd.errors import SmdrdError

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.store.api import TariffStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tariff`` command and its sub-commands to the ``smdrd`` parser."""
    p = sub.add_parser(
        "tariff", help="import, export or list the versions of the tariff kept in the database",
        description="Move the tariff kept in the database ([tariff] source = \"database\") in and out as CSV. "
        "A deck has smdrd's columns (docs/rating.md) or Yeastar P-Series' call-rate columns (Name, Match Prefix, "
        "Number Length, Rate, Billable Unit(s), Initial Time(s), Initial Cost); the header says which.")
    action = database_actions(p, run)
    imp = action("import", "save a CSV deck as a new version of the tariff")
    imp.add_argument("file", help="the CSV deck ('-' for standard input)")
    imp.add_argument("--append", action="store_true", help="add its rules after the current ones (default: replace)")
    imp.add_argument("--mode", choices=("longest-prefix", "first-match"),
                     help="the matching mode of the new version (default: the current version's, else [tariff] mode)")
    imp.add_argument("--note", default="", help="why, kept with the version")
    exp = action("export", "write the tariff as a CSV deck to standard output")
    exp.add_argument("--yeastar", action="store_true", help="Yeastar P-Series' call-rate columns")
    exp.add_argument("--version", type=int, metavar="N", help="a saved version (default: the current one)")
    action("history", "list the saved versions, newest first")


def run(args: argparse.Namespace) -> int:
    from smdrd.store import open_store

    if args.action == "import":
        input_file(args.file)
    settings, _ = settings_from(args, existing_database=args.action != "import")
    tariffs = open_store(store_of(args, settings)).tariffs()
    try:
        if args.action == "import":
            return _import(args, settings, tariffs)
        if args.action == "export":
            return _export(args, tariffs)
        for v in tariffs.versions(1000):
            when = datetime.fromtimestamp(v.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            print(f"{v.version:>5}  {when}  {v.rules:>7} rules  {v.actor}" + (f"  {v.note}" if v.note else ""))
        return 0
    finally:
        tariffs.close()


def _import(args: argparse.Namespace, settings: Settings, store: TariffStore) -> int:
    from smdrd.cli.user import _actor as actor
    from smdrd.rating.config import TariffBandConfig
    from smdrd.tariffs import document, read_csv, tariff_config

    name = "<stdin>" if args.file == "-" else args.file
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise SmdrdError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SmdrdError(f"{name}: not UTF-8 text (save the deck as UTF-8 CSV)") from None
    latest = store.current()
    base = tariff_config(settings.tariff, latest.document if latest else None)
    if latest is None:  # the first version starts from what [tariff] had (its bands and mode)
        base = settings.tariff
    bands: dict[str, TariffBandConfig] = dict(base.bands)
    rules = read_csv(text, name, bands)  # TariffSourceError names the line and the column
    kept = list(base.rules) if args.append and latest is not None else []
    mode = args.mode or base.mode
    doc = document(mode, bands, kept + rules)
    tariff_config(settings.tariff, doc)  # validates the whole
    info = store.save(doc, expected=latest.info.version if latest else 0, at=int(time.time()), actor=actor(),
                      note=args.note[:200], action="tariff.import", target=Path(name).name[:200],
                      before={"version": latest.info.version, "rules": latest.info.rules} if latest else None,
                      after={"rules": len(kept) + len(rules), "imported": len(rules), "mode": mode})
    print(f"tariff version {info.version}: {info.rules} rules ({len(rules)} imported from {name}, mode {mode})")
    if settings.tariff.source != "database":
        print("note: [tariff] source is \"files\": the daemon rates with the files until it is \"database\"",
              file=sys.stderr)
    return 0


def _export(args: argparse.Namespace, store: TariffStore) -> int:
    from smdrd.rating.config import TariffRuleConfig
    from smdrd.tariffs import write_csv

    version = store.version(args.version) if args.version is not None else store.current()
    if version is None:
        raise SmdrdError(f"no tariff version {args.version}" if args.version is not None else
                         "no tariff version saved yet (smdrd tariff import DECK.csv)")
    rules = [TariffRuleConfig.model_validate(r) for r in version.document.get("rules", [])]
    sys.stdout.write(write_csv(rules, yeastar=args.yeastar))
    return 0
