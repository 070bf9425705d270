"""Retention on PostgreSQL (`smdrd.store.api.Retention`): old call details and raw lines deleted in small
transactions, oldest first, the rollups never touched (docs/retention.md). The batching is the SQLite store's
(`smdrd.store.sqlite.retention.prune_batches`); a line a kept call refers to keeps its row, its bytes emptied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from smdrd.store.api import Cutoffs, LineCursor, PruneCounts, StoreUnavailable
from smdrd.store.postgres.connect import connect
from smdrd.store.pruning import RAW_PRUNED, lines_batch, prune_batches, pruned_through

__all__ = ["PgRetention"]

_T = TypeVar("_T")

_OLDEST_CALLS = "SELECT id, line_id, start FROM calls WHERE start_utc < %s ORDER BY start_utc LIMIT %s"
_DELETE_CALL_IDS = "DELETE FROM calls WHERE id = ANY(%s)"
#: the deleted calls' last site-local day moves the horizon on, never back (as the SQLite store's).
_PRUNED_THROUGH = ("INSERT INTO retention_horizon (id, pruned_through) VALUES (1, %s) ON CONFLICT (id) "
                   "DO UPDATE SET pruned_through = greatest(retention_horizon.pruned_through, excluded.pruned_through)")
#: the lines of pruned calls lose their bytes at once (as `smdrd.store.sqlite.retention` says why).
_EMPTY_CALL_LINES = "UPDATE lines SET raw = %s WHERE id = ANY(%s) AND length(raw) > 0 AND status <> 'flushed'"
_SELECT_LINES = """
    SELECT l.id, l.received_at, length(l.raw) > 0, EXISTS (SELECT 1 FROM calls AS c WHERE c.line_id = l.id)
    FROM lines AS l
    WHERE l.received_at < %s AND (l.received_at, l.id) > (%s, %s)
    ORDER BY l.received_at, l.id
    LIMIT %s
"""
# Re-checked in the write transaction: a call may have been stored for an old line since the read.
_DELETE_LINES = ("DELETE FROM lines WHERE id = ANY(%s) "
                 "AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.line_id = lines.id)")
_EMPTY_RAW = "UPDATE lines SET raw = %s WHERE id = ANY(%s) AND length(raw) > 0"
_PLAN_CALLS = "SELECT count(*) FROM calls WHERE start_utc < %s"
# A call survives the run if it is not old enough itself (calls go first).
_PLAN_LINES = """
    SELECT coalesce(sum(CASE WHEN s.kept THEN 0 ELSE 1 END), 0),
           coalesce(sum(CASE WHEN s.kept AND s.has_raw THEN 1 ELSE 0 END), 0)
    FROM (SELECT EXISTS (SELECT 1 FROM calls AS c WHERE c.line_id = l.id AND c.start_utc >= %(calls)s) AS kept,
                 length(l.raw) > 0 AS has_raw
          FROM lines AS l WHERE l.received_at < %(lines)s) AS s
"""


class PgRetention:
    """`smdrd.store.api.Retention` on its own connection (autocommit; one transaction per batch)."""

    def __init__(self, url: str) -> None:
        self.conn: psycopg.Connection[Any] = connect(url)

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        try:
            with self.conn.transaction():
                return work(self.conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # deletes only: the server's trouble
            raise StoreUnavailable(f"retention: {exc}") from exc

    def prune_calls_batch(self, before: int, limit: int) -> int:
        def work(c: psycopg.Connection[Any]) -> int:
            rows = c.execute(_OLDEST_CALLS, (before, limit)).fetchall()
            if not rows:
                return 0
            gone = int(c.execute(_DELETE_CALL_IDS, ([r[0] for r in rows],)).rowcount)
            c.execute(_EMPTY_CALL_LINES, (RAW_PRUNED, sorted({r[1] for r in rows})))
            c.execute(_PRUNED_THROUGH, (pruned_through(rows),))
            return gone

        return self._run(work)

    def prune_lines_batch(self, before: int, cursor: LineCursor | None,
                          limit: int) -> tuple[int, int, LineCursor | None]:
        def read(after: LineCursor) -> list[Any]:
            return self._run(lambda c: c.execute(_SELECT_LINES, (before, after[0], after[1], limit)).fetchall())

        def change(orphans: list[int], raw_kept: list[int]) -> tuple[int, int]:
            def work(c: psycopg.Connection[Any]) -> tuple[int, int]:
                gone = c.execute(_DELETE_LINES, (orphans,)).rowcount if orphans else 0
                return gone, c.execute(_EMPTY_RAW, (RAW_PRUNED, raw_kept)).rowcount if raw_kept else 0

            return self._run(work)

        return lines_batch(read, change, cursor, limit)

    def plan(self, cut: Cutoffs) -> PruneCounts:
        counts = PruneCounts()
        if cut.calls_before is not None:
            row = self._run(lambda c: c.execute(_PLAN_CALLS, (cut.calls_before,)).fetchone())
            counts.calls = int(row[0]) if row else 0
        if cut.lines_before is not None:
            params = {"calls": cut.calls_before if cut.calls_before is not None else -(2**63),
                      "lines": cut.lines_before}
            row = self._run(lambda c: c.execute(_PLAN_LINES, params).fetchone())
            if row:
                counts.lines_deleted, counts.lines_emptied = int(row[0]), int(row[1])
        return counts

    def prune(self, cut: Cutoffs, *, batch_rows: int, pause: Callable[[], None] = lambda: None) -> PruneCounts:
        return prune_batches(self.prune_calls_batch, self.prune_lines_batch, cut, batch_rows=batch_rows,
                             pause=pause)

    def close(self) -> None:
        self.conn.close()
