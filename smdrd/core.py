"""The per-line hot path: a framed line in, a `JournalEntry` (with its parsed and rated calls) out.

Pure and synchronous: no I/O here. The daemon, ``smdrd import`` and ``smdrd reparse`` all run lines through
`process_frame`, so a line means the same wherever it is read. Any exception a parser raises, not only
`ParseError`, becomes an ``error`` status on the line: a parser bug never costs a line. What leaves here are the
typed entries of `smdrd.journal`; how they are stored is the store's business (``smdrd/store/``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from smdrd.errors import ParseError
from smdrd.framing import Frame, Oversized, Skipped
from smdrd.journal import (
    DUPLICATE,
    ERROR,
    FLUSHED,
    HELD,
    MICROS,
    PARSED,
    SKIPPED,
    Alert,
    JournalEntry,
    RatedCall,
    RatingLike,
    new_entry,
    new_rated_call,
)
from smdrd.parsing import Parser, flush_records, parse_line
from smdrd.record import CallRecord

__all__ = ["DUPLICATE", "ERROR", "FLUSHED", "HELD", "MICROS", "PARSED", "SKIPPED", "Entry", "JournalEntry",
           "Observe", "Rate", "RatedCall", "RatingLike", "flush_entry", "flush_uid", "line_uid", "process_frame"]

#: the entries are `smdrd.journal.JournalEntry`; ``Entry`` is its short name here.
Entry = JournalEntry

Rate = Callable[[CallRecord], RatingLike]
#: called with each call as it is parsed (its record, its rating, its uid); returns the alerts it raises, which
#: are stored in the same transaction as the call (so an alert exists exactly when its call does).
Observe = Callable[[CallRecord, "RatingLike | None", str], Sequence[Alert]]


def line_uid(fmt: str, raw: bytes) -> str:
    """The de-duplication key of a line: a PBX that re-sends its buffer after a reconnect sends the same bytes."""
    return f"{fmt}:{hashlib.blake2b(raw.strip(), digest_size=12).hexdigest()}"


def flush_uid(fmt: str, records: Sequence[CallRecord]) -> str:
    """The uid of records a parser released at the end of a stream: a digest of what they say (start, parties,
    durations, call key and leg), as `line_uid` is of a line's bytes. Not of the stream (its peer or the time
    it ended), which differs every time the same lines are read."""
    said = "\n".join(f"{r.start.isoformat()}|{r.direction.value}|{r.extension}|{r.number}|{r.trunk}|{r.duration}|"
                     f"{r.ring}|{r.call_key}|{r.leg}" for r in records)
    return f"{fmt}:flush:{hashlib.blake2b(said.encode(), digest_size=12).hexdigest()}"


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
) -> JournalEntry:
    """Parse and rate one framed line into a `JournalEntry`. Never raises for bad input."""
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
    calls, alerts, error = rate_calls(records, line_uid(fmt, frame), rate, observe)
    # Every field, in order, without the frozen __init__ (`smdrd.frozen`): this runs for every call.
    return new_entry(source, peer, received_at, fmt, frame, PARSED, error, calls, alerts)


def flush_entry(
    parser: Parser,
    *,
    source: str,
    peer: str,
    received_at: int,
    rate: Rate | None = None,
    observe: Observe | None = None,
) -> JournalEntry | None:
    """End of a stream: the records ``parser`` still holds (a multi-leg call cut off by the end), or ``None``.

    Their lines are journalled already, so they are stored against an empty ``flushed`` marker line. Their uid
    is made from the records themselves (`flush_uid`): the same saved log imported twice, or a held record
    flushed again after a restart, is the same call, which the store then finds already stored.
    """
    records, errors = flush_records(parser)
    if not records and not errors:
        return None
    calls, alerts, error = rate_calls(records, flush_uid(parser.name, records), rate, observe)
    problems = "; ".join([str(e) for e in errors] + ([error] if error else []))
    return Entry(source, peer, received_at, parser.name, b"", FLUSHED if records else ERROR, problems or None,
                 calls, alerts)


def rate_calls(records: Sequence[CallRecord], uid: str, rate: Rate | None, observe: Observe | None
               ) -> tuple[tuple[RatedCall, ...], tuple[Alert, ...], str | None]:
    """Rate ``records`` (the calls of one line, whose uid is ``uid``) and run ``observe`` on each.

    A rating or observer failure never loses the call: it is kept unrated, and the failure is returned as the
    line's error (the line stays ``parsed``).

    Returns:
        The rated calls, the alerts they raised, and the error to note on the line (``None`` if none).
    """
    calls: list[RatedCall] = []
    alerts: list[Alert] = []
    error = None
    for i, record in enumerate(records):
        call_uid = uid if i == 0 else f"{uid}:{i}"
        rating = None
        if rate is not None:
            try:
                rating = rate(record)
            except Exception as exc:
                error = f"rating failed: {type(exc).__name__}: {exc}"
        calls.append(new_rated_call(call_uid, record, rating))
        if observe is not None:
            try:
                alerts.extend(observe(record, rating, call_uid))
            except Exception as exc:
                error = f"alert rules failed: {type(exc).__name__}: {exc}"
    return tuple(calls), tuple(alerts), error
