"""``smdrd rerate`` and ``smdrd reparse`` on PostgreSQL (`smdrd.store.api.Rebuild`), as
`smdrd.store.sqlite.rebuild` does them in SQLite, with the same reads (`smdrd.store.rebuild`).

Each batch is one short transaction, taken in turn with the journal writers (`ONE_WRITER`: the rollups' rows are
upserted by one writer at a time, and new calls' ids are committed in order, as the call feed needs). The
rollups have no triggers here: the code keeps them, as the journal writer does. A re-rated or a reparsed call's
old row is copied to a TEMP table (``calls_moved``) and locked, taken away from every rollup (keys left at zero
go, as SQLite's triggers do), then its new row is added: a re-rated call's as updated, from the same TEMP
table; a reparsed line's new calls by the journal writer's own statement, those it inserted. A call that
retention deletes meanwhile waits for the batch (its row is locked), so no figure is taken away and not put back.

Only the calls and lines of the store's own site (`LOCAL_SITE`) are read or written: a central store's other
sites rated their calls with their own tariffs and parsed their lines with their own configurations
(docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from smdrd.journal import JournalEntry
from smdrd.store import rebuild as common
from smdrd.store.api import (
    REVISION_FEED,
    JournalLine,
    RatingUpdate,
    ReplaceResult,
    StoredRating,
    StoreUnavailable,
)
from smdrd.store.postgres.connect import connect, failure
from smdrd.store.postgres.schema import LOCAL_SITE, roll_up_sql
from smdrd.store.postgres.writer import COPY_CALLS, MOVE_CALLS, ONE_WRITER, STAGING
from smdrd.store.rollups import MEASURES, ROLLUPS
from smdrd.store.rows import call_row

__all__ = ["MOVED", "UNROLL", "PgRebuild"]

#: errors of the server or the link, not of one entry's values (as the journal writer tells them apart).
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)

#: the new ratings of a batch: the call, whether its figures change (else only its tariff version), the rating.
_RATINGS_IN = (f"CREATE TEMP TABLE IF NOT EXISTS rerate_in ON COMMIT DELETE ROWS AS "
               f"SELECT id, true AS figures, {', '.join(common.RATED)} FROM calls WITH NO DATA")
_COPY_RATINGS = f"COPY rerate_in (id, figures, {', '.join(common.RATED)}) FROM STDIN"
#: the rows of the calls that move in the rollups: first as they were (taken away), then as re-rated (added).
MOVED = "CREATE TEMP TABLE IF NOT EXISTS calls_moved ON COMMIT DELETE ROWS AS SELECT * FROM calls WITH NO DATA"
#: the old rows of the calls whose figures change, locked until the batch commits.
_KEEP_RERATED = ("INSERT INTO calls_moved SELECT c.* FROM calls c JOIN rerate_in i ON i.id = c.id "
                 "WHERE i.figures ORDER BY c.id FOR UPDATE OF c")
_DELETE_CALLS = (f"WITH gone AS (DELETE FROM calls WHERE line_id = ANY(%s) AND site_id = {LOCAL_SITE} "
                 f"RETURNING *) INSERT INTO calls_moved SELECT * FROM gone")
#: the new figures written, and the rows as updated kept to be added to every rollup.
_RERATE = (f"WITH new AS (UPDATE calls SET {', '.join(f'{c} = i.{c}' for c in common.RATED)} FROM rerate_in i "
           f"WHERE calls.id = i.id AND i.figures RETURNING calls.*) INSERT INTO calls_moved SELECT * FROM new")
#: the version alone: the rollups stay.
_SET_VERSIONS = ("UPDATE calls SET tariff_version = i.tariff_version FROM rerate_in i "
                 "WHERE calls.id = i.id AND NOT i.figures")
#: a revision of each line of the calls re-rated (those in ``calls_moved``, as updated) while the revision feed
#: exists (`smdrd.store.api.REVISION_FEED`): a central store's costs follow the site's.
_REVISE_RERATED = ("INSERT INTO entry_revisions (line_id) SELECT DISTINCT line_id FROM calls_moved "
                   "WHERE EXISTS (SELECT 1 FROM feed_cursors WHERE name = %s) ORDER BY line_id")
#: a revision of each line listed.
_REVISE_LINES = "INSERT INTO entry_revisions (line_id) SELECT DISTINCT l FROM unnest(%s::bigint[]) AS l ORDER BY l"
_LISTED = "SELECT unnest(%s::bigint[])"


def _unroll_sql(source: str) -> list[tuple[str, str]]:
    """Per rollup: the statement taking the calls of ``source`` away, which returns the keys it leaves at zero,
    and the statement deleting one such key's row (a few index lookups: a join of the rollup with the keys is
    planned as a scan of the whole rollup per key, the planner expecting no row at zero)."""
    zero = " AND ".join(f"{m.name} = 0" for m in MEASURES)
    out = []
    for r, take in zip(ROLLUPS, roll_up_sql(source, ROLLUPS, sign=-1), strict=True):
        keys = ", ".join((*r.key, "site_id"))
        match = " AND ".join(f"{k} = %s" for k in (*r.key, "site_id"))
        out.append((f"WITH s AS ({take} RETURNING {keys}, {', '.join(m.name for m in MEASURES)}) "
                    f"SELECT {keys} FROM s WHERE {zero}",
                    f"DELETE FROM {r.table} WHERE {match} AND {zero}"))
    return out


#: the calls in ``calls_moved`` taken out of every rollup (`_unroll`): per rollup, the statement taking them away
#: (it returns the keys it leaves at zero) and the one deleting such a key's row.
UNROLL = _unroll_sql("calls_moved")
#: the calls in ``calls_moved`` added to every rollup.
_ROLL_UP = tuple(roll_up_sql("calls_moved"))


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PgRebuild:
    """One connection for one rerate or reparse run (migrating the schema first)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = connect(url)
        self._cursors = 0

    def close(self) -> None:
        self.conn.close()

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(failure(self.url, exc))

    def _stream(self, sql: str, params: Sequence[object]) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql`` in batches, from a server-side cursor that outlives the writes between them."""
        self._cursors += 1
        try:
            with self.conn.cursor(f"rebuild{self._cursors}", withhold=True) as cur:
                cur.execute(_pg(sql), params)
                while rows := cur.fetchmany(common.BATCH):
                    yield rows
        except _TRANSIENT as exc:
            raise self._unavailable(exc) from exc

    # ---- rerate ----

    def ratings(self, lo: int, hi: int) -> Iterator[StoredRating]:
        for rows in self._stream(common.RATINGS, (lo, hi, LOCAL_SITE)):
            yield from (common.stored_rating(row) for row in rows)

    def update_ratings(self, updates: Sequence[RatingUpdate]) -> None:
        conn = self.conn
        try:
            for i in range(0, len(updates), common.BATCH):
                batch = updates[i:i + common.BATCH]
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(ONE_WRITER)
                    cur.execute(_RATINGS_IN)
                    with cur.copy(_COPY_RATINGS) as copy:
                        for u in batch:
                            copy.write_row((u.call_id, u.figures, *u.rating))
                    if any(u.figures for u in batch):
                        cur.execute(MOVED)
                        cur.execute(_KEEP_RERATED)
                        self._unroll(cur)
                        for statement in (_RERATE, *_ROLL_UP):
                            cur.execute(statement)
                        cur.execute(_REVISE_RERATED, (REVISION_FEED,))
                    cur.execute(_SET_VERSIONS)
        except _TRANSIENT as exc:
            raise self._unavailable(exc) from exc

    # ---- reparse ----

    def lines(self, lo: int, hi: int, source: str | None) -> Iterator[list[JournalLine]]:
        where, params = common.line_bounds(lo, hi, source)
        for rows in self._stream(f"SELECT {common.LINE_FIELDS} FROM lines WHERE {where} AND site_id = ? ORDER BY id",
                                 [*params, LOCAL_SITE]):
            yield [common.journal_line(row) for row in rows]

    def calls_received(self, lo: int, hi: int) -> int:
        row = self.conn.execute(_pg(common.CALLS_RECEIVED), (lo * 1_000_000, hi * 1_000_000, LOCAL_SITE)).fetchone()
        return int(row[0]) if row else 0

    def replace(self, entries: Sequence[tuple[int, JournalEntry | None]], *,
                keep_lines: bool = False) -> ReplaceResult:
        try:
            return self._replace(entries, keep_lines)
        except _TRANSIENT as exc:
            raise self._unavailable(exc) from exc

    def _replace(self, entries: Sequence[tuple[int, JournalEntry | None]], keep_lines: bool) -> ReplaceResult:
        conn = self.conn
        rows = {line_id: [(line_id, *call_row(c, entry.source)) for c in entry.calls]
                for line_id, entry in entries if entry and entry.calls}
        refused: dict[int, str] = {}
        listed = [line_id for line_id, _ in entries]
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(ONE_WRITER)
            publishing = cur.execute(_pg(common.PUBLISHING), (REVISION_FEED,)).fetchone() is not None
            before = self._states(cur, listed) if publishing else {}
            removed = 0
            if not keep_lines:
                cur.execute(MOVED)
                cur.execute(_DELETE_CALLS, ([line_id for line_id, _ in entries],))
                removed = max(cur.rowcount, 0)
                if removed:
                    self._unroll(cur)
            with_calls: set[int] = set()
            try:
                with conn.transaction():
                    with_calls = self._insert(cur, [r for line_rows in rows.values() for r in line_rows])
            except _TRANSIENT:
                raise
            except psycopg.Error:
                # One entry holds what the database refuses: store the others, and that line as an error.
                for line_id, line_rows in rows.items():
                    try:
                        with conn.transaction():
                            with_calls |= self._insert(cur, line_rows)
                    except _TRANSIENT:
                        raise
                    except psycopg.Error as one:
                        refused[line_id] = (f"could not store what was parsed from this line: "
                                            f"{type(one).__name__}: {one}")
            statuses, status_rows = common.new_statuses(entries, refused, with_calls.__contains__,
                                                        keep_lines=keep_lines)
            if status_rows:
                cur.executemany(_pg(common.SET_STATUS), status_rows)
            if publishing:  # the lines a central store would now hold otherwise go to it again
                after = self._states(cur, listed)
                cur.execute(_REVISE_LINES, ([i for i in after if after[i] != before.get(i)],))
        return ReplaceResult(removed, statuses)

    @staticmethod
    def _states(cur: psycopg.Cursor[Any], listed: list[int]) -> dict[int, tuple[object, ...]]:
        lines = cur.execute(_pg(common.LINE_STATES.format(ids=_LISTED)), (listed,)).fetchall()
        calls = cur.execute(_pg(common.CALL_STATES.format(ids=_LISTED)), (listed,)).fetchall()
        return common.line_states(lines, calls)

    @staticmethod
    def _unroll(cur: psycopg.Cursor[Any]) -> None:
        """Take the calls in ``calls_moved`` away from every rollup, delete the keys left at zero (as SQLite's
        triggers do), and empty the table for what comes next."""
        for take, drop in UNROLL:
            cur.execute(take)
            empty = cur.fetchall()
            if empty:
                cur.executemany(drop, empty)
        cur.execute("DELETE FROM calls_moved")

    @staticmethod
    def _insert(cur: psycopg.Cursor[Any], rows: list[tuple[object, ...]]) -> set[int]:
        """Insert the call ``rows`` (``line_id`` first), adding those stored to every rollup (a call stored already
        from another line is left out); the lines that got calls. Every call of a reparsed line was deleted first, so
        it has calls exactly when some were inserted here."""
        if not rows:
            return set()
        cur.execute(STAGING)
        cur.execute("DELETE FROM calls_in")  # what an earlier entry of this transaction staged
        with cur.copy(COPY_CALLS) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(MOVE_CALLS)
        return {int(line_id) for line_id, _ in cur.fetchall()}
