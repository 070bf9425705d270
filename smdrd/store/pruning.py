"""Retention's batch loop over any store (`smdrd.store.api.Retention`): calls first, then the lines no call refers
to any more, one small transaction a batch, with a pause between them that lets the journal writer in. Each
store supplies its two batch steps (`smdrd.store.sqlite.retention`, `smdrd.store.postgres.retention`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smdrd.store.api import Cutoffs, LineCursor, PruneCounts

__all__ = ["PRUNED_SQL", "RAW_PRUNED", "lines_batch", "prune_batches", "pruned_through"]

#: the ``raw`` of a line whose bytes retention emptied (its call is kept).
RAW_PRUNED = b""
#: SQL true for a line whose bytes retention emptied: ``smdrd reparse`` must leave such lines (and their calls)
#: alone. ``flushed`` lines are markers that never had bytes.
PRUNED_SQL = "(length(raw) = 0 AND status <> 'flushed')"

#: the cursor before every line.
FIRST: LineCursor = (-(2**63), -(2**63))


def pruned_through(rows: list[Any]) -> str:
    """The last site-local day (``YYYY-MM-DD``) of a batch of deleted calls, as rows ``(id, line_id, start)``:
    each store records it as its retention horizon (the reports' `smdrd.store.planner` reads the totals of a
    range that starts on or before it from the call details, which lack the pruned calls)."""
    return max(str(r[2])[:10] for r in rows)


def lines_batch(read: Callable[[LineCursor], list[Any]],
                change: Callable[[list[int], list[int]], tuple[int, int]],
                cursor: LineCursor | None, limit: int) -> tuple[int, int, LineCursor | None]:
    """One lines batch over any store: ``read(after)`` gives up to ``limit`` rows ``(id, received_at, has
    bytes, a call refers to it)`` after the cursor; ``change(orphans, kept)`` deletes the first and empties the
    bytes of the second in one transaction. Returns as `prune_lines_batch`."""
    rows = read(cursor or FIRST)
    if not rows:
        return 0, 0, None
    orphans = [r[0] for r in rows if not r[3]]
    raw_kept = [r[0] for r in rows if r[3] and r[2]]
    deleted, emptied = change(orphans, raw_kept) if orphans or raw_kept else (0, 0)
    last = rows[-1]
    return deleted, emptied, ((last[1], last[0]) if len(rows) == limit else None)


def prune_batches(calls_batch: Callable[[int, int], int],
                  lines_batch: Callable[[int, LineCursor | None, int], tuple[int, int, LineCursor | None]],
                  cut: Cutoffs, *, batch_rows: int, pause: Callable[[], None] = lambda: None) -> PruneCounts:
    """`prune` over any store's two batch steps (`smdrd.store.api.Retention`'s ``prune_calls_batch`` and
    ``prune_lines_batch``). Calls go first, so lines whose last call was just deleted go in the same run.
    """
    counts = PruneCounts()
    if cut.calls_before is not None:
        while True:
            n = calls_batch(cut.calls_before, batch_rows)
            counts.calls += n
            counts.batches += 1
            if n < batch_rows:
                break
            pause()
    if cut.lines_before is not None:
        cursor: LineCursor | None = None
        while True:
            deleted, emptied, cursor = lines_batch(cut.lines_before, cursor, batch_rows)
            counts.lines_deleted += deleted
            counts.lines_emptied += emptied
            if deleted or emptied:
                counts.batches += 1
            if cursor is None:
                break
            if deleted or emptied:
                pause()
    return counts
