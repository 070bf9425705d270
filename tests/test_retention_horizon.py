"""The retention horizon on both stores: retention records the last site-local day it pruned, a database pruned
before that was recorded gets it from its migration, and with it the call listing's totals add up its rows even
after a saved log brings back a call older than every pruned day (the rollups still count the pruned calls)."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.reports.render import to_dict
from smdrd.store import is_url, open_store
from smdrd.store.api import Cutoffs
from smdrd.store.postgres import schema as pg
from smdrd.store.sqlite import schema as lite
from tests.test_reports import CALLS, TZ, Call, settings_for, write_calls


def sql(db: Path | str, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements`` on either store, autocommit; the rows of the last."""
    rows: list[tuple[Any, ...]] = []
    if is_url(db):
        with psycopg.connect(str(db), autocommit=True) as pg_conn:
            for statement in statements:
                cur = pg_conn.execute(statement)
                rows = cur.fetchall() if cur.description else []
        return rows
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            rows = conn.execute(statement).fetchall()
    finally:
        conn.close()
    return rows


def listing(db: Path | str, first: str, last: str) -> dict[str, Any]:
    ctx = context_from(settings_for(db))
    reader = open_store(db).reports()
    try:
        report: dict[str, Any] = to_dict(run_report(reader, parse_query(
            {"kind": ["calls"], "direction": ["all"], "from": [first], "to": [last], "page_size": ["0"]}, ctx), ctx))
        return report
    finally:
        reader.close()


async def test_the_listing_adds_up_its_rows_after_a_prune_and_a_late_old_call(any_database: Path | str) -> None:
    db = any_database
    await write_calls(db, sorted(CALLS, key=lambda c: c.start))  # the newest call last: retention keeps the last id
    assert sql(db, "SELECT pruned_through FROM retention_horizon") == []  # nothing pruned yet
    retention = open_store(db).retention()
    try:
        # the calls of 28 February to 5 March, site time, go (five of them)
        assert retention.prune(Cutoffs(int(datetime(2026, 3, 6, tzinfo=TZ).timestamp()), None),
                               batch_rows=2).calls == 5
    finally:
        retention.close()
    assert sql(db, "SELECT pruned_through FROM retention_horizon") == [("2026-03-05",)]

    # A database pruned by a smdrd from before the horizon: its migration guesses the horizon from the oldest
    # stored call, as the reports did, before the saved log's late call (opening the writer migrates) is stored.
    # (the migrations after it undone too, so that they run again after it: each only creates tables)
    migrations = pg.MIGRATIONS if is_url(db) else lite.MIGRATIONS
    before = next(i for i, m in enumerate(migrations) if "CREATE TABLE retention_horizon" in m)
    assert migrations[before].count("retention_horizon") >= 2
    assert not any("ALTER" in m or "INSERT" in m for m in migrations[before + 1:])
    later = [t for m in migrations[before + 1:] for t in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", m)]
    sql(db, "DROP TABLE retention_horizon", *(f"DROP TABLE {t}" for t in reversed(later)),
        f"UPDATE smdrd_schema SET version = {before}" if is_url(db) else f"PRAGMA user_version = {before}")
    await write_calls(db, [Call("2026-02-10T09:00:00", "203", "outbound", "national", 80, "0.40")])
    assert sql(db, "SELECT pruned_through FROM retention_horizon") == [("2026-03-05",)]

    for first, last in (("2026-02-01", "2026-04-30"), ("2026-03-05", "2026-03-31"), ("2026-03-06", "2026-04-30")):
        report = listing(db, first, last)
        rows = report["rows"]
        assert report["totals"]["calls"] == len([r for r in rows if r["leg"] == 0]), (first, last)
        assert report["totals"]["duration"] == sum(r["duration"] for r in rows), (first, last)
        assert Decimal(report["totals"]["cost"]) == sum(Decimal(r["cost"]) for r in rows if r["cost"]), (first, last)
    assert [r["start"][:10] for r in listing(db, "2026-02-01", "2026-02-28")["rows"]] == ["2026-02-10"]
