"""Retention: delete old call details and raw journal lines, one small transaction at a time.

Synchronous functions over a ``sqlite3.Connection`` opened in autocommit mode (``isolation_level=None``) with
smdrd's pragmas, so the same code serves the daemon's background task (`smdrd.retention`, each batch in a
worker thread) and ``smdrd prune``. The caller decides how long to pause between batches: the pause is what
lets the journal writer take SQLite's write lock between them.

What pruning does (docs/retention.md):

* **Calls** whose start is before the calls cutoff (a site-local midnight) are deleted, oldest first.
* **Raw lines** received before the lines cutoff are deleted when no call refers to them any more. A line that
  a kept call still refers to (``calls.line_id``, a foreign key) keeps its row and its status; only its bytes
  are emptied (``raw = x''``; the row is deleted and inserted again, see `_empty_raw`). The framer never
  journals an empty line, so an empty ``raw`` means "pruned", except on the ``flushed`` marker lines that
  hold records a parser released at the end of a stream (they never had bytes): see `PRUNED_SQL`.
  The newest line is never deleted: the writer numbers lines from ``max(id) + 1`` and ids must not come back.
  Nor is the call with the highest id (see `_OLDEST_CALLS`).

What it must never do: touch a rollup table, or delete a line that a call refers to. Rollups (daily and
monthly, `smdrd.store.sqlite.rollups`) are kept by ``AFTER INSERT`` and ``AFTER UPDATE`` triggers only, so
deleting calls leaves every accounting report exact; a connection used here must not carry a ``DELETE`` trigger
of its own (``smdrd reparse``'s ``calls_unroll``). Old calls are found through ``calls_start``, the identity
index, whose first column is the start time. Each batch of calls records its last site-local day in
``retention_horizon``: the reports read the call listing's totals from the details before it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from smdrd.store.api import Cutoffs, LineCursor, PruneCounts, StoreUnavailable, cutoffs
from smdrd.store.pruning import PRUNED_SQL, RAW_PRUNED, lines_batch, prune_batches, pruned_through
from smdrd.store.sqlite.schema import PRAGMAS, migrate

__all__ = [
    "PRUNED_SQL",
    "RAW_PRUNED",
    "Cutoffs",
    "PruneCounts",
    "SqliteRetention",
    "cutoffs",
    "lines_batch",
    "plan",
    "prune",
    "prune_batches",
    "prune_calls_batch",
    "prune_lines_batch",
]

_T = TypeVar("_T")

# `ORDER BY start_utc` walks the calls_start index and stops after LIMIT rows. `ORDER BY id` would make SQLite
# collect and sort every old call for each batch: quadratic over a large backlog.
#: never the call with the highest id: SQLite numbers a new call after the highest id there is, and the MQTT call
#: feed publishes from a cursor of ids (`smdrd.store.sqlite.feed`), so an id must never be handed out again. (It
#: goes in a later run, once a newer call is stored.)
_OLDEST_CALLS = ("SELECT id, line_id, start FROM calls WHERE start_utc < ? AND id < (SELECT max(id) FROM calls) "
                 "ORDER BY start_utc LIMIT ?")
_DELETE_CALL_IDS = "DELETE FROM calls WHERE id IN (SELECT value FROM json_each(?))"
#: the last site-local day of the deleted calls moves the horizon on (`schema.RETENTION_HORIZON_MIGRATION`), never back.
_PRUNED_THROUGH = ("INSERT INTO retention_horizon (id, pruned_through) VALUES (1, ?) "
                   "ON CONFLICT (id) DO UPDATE SET pruned_through = max(pruned_through, excluded.pruned_through)")
#: the lines of pruned calls lose their bytes at once, however recently they were received (a saved log imported
#: today, a call reported after the cutoff's midnight): `smdrd reparse` would otherwise make the calls again and
#: add them to rollups that still count them (see `smdrd.store.pruning.PRUNED_SQL`).
_EMPTY_CALL_LINES = ("UPDATE lines SET raw = ? WHERE id IN (SELECT value FROM json_each(?)) AND length(raw) > 0 "
                     "AND status <> 'flushed'")

# Candidates are read outside the write transaction (WAL readers never block the writer), walking the
# lines_received index from a cursor, so lines kept for their calls are read once per run, not once per batch.
_SELECT_LINES = """
    SELECT l.id, l.received_at, length(l.raw) > 0,
           EXISTS (SELECT 1 FROM calls AS c WHERE c.line_id = l.id)
    FROM lines AS l
    WHERE l.received_at < ? AND (l.received_at, l.id) > (?, ?)
    ORDER BY l.received_at, l.id
    LIMIT ?
"""

# Re-checked inside the write transaction: a call may have been stored for an old line (``smdrd reparse``)
# between the read and the write.
_DELETE_LINES = """
    DELETE FROM lines
    WHERE id IN (SELECT value FROM json_each(?))
      AND id < (SELECT max(id) FROM lines)
      AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.line_id = lines.id)
"""


def _write(conn: sqlite3.Connection, work: Callable[[], _T]) -> _T:
    """Run ``work()`` in one short ``BEGIN IMMEDIATE`` transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def _empty_raw(conn: sqlite3.Connection, ids: list[int]) -> int:
    """Empty the raw bytes of these lines (inside a transaction); return how many were emptied.

    An ``UPDATE`` would shrink the rows in place and free no page: new lines are appended at the end of the
    table, so the space would stay unused until a VACUUM. Deleting the rows and inserting them again under the
    same ids packs them into fewer pages and hands the rest to SQLite's free list, where new rows reuse them.
    The calls' foreign key is checked at COMMIT (``defer_foreign_keys``): by then every id is back.
    """
    conn.execute("PRAGMA defer_foreign_keys = ON")  # reset by SQLite at the end of the transaction
    # Every column but raw, read from the table: a column added by a later migration is carried over too.
    columns = [row[1] for row in conn.execute("PRAGMA table_info(lines)") if row[1] != "raw"]
    listed = ", ".join(columns)
    rows = conn.execute(f"SELECT {listed} FROM lines WHERE id IN (SELECT value FROM json_each(?)) "
                        "AND length(raw) > 0", (_json_ids(ids),)).fetchall()
    if not rows:
        return 0
    id_at = columns.index("id")
    conn.execute("DELETE FROM lines WHERE id IN (SELECT value FROM json_each(?))",
                 (_json_ids([row[id_at] for row in rows]),))
    conn.executemany(f"INSERT INTO lines ({listed}, raw) VALUES ({', '.join('?' * len(columns))}, ?)",
                     [(*row, RAW_PRUNED) for row in rows])
    return len(rows)


def prune_calls_batch(conn: sqlite3.Connection, before: int, limit: int) -> int:
    """Delete up to ``limit`` of the oldest calls starting before ``before``; return how many went.

    Fewer than ``limit`` means there is nothing older left.
    """
    def work() -> int:
        rows = conn.execute(_OLDEST_CALLS, (before, limit)).fetchall()
        if not rows:
            return 0
        gone = int(conn.execute(_DELETE_CALL_IDS, (_json_ids([r[0] for r in rows]),)).rowcount)
        conn.execute(_EMPTY_CALL_LINES, (RAW_PRUNED, _json_ids(sorted({r[1] for r in rows}))))
        conn.execute(_PRUNED_THROUGH, (pruned_through(rows),))
        return gone

    return _write(conn, work)


def prune_lines_batch(conn: sqlite3.Connection, before: int, cursor: LineCursor | None,
                      limit: int) -> tuple[int, int, LineCursor | None]:
    """Look at up to ``limit`` lines received before ``before``, after ``cursor``; delete those without a call
    and empty the raw bytes of the others.

    Returns:
        (deleted, emptied, the cursor to pass next, or ``None`` when every old line has been looked at).
        A batch with nothing to change takes no write lock.
    """
    def change(orphans: list[int], raw_kept: list[int]) -> tuple[int, int]:
        def work() -> tuple[int, int]:
            gone = conn.execute(_DELETE_LINES, (_json_ids(orphans),)).rowcount if orphans else 0
            return gone, _empty_raw(conn, raw_kept) if raw_kept else 0

        return _write(conn, work)

    return lines_batch(lambda after: conn.execute(_SELECT_LINES, (before, after[0], after[1], limit)).fetchall(),
                       change, cursor, limit)


def _json_ids(ids: list[int]) -> str:
    # One parameter for the whole batch: SQLite caps the number of ``?`` in a statement.
    return "[" + ",".join(map(str, ids)) + "]"


def prune(conn: sqlite3.Connection, cut: Cutoffs, *, batch_rows: int,
          pause: Callable[[], None] = lambda: None) -> PruneCounts:
    """Prune everything ``cut`` says is old, batch by batch, calling ``pause()`` after each write batch."""
    return prune_batches(lambda before, limit: prune_calls_batch(conn, before, limit),
                         lambda before, cursor, limit: prune_lines_batch(conn, before, cursor, limit),
                         cut, batch_rows=batch_rows, pause=pause)


def plan(conn: sqlite3.Connection, cut: Cutoffs) -> PruneCounts:
    """What `prune` would do now, without changing anything (``smdrd prune --dry-run``)."""
    counts = PruneCounts()
    if cut.calls_before is not None:
        counts.calls = conn.execute("SELECT count(*) FROM calls WHERE start_utc < ? "
                                    "AND id < (SELECT max(id) FROM calls)", (cut.calls_before,)).fetchone()[0]
    if cut.lines_before is not None:
        # A call survives the run if it is not old enough itself (calls go first).
        survives = "c.line_id = l.id" + ("" if cut.calls_before is None else
                                         " AND (c.start_utc >= :calls OR c.id = (SELECT max(id) FROM calls))")
        row = conn.execute(
            f"""SELECT
                  sum(NOT EXISTS (SELECT 1 FROM calls AS c WHERE {survives})
                      AND l.id < (SELECT max(id) FROM lines)),
                  sum(EXISTS (SELECT 1 FROM calls AS c WHERE {survives}) AND length(l.raw) > 0)
                FROM lines AS l WHERE l.received_at < :lines""",
            {"calls": cut.calls_before, "lines": cut.lines_before}).fetchone()
        counts.lines_deleted, counts.lines_emptied = row[0] or 0, row[1] or 0
    return counts


class SqliteRetention:
    """`smdrd.store.api.Retention` on its own autocommit connection, usable from one worker thread at a time."""

    def __init__(self, path: Path) -> None:
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for pragma in PRAGMAS:
                self.conn.execute(pragma)
            migrate(self.conn)  # ``smdrd prune`` may be the first to open an older database
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{path}: {exc}") from exc

    def prune_calls_batch(self, before: int, limit: int) -> int:
        try:
            return prune_calls_batch(self.conn, before, limit)
        except sqlite3.Error as exc:  # retention deletes only: nothing it does can be refused for its data
            raise StoreUnavailable(f"retention: {exc}") from exc

    def prune_lines_batch(self, before: int, cursor: LineCursor | None,
                          limit: int) -> tuple[int, int, LineCursor | None]:
        try:
            return prune_lines_batch(self.conn, before, cursor, limit)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"retention: {exc}") from exc

    def plan(self, cut: Cutoffs) -> PruneCounts:
        return plan(self.conn, cut)

    def prune(self, cut: Cutoffs, *, batch_rows: int, pause: Callable[[], None] = lambda: None) -> PruneCounts:
        return prune(self.conn, cut, batch_rows=batch_rows, pause=pause)

    def close(self) -> None:
        self.conn.close()
