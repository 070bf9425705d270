"""``smdrd backup FILE`` and ``smdrd restore FILE``: a consistent copy of the live database, and putting one back.

Backup runs beside the daemon (SQLite's online backup API; the daemon keeps writing); the file is mode 0600.
Restore is done with the daemon stopped: ``systemctl stop smdrd; smdrd restore FILE; systemctl start smdrd``.
It verifies a private copy of the backup (integrity, foreign keys, and the whole schema against what this
version's migrations create) before touching anything, refuses anything else with the reason, and refuses a
database that a running process has open unless ``--force``.

The database is the one the configuration names (``[database] path``, or ``SMDRD_DATABASE__PATH``), or
``--database``. Never here: the copying itself (`smdrd.store.sqlite.backup`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smdrd.cli._common import add_config_argument, database_of, settings_from
from smdrd.errors import SmdrdError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "backup", help="copy the live database to FILE (safe while the daemon runs)",
        description="Take a consistent copy of the database with SQLite's online backup API while the daemon "
        "keeps writing. FILE is written atomically, readable by its owner only (mode 0600), and verified as "
        "restore verifies it.")
    b.add_argument("file", type=Path, help="the backup file to write")
    _database_arguments(b)
    b.add_argument("--force", action="store_true", help="replace FILE if it exists")
    b.set_defaults(func=run_backup)

    r = sub.add_parser(
        "restore", help="replace the database with a backup (stop the daemon first)",
        description="Verify a private copy of FILE (PRAGMA integrity_check and foreign_key_check; the whole "
        "schema, exactly what this version's migrations create for FILE's user_version: tables, columns, "
        "indexes, triggers, views), bring an older schema up to date, then write it over the database. "
        "Anything else is refused with what differs, and the database is left untouched. Stop the daemon "
        "first (systemctl stop smdrd) and start it afterwards: a database that a running process has open is "
        "refused unless --force.")
    r.add_argument("file", type=Path, help="the backup file to restore")
    _database_arguments(r)
    r.add_argument("--force", action="store_true",
                   help="restore even though a running process (the daemon) has the database open")
    r.set_defaults(func=run_restore)


def _database_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--database", type=Path, default=None,
                   help="the database file (default: [database] path from the configuration)")


def database_path(args: argparse.Namespace, *, exists: bool) -> Path:
    """``--database``, else the configuration's ``[database] path`` (see `smdrd.cli._common.settings_from`);
    with ``exists``, it must be there."""
    settings, _ = settings_from(args, existing_database=exists)
    return database_of(args, settings)


def _size(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 1_048_576 else f"{n / 1024:.1f} kB"


def run_backup(args: argparse.Namespace) -> int:
    from smdrd.store.sqlite.backup import backup

    source = database_path(args, exists=True)
    result = backup(source, args.file, overwrite=args.force)
    c = result.copy
    print(f"{source} -> {c.path}: {c.lines} lines, {c.calls} calls (up to line {c.last_line_id}), "
          f"{_size(c.size_bytes)}, integrity ok, {result.seconds:.2f} s")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from smdrd.store.sqlite.backup import restore

    if not args.file.is_file():
        raise SmdrdError(f"{args.file}: {'is a folder, not a backup file' if args.file.is_dir() else 'no such file'}")
    target = database_path(args, exists=False)
    result = restore(args.file, target, force=args.force)
    migrated = ("" if result.migrated_from is None
                else f", schema migrated from version {result.migrated_from} to {result.schema_version}")
    print(f"{args.file} -> {target}: {result.lines} lines, {result.calls} calls, integrity and schema ok"
          f"{migrated}. Start the daemon again (systemctl start smdrd).")
    return 0
