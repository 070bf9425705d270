"""The PostgreSQL store (`smdrd.store.postgres`) on a real PostgreSQL server: the session's cluster started by
`initdb` and `pg_ctl` in a temporary folder (tests/conftest.py), one fresh database per test."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.cli import main
from smdrd.core import ERROR, PARSED
from smdrd.errors import SmdrdError
from smdrd.journal import Alert, JournalEntry, RatedCall
from smdrd.reports.queries import Context, context_from, parse_query, run_report
from smdrd.reports.render import to_json
from smdrd.store import open_store
from smdrd.store.api import Cutoffs, StoreUnavailable
from smdrd.store.postgres.connect import connect
from smdrd.store.postgres.outbox import PgOutbox
from smdrd.store.postgres.writer import PgJournalWriter
from smdrd.testing import PostgresServer, write_entries
from tests.conftest import EMPTY_DATABASE
from tests.test_reports import CALLS, TZ, Call, record, settings_for, write_calls


def test_the_fixture_starts_a_real_server_on_its_own_socket(postgres: PostgresServer, pg_url: str) -> None:
    assert str(postgres.folder) in pg_url and f"port={postgres.port}" in pg_url
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row is not None and row[1] == PostgresServer.user


# ---- the journal writer and the outbox ----

def _entry(i: int, calls: list[RatedCall], alerts: tuple[Alert, ...] = ()) -> JournalEntry:
    return JournalEntry("pbx", "10.0.0.1", 1_700_000_000_000_000 + i, "test", f"line {i}\x01".encode(), PARSED,
                        None, tuple(calls), alerts)


async def test_a_batch_stores_lines_calls_rollups_and_alerts_once(pg_url: str) -> None:
    """Lines with their raw bytes, calls with their ratings and the site, alerts in the outbox; the same lines
    again (a re-sent buffer) are journalled as ``duplicate`` and change no call, rollup or alert."""
    calls = [record(c) for c in CALLS[:3]]
    alert = Alert("rule:x", "rule", "warning", 1, '{"a": 1}')
    entries = [_entry(0, calls[:2], (alert,)), _entry(1, calls[2:])]
    first = await write_entries(pg_url, entries, site="HQ")
    again = await write_entries(pg_url, entries)
    assert (first.stats.calls, first.stats.duplicates) == (3, 0)
    assert (again.stats.calls, again.stats.duplicates, again.stats.lines) == (0, 3, 2)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT status, raw FROM lines ORDER BY id").fetchall() == [
            ("parsed", b"line 0\x01"), ("parsed", b"line 1\x01"), ("duplicate", b"line 0\x01"),
            ("duplicate", b"line 1\x01")]
        assert conn.execute("SELECT count(*), sum(cost_micros), min(site_id) FROM calls").fetchone() == (
            3, 2_800_000, 1)
        assert conn.execute("SELECT sum(calls), sum(cost_micros) FROM rollup_daily").fetchone() == (3, 2_800_000)
        assert conn.execute("SELECT name FROM sites").fetchall() == [("HQ",)]
    outbox = PgOutbox(pg_url)
    await outbox.open()
    try:
        pending = await outbox.pending()
        assert [(p.alert_id, p.payload) for p in pending] == [("rule:x", '{"a": 1}')]
        assert await outbox.insert([alert, Alert("op:y", "op", "critical", 2, "{}")]) == 1
        await outbox.mark_delivered([pending[0].row])
        assert [p.alert_id for p in await outbox.pending()] == ["op:y"] and await outbox.count_pending() == 1
    finally:
        await outbox.close()


async def test_the_writer_keeps_its_batch_while_postgres_is_down(postgres: PostgresServer, pg_url: str) -> None:
    """PostgreSQL stopped under a running writer: the batch stays pending (retried with backoff on a new
    connection), and is stored once the server is back, nothing lost or doubled."""
    writer = PgJournalWriter(pg_url, commit_interval=0.005)
    await writer.open()
    task = asyncio.create_task(writer.run())
    try:
        writer.submit(_entry(0, [record(CALLS[0])]))
        await writer.flushed()
        postgres.stop("immediate")
        writer.submit(_entry(1, [record(CALLS[1])]))
        for _ in range(200):
            if writer.stats.failures:
                break
            await asyncio.sleep(0.02)
        assert writer.stats.failures >= 1 and writer.pending == 1
        await asyncio.to_thread(postgres.start)
        await asyncio.wait_for(writer.flushed(), 60)
    finally:
        await writer.close(give_up_after=30)
        await task
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (2,)
        assert conn.execute("SELECT sum(calls) FROM rollup_daily").fetchone() == (2,)


def test_a_newer_schema_is_refused_and_a_password_never_shown(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE smdrd_schema SET version = version + 1")
        try:
            with pytest.raises(SmdrdError, match="newer than this smdrd"):
                connect(pg_url).close()
        finally:
            conn.execute("UPDATE smdrd_schema SET version = version - 1")
    wrong = "postgresql://smdrd:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(StoreUnavailable) as caught:
        connect(wrong)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


# ---- both stores give the same reports ----

_DAYS = st.dates(min_value=date(2026, 2, 20), max_value=date(2026, 5, 10))
_CALL = st.builds(
    Call,
    start=st.tuples(_DAYS, st.integers(0, 23), st.integers(0, 59)).map(
        lambda t: f"{t[0].isoformat()}T{t[1]:02d}:{t[2]:02d}:00"),
    extension=st.sampled_from(["200", "201", "205", "211", "300", "301", "999", "x12"]),
    direction=st.sampled_from(["outbound", "outbound", "inbound", "internal"]),
    call_class=st.sampled_from(["national", "mobile", "international", "local"]),
    duration=st.integers(0, 7200),
    cost=st.decimals(min_value=0, max_value=99, places=2, allow_nan=False).map(str),
    trunk=st.sampled_from(["T1", "T2", ""]),
    e164=st.sampled_from(["+48221234567", "+442071234567", "+18095551234", "+12125551234", ""]),
    key=st.sampled_from(["", "X1", "X2"]),
    leg=st.integers(0, 1),
)
_RANGES = (("2026-03-01", "2026-03-31"), ("2026-02-20", "2026-05-10"), ("2026-03-10", "2026-04-20"))
_QUERIES: tuple[dict[str, str], ...] = (
    *({"kind": k} for k in ("extensions", "departments", "trunks", "destinations", "days")),
    {"kind": "extensions", "by_class": "1"}, {"kind": "departments", "department": "Support", "by_class": "1"},
    {"kind": "destinations", "by": "count"}, {"kind": "calls", "page_size": "0"},
    {"kind": "calls", "department": "Sales", "page_size": "7", "page": "2"},
    {"kind": "extensions", "direction": "all"}, {"kind": "department-details", "department": "Sales"},
)


def _reports(db: Path | str, ctx: Context) -> list[str]:
    reader = open_store(db).reports()
    try:
        return [to_json(run_report(reader, parse_query(
            {"from": [lo], "to": [hi], **{k: [v] for k, v in q.items()}}, ctx), ctx))
            for lo, hi in _RANGES for q in _QUERIES]
    finally:
        reader.close()


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(_CALL, max_size=40))
def test_random_calls_give_the_same_reports_on_both_stores(postgres: PostgresServer, tmp_path: Path,
                                                          calls: list[Call]) -> None:
    """Whatever the calls (re-sent ones, transfers, unrated numbers, ranges over whole and partial months, a
    department that changes mid-month), every report kind's JSON is the same from SQLite and PostgreSQL."""
    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    asyncio.run(write_calls(path, calls))
    asyncio.run(write_calls(url, calls))
    ctx = context_from(settings_for(path))
    assert _reports(url, ctx) == _reports(path, ctx)


@pytest.mark.parametrize(("url", "problem"), [
    ("mysql://bob:hunter2@db/x", "expected a postgresql://"),
    ("postgresql://bob:hunter2@db:port/x", "port of the URL is not a number"),
    ("postgresql://bob:hunter2@db:5432", "names no database"),
    ("postgresql://bob:hunter2@db:5432/calls", None),
])
def test_check_config_validates_the_url_and_never_prints_its_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, problem: str | None) -> None:
    path = tmp_path / "smdrd.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    path.chmod(0o600)
    assert main(["check-config", str(path)]) == (0 if problem is None else 1)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "hunter2" not in text
    assert (problem or "database postgresql://bob:***@db:5432/calls") in text
    if problem is None:
        assert main(["check-config", "--show", str(path)]) == 0
        shown = capsys.readouterr().out
        assert "hunter2" not in shown and "postgresql://bob:***@db:5432/calls" in shown


async def test_export_errors_and_the_call_feed_read_what_the_writer_stored(pg_url: str) -> None:
    """The smaller read parts: every call as named fields (``smdrd export``), the ``error`` lines (``smdrd
    errors``), and the call feed from a saved cursor (a new feed starts at the end: nothing is replayed)."""
    store = open_store(pg_url)
    assert store.start_call_feed("mqtt") == 0
    bad = JournalEntry("pbx", "", 1_700_000_000_000_000, "test", b"garbage", ERROR, "no fields")
    await write_entries(pg_url, [_entry(1, [record(CALLS[0])]), bad, _entry(2, [record(CALLS[1])])])
    export = store.export()
    try:
        assert {"uid", "start", "cost_micros", "site_id"} <= set(export.columns())
        assert [r["extension"] for r in export.rows(None, None)] == ["201", "201"]
    finally:
        export.close()
    errors = store.journal_errors()
    try:
        lines, total = errors.error_lines(0, 2_000_000_000, None, 10)
    finally:
        errors.close()
    assert total == 1 and [(e.raw, e.error) for e in lines] == [(b"garbage", "no fields")]
    feed = store.call_feed()
    await feed.open()
    try:
        assert await feed.start("mqtt") == 0
        calls = await feed.after(0, 10)
        assert [c.fields["extension"] for c in calls] == ["201", "201"] and "auth_code" not in calls[0].fields
        await feed.save("mqtt", calls[0].position)
        assert await feed.start("mqtt") == calls[0].position
        assert [c.position for c in await feed.after(calls[0].position, 10)] == [calls[1].position]
        assert await feed.start("new") == calls[1].position
    finally:
        await feed.close()
    assert sorted(store.spend_since(0)) == [("201", "2026-03-02", Decimal("0.50")),
                                            ("201", "2026-03-03", Decimal("0.30"))]


async def test_retention_prunes_old_details_and_keeps_every_report_figure(pg_url: str) -> None:
    """Calls before the cutoff go, oldest first in small batches; lines without a call go, a kept call's line
    keeps its row with its bytes emptied; the rollups, and so every accounting report, do not change."""
    await write_entries(pg_url, [_entry(i, [record(c)]) for i, c in enumerate(CALLS)])
    bare = JournalEntry("pbx", "", 1, "test", b"header", "skipped")
    await write_entries(pg_url, [bare])
    ctx = context_from(settings_for(pg_url))
    before = _reports(pg_url, ctx)
    store = open_store(pg_url)
    retention = store.retention()
    try:
        march = int(datetime(2026, 3, 10, tzinfo=TZ).timestamp())
        cut = Cutoffs(calls_before=march, lines_before=1_800_000_000_000_000)  # after every line received
        planned = retention.plan(cut)
        done = retention.prune(cut, batch_rows=2)
    finally:
        retention.close()
    # 7 calls start before 10 March; their 7 lines and the header go; the 6 kept calls' lines lose their bytes.
    assert (planned.calls, planned.lines_deleted, planned.lines_emptied) == (7, 8, 6)
    assert (done.calls, done.lines_deleted, done.lines_emptied) == (7, 8, 6) and done.batches >= 4
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls WHERE start_utc < %s", (march,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*), max(length(raw)) FROM lines").fetchone() == (6, 0)
    after = _reports(pg_url, ctx)
    # Accounting figures stay; only the call listings (every third query of each range) lose the pruned calls.
    accounting = [i for i, q in enumerate(_QUERIES) if q["kind"] not in ("calls", "department-details")]
    n = len(_QUERIES)
    assert [after[r * n + i] for r in range(len(_RANGES)) for i in accounting] == [
        before[r * n + i] for r in range(len(_RANGES)) for i in accounting]
