"""What ``smdrd rerate`` and ``smdrd reparse`` do alike on either store (`smdrd.store.api.Rebuild`): the reads,
with ``?`` placeholders (the PostgreSQL store puts its own in their place), the objects their rows make, and the
status a reparsed line is given. How each store writes, and keeps its rollups in step, is its own
(`smdrd.store.sqlite.rebuild`, `smdrd.store.postgres.rebuild`).

Both touch only the calls of the store's own site (``LOCAL_SITE`` of its schema): on a central store the other
sites' calls were rated with their own tariffs and parsed with their own configurations (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from smdrd.journal import DUPLICATE, ERROR, FLUSHED, JournalEntry
from smdrd.store.api import JournalLine, StoredRating
from smdrd.store.feed import FEED_COLUMNS

__all__ = ["BATCH", "CALLS_RECEIVED", "CALL_STATES", "LINE_FIELDS", "LINE_STATES", "PUBLISHING", "RATED", "RATINGS",
           "READABLE_LINES", "SET_STATUS", "journal_line", "line_bounds", "line_states", "new_statuses",
           "stored_rating"]

#: rows per write transaction and per read batch.
BATCH = 2000

#: a call's rating columns, in `smdrd.store.api.Rating` order.
RATED = ("e164", "call_class", "rule", "prefix", "cost_micros", "currency", "region", "tariff_version")

#: the calls of a site (third parameter) started in ``[lo, hi)`` (UTC seconds), as `stored_rating` reads them.
RATINGS = (f"SELECT id, number, start, duration, direction, trunk, answered, {', '.join(RATED)} FROM calls "
           "WHERE start_utc >= ? AND start_utc < ? AND site_id = ? ORDER BY id")

#: a journal line's columns, as `journal_line` reads them.
LINE_FIELDS = "id, source, peer, format, raw, status"

#: lines received in ``[lo, hi)`` (UTC microseconds) that can be parsed again: not those whose bytes retention
#: emptied (their calls are kept, and left alone).
READABLE_LINES = "received_at >= ? AND received_at < ? AND (length(raw) > 0 OR status = 'flushed')"

#: the calls of a site (third parameter) whose line was received in ``[lo, hi)`` (UTC microseconds).
CALLS_RECEIVED = ("SELECT count(*) FROM calls JOIN lines ON lines.id = calls.line_id WHERE lines.received_at >= ? "
                  "AND lines.received_at < ? AND calls.site_id = ?")

SET_STATUS = "UPDATE lines SET status = ?, error = ? WHERE id = ?"

#: whether the revision feed (first parameter, `smdrd.store.api.REVISION_FEED`) exists: someone publishes them.
PUBLISHING = "SELECT 1 FROM feed_cursors WHERE name = ?"
#: the lines (``{ids}``: the store's test of an id being among those listed) as a central store holds them: their
#: status and error, then their calls with every column the feed publishes (`line_states`).
LINE_STATES = "SELECT id, status, error FROM lines WHERE id IN ({ids})"
CALL_STATES = f"SELECT line_id, {', '.join(FEED_COLUMNS)} FROM calls WHERE line_id IN ({{ids}})"


def line_states(lines: Iterable[Sequence[Any]], calls: Iterable[Sequence[Any]]) -> dict[int, tuple[object, ...]]:
    """Each line of `LINE_STATES` rows with its `CALL_STATES` rows, as one value: two lines compare equal exactly
    when a central store would hold the same for them (so a reparse sends again only the lines it changed)."""
    by_line: dict[int, list[tuple[object, ...]]] = {}
    for row in calls:
        by_line.setdefault(int(row[0]), []).append(tuple(row[1:]))
    return {int(line_id): (status, error, tuple(sorted(by_line.get(int(line_id), []), key=repr)))
            for line_id, status, error in lines}


def stored_rating(row: Sequence[Any]) -> StoredRating:
    """A `RATINGS` row."""
    call_id, number, start, duration, direction, trunk, answered, *rating = row
    e164, call_class, rule, prefix, cost_micros, currency, region, version = rating
    return StoredRating(call_id, number, start, duration, direction, trunk, bool(answered),
                        (e164, call_class, rule, prefix, cost_micros, currency, region, version))


def journal_line(row: Sequence[Any]) -> JournalLine:
    """A row of `LINE_FIELDS`."""
    line_id, source, peer, fmt, raw, status = row
    return JournalLine(line_id, source, peer, fmt, bytes(raw), status)


def line_bounds(lo: int, hi: int, source: str | None) -> tuple[str, list[object]]:
    """`READABLE_LINES` of the days ``[lo, hi)`` (UTC seconds), of one ``source`` if given, and its parameters."""
    return (READABLE_LINES + (" AND source = ?" if source else ""),
            [lo * 1_000_000, hi * 1_000_000] + ([source] if source else []))


def new_statuses(entries: Sequence[tuple[int, JournalEntry | None]], refused: dict[int, str],
                 has_calls: Callable[[int], bool], *,
                 keep_lines: bool) -> tuple[dict[int, str], list[tuple[str, str | None, int]]]:
    """Each reparsed line's status (``FLUSHED`` for a marker), and the `SET_STATUS` rows of those that change:
    a line whose calls the store ``refused`` becomes an ``error`` saying why; one that gave calls but holds none
    (``has_calls``, after the inserts: all were stored already from another line, a re-sent buffer) a
    ``duplicate``. With ``keep_lines`` only the markers."""
    statuses: dict[int, str] = {}
    rows: list[tuple[str, str | None, int]] = []
    for line_id, entry in entries:
        if entry is None:
            statuses[line_id] = FLUSHED
            continue
        if keep_lines:
            continue
        status, error = entry.status, entry.error
        if line_id in refused:
            status, error = ERROR, refused[line_id]
        elif entry.calls and not has_calls(line_id):
            status = DUPLICATE
        rows.append((status, error, line_id))
        statuses[line_id] = status
    return statuses, rows
