"""Report reads on PostgreSQL (`smdrd.store.api.ReportReader`): the same reads as the SQLite store's
(`smdrd.store.planner`: which rollup serves which part of a range, the monthly grain for whole months, day
by day only for extensions that change department), run through an adapter that speaks PostgreSQL's
placeholders and the few phrases a `Dialect` names. One planner for both stores keeps their figures identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from smdrd.store import planner as plan
from smdrd.store.api import ExtensionSpec, Filters, Interval, SiteSeen
from smdrd.store.planner import Dialect
from smdrd.store.postgres.connect import connect

__all__ = ["POSTGRES", "PgReports", "ReadAdapter"]

POSTGRES = Dialect(
    # A regular expression guards the cast (PostgreSQL does not promise to test an AND's left side first).
    numeric_between="(CASE WHEN extension ~ '^[0-9]{1,18}$' THEN CAST(extension AS bigint) END BETWEEN ? AND ?)",
    day_span=("WITH span(d) AS (SELECT to_char(g, 'YYYY-MM-DD') "
              "FROM generate_series(CAST(? AS date), CAST(? AS date), interval '1 day') AS g) "),
    span_join="JOIN",
    temp="pg_temp.",
    later_legs="",
    selection_index="CREATE INDEX IF NOT EXISTS report_selection_ext ON pg_temp.report_selection (extension)",
    # The rollups here are kept per site (`smdrd.store.postgres.schema.SITES_MIGRATION`): a central store holds many.
    rollup_site="site_id IN (SELECT id FROM sites WHERE name IN ({names}))",
    rollup_site_id="site_id",
)


class ReadAdapter:
    """A psycopg connection as the reads expect one: ``?`` placeholders, `POSTGRES` as its dialect."""

    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection[Any], *, stream: bool = False) -> None:
        self.conn = conn
        self.streams = 0 if stream else -1

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any] | psycopg.ServerCursor[Any]:
        if self.streams < 0:
            return self.conn.execute(sql.replace("?", "%s"), parameters or None)
        # A server-side cursor: rows come as they are read, a thousand at a time, never all in memory here.
        self.streams += 1
        cur = self.conn.cursor(f"stream{self.streams}", withhold=True)
        cur.itersize = 1000
        return cur.execute(sql.replace("?", "%s"), parameters or None)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> object:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), list(parameters))
        return None


#: every named site that has lines, with the time its newest one was received: for a site that published, the
#: line with the highest id in its own journal; for the store's own site (a box on PostgreSQL: its lines have no
#: site line id), its newest line. Both are one step of ``lines_site_line`` a site.
_SITES = ("SELECT name, last FROM (SELECT s.name, coalesce("
          "(SELECT l.received_at FROM lines l WHERE l.site_id = s.id AND l.site_line IS NOT NULL "
          "ORDER BY l.site_line DESC LIMIT 1), "
          "(SELECT max(l.received_at) FROM lines l WHERE l.site_id = s.id AND l.site_line IS NULL)) AS last "
          "FROM sites s WHERE s.name <> '') AS seen WHERE last IS NOT NULL ORDER BY name")


class PgReports:
    """`smdrd.store.api.ReportReader` on one connection to the PostgreSQL store at ``url``."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        self.reads = ReadAdapter(self.conn)
        self.stream = ReadAdapter(self.conn, stream=True)

    def daily_rows(self, f: Filters, *, group: Sequence[str] = (), volatile: Sequence[ExtensionSpec] = (),
                   by_day: bool = False, table: str = "rollup_daily",
                   per_extension: bool = True) -> Iterator[tuple[object, ...]]:
        return plan.daily_rows(self.reads, f, group=group, volatile=volatile, by_day=by_day, table=table,
                               per_extension=per_extension)

    def hourly_rows(self, f: Filters) -> Iterator[tuple[object, ...]]:
        return plan.hourly_rows(self.reads, f)

    def range_extensions(self, f: Filters) -> list[str]:
        return plan.range_extensions(self.reads, f)

    def range_currencies(self, f: Filters) -> list[str]:
        return plan.range_currencies(self.reads, f)

    def range_site_extensions(self, f: Filters) -> list[tuple[str, str]]:
        return plan.range_site_extensions(self.reads, f)

    def select_intervals(self, intervals: Sequence[Interval]) -> None:
        plan.select_intervals(self.reads, intervals)

    def iter_call_rows(self, f: Filters, tz: ZoneInfo, *, selected: bool, limit: int = 0,
                       offset: int = 0) -> Iterator[tuple[object, ...]]:
        reads = self.stream if limit <= 0 else self.reads  # a page is small; a whole range is streamed
        return plan.iter_call_rows(reads, f, tz, selected=selected, limit=limit, offset=offset)

    def call_totals(self, f: Filters, tz: ZoneInfo, *, selected: bool) -> tuple[int, int, int, int]:
        return plan.call_totals(self.reads, f, tz, selected=selected)

    def extension_totals(self, f: Filters, tz: ZoneInfo, *, volatile: Sequence[ExtensionSpec] = (),
                         by_site: bool = False) -> list[plan.ExtensionTotals]:
        return plan.extension_totals(self.reads, f, tz, volatile=volatile, by_site=by_site)

    def sites(self) -> list[SiteSeen]:
        return [SiteSeen(str(name), None if last is None else int(last))
                for name, last in self.conn.execute(_SITES)]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> PgReports:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
