"""Report reads in SQLite (`smdrd.store.api.ReportReader`): the planner's reads (`smdrd.store.planner`) on one
read-only connection, as SQLite says them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from smdrd.errors import SmdrdError
from smdrd.store.api import ExtensionSpec, Filters, Interval, SiteSeen
from smdrd.store.planner import (
    ExtensionTotals,
    ReadConnection,
    call_totals,
    daily_rows,
    extension_totals,
    hourly_rows,
    iter_call_rows,
    range_currencies,
    range_extensions,
    range_site_extensions,
    select_intervals,
)
from smdrd.store.sqlite import schema

__all__ = ["SqliteReports", "connect_readonly", "site_names"]

#: the first schema version that has every rollup and index the reports read (7: the monthly grain, 8: the
#: days rollup and the later legs' index); an older database is migrated first, as the daemon does at start.
ROLLUP_VERSION = 10


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection for reports (a report can never change the journal); TEMP tables still work.

    A database older than the rollups is migrated first (what the daemon does at start anyway).

    Raises:
        SmdrdError: the file does not exist, or is not an smdrd database.
    """
    path = Path(path)
    if not path.is_file():
        raise SmdrdError(f"{path}: no such database (check [database] path, or pass --database)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < ROLLUP_VERSION:
            conn.close()
            schema.connect(str(path)).close()
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("SELECT 1 FROM rollup_daily LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SmdrdError(f"{path}: not an smdrd database ({exc})") from None
    return conn


def site_names(conn: ReadConnection) -> list[SiteSeen]:
    """The box's own site (`schema.LOCAL_SITE`) once ``[site] name`` names it and it has lines, with the
    journal's newest (``lines_received``: one index step)."""
    row = conn.execute("SELECT name, (SELECT max(received_at) FROM lines) FROM sites "
                       f"WHERE id = {schema.LOCAL_SITE} AND name <> ''").fetchone()
    return [] if row is None or row[1] is None else [SiteSeen(str(row[0]), int(row[1]))]


class SqliteReports:
    """`smdrd.store.api.ReportReader` on one read-only connection (see `connect_readonly`)."""

    def __init__(self, path: str | Path) -> None:
        self.conn = connect_readonly(path)

    def daily_rows(self, f: Filters, *, group: Sequence[str] = (), volatile: Sequence[ExtensionSpec] = (),
                   by_day: bool = False, table: str = "rollup_daily",
                   per_extension: bool = True) -> Iterator[tuple[object, ...]]:
        return daily_rows(self.conn, f, group=group, volatile=volatile, by_day=by_day, table=table,
                          per_extension=per_extension)

    def hourly_rows(self, f: Filters) -> Iterator[tuple[object, ...]]:
        return hourly_rows(self.conn, f)

    def range_extensions(self, f: Filters) -> list[str]:
        return range_extensions(self.conn, f)

    def range_currencies(self, f: Filters) -> list[str]:
        return range_currencies(self.conn, f)

    def range_site_extensions(self, f: Filters) -> list[tuple[str, str]]:
        return range_site_extensions(self.conn, f)

    def select_intervals(self, intervals: Sequence[Interval]) -> None:
        select_intervals(self.conn, intervals)

    def iter_call_rows(self, f: Filters, tz: ZoneInfo, *, selected: bool, limit: int = 0,
                       offset: int = 0) -> Iterator[tuple[object, ...]]:
        return iter_call_rows(self.conn, f, tz, selected=selected, limit=limit, offset=offset)

    def call_totals(self, f: Filters, tz: ZoneInfo, *, selected: bool) -> tuple[int, int, int, int]:
        return call_totals(self.conn, f, tz, selected=selected)

    def extension_totals(self, f: Filters, tz: ZoneInfo, *, volatile: Sequence[ExtensionSpec] = (),
                         by_site: bool = False) -> list[ExtensionTotals]:
        return extension_totals(self.conn, f, tz, volatile=volatile, by_site=by_site)

    def sites(self) -> list[SiteSeen]:
        return site_names(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteReports:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
