"""Which tariff priced each call (issue 15, point 4): ``smdrd import`` stores the version in force with every call
(its in-process path and its parsing worker), ``smdrd rerate`` moves the calls to the version in force (on
either store), a tariff from the files is named by its digest, and a database made before calls kept it opens
with those calls' version "unknown". (The live path, the console's pages and the re-rate preview:
tests/test_console_rates.py, and on PostgreSQL tests/test_console_postgres.py.)"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from smdrd.console.rates import version_text
from smdrd.rating import Rating
from smdrd.store import open_store
from smdrd.store.sqlite.rows import CALL_COLUMNS
from smdrd.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION, connect
from tests.test_console_overview import avaya_line
from tests.test_reports import CALLS, record, target, write_rated
from tests.test_rollups import _call
from tests.test_tariff_db import YEASTAR, cli

__all__ = ["target"]  # the fixture: each store in turn


async def test_both_stores_keep_the_version_of_the_tariff_that_priced_each_call(target: Path | str) -> None:
    calls = [record(c) for c in CALLS[:3]]
    for i, version in enumerate(("3", "files:0123456789abcdef")):
        rating = calls[i].rating
        assert isinstance(rating, Rating)
        calls[i] = dataclasses.replace(calls[i], rating=dataclasses.replace(rating, tariff_version=version))
    calls[2] = dataclasses.replace(calls[2], rating=None)
    await write_rated(target, calls)
    conn: Any = psycopg.connect(target) if isinstance(target, str) else sqlite3.connect(target)
    try:
        stored = conn.execute("SELECT tariff_version FROM calls ORDER BY id").fetchall()
    finally:
        conn.close()
    assert stored == [("3",), ("files:0123456789abcdef",), (None,)]


def versions(db: Path | str) -> dict[int, str | None]:
    conn: Any = psycopg.connect(db) if isinstance(db, str) else sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT duration, tariff_version FROM calls ORDER BY id").fetchall())
    finally:
        conn.close()


def test_import_stores_the_version_in_force_and_rerate_moves_calls_to_the_next(tmp_path: Path,
                                                                             target: Path | str) -> None:
    db = target
    where = f'url = "{db}"' if isinstance(db, str) else f'path = "{db}"'
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[site]\ncountry = "GB"\narea_code = "020"\ntimezone = "Europe/Warsaw"\n'
                      f'[database]\n{where}\n[tariff]\nsource = "database"\ncurrency = "GBP"\n')
    deck = tmp_path / "yeastar.csv"
    deck.write_text(YEASTAR)
    assert cli("tariff", "import", str(deck), "--config", str(config)).returncode == 0  # version 1
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    first.write_bytes(avaya_line("201", "902079460000", 61))
    second.write_bytes(avaya_line("202", "902079460000", 62))
    in_process = [] if isinstance(db, str) else ["--in-process"]  # (SQLite's alone)
    for log, how in ((first, in_process), (second, [])):  # here, and in the import's parsing worker
        done = cli("import", str(log), "--format", "avaya-ipo", "--config", str(config), *how)
        assert done.returncode == 0, done.stderr
    assert versions(db) == {61: "1", 62: "1"}
    assert cli("tariff", "import", str(deck), "--config", str(config)).returncode == 0  # version 2, same rules
    moved = cli("rerate", "--from", "2000-01-01", "--to", "2100-01-01", "--config", str(config), "--json")
    assert moved.returncode == 0, moved.stderr
    summary = json.loads(moved.stdout)
    assert summary["changed"] == 0 and summary["version_changes"] == [{"from": "1", "to": "2", "calls": 2}]
    assert versions(db) == {61: "2", 62: "2"}
    # A tariff from the files: its digest.
    files = tmp_path / "files.toml"
    files.write_text(config.read_text().replace('source = "database"', 'source = "files"'))
    third = tmp_path / "third.log"
    third.write_bytes(avaya_line("203", "902079460000", 63))
    assert cli("import", str(third), "--format", "avaya-ipo", "--config", str(files)).returncode == 0
    label = versions(db)[63]
    assert label is not None and label.startswith("files:") and len(label) == len("files:") + 16
    assert version_text(label) == (f"the tariff from the files (digest {label[6:]})", "/rates")


def test_a_database_of_the_previous_schema_version_opens_and_its_calls_have_no_known_version(
        tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    for number in range(1, SCHEMA_VERSION):
        conn.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(calls)") if row[1] in CALL_COLUMNS]
    row = dict(zip(("line_id", *CALL_COLUMNS), _call(1, "2026-03-02T10:00:00+01:00"), strict=True))
    conn.execute("INSERT INTO lines VALUES (1, 'pbx', '', 1, 'test', x'41', 'parsed', NULL)")
    conn.execute(f"INSERT INTO calls (line_id, {', '.join(columns)}) VALUES (1, {', '.join('?' * len(columns))})",
                 [row[c] for c in columns])
    conn.close()
    connect(str(old)).close()  # opened by this smdrd: migrated
    calls = open_store(old).calls()
    try:
        call = calls.call(1)
    finally:
        calls.close()
    assert call is not None and call.cost_micros == 1000 and call.tariff_version is None
    assert version_text(call.tariff_version) == ("unknown version", "")
