"""The per-line hot path: a framed line in, a journal entry (with its parsed and rated calls) out.

Pure and synchronous: no I/O here. The daemon, ``smdrd import`` and ``smdrd reparse`` all run lines through
`process_frame`, so a line means the same wherever it is read. Any exception a parser raises, not only
`ParseError`, becomes an ``error`` status on the line: a parser bug never costs a line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Protocol

from smdrd.errors import ParseError
from smdrd.framing import Frame, Oversized, Skipped
from smdrd.parsing import Parser, flush_records, parse_line
from smdrd.record import CallRecord

PARSED = "parsed"
HELD = "held"  # part of a multi-leg call whose other legs have not arrived yet
SKIPPED = "skipped"
ERROR = "error"
DUPLICATE = "duplicate"
FLUSHED = "flushed"  # an empty marker line carrying the records a parser held until its stream ended

MICROS = Decimal(1_000_000)
# One encoder for every row: json.dumps() with non-default arguments builds a new encoder on each call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RatingLike(Protocol):
    """What the pipeline stores of a rating (see `smdrd.rating`)."""

    @property
    def e164(self) -> str: ...
    @property
    def call_class(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def cost(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...


Rate = Callable[[CallRecord], RatingLike]
#: a row for another table, written in the same transaction as the call: ``(sql, parameters)``.
SideRow = tuple[str, tuple[object, ...]]
#: called with each call as it is stored (its record, its rating, its uid); returns rows to write with it
#: (alerts go to the outbox this way, so an alert is committed with its call or not at all).
Observe = Callable[[CallRecord, "RatingLike | None", str], Sequence[SideRow]]

#: a ``calls`` row without its ``line_id`` (the writer adds it), in `CALL_COLUMNS` order.
CallRow = tuple[object, ...]

CALL_COLUMNS = (
    "uid", "source", "format", "call_key", "leg", "start", "start_utc", "duration", "ring", "direction",
    "extension", "number", "trunk", "account", "auth_code", "call_id", "answered", "transfer", "extra",
    "e164", "call_class", "rule", "prefix", "cost_micros", "currency",
)


@dataclass(slots=True)
class Entry:
    """One journal line and what it produced."""

    source: str
    peer: str
    received_at: int
    format: str
    raw: bytes
    status: str
    error: str | None = None
    calls: list[CallRow] = field(default_factory=list)
    side_rows: list[SideRow] = field(default_factory=list)


def call_row(record: CallRecord, uid: str, source: str, rating: RatingLike | None) -> CallRow:
    """The ``calls`` row for ``record`` (rated when ``rating`` is given)."""
    start = record.start
    start_utc = int(start.timestamp()) if start.tzinfo else int(start.replace(tzinfo=UTC).timestamp())
    if rating is None:
        rated: tuple[object, ...] = (None, None, None, None, None, None)
    else:
        rated = (rating.e164, rating.call_class, rating.rule, rating.prefix,
                 int(rating.cost * MICROS), rating.currency)
    return (
        uid, source, record.format, record.key(), record.leg, start.isoformat(), start_utc,
        record.duration, record.ring, record.direction.value, record.extension, record.number, record.trunk,
        record.account, record.auth_code, record.call_id, int(record.answered), record.transfer,
        _encode_json(dict(record.extra)) if record.extra else "{}",
        *rated,
    )


def line_uid(fmt: str, raw: bytes) -> str:
    """The de-duplication key of a line: a PBX that re-sends its buffer after a reconnect sends the same bytes."""
    return f"{fmt}:{hashlib.blake2b(raw.strip(), digest_size=12).hexdigest()}"


def process_frame(
    frame: Frame,
    parser: Parser,
    encoding: str,
    *,
    source: str,
    peer: str,
    received_at: int,
    rate: Rate | None = None,
    observe: Observe | None = None,
) -> Entry:
    """Parse and rate one framed line into a journal `Entry`. Never raises for bad input."""
    fmt = parser.name
    if isinstance(frame, Oversized):
        return Entry(source, peer, received_at, fmt, frame.head, ERROR,
                     f"line longer than {frame.limit} bytes: kept the first {frame.limit}, "
                     "discarded the rest up to the next line end")
    if isinstance(frame, Skipped):  # bytes a framer stepped over to find the next record: kept whole
        return Entry(source, peer, received_at, fmt, frame.raw, ERROR, frame.reason)
    try:
        # A parser bug or a value no real call has is a ParseError here: it must not cost the line.
        records = parse_line(parser, frame.decode(encoding, errors="replace"))
    except ParseError as exc:
        return Entry(source, peer, received_at, fmt, frame, ERROR, str(exc))
    if records is None:
        return Entry(source, peer, received_at, fmt, frame, SKIPPED)
    if not records:
        return Entry(source, peer, received_at, fmt, frame, HELD)
    entry = Entry(source, peer, received_at, fmt, frame, PARSED)
    add_calls(entry, records, line_uid(fmt, frame), rate, observe)
    return entry


def flush_entry(
    parser: Parser,
    *,
    source: str,
    peer: str,
    received_at: int,
    tag: object,
    rate: Rate | None = None,
    observe: Observe | None = None,
) -> Entry | None:
    """End of a stream: the records ``parser`` still holds (a multi-leg call cut off by the end), or ``None``.

    Their lines are journalled already, so they are stored against an empty ``flushed`` marker line; ``tag``
    (a time or a line id) makes the marker's uid unique to this stream's end.
    """
    records, errors = flush_records(parser)
    if not records and not errors:
        return None
    entry = Entry(source, peer, received_at, parser.name, b"", FLUSHED if records else ERROR,
                  "; ".join(str(e) for e in errors) or None)
    add_calls(entry, records, f"{parser.name}:flush:{peer}:{tag}", rate, observe)
    return entry


def add_calls(entry: Entry, records: Sequence[CallRecord], uid: str, rate: Rate | None,
              observe: Observe | None) -> None:
    """Rate ``records`` and add their rows (and what ``observe`` makes of them) to ``entry``.

    A rating or observer failure never loses the call: it is stored unrated, and the failure is noted in the
    line's ``error`` (the line stays ``parsed``).
    """
    for i, record in enumerate(records):
        call_uid = uid if i == 0 else f"{uid}:{i}"
        rating = None
        if rate is not None:
            try:
                rating = rate(record)
            except Exception as exc:
                entry.error = f"rating failed: {type(exc).__name__}: {exc}"
        entry.calls.append(call_row(record, call_uid, entry.source, rating))
        if observe is not None:
            try:
                entry.side_rows.extend(observe(record, rating, call_uid))
            except Exception as exc:
                entry.error = f"alert rules failed: {type(exc).__name__}: {exc}"
