"""Retention: old call details and raw lines go, report figures stay, the live path keeps committing.

Calls are written through the real journal writer (so the rollup trigger keeps the figures as in the daemon)
into real SQLite files; the live-path test runs a real daemon over loopback TCP while a large backlog is pruned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.config import Settings, load_config
from smdrd.core import ERROR, PARSED, Entry
from smdrd.errors import ConfigError
from smdrd.journal import RatedCall
from smdrd.rating import Rating
from smdrd.record import CallRecord, Direction
from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.reports.render import to_dict
from smdrd.store.sqlite.reports import SqliteReports, connect_readonly
from smdrd.store.sqlite.retention import RAW_PRUNED, Cutoffs, PruneCounts, cutoffs, plan, prune
from smdrd.store.sqlite.rollups import ROLL_UP
from smdrd.store.sqlite.rows import CALL_COLUMNS, call_row
from smdrd.store.sqlite.schema import connect
from smdrd.store.sqlite.writer import JournalWriter

TZ = ZoneInfo("Europe/Warsaw")
NOW = datetime(2026, 4, 10, 12, 0, tzinfo=TZ)
CALLS_DAYS = 400  # cutoff: 2025-03-06 00:00 site time
LINES_DAYS = 100  # cutoff: 2025-12-31 00:00 site time

DEPARTMENTS: list[dict[str, Any]] = [
    {"name": "Sales", "extensions": ["200-209"], "budget": "100"},
    {"name": "Support", "extensions": ["300-301"], "members": [{"extensions": ["205"], "valid_from": "2025-01-01"}]},
]


@dataclass(frozen=True, slots=True)
class Call:
    start: str
    extension: str
    direction: str
    call_class: str
    duration: int
    cost: str | None  # None: not rated
    trunk: str = "T1"
    e164: str = "+48221234567"
    key: str = ""
    leg: int = 0


# Three years of calls; the first eight legs start before the calls cutoff (2025-03-06 site time).
CALLS = [
    Call("2023-05-10T10:00:00", "201", "outbound", "national", 120, "0.50"),
    Call("2023-11-20T15:00:00", "205", "outbound", "international", 300, "2.00", trunk="T2", e164="+442071234567"),
    Call("2024-02-29T09:00:00", "211", "outbound", "mobile", 60, "0.30", e164="+48600123456"),
    Call("2024-07-01T10:00:00", "300", "outbound", "national", 200, "0.80", key="X1"),
    Call("2024-07-01T10:03:20", "301", "outbound", "national", 100, "0.40", key="X1", leg=1),
    Call("2024-12-31T23:30:00", "999", "outbound", "local", 30, "0.10", e164="+48521234567"),
    Call("2025-01-01T00:30:00", "201", "inbound", "national", 400, "0"),
    Call("2025-03-05T23:59:59", "201", "outbound", "national", 45, "0.20"),  # the last second before the cutoff
    Call("2025-03-06T00:00:00", "202", "outbound", "national", 50, "0.25"),  # the cutoff itself: kept
    Call("2025-06-15T11:00:00", "201", "internal", "internal", 50, "0", trunk="", e164=""),
    Call("2025-09-01T16:45:00", "300", "outbound", "international", 600, "3.50", trunk="T2", e164="+12125551234"),
    Call("2026-01-15T08:00:00", "207", "outbound", "national", 70, None),
    Call("2026-03-30T16:45:00", "205", "outbound", "mobile", 60, "0.30", e164="+48600123456"),
    Call("2026-04-09T10:00:00", "201", "outbound", "national", 90, "0.35"),
]
OLD_LEGS = 8


def record(c: Call) -> RatedCall:
    start = datetime.fromisoformat(c.start).replace(tzinfo=TZ)
    rec = CallRecord(format="test", start=start, duration=c.duration, direction=Direction(c.direction),
                     extension=c.extension, number=c.e164.lstrip("+"), trunk=c.trunk, leg=c.leg, call_key=c.key)
    rating = None if c.cost is None else Rating(c.e164, c.call_class, "rule", c.e164[:3], Decimal(c.cost), "EUR")
    return RatedCall(f"test:{c.start}:{c.extension}:{c.leg}", rec, rating)


def received(c: Call) -> int:
    """When the PBX sent the call's line: at the end of the call."""
    return int((datetime.fromisoformat(c.start).replace(tzinfo=TZ).timestamp() + c.duration) * 1_000_000)


async def write_entries(db: Path, entries: list[Entry]) -> None:
    """Store ``entries`` as the daemon does, through the batching journal writer."""
    writer = JournalWriter(db, commit_interval=0.005)
    await writer.open()
    task = asyncio.create_task(writer.run())
    for entry in entries:
        writer.submit(entry)
    await writer.close()
    await task


def call_entries(calls: list[Call]) -> list[Entry]:
    return [Entry("pbx", "", received(c), "test", f"line {c.start} {c.extension}".encode(), PARSED,
                  calls=[record(c)]) for c in calls]


def error_entry(at: datetime, text: str) -> Entry:
    return Entry("pbx", "", int(at.timestamp() * 1_000_000), "test", text.encode(), ERROR, "no field 3")


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "smdrd.db"
    entries = call_entries(CALLS)
    entries.insert(3, error_entry(datetime(2024, 3, 1, tzinfo=TZ), "old garbage"))
    entries.append(error_entry(datetime(2026, 4, 1, tzinfo=TZ), "new garbage"))
    await write_entries(path, entries)
    return path


@pytest.fixture
def rw(db: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(str(db))
    yield conn
    conn.close()


def settings_for(db: Path, **extra: Any) -> Settings:
    return Settings.model_validate({
        "site": {"timezone": "Europe/Warsaw", "country": "PL"},
        "database": {"path": str(db), "commit_interval_ms": 5},
        "tariff": {"currency": "EUR", "decimals": 2},
        "departments": DEPARTMENTS,
        **extra,
    })


#: every accounting report, in the variants a user asks for, over the whole range of the data.
REPORTS: list[dict[str, list[str]]] = [
    {"kind": [kind], "direction": [direction], **extra}
    for kind, extra in [("extensions", {}), ("extensions", {"by_class": ["1"]}), ("departments", {}),
                        ("departments", {"by_class": ["1"]}), ("destinations", {"top": ["0"]}),
                        ("destinations", {"by": ["count"]}), ("trunks", {}), ("days", {}),
                        ("extensions", {"department": ["Support"]})]
    for direction in ("outbound", "all")
]


def all_reports(db: Path, kinds: list[dict[str, list[str]]], first: str = "2023-01-01",
                last: str = "2026-04-10") -> list[str]:
    ctx = context_from(settings_for(db))
    conn = SqliteReports(db)
    try:
        return [json.dumps(to_dict(run_report(conn, parse_query(
            {**params, "from": [first], "to": [last]}, ctx), ctx)), sort_keys=True)
            for params in kinds]
    finally:
        conn.close()


def rollups(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
            for t in ("rollup_daily", "rollup_hourly", "rollup_destinations")}


def call_listing(db: Path) -> list[dict[str, Any]]:
    ctx = context_from(settings_for(db))
    conn = SqliteReports(db)
    try:
        q = parse_query({"kind": ["calls"], "direction": ["all"], "from": ["2023-01-01"], "to": ["2026-04-10"],
                         "page_size": ["0"]}, ctx)
        rows: list[dict[str, Any]] = to_dict(run_report(conn, q, ctx))["rows"]
        return rows
    finally:
        conn.close()


def the_cut() -> Cutoffs:
    return cutoffs(NOW, TZ, calls_days=CALLS_DAYS, lines_days=LINES_DAYS)


def test_cutoffs_are_a_site_local_midnight_and_zero_keeps_for_ever() -> None:
    """A day's call listing is either whole or gone: the calls cutoff is a midnight in the site's timezone.
    Raw lines never outlive the call details; 0 keeps for ever."""
    cut = the_cut()
    assert cut.calls_before == int(datetime(2025, 3, 6, tzinfo=TZ).timestamp())
    assert cut.lines_before == int(datetime(2025, 12, 31, tzinfo=TZ).timestamp()) * 1_000_000
    assert cutoffs(NOW, TZ, calls_days=0, lines_days=0) == Cutoffs(None, None)
    shorter_calls = cutoffs(NOW, TZ, calls_days=60, lines_days=400)
    assert shorter_calls.lines_before == shorter_calls.calls_before * 1_000_000  # type: ignore[operator]
    assert cutoffs(NOW, TZ, calls_days=60, lines_days=0) == shorter_calls
    # Over a change to summer time the cutoff is still a local midnight (23-hour day in between).
    assert cutoffs(datetime(2026, 3, 30, 1, tzinfo=TZ), TZ, calls_days=31, lines_days=0).calls_before == int(
        datetime(2026, 2, 27, tzinfo=TZ).timestamp())


def test_reports_over_the_pruned_period_give_the_same_figures(db: Path, rw: sqlite3.Connection) -> None:
    """The acceptance test: every accounting report over three years, in JSON, is identical before and after
    pruning; the rollup tables are untouched. Only the call listing loses the pruned days (and exactly those)."""
    before = all_reports(db, REPORTS)
    before_rollups = rollups(rw)
    listing = call_listing(db)
    assert len(listing) == len(CALLS)
    assert json.loads(before[0])["totals"]["calls"] == 11  # sanity: the data is there to compare

    counts = prune(rw, the_cut(), batch_rows=3)

    assert (counts.calls, counts.lines_deleted, counts.lines_emptied) == (OLD_LEGS, 9, 3)
    assert all_reports(db, REPORTS) == before
    assert rollups(rw) == before_rollups
    assert call_listing(db) == [row for row in listing if row["start"] >= "2025-03-06"]
    assert len(call_listing(db)) == len(CALLS) - OLD_LEGS


async def test_a_late_old_call_after_a_prune_leaves_the_listing_totals_equal_to_its_rows(
        db: Path, rw: sqlite3.Connection) -> None:
    """A saved log imported after a prune brings a call older than every pruned day. The oldest stored call is
    then older than the pruned calls, yet the call listing's totals must still add up its rows, not the rollups
    (which count the pruned calls too): retention records the last day it pruned, and the listing's totals of a
    range starting on or before it come from the details. Ranges after that day still use the rollups."""
    prune(rw, the_cut(), batch_rows=3)
    assert rw.execute("SELECT pruned_through FROM retention_horizon").fetchall() == [("2025-03-05",)]
    late = Call("2023-01-02T09:00:00", "203", "outbound", "national", 80, "0.40")
    # the late call, then a new one (retention never deletes the call with the highest id)
    newest = Call("2026-04-10T08:00:00", "201", "outbound", "national", 60, "0.30")
    await write_entries(db, call_entries([late, newest]))

    ctx = context_from(settings_for(db))
    conn = SqliteReports(db)
    try:
        for first, last in (("2023-01-01", "2026-04-10"), ("2025-03-05", "2025-12-31"), ("2025-03-06", "2026-04-10")):
            report = to_dict(run_report(conn, parse_query({"kind": ["calls"], "direction": ["all"], "from": [first],
                                                           "to": [last], "page_size": ["0"]}, ctx), ctx))
            rows = report["rows"]
            assert report["totals"]["calls"] == len([r for r in rows if r["leg"] == 0]), (first, last)
            assert report["totals"]["duration"] == sum(r["duration"] for r in rows), (first, last)
        assert [r["start"][:10] for r in rows][:1] == ["2025-03-06"]
    finally:
        conn.close()
    # A later prune with an earlier cutoff (a shorter retention undone) deletes the late call, and leaves the
    # horizon where it was: it never moves back.
    assert prune(rw, cutoffs(NOW, TZ, calls_days=1000, lines_days=0), batch_rows=3).calls == 1
    assert rw.execute("SELECT pruned_through FROM retention_horizon").fetchall() == [("2025-03-05",)]


def test_dry_run_counts_what_pruning_then_does(db: Path, rw: sqlite3.Connection) -> None:
    """``smdrd prune --dry-run`` promises numbers; the real run must keep them, and a second run finds nothing."""
    promised = plan(rw, the_cut())
    assert rw.execute("SELECT count(*) FROM calls").fetchone()[0] == len(CALLS)  # nothing changed
    done = prune(rw, the_cut(), batch_rows=2)
    assert (promised.calls, promised.lines_deleted, promised.lines_emptied) == (
        done.calls, done.lines_deleted, done.lines_emptied) == (OLD_LEGS, 9, 3)
    again = prune(rw, the_cut(), batch_rows=2)
    assert again == PruneCounts(batches=1)  # one calls batch that found nothing, no lines batch
    assert plan(rw, the_cut()).total == 0


def test_lines_of_kept_calls_lose_their_bytes_but_keep_row_and_status(db: Path, rw: sqlite3.Connection) -> None:
    """With raw lines kept shorter than calls, the foreign key from calls to lines must hold: a line whose call
    is kept stays (status and all) with its bytes emptied; old lines without a call go; recent lines are
    untouched."""
    prune(rw, the_cut(), batch_rows=1000)
    assert rw.execute("PRAGMA foreign_key_check").fetchall() == []
    rows = rw.execute("SELECT l.raw, l.status, c.start FROM lines AS l LEFT JOIN calls AS c ON c.line_id = l.id "
                      "ORDER BY l.received_at").fetchall()
    assert [(raw, status, (start or "")[:10]) for raw, status, start in rows] == [
        (RAW_PRUNED, "parsed", "2025-03-06"),
        (RAW_PRUNED, "parsed", "2025-06-15"),
        (RAW_PRUNED, "parsed", "2025-09-01"),
        (b"line 2026-01-15T08:00:00 207", "parsed", "2026-01-15"),
        (b"line 2026-03-30T16:45:00 205", "parsed", "2026-03-30"),
        (b"new garbage", "error", ""),
        (b"line 2026-04-09T10:00:00 201", "parsed", "2026-04-09"),
    ]


def test_raw_lines_go_with_their_calls_when_calls_are_kept_shorter(db: Path, rw: sqlite3.Connection) -> None:
    """calls_days shorter than lines_days (privacy): a raw line holds the same number as its call, so it does
    not stay behind once the call details are gone."""
    orphans = ("SELECT raw FROM lines AS l WHERE status = 'parsed' "
               "AND NOT EXISTS (SELECT 1 FROM calls WHERE line_id = l.id)")
    counts = prune(rw, cutoffs(NOW, TZ, calls_days=CALLS_DAYS, lines_days=3000), batch_rows=1000)
    assert (counts.calls, counts.lines_deleted, counts.lines_emptied) == (OLD_LEGS, 8, 0)
    # Lines are cut by when they arrived: the call that started at 23:59:59 arrived after midnight, so its
    # line's row goes one run later; its bytes went with its call (a reparse must not make the call again).
    assert rw.execute(orphans).fetchall() == [(RAW_PRUNED,)]
    prune(rw, cutoffs(NOW + timedelta(days=1), TZ, calls_days=CALLS_DAYS, lines_days=3000), batch_rows=1000)
    assert rw.execute(orphans).fetchall() == []


async def test_the_newest_line_is_kept_so_line_ids_never_come_back(tmp_path: Path) -> None:
    """The writer numbers lines from max(id) + 1: if pruning took the newest line, a reused id could meet an
    export or backup watermark. After a quiet spell longer than the retention, one line stays, and the next
    line received continues the numbering."""
    path = tmp_path / "smdrd.db"
    await write_entries(path, [error_entry(datetime(2024, 1, d, tzinfo=TZ), f"old {d}") for d in range(1, 6)])
    conn = connect(str(path))
    try:
        counts = prune(conn, the_cut(), batch_rows=2)
        assert counts.lines_deleted == 4
        assert conn.execute("SELECT id, raw FROM lines").fetchall() == [(5, b"old 5")]
    finally:
        conn.close()
    await write_entries(path, [error_entry(NOW, "new")])
    conn = connect(str(path))
    try:
        assert conn.execute("SELECT max(id) FROM lines").fetchone()[0] == 6
    finally:
        conn.close()


def test_no_write_lock_is_held_between_batches(tmp_path: Path) -> None:
    """The journal writer must get the lock in every pause: another connection that refuses to wait at all
    (busy_timeout 0) takes the write lock in each pause. And each batch deletes at most batch_rows rows."""
    path = tmp_path / "smdrd.db"
    conn = connect(str(path))
    cols = ", ".join(CALL_COLUMNS)
    conn.execute("BEGIN")
    for i in range(23):
        conn.execute("INSERT INTO lines VALUES (?, 'pbx', '', ?, 'test', x'41', 'parsed', NULL)",
                     (i + 1, 1_000_000 * (1_600_000_000 + i)))
        row = record(Call(f"2020-09-{i + 1:02d}T10:00:00", "201", "outbound", "national", 10, "0.01"))
        conn.execute(f"INSERT INTO calls (line_id, {cols}) VALUES (?, {', '.join('?' * len(CALL_COLUMNS))})",
                     (i + 1, *call_row(row, "pbx")))
    conn.execute("COMMIT")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    sizes: list[int] = []
    last = [conn.execute("SELECT count(*) FROM calls").fetchone()[0]]

    def pause() -> None:
        other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if pruning still held the lock
        other.execute("COMMIT")
        now_calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        sizes.append(last[0] - now_calls)
        last[0] = now_calls

    try:
        counts = prune(conn, the_cut(), batch_rows=5, pause=pause)
    finally:
        other.close()
        conn.close()
    assert counts.calls == 22 and counts.lines_deleted == 22  # the newest call (and its line) kept: ids never reused
    assert sizes[:4] == [5, 5, 5, 5]  # four full calls batches, each followed by a pause; then the lines
    assert len(sizes) == 4 + 4  # 22 lines to delete: 5 batches of 5 (the last holds the newest, kept), 4 pauses


def test_batch_queries_walk_an_index_without_sorting(rw: sqlite3.Connection) -> None:
    """Each batch must cost the same on a backlog of millions: the old rows are found through the calls_start
    and lines_received indexes in order, never collected and sorted (which would make pruning quadratic)."""
    from smdrd.store.sqlite import retention

    calls_plan = " ".join(r[3] for r in rw.execute("EXPLAIN QUERY PLAN " + retention._OLDEST_CALLS, (0, 10)))
    lines_plan = " ".join(r[3] for r in rw.execute("EXPLAIN QUERY PLAN " + retention._SELECT_LINES, (0, 0, 0, 10)))
    assert "calls_start" in calls_plan and "TEMP B-TREE" not in calls_plan
    assert "lines_received" in lines_plan and "TEMP B-TREE" not in lines_plan
    assert "calls_line" in lines_plan  # "has a call" is an index look-up, not a scan of calls


def test_retention_config_defaults_limits_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults keep details ten years and raw lines 400 days; a too-short calls period is refused naming the key;
    the environment overrides like any other key."""
    default = Settings().retention
    assert (default.calls_days, default.lines_days, default.interval_minutes) == (3660, 400, 60.0)
    path = tmp_path / "smdrd.toml"
    path.write_text("[retention]\ncalls_days = 10\n")
    with pytest.raises(ConfigError, match=r"retention\.calls_days: expected 0 \(keep for ever\) or at least 31"):
        load_config(path, use_env=False)
    path.write_text("[retention]\ncalls_days = 0\nlines_days = 30\nbatch_rows = 200\n")
    monkeypatch.setenv("SMDRD_RETENTION__LINES_DAYS", "45")
    s = load_config(path)
    assert (s.retention.calls_days, s.retention.lines_days, s.retention.batch_rows) == (0, 45, 200)


async def test_prune_command_dry_run_then_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``smdrd prune --dry-run`` changes nothing and says what would go; ``smdrd prune`` then deletes exactly
    that; report totals are the same before and after."""
    from smdrd.cli import prune as prune_cli

    db = tmp_path / "smdrd.db"
    today = datetime.now(TZ).replace(microsecond=0, tzinfo=None)
    calls = [Call((today - timedelta(days=days)).isoformat(), "201", "outbound", "national", 60, "0.10")
             for days in (900, 800, 500, 5, 1)]
    await write_entries(db, call_entries(calls))
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[site]\ntimezone = "Europe/Warsaw"\ncountry = "PL"\n[database]\npath = "{db}"\n'
                      "[retention]\ncalls_days = 400\nlines_days = 400\npause_ms = 0\n")

    def smdrd_prune(*argv: str) -> str:
        parser = argparse.ArgumentParser(prog="smdrd")
        prune_cli.register(parser.add_subparsers())
        args = parser.parse_args(["prune", "--config", str(config), *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    def totals() -> Any:
        first, last = (today - timedelta(days=1000)).date(), today.date()
        return json.loads(all_reports(db, [{"kind": ["days"]}], first.isoformat(), last.isoformat())[0])["totals"]

    before = totals()
    assert "would delete 3 calls, 3 raw lines; would empty 0" in smdrd_prune("--dry-run")
    assert connect_readonly(db).execute("SELECT count(*) FROM calls").fetchone()[0] == 5
    assert "deleted 3 calls, 3 raw lines; emptied 0" in smdrd_prune()
    assert "deleted 0 calls, 0 raw lines" in smdrd_prune()
    assert totals() == before
    with pytest.raises(SystemExit):
        smdrd_prune("--calls-days", "7")
    assert "at least 31" in capsys.readouterr().err


async def six_old_calls(tmp_path: Path, db: Path | str, *, received_at: int) -> tuple[
        Path, Callable[[], tuple[int, dict[str, list[tuple[Any, ...]]]]]]:
    """Six Avaya IP Office calls of 14 July 2017, journalled as received at ``received_at`` (UTC µs) into ``db``
    (either store); the configuration that reads it, and a reader of (the calls stored, every rollup)."""
    import psycopg

    from smdrd.core import process_frame
    from smdrd.parsing import ParserContext, get_parser_class
    from smdrd.rating import Rater
    from smdrd.testing import write_entries as store_entries

    config = tmp_path / "smdrd.toml"
    where = f'url = "{db}"' if isinstance(db, str) else f'path = "{db}"'
    config.write_text(f'[site]\ntimezone = "Europe/Warsaw"\ncountry = "PL"\n[database]\n{where}\n')
    settings = load_config(config, use_env=False)
    parser = get_parser_class("avaya-ipo")(ParserContext(timezone=TZ, year=None, options={}))
    rate = Rater.from_config(settings.site, settings.tariff).rate
    await store_entries(db, [process_frame(IPO_LINE.format(start="2017/07/14 12:00:00", id=i).encode(), parser,
                                           "utf-8", source="pbx", peer="", received_at=received_at + i, rate=rate)
                             for i in range(6)])

    def stored() -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
        conn: Any = psycopg.connect(db) if isinstance(db, str) else connect(str(db))
        try:
            return conn.execute("SELECT count(*) FROM calls").fetchone()[0], rollups(conn)
        finally:
            conn.close()

    return config, stored


def prune_then_reparse(db: Path | str, config: Path, cut: Cutoffs, *, prune: bool) -> PruneCounts:
    """Retention with ``cut`` (when ``prune``), then ``smdrd reparse`` of everything; what retention did."""
    from smdrd.cli import rebuild
    from smdrd.store import open_store

    done = PruneCounts()
    if prune:
        retention = open_store(db).retention()
        try:
            done = retention.prune(cut, batch_rows=4)
        finally:
            retention.close()
    cli = argparse.ArgumentParser(prog="smdrd")
    rebuild.register(cli.add_subparsers())
    args = cli.parse_args(["reparse", "--config", str(config)])
    assert args.func(args) == 0
    return done


@pytest.mark.parametrize("pruned", [False, True])
async def test_reparse_leaves_calls_of_emptied_lines_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           pruned: bool, any_database: Path | str) -> None:
    """After retention emptied old raw lines, ``smdrd reparse`` over that period must not turn the kept calls
    into parse errors: the calls and every report figure stay as they were (on either store)."""
    old = int(datetime(2017, 7, 14, 12, 5, tzinfo=TZ).timestamp() * 1_000_000)
    config, stored = await six_old_calls(tmp_path, any_database, received_at=old)
    before = stored()
    done = prune_then_reparse(any_database, config, cutoffs(NOW, TZ, calls_days=0, lines_days=31), prune=pruned)
    capsys.readouterr()
    assert done.lines_emptied == (6 if pruned else 0)
    assert stored() == before == (6, before[1])


async def test_a_reparse_after_calls_were_pruned_adds_nothing_back(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     any_database: Path | str) -> None:
    """Calls pruned while their lines were young (a saved log imported today, a call reported after the
    cutoff's midnight): the lines lose their bytes with the calls, so ``smdrd reparse`` cannot make the calls
    again and add them to rollups that still count them (every report counted them twice)."""
    received = int(NOW.timestamp() * 1_000_000)  # today: the lines are young, their calls old
    config, stored = await six_old_calls(tmp_path, any_database, received_at=received)
    _, totals = stored()
    done = prune_then_reparse(any_database, config, cutoffs(NOW, TZ, calls_days=31, lines_days=0), prune=True)
    capsys.readouterr()
    kept = 0 if isinstance(any_database, str) else 1  # SQLite keeps the call with the highest id: ids never return
    assert done.calls == 6 - kept
    assert stored() == (kept, totals)


# ---- the live path: a real daemon ingests over TCP while a large backlog is pruned ----

IPO_LINE = ("{start},00:01:01,0,217,O,600988600,0600988600,,0,{id},0,E217,GRZYBEK,T9005,Line 5.0,"
            "0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")
BACKLOG = 200_000


def seed_backlog(path: Path, n: int) -> None:
    """``n`` old calls (2017), each with its line, written straight into the tables (fast) with the rollup
    trigger running as usual."""
    conn = connect(str(path))
    old = 1_500_000_000
    cols = ", ".join(CALL_COLUMNS)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO lines VALUES (?, 'old', '', ?, 'avaya-ipo', ?, 'parsed', NULL)",
                     ((i, (old + i * 60) * 1_000_000, IPO_LINE.format(start="2017/07/14 12:00:00", id=i).encode())
                      for i in range(1, n + 1)))
    conn.executemany(
        f"INSERT INTO calls (line_id, {cols}) VALUES (?, {', '.join('?' * len(CALL_COLUMNS))})",
        ((i, f"old:{i}", "old", "avaya-ipo", f"k{i}", 0, "2017-07-14T12:00:00+02:00", old + i * 60, 61, 0,
          "outbound", str(200 + i % 100), "0600988600", "T9005", "", "", str(i), 1, "", "{}", "+48600988600",
          "mobile", "r", "+4860", 120000, "PLN", "PL", None) for i in range(1, n + 1)))
    for statement in ROLL_UP:  # as every writer of calls does in its transaction
        conn.execute(statement, (0,))
    conn.execute("COMMIT")
    conn.close()


def test_emptied_raw_bytes_become_free_pages_for_new_rows(tmp_path: Path) -> None:
    """Emptying raw lines must give disk space back to SQLite: shrinking rows in place would leave old pages
    mostly empty and never reused (new lines go at the end of the table), so the file would keep growing as if
    nothing had been pruned."""
    path = tmp_path / "smdrd.db"
    seed_backlog(path, 5000)
    conn = connect(str(path))
    try:
        raw_bytes = conn.execute("SELECT sum(length(raw)) FROM lines").fetchone()[0]
        ids = conn.execute("SELECT id, status, received_at FROM lines ORDER BY id").fetchall()
        counts = prune(conn, cutoffs(NOW, TZ, calls_days=0, lines_days=31), batch_rows=500)
        assert (counts.calls, counts.lines_deleted, counts.lines_emptied) == (0, 0, 5000)
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        assert free > raw_bytes * 0.6, f"{free} bytes freed of {raw_bytes} raw bytes"
        assert conn.execute("SELECT id, status, received_at FROM lines ORDER BY id").fetchall() == ids
        assert conn.execute("SELECT count(*) FROM lines WHERE raw = ?", (RAW_PRUNED,)).fetchone()[0] == 5000
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


@pytest.mark.slow
async def test_live_lines_commit_between_the_batches_of_a_large_prune(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A PBX keeps sending while the daemon prunes 200,000 old calls and their lines: the prune runs in small
    batches and holds the write lock in none of its pauses, the journal writer commits live lines between the
    batches all along, no live line waits across more than a quarter of them, none is lost, the backlog is gone,
    and the old day's figures remain. Pruning in one big transaction, or holding the write lock across the
    pauses, would hold live lines up for as long as the prune runs.

    The test watches the order of events (line sent, prune batch done, line committed), not the clock, so a
    busy machine slows both sides alike; the latency figure is ``bench/retention.py``'s."""
    from smdrd.store.sqlite.retention import SqliteRetention
    from smdrd.testing import daemon_config, free_port, open_connection_retry, running_daemon, tcp_server_source

    db = tmp_path / "smdrd.db"
    seed_backlog(db, BACKLOG)
    port = free_port()
    settings = Settings.model_validate(daemon_config(
        tmp_path, [tcp_server_source("push", port)], database={"commit_interval_ms": 20}, http={"enabled": False},
        retention={"calls_days": 31, "lines_days": 31, "batch_rows": 1000, "pause_ms": 10}))
    # One log of what happened, in order: ("sent", line), ("batch", None) once a prune batch's transaction is
    # over (appended from the pruner's worker thread), ("commit", line) once the writer committed the line.
    events: list[tuple[str, bytes | None]] = []
    held_after: list[int] = []  # the batch after which the pruner still held the write lock, if one did

    def lock_is_free() -> bool:
        # Another connection can take the write lock once a batch is over: the journal writer may hold it for
        # a commit of a few lines (the generous busy timeout waits that out), the pruner must not hold it.
        probe = sqlite3.connect(db, isolation_level=None, timeout=30)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()

    def logged(method: Any) -> Any:
        def batch(*args: Any) -> Any:
            result = method(*args)
            events.append(("batch", None))
            if not held_after and not lock_is_free():  # probe until the first failure only
                held_after.append(sum(kind == "batch" for kind, _ in events))
            return result
        return batch

    for name in ("prune_calls_batch", "prune_lines_batch"):
        monkeypatch.setattr(SqliteRetention, name, logged(getattr(SqliteRetention, name)))
    committed: set[bytes] = set()
    expected: list[int] = []  # how many lines were sent, once sending is over
    all_committed = asyncio.Event()

    def on_commit(entries: list[Entry], seconds: float) -> None:
        for e in entries:
            if e.raw not in committed:
                committed.add(e.raw)
                events.append(("commit", e.raw))
        if expected and len(committed) >= expected[0]:
            all_committed.set()

    async with running_daemon(settings, on_commit=on_commit, features=("retention",)) as daemon:
        pruner = daemon.build().retention
        assert pruner is not None
        _, writer = await open_connection_retry("127.0.0.1", port)
        sent: list[bytes] = []
        during_prune = 0
        stamp = (datetime.now(TZ) - timedelta(hours=1)).strftime("%Y/%m/%d %H:%M:%S")
        deadline = time.monotonic() + 600  # only stops a hung test
        while pruner.runs == 0 or len(sent) < 100:
            line = IPO_LINE.format(start=stamp, id=9_000_000 + len(sent)).encode()
            writer.write(line + b"\r\n")
            await writer.drain()
            events.append(("sent", line))
            sent.append(line)
            during_prune += pruner.runs == 0
            await asyncio.sleep(0.02)
            assert time.monotonic() < deadline, "the prune never finished"
        expected.append(len(sent))
        if len(committed) >= len(sent):
            all_committed.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_committed.wait(), 30)  # only stops a hung test: `missing` says what is lost
        writer.close()

    assert pruner.last is not None
    assert (pruner.last.calls, pruner.last.lines_deleted) == (BACKLOG, BACKLOG)
    assert during_prune >= 50, f"only {during_prune} lines were sent while pruning ran: no overlap to test"
    missing = [line for line in sent if line not in committed]
    assert not missing, f"{len(missing)} of {len(sent)} lines never committed"
    # How many prune batches finished between each line's send and its commit, and how many of the gaps
    # between two batches saw a live commit.
    batches = sum(kind == "batch" for kind, _ in events)
    done = 0
    at_send: dict[bytes, int] = {}
    crossed: list[int] = []
    gaps_with_commits: set[int] = set()
    for kind, raw in events:
        if kind == "batch":
            done += 1
        elif kind == "sent":
            assert raw is not None
            at_send[raw] = done
        elif raw is not None and raw in at_send:  # a live line's commit
            crossed.append(done - at_send[raw])
            if 0 < done < batches:
                gaps_with_commits.add(done)
    print(f"\n{len(sent)} live lines ({during_prune} while pruning {BACKLOG:,} calls in {batches} batches): "
          f"live commits in {len(gaps_with_commits)} gaps between batches; a line waited across at most "
          f"{max(crossed)} batches")
    assert batches >= BACKLOG // 1000, f"the prune ran in {batches} batches of at most 1,000 rows"
    assert not held_after, f"the pruner still held the write lock after its batch {held_after[0]}"
    assert len(gaps_with_commits) >= 10, (
        f"live lines committed in only {len(gaps_with_commits)} of the {batches - 1} gaps between prune "
        "batches: the prune held the journal writer up")
    assert max(crossed) <= batches // 4, (
        f"a live line waited while {max(crossed)} of {batches} prune batches ran: the writer did not get the "
        "lock between batches")
    conn = connect_readonly(db)
    try:
        assert conn.execute("SELECT count(*) FROM calls WHERE source = 'old'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM calls WHERE source = 'push'").fetchone()[0] == len(sent)
        assert conn.execute("SELECT sum(calls), sum(cost_micros) FROM rollup_daily WHERE day = '2017-07-14'"
                            ).fetchone() == (BACKLOG, BACKLOG * 120000)
    finally:
        conn.close()
