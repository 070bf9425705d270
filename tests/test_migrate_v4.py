"""A database written by smdrd's schema version 4 (before sites, the time-local call identity and the monthly
rollups) opens with today's code, migrates in place, and reports exactly what it reported before (the
destinations report splits a calling code by country since version 10: the same figures per code).

The fixture (`tests/fixtures/db/smdrd-v4.db.xz`) was made by the code of that version with ``smdrd import``
(``make_v4.sh`` says how); the expected figures of every report kind beside it were printed by that same code
(``figures.py``), so a migration that loses or doubles a call, or a report read that misses a month, shows here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import lzma
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.config import load_config
from smdrd.core import process_frame
from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.parsing import ParserContext
from smdrd.reports.queries import NO_TRUNK, context_from, parse_query, run_report
from smdrd.store.sqlite.backup import read_schema, reference_schema, schema_differences
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.store.sqlite.rollups import ROLLUPS, backfill_sql
from smdrd.store.sqlite.schema import LOCAL_SITE, SCHEMA_VERSION, connect
from smdrd.store.sqlite.writer import JournalWriter

FIXTURES = Path(__file__).parent / "fixtures" / "db"
CONFIG = FIXTURES / "smdrd-v4.toml"


def _figures_module() -> Any:
    spec = importlib.util.spec_from_file_location("v4_figures", FIXTURES / "figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A private copy of the version-4 database."""
    db = tmp_path / "smdrd.db"
    db.write_bytes(lzma.decompress((FIXTURES / "smdrd-v4.db.xz").read_bytes()))
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (4,)
    finally:
        conn.close()
    return db


def counts(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    try:
        return {
            "lines": conn.execute("SELECT status, count(*) FROM lines GROUP BY 1 ORDER BY 1").fetchall(),
            "calls": conn.execute("SELECT count(*), sum(duration), sum(cost_micros) FROM calls").fetchone(),
            "outbox": conn.execute("SELECT alert_id, delivered_at FROM alert_outbox ORDER BY id").fetchall(),
        }
    finally:
        conn.close()


def test_every_report_kind_gives_the_same_figures_after_the_migration(old_db: Path) -> None:
    """An upgrade must not change one figure of one report (calls, minutes, cost, per day or month)."""
    before = counts(old_db)
    conn = connect(str(old_db))
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert schema_differences(read_schema(conn), reference_schema()) == []
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT DISTINCT site_id FROM calls").fetchall() == [(LOCAL_SITE,)]
    finally:
        conn.close()
    assert counts(old_db) == before
    expected = json.loads(lzma.decompress((FIXTURES / "smdrd-v4.expected.json.xz").read_bytes()))
    got = _figures_module().figures(old_db, CONFIG)
    # The details kinds came after version 4: their grand totals must be the calls report's, as recorded then.
    newer = {"extension-details", "department-details"}
    later = set(got) - set(expected)
    assert set(expected) <= set(got) and {json.loads(key)["kind"][0] for key in later} == newer
    for key in later:
        params = json.loads(key)
        calls = expected[json.dumps({**params, "kind": ["calls"]}, sort_keys=True)]["totals"]
        assert {f: got[key]["totals"][f] for f in ("calls", "duration", "cost")} == {
            f: calls[f] for f in ("calls", "duration", "cost")}, key
    for key in expected:
        if '"destinations"' in key:  # split by region since version 10: the same figures per code and class
            assert got[key]["totals"] == expected[key]["totals"], key
            assert by_code(got[key]["rows"]) == by_code(expected[key]["rows"]), key
        else:
            assert got[key]["totals"] == expected[key]["totals"], key
            rows = expected[key]["rows"]
            if '"trunks"' in key:  # since session 9 the internal calls' row is named, not blank
                rows = [{**row, "trunk": row["trunk"] or NO_TRUNK} for row in rows]
            assert [{f: row[f] for f in old} for row, old in zip(got[key]["rows"], rows, strict=True)] == rows, key
            added = {f for row in got[key]["rows"] for f in row} - {f for row in expected[key]["rows"] for f in row}
            assert added <= {"rule"}, key  # columns added since version 4 (the calls' rating rule)


def by_code(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int, Decimal]]:
    """A destinations report's figures per calling code and class, whatever countries they were split into."""
    out: dict[tuple[str, str], tuple[int, int, Decimal]] = {}
    for row in rows:
        calls, duration, cost = out.get((row["code"], row["call_class"]), (0, 0, Decimal(0)))
        out[row["code"], row["call_class"]] = (calls + row["calls"], duration + row["duration"],
                                               cost + Decimal(row["cost"]))
    return out


def test_destinations_name_the_region_of_each_number_after_the_migration(old_db: Path) -> None:
    """Version 4 named every +1 number US: the migrated database names the Montserrat call (+1 664) MS, and
    splits +44 between GB, Guernsey and Jersey, as phonenumbers does for their prefixes."""
    params = {"kind": ["destinations"], "from": ["2026-01-01"], "to": ["2026-12-31"], "top": ["0"],
              "direction": ["all"]}
    ctx = context_from(load_config(CONFIG, use_env=False))
    reader = SqliteReports(old_db)
    try:
        rows = run_report(reader, parse_query(params, ctx), ctx).rows
    finally:
        reader.close()
    countries = {(row["code"], row["country"]) for row in rows}
    assert {("+1", "MS"), ("+1", "US"), ("+44", "GB"), ("+44", "GG"), ("+44", "JE")} <= countries


def test_monthly_rollups_are_the_daily_ones_summed_by_month(old_db: Path) -> None:
    """The monthly grain, backfilled by the migration, holds the same sums as the daily one it coarsens."""
    conn = connect(str(old_db))
    try:
        for rollup in ROLLUPS:
            if rollup.finer is None:
                continue
            stored = sorted(conn.execute(f"SELECT * FROM {rollup.table}").fetchall())
            assert stored, rollup.table
            conn.execute(f"CREATE TEMP TABLE fresh AS SELECT * FROM {rollup.table} WHERE 0")
            conn.execute(backfill_sql(rollup).replace(f"INTO {rollup.table}", "INTO temp.fresh"))
            assert sorted(conn.execute("SELECT * FROM temp.fresh").fetchall()) == stored, rollup.table
            conn.execute("DROP TABLE temp.fresh")
    finally:
        conn.close()


async def _resend(db: Path, raws: list[bytes], source: str) -> JournalWriter:
    parser = AvayaIPOfficeParser(ParserContext(timezone=ZoneInfo("Europe/London")))
    writer = JournalWriter(db, commit_interval=0.01, site="head-office")
    await writer.open()
    task = asyncio.create_task(writer.run())
    for raw in raws:
        writer.submit(process_frame(raw, parser, "utf-8", source=source, peer="pbx", received_at=1))
    await writer.close()
    await task
    return writer


async def test_lines_stored_before_the_migration_are_recognised_when_re_sent(old_db: Path) -> None:
    """A PBX re-sending its buffer just after the upgrade must not double the calls stored before it."""
    conn = sqlite3.connect(old_db)
    raws = [r[0] for r in conn.execute("SELECT raw FROM lines WHERE status = 'parsed' ORDER BY id LIMIT 300")]
    conn.close()
    before = counts(old_db)["calls"]
    writer = await _resend(old_db, raws, "ipoffice")
    assert writer.stats.duplicates == len(raws) and writer.stats.calls == 0
    assert counts(old_db)["calls"] == before
    conn = sqlite3.connect(old_db)
    try:
        assert conn.execute("SELECT name FROM sites WHERE id = ?", (LOCAL_SITE,)).fetchone() == ("head-office",)
        assert conn.execute("SELECT count(*) FROM lines WHERE source = 'ipoffice' AND peer = 'pbx' "
                            "AND status = 'duplicate'").fetchone() == (len(raws),)
    finally:
        conn.close()


async def test_the_same_line_from_another_source_is_another_call(old_db: Path) -> None:
    """Identical bytes from two PBXs (two sources) are two calls: the identity includes the source."""
    conn = sqlite3.connect(old_db)
    raws = [r[0] for r in conn.execute("SELECT raw FROM lines WHERE status = 'parsed' ORDER BY id LIMIT 20")]
    conn.close()
    writer = await _resend(old_db, raws, "second-pbx")
    assert writer.stats.duplicates == 0 and writer.stats.calls == len(raws)


def test_a_report_is_the_first_to_open_the_old_database(old_db: Path) -> None:
    """``smdrd report`` run before the upgraded daemon has started migrates the file, then reads it."""
    from smdrd.store.sqlite.reports import SqliteReports

    with SqliteReports(old_db) as reader:
        assert reader.conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert reader.conn.execute("SELECT sum(calls) FROM rollup_monthly").fetchone() == \
            reader.conn.execute("SELECT sum(calls) FROM rollup_daily").fetchone()


def test_call_listing_totals_match_the_details_after_retention_pruned_some(old_db: Path) -> None:
    """The totals under a call listing count the calls it lists: from the rollups only where no call of the
    range was pruned (the rollups keep pruned calls), from the details otherwise."""
    from datetime import date

    from smdrd.store.api import Filters, utc_bounds
    from smdrd.store.sqlite.reports import SqliteReports

    tz = ZoneInfo("Europe/London")
    connect(str(old_db)).close()
    conn = sqlite3.connect(old_db, isolation_level=None)
    conn.execute("DELETE FROM calls WHERE start_utc < ?", (utc_bounds(date(2026, 3, 1), date(2026, 3, 1), tz)[0],))
    conn.execute("DELETE FROM lines WHERE id NOT IN (SELECT line_id FROM calls)")
    with SqliteReports(old_db) as reader:
        for first, last in ((date(2026, 1, 1), date(2026, 12, 31)), (date(2026, 3, 1), date(2026, 12, 31)),
                            (date(2026, 3, 28), date(2026, 3, 31))):
            f = Filters(first, last, directions=("outbound", "inbound", "internal"))
            lo, hi = utc_bounds(first, last, tz)
            details = conn.execute("SELECT count(*), sum(leg = 0), sum(duration), sum(cost_micros) FROM calls "
                                   "WHERE start_utc >= ? AND start_utc < ?", (lo, hi)).fetchone()
            assert reader.call_totals(f, tz, selected=False) == details, (first, last)
    conn.close()


async def test_the_upgrade_asks_systemd_for_time_and_names_the_site(old_db: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgrading an old database can take longer than systemd's start timeout (migration 5 rebuilds the calls
    table): the writer asks for more time before migrating; the box's own site then carries ``[site] name``."""
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    writer = JournalWriter(old_db, site="hq")
    await writer.open()
    await writer.close_connection()
    message = sock.recv(4096).decode()
    sock.close()
    assert "EXTEND_TIMEOUT_USEC=" in message and f"to {SCHEMA_VERSION}" in message
    conn = sqlite3.connect(old_db)
    try:
        assert conn.execute("SELECT name FROM sites WHERE id = ?", (LOCAL_SITE,)).fetchone() == ("hq",)
    finally:
        conn.close()
