"""`smdrd rerate` and `smdrd reparse` in SQLite (`smdrd.store.api.Rebuild`).

Each batch is one short ``BEGIN IMMEDIATE`` transaction, so the live journal writer waits milliseconds at most.
The rollups stay exact: a re-rated call moves its figures (the update trigger of migration 4), and the calls a
reparse rebuilds are taken out of the rollups when deleted (`UNROLL_ON_DELETE`, a TEMP trigger on this
connection only: retention's deletes must never unroll) and added back when re-inserted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

from smdrd.journal import JournalEntry
from smdrd.store.api import REVISION_FEED, JournalLine, RatingUpdate, ReplaceResult, StoredRating
from smdrd.store.rebuild import (
    BATCH,
    CALL_STATES,
    CALLS_RECEIVED,
    LINE_FIELDS,
    LINE_STATES,
    PUBLISHING,
    RATINGS,
    SET_STATUS,
    journal_line,
    line_bounds,
    line_states,
    new_statuses,
    stored_rating,
)
from smdrd.store.sqlite.rollups import ROLL_UP
from smdrd.store.sqlite.rows import INSERT_CALL_NUMBERED, LAST_IDS, call_row
from smdrd.store.sqlite.schema import LOCAL_SITE, UNROLL_ON_DELETE, connect
from smdrd.store.sqlite.writer import unwritable

#: a revision of each line of the calls listed (a JSON array of ids) while the revision feed exists.
_REVISE_CALLS = ("INSERT INTO entry_revisions (line_id) SELECT DISTINCT line_id FROM calls "
                 "WHERE id IN (SELECT value FROM json_each(?)) "
                 "AND EXISTS (SELECT 1 FROM feed_cursors WHERE name = ?) ORDER BY line_id")
#: a revision of each line listed (a JSON array of ids).
_REVISE_LINES = "INSERT INTO entry_revisions (line_id) SELECT DISTINCT value FROM json_each(?) ORDER BY value"
_LISTED = "SELECT value FROM json_each(?)"


def _ids(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


class SqliteRebuild:
    """One connection for one rerate or reparse run (migrates an older database first)."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(str(path))
        self._unroll = False

    def close(self) -> None:
        self.conn.close()

    # ---- rerate ----

    def ratings(self, lo: int, hi: int) -> Iterator[StoredRating]:
        for row in self.conn.execute(RATINGS, (lo, hi, LOCAL_SITE)):
            yield stored_rating(row)

    def update_ratings(self, updates: Sequence[RatingUpdate]) -> None:
        for i in range(0, len(updates), BATCH):
            batch = updates[i:i + BATCH]
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(
                    "UPDATE calls SET e164 = ?, call_class = ?, rule = ?, prefix = ?, cost_micros = ?, "
                    "currency = ?, region = ?, tariff_version = ? WHERE id = ?",
                    [(*u.rating, u.call_id) for u in batch if u.figures])
                # Their entries go to a central store again (`REVISION_FEED`): its costs follow the site's.
                self.conn.execute(_REVISE_CALLS, (_ids([u.call_id for u in batch if u.figures]), REVISION_FEED))
                # The version alone: a statement that leaves the rollups' update trigger alone.
                self.conn.executemany("UPDATE calls SET tariff_version = ? WHERE id = ?",
                                      [(u.rating[7], u.call_id) for u in batch if not u.figures])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # ---- reparse ----

    def lines(self, lo: int, hi: int, source: str | None) -> Iterator[list[JournalLine]]:
        # Lines whose bytes retention pruned (their calls are kept) cannot be parsed again: leave them and their
        # calls alone.
        where, params = line_bounds(lo, hi, source)
        last = 0
        while True:
            rows = self.conn.execute(f"SELECT {LINE_FIELDS} FROM lines WHERE {where} AND id > ? ORDER BY id "
                                     f"LIMIT {BATCH}", [*params, last]).fetchall()
            if not rows:
                return
            yield [journal_line(row) for row in rows]
            last = rows[-1][0]

    def calls_received(self, lo: int, hi: int) -> int:
        return int(self.conn.execute(CALLS_RECEIVED, (lo * 1_000_000, hi * 1_000_000, LOCAL_SITE)).fetchone()[0])

    def _states(self, listed: str) -> dict[int, tuple[object, ...]]:
        return line_states(self.conn.execute(LINE_STATES.format(ids=_LISTED), (listed,)),
                           self.conn.execute(CALL_STATES.format(ids=_LISTED), (listed,)))

    def replace(self, entries: Sequence[tuple[int, JournalEntry | None]], *,
                keep_lines: bool = False) -> ReplaceResult:
        if not self._unroll:
            self.conn.execute(UNROLL_ON_DELETE)
            self._unroll = True
        conn = self.conn
        ids = [(line_id,) for line_id, _ in entries]
        listed = _ids([line_id for line_id, _ in entries])
        conn.execute("BEGIN IMMEDIATE")
        try:
            publishing = conn.execute(PUBLISHING, (REVISION_FEED,)).fetchone() is not None
            before = self._states(listed) if publishing else {}
            removed = 0
            # Before the delete: the rebuilt calls are numbered above every id there was, never an id a deleted
            # call had (the MQTT call feed's cursor may have passed it: a call given it would not be published).
            calls_before: int = conn.execute(LAST_IDS).fetchone()[1]
            numbers = itertools.count(calls_before + 1)
            if not keep_lines:
                # rowcount, not total_changes: the unroll trigger's writes are no calls.
                removed = conn.executemany("DELETE FROM calls WHERE line_id = ?", ids).rowcount
            rows = [(next(numbers), line_id, *call_row(c, entry.source)) for line_id, entry in entries if entry
                    for c in entry.calls]
            refused: dict[int, str] = {}
            try:
                conn.executemany(INSERT_CALL_NUMBERED, rows)
            except Exception as exc:
                if unwritable(exc):
                    raise
                # One entry holds what the database refuses: store the others, and that line as an error.
                for line_id, entry in entries:
                    if not entry or not entry.calls:
                        continue
                    conn.execute("SAVEPOINT one")
                    try:
                        conn.executemany(INSERT_CALL_NUMBERED, [(next(numbers), line_id, *call_row(c, entry.source))
                                                                for c in entry.calls])
                    except Exception as one:
                        if unwritable(one):
                            raise
                        conn.execute("ROLLBACK TO one")
                        refused[line_id] = (f"could not store what was parsed from this line: "
                                            f"{type(one).__name__}: {one}")
                    conn.execute("RELEASE one")
            statuses, status_rows = new_statuses(
                entries, refused, lambda line_id: conn.execute("SELECT 1 FROM calls WHERE line_id = ? LIMIT 1",
                                                               (line_id,)).fetchone() is not None,
                keep_lines=keep_lines)
            conn.executemany(SET_STATUS, status_rows)
            if publishing:  # the lines a central store would now hold otherwise go to it again
                after = self._states(listed)
                conn.execute(_REVISE_LINES, (_ids([i for i in after if after[i] != before.get(i)]),))
            for statement in ROLL_UP:  # the rebuilt calls: every one got a new id, above calls_before
                conn.execute(statement, (calls_before,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ReplaceResult(removed, statuses)
