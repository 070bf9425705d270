"""What the call feed of either store reads (`smdrd.store.api.CallFeed`), and how its rows become the fields it
gives: the SQL with ``?`` placeholders (the PostgreSQL store puts its own in their place), and the mappers. The
stores' feeds (`smdrd.store.sqlite.feed`, `smdrd.store.postgres.store`) run it each on its own connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from smdrd.journal import DUPLICATE, MICROS
from smdrd.privacy import hide_codes
from smdrd.store.api import REVISION_FEED, FeedCall

__all__ = [
    "ENTRIES",
    "ENTRY_CALLS",
    "FEED_AFTER",
    "FEED_COLUMNS",
    "LAST_OF_DIRECTION",
    "LINE_COLUMNS",
    "PRUNE_REVISIONS",
    "REVISIONS",
    "REVISION_CALLS",
    "cursor_table",
    "entries_of",
    "entry_fields",
    "feed_fields",
    "revisions_of",
]

#: the columns a feed message is made of, in `smdrd.journal.RatedCall.to_json` order; never ``auth_code``.
FEED_COLUMNS = ("uid", "source", "format", "call_key", "leg", "start", "start_utc", "duration", "ring", "direction",
            "extension", "number", "trunk", "account", "call_id", "answered", "transfer", "extra", "e164",
            "region", "call_class", "rule", "prefix", "cost_micros", "currency")
FEED_AFTER = f"SELECT id, {', '.join(FEED_COLUMNS)} FROM calls WHERE id > ? ORDER BY id LIMIT ?"
#: the ``lines`` columns of a journal entry, in `entry_fields` order.
LINE_COLUMNS = ("id", "source", "peer", "received_at", "format", "raw", "status", "error")
ENTRIES = f"SELECT {', '.join(LINE_COLUMNS)} FROM lines WHERE id > ? ORDER BY id LIMIT ?"
#: the calls of the entries' lines, each with its authorisation code last: read only to hide it in the raw line
#: (`entry_fields`), never published.
ENTRY_CALLS = (f"SELECT line_id, {', '.join(FEED_COLUMNS)}, auth_code FROM calls WHERE line_id BETWEEN ? AND ? "
               "ORDER BY id")
#: revisions after a position, each with its line's row (NULLs: retention deleted the line).
REVISIONS = (f"SELECT r.id, {', '.join('l.' + c for c in LINE_COLUMNS)} FROM entry_revisions AS r "
             f"LEFT JOIN lines AS l ON l.id = r.line_id WHERE r.id > ? ORDER BY r.id LIMIT ?")
#: the calls of the lines of the revisions in ``(?, ?]``, as `ENTRY_CALLS` reads them.
REVISION_CALLS = (f"SELECT line_id, {', '.join(FEED_COLUMNS)}, auth_code FROM calls WHERE line_id IN "
                  f"(SELECT line_id FROM entry_revisions WHERE id > ? AND id <= ?) ORDER BY id")
#: the revisions the revision feed has sent: gone once its cursor is saved past them.
PRUNE_REVISIONS = "DELETE FROM entry_revisions WHERE id <= ?"
#: the newest call of a direction (the retained "last call" topic): newest first by id, the last call of a
#: direction is among the newest rows on any real site.
LAST_OF_DIRECTION = f"SELECT id, {', '.join(FEED_COLUMNS)} FROM calls WHERE direction = ? ORDER BY id DESC LIMIT 1"


def feed_fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``calls`` row (`FEED_COLUMNS` order) as the feed publishes it: what `RatedCall.to_json` gives for the call."""
    fields = dict(zip(FEED_COLUMNS, row, strict=True))
    micros = fields.pop("cost_micros")
    fields["extra"] = json.loads(fields["extra"]) if fields["extra"] else {}
    fields["cost"] = None if micros is None else str(Decimal(micros) / MICROS)
    currency = fields.pop("currency")
    fields["currency"] = currency  # after cost, as `to_json` orders them
    return fields


def entry_fields(line: tuple[Any, ...], calls: list[dict[str, Any]], codes: Sequence[str] = ()) -> dict[str, Any]:
    """A ``lines`` row (`LINE_COLUMNS` order) and its calls (as `feed_fields` gives them) as the entry feed
    gives it: ``raw`` stays bytes (the publisher encodes it), with the calls' authorisation ``codes`` hidden
    (`smdrd.privacy.hide_codes`): a credential crosses no broker, and a central store shows no one."""
    fields = dict(zip(LINE_COLUMNS, line, strict=True))
    if fields["status"] == DUPLICATE:
        # the bytes of a line stored already (a PBX re-sending its buffer), whose calls, and so whose codes, are
        # that line's: not known here. The central has those bytes, hidden, from the first line.
        fields["raw"] = b""
    else:
        fields["raw"] = hide_codes(bytes(fields["raw"]), codes)
    fields["calls"] = calls
    return fields


def _by_line(calls: list[tuple[Any, ...]]) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[str]]]:
    """`ENTRY_CALLS` or `REVISION_CALLS` rows as each line's calls (`feed_fields`) and authorisation codes."""
    by_line: dict[int, list[dict[str, Any]]] = {}
    codes: dict[int, list[str]] = {}
    for row in calls:
        line_id = int(row[0])
        by_line.setdefault(line_id, []).append(feed_fields(tuple(row[1:-1])))
        if row[-1]:
            codes.setdefault(line_id, []).append(row[-1])
    return by_line, codes


def entries_of(lines: list[tuple[Any, ...]], calls: list[tuple[Any, ...]]) -> list[FeedCall]:
    """Journal entries from their ``lines`` rows and the `ENTRY_CALLS` rows of those lines."""
    by_line, codes = _by_line(calls)
    return [FeedCall(int(line[0]), entry_fields(tuple(line), by_line.get(int(line[0]), []),
                                                codes.get(int(line[0]), [])))
            for line in lines]


def revisions_of(rows: list[tuple[Any, ...]], calls: list[tuple[Any, ...]]) -> list[FeedCall]:
    """Revisions from their `REVISIONS` rows and the `REVISION_CALLS` rows of their lines: each its line's entry
    as `entries_of` gives it, with the ``revision``; no fields where the line is gone."""
    by_line, codes = _by_line(calls)
    out = []
    for revision, *line in rows:
        if line[0] is None:
            out.append(FeedCall(int(revision), {}))
            continue
        fields = entry_fields(tuple(line), by_line.get(int(line[0]), []), codes.get(int(line[0]), []))
        fields["revision"] = int(revision)
        out.append(FeedCall(int(revision), fields))
    return out


def cursor_table(name: str) -> str:
    """The table whose ids feed ``name``'s cursor counts: `REVISION_FEED`'s the revisions, every other the calls
    (a new cursor is placed at its end)."""
    return "entry_revisions" if name == REVISION_FEED else "calls"
