"""How both stores lay out the typed journal entries (`smdrd.journal`) as rows: the one place that knows.

The core hands the store `JournalEntry`, `RatedCall` and `Alert` objects; the journal writers (SQLite's and
PostgreSQL's), ``reparse``, the import and the central collector map them to rows here. The statements that
insert them are each store's (`smdrd.store.sqlite.rows`, `smdrd.store.postgres.writer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring

from smdrd.frozen import constructor
from smdrd.journal import MICROS, Alert, FilePosition, JournalEntry, RatedCall

__all__ = ["CALL_COLUMNS", "POSITION_COLUMNS", "CallRow", "PreparedEntry", "alert_row", "call_row", "encode_extra",
           "line_row", "position_from_row", "position_row", "prepare", "unprepared"]

#: a ``calls`` row without its ``line_id`` (the writer adds it), in `CALL_COLUMNS` order.
CallRow = tuple[object, ...]

CALL_COLUMNS = (
    "uid", "source", "format", "call_key", "leg", "start", "start_utc", "duration", "ring", "direction",
    "extension", "number", "trunk", "account", "auth_code", "call_id", "answered", "transfer", "extra",
    "e164", "call_class", "rule", "prefix", "cost_micros", "currency", "region", "tariff_version",
)

# One encoder for every row: json.dumps() with non-default arguments builds a new encoder on each call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_extra(extra: Mapping[str, object]) -> str:
    """``extra`` as stored (compact JSON, UTF-8 kept): the same text as `json.dumps` with those options, built
    directly when every key and value is a string (what parsers give: vendor fields as strings), which costs a
    fraction of the encoder's set-up on each call."""
    if not extra:
        return "{}"
    parts = []
    for key, value in extra.items():
        if type(key) is not str or type(value) is not str:
            return _encode_json(dict(extra))
        parts.append(f"{encode_basestring(key)}:{encode_basestring(value)}")
    return "{" + ",".join(parts) + "}"


class _StartCache:
    """The last start time mapped, with its ``(isoformat, UTC seconds)``: the calls of one flood share their start
    objects (a parser converts each distinct stamp once, and pickling keeps the sharing), so most calls reuse the
    text. Keyed by identity (equal aware times may differ in their offset, so equality would not do); holding the
    object keeps its identity from being reused. One attribute, replaced whole: safe across threads."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[datetime | None, str, int] = (None, "", 0)

    def of(self, start: datetime) -> tuple[str, int]:
        last = self.last
        if last[0] is start:
            return last[1], last[2]
        utc = int(start.timestamp()) if start.tzinfo else int(start.replace(tzinfo=UTC).timestamp())
        iso = start.isoformat()
        self.last = (start, iso, utc)
        return iso, utc


_starts = _StartCache()


def line_row(line_id: int, e: JournalEntry) -> tuple[object, ...]:
    """The ``lines`` row of ``e``, in `INSERT_LINE` order."""
    return (line_id, e.source, e.peer, e.received_at, e.format, e.raw, e.status, e.error)


def call_row(call: RatedCall, source: str) -> CallRow:
    """The ``calls`` row of ``call`` from ``source`` (without ``line_id``), in `CALL_COLUMNS` order."""
    record = call.record
    start_iso, start_utc = _starts.of(record.start)
    rating = call.rating
    if rating is None:
        rated: tuple[object, ...] = (None, None, None, None, None, None, "", None)
    else:
        rated = (rating.e164, rating.call_class, rating.rule, rating.prefix, int(rating.cost * MICROS),
                 rating.currency, rating.region, getattr(rating, "tariff_version", "") or None)
    return (
        call.uid, source, record.format, record.call_key or record.key(), record.leg, start_iso, start_utc,
        record.duration, record.ring, record.direction._value_, record.extension, record.number, record.trunk,
        record.account, record.auth_code, record.call_id, int(record.answered), record.transfer,
        encode_extra(record.extra), *rated,
    )


#: a ``file_positions`` row, in this order (`position_row`, `position_from_row`).
POSITION_COLUMNS = ("source", "path", "identity", "byte_offset", "tail", "head", "saved_at")


def position_row(p: FilePosition, saved_at: int) -> tuple[object, ...]:
    """The ``file_positions`` row of ``p`` saved at ``saved_at`` (µs), in `POSITION_COLUMNS` order. A path the
    database cannot take as text (a name that is not UTF-8, from the OS with surrogates) is saved escaped: such a
    file is read again after a restart, but a position can never stop the journal writer (the sources leave
    such names alone)."""
    return (_storable(p.source), _storable(p.path), f"{p.dev}:{p.ino}", p.offset, p.tail, p.head, saved_at)


def _storable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def position_changes(positions: Iterable[FilePosition], saved_at: int
                     ) -> tuple[list[tuple[object, ...]], list[tuple[str, str]]]:
    """``positions`` as the rows to save (`position_row`) and the ``(source, path)`` keys to delete (the
    `FilePosition.forgotten` ones)."""
    rows: list[tuple[object, ...]] = []
    gone: list[tuple[str, str]] = []
    for p in positions:
        if p.forgotten:
            gone.append((_storable(p.source), _storable(p.path)))
        else:
            rows.append(position_row(p, saved_at))
    return rows, gone


def position_from_row(row: tuple[object, ...]) -> FilePosition | None:
    """The `FilePosition` of a ``file_positions`` row read in `POSITION_COLUMNS` order (``saved_at`` may be
    left out); ``None`` for an identity that is not ``dev:inode`` (then the file is read as if never seen)."""
    source, path, identity, offset, tail, head = row[:6]
    dev, _, ino = str(identity).partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return None
    return FilePosition(str(source), str(path), int(dev), int(ino), int(str(offset)), int(str(tail)),
                        bytes(head) if isinstance(head, bytes | bytearray | memoryview) else b"")


def alert_row(alert: Alert) -> tuple[object, ...]:
    """The ``alert_outbox`` row of ``alert``, in `OUTBOX_INSERT` order."""
    return (alert.id, alert.rule, alert.severity, alert.created_at, alert.payload)


@dataclass(frozen=True, slots=True)
class PreparedEntry:
    """A `JournalEntry` as the writer queues it, with its calls mapped to rows already or not (``None``).

    The live path queues entries unmapped (the rows are made at commit time, so a backlog holds one copy of each
    call, not two); ``smdrd import`` maps in its parsing worker and sends these instead (rows pickle about four
    times faster than the objects) with ``entry.calls`` left empty: ``call_rows`` alone then says what is stored.
    """

    entry: JournalEntry
    call_rows: tuple[CallRow, ...] | None = None

    def __reduce__(self) -> tuple[type[PreparedEntry], tuple[JournalEntry, tuple[CallRow, ...] | None]]:
        return (PreparedEntry, (self.entry, self.call_rows))

    def rows(self) -> tuple[CallRow, ...]:
        """The ``calls`` rows (without ``line_id``)."""
        if self.call_rows is not None:
            return self.call_rows
        source = self.entry.source
        return tuple(call_row(c, source) for c in self.entry.calls)


def unprepared(entry: JournalEntry) -> PreparedEntry:
    """``entry`` queued as it is, its rows made at commit (the live path: `JournalWriter.submit`); positional,
    without the frozen ``__init__`` (`smdrd.frozen`): the writer wraps every line it is given."""
    return _prepared(entry, None)


_prepared = constructor(PreparedEntry, "_prepared")


def prepare(entry: JournalEntry, *, keep_calls: bool = True) -> PreparedEntry:
    """``entry`` with its call rows; ``keep_calls=False`` drops the objects (for sending to another process)."""
    calls = entry.calls
    if not calls:
        return PreparedEntry(entry, ())
    source = entry.source
    rows = tuple(call_row(c, source) for c in calls)
    if not keep_calls:  # built directly: dataclasses.replace costs three times as much, once per imported line
        entry = JournalEntry(source, entry.peer, entry.received_at, entry.format, entry.raw, entry.status,
                             entry.error, (), entry.alerts)
    return PreparedEntry(entry, rows)
