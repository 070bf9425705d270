"""The typed boundary of the pure core: what one framed line becomes. No I/O and no storage layout here.

`smdrd.core.process_frame` turns a line into a `JournalEntry`: the line itself (source, peer, receive time,
format, raw bytes), its status and error, the `RatedCall`s parsed from it and the `Alert`s they raised, all
frozen dataclasses. Everything after the core reads these types: the store (``smdrd/store/``) alone maps them
to rows, and metrics, alert delivery and the MQTT call feed read attributes, never a column index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any, Protocol

from smdrd.frozen import constructor
from smdrd.record import CallRecord

__all__ = ["DUPLICATE", "ERROR", "FLUSHED", "HEAD_BYTES", "HELD", "MICROS", "PARSED", "SKIPPED", "STATUSES",
           "Alert", "FilePosition", "JournalEntry", "RatedCall", "RatingLike"]

PARSED = "parsed"
HELD = "held"  # part of a multi-leg call whose other legs have not arrived yet
SKIPPED = "skipped"
ERROR = "error"
DUPLICATE = "duplicate"
FLUSHED = "flushed"  # an empty marker line carrying the records a parser held until its stream ended
STATUSES = (PARSED, HELD, SKIPPED, ERROR, DUPLICATE, FLUSHED)

#: a cost in integer millionths of its currency is ``cost * MICROS`` (exact: costs have at most 6 decimals).
MICROS = Decimal(1_000_000)


class RatingLike(Protocol):
    """What the pipeline keeps of a rating (`smdrd.rating.Rating`)."""

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
    @property
    def region(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RatedCall:
    """One call (or leg) parsed from a line, with its rating.

    Attributes:
        uid: the call's identity in the journal: the same bytes re-sent give the same uid, so a re-sent call
            is recognised and never counted twice.
        record: what the PBX said (`smdrd.record.CallRecord`).
        rating: what rating made of it; ``None`` when the call could not be rated (the line's error says why).
    """

    uid: str
    record: CallRecord
    rating: RatingLike | None = None

    def __reduce__(self) -> tuple[Any, tuple[str, CallRecord, RatingLike | None]]:
        return (_rated_call, (self.uid, self.record, self.rating))

    @property
    def cost_micros(self) -> int | None:
        """The cost in integer millionths of `currency`, ``None`` when unrated."""
        return None if self.rating is None else int(self.rating.cost * MICROS)

    @property
    def call_class(self) -> str | None:
        return None if self.rating is None else self.rating.call_class

    @property
    def currency(self) -> str | None:
        return None if self.rating is None else self.rating.currency

    @property
    def region(self) -> str:
        """The ISO 3166 region of the number called or calling (``DO`` for +1 809), ``""`` when unknown or
        unrated: reports and metrics name a destination's country by it."""
        return "" if self.rating is None else self.rating.region

    def to_json(self, source: str) -> dict[str, Any]:
        """The call's fields as the call feed reads them back from the store, never the authorisation code
        (`smdrd.mqtt_payloads.CallShape` turns them into the published call payload)."""
        r = self.record
        start = r.start
        start_utc = int(start.timestamp()) if start.tzinfo else int(start.replace(tzinfo=UTC).timestamp())
        rating = self.rating
        return {
            "uid": self.uid, "source": source, "format": r.format, "call_key": r.key(), "leg": r.leg,
            "start": start.isoformat(), "start_utc": start_utc, "duration": r.duration,
            "ring": r.ring, "direction": r.direction.value, "extension": r.extension, "number": r.number,
            "trunk": r.trunk, "account": r.account, "call_id": r.call_id, "answered": int(r.answered),
            "transfer": r.transfer, "extra": dict(r.extra),
            "e164": rating.e164 if rating else None, "region": self.region,
            "call_class": rating.call_class if rating else None,
            "rule": rating.rule if rating else None, "prefix": rating.prefix if rating else None,
            "cost": str(Decimal(int(rating.cost * MICROS)) / MICROS) if rating else None,
            "currency": rating.currency if rating else None,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert a call (or a source's state) raised, stored with its call in one transaction.

    Attributes:
        id: stable: derived from the call's uid (or the source and time) and the rule, so a re-sent line or a
            redelivery never makes a second alert.
        rule, severity: which rule, how bad.
        created_at: when it was raised, in microseconds since the epoch.
        payload: the JSON document delivered (MQTT, e-mail).
    """

    id: str
    rule: str
    severity: str
    created_at: int
    payload: str

    def __reduce__(self) -> tuple[Any, tuple[str, str, str, int, str]]:
        return (_alert, (self.id, self.rule, self.severity, self.created_at, self.payload))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal line and what it produced.

    Attributes:
        source, peer: where the line came from (the configured source, the PBX's address or the file).
        received_at: when it was received, in microseconds since the epoch (UTC).
        format: the parser's format name.
        raw: the bytes as received (without the line end).
        status: one of `STATUSES`.
        error: why the line is an error, or what went wrong beside it (a rating failure); ``None`` if nothing.
        calls: the calls parsed from this line (several for a multi-leg call completed by it).
        alerts: the alerts those calls raised.
    """

    source: str
    peer: str
    received_at: int
    format: str
    raw: bytes
    status: str
    error: str | None = None
    calls: Sequence[RatedCall] = ()
    alerts: Sequence[Alert] = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled by field values (import's and the daemon's workers send millions): several times faster than
        # the slots state; rebuilt without the frozen __init__ (`smdrd.frozen`), which is most of the receiving
        # side's cost (the daemon's event loop unpickles every line the worker answers).
        return (_journal_entry, (self.source, self.peer, self.received_at, self.format, self.raw, self.status,
                               self.error, self.calls, self.alerts))


@dataclass(frozen=True, slots=True)
class FilePosition:
    """How far a followed file's lines are journalled: saved with the last of them, in the same transaction, so
    that a restart resumes exactly there (`smdrd.sources.file`).

    Attributes:
        source, path: the configured source and the file it follows (the key: one position each).
        dev, ino: the file's identity (``st_dev``, ``st_ino``) when it was read.
        offset: the bytes journalled: where the next line starts.
        tail: how many of those bytes were an unterminated last line, journalled when the file was let go (a
            stop, a rotation); 0 when ``offset`` is the end of a complete line.
        head: the file's first bytes (up to `HEAD_BYTES`): an inode reused by another file does not match.
    """

    source: str
    path: str
    dev: int
    ino: int
    offset: int
    tail: int = 0
    head: bytes = b""

    @classmethod
    def forget(cls, source: str, path: str) -> FilePosition:
        """The position that, saved, deletes ``source``'s saved position of ``path`` (a file gone for good, as
        a spool directory's files go once read: `smdrd.sources.spool`)."""
        return cls(source, path, 0, 0, -1)

    @property
    def forgotten(self) -> bool:
        """True for a `forget` position: saving it deletes the saved one."""
        return self.offset < 0


#: how many of a file's first bytes `FilePosition.head` keeps.
HEAD_BYTES = 64


# What unpickled entries are rebuilt with: the fields in order, without the frozen __init__ (`smdrd.frozen`).
_rated_call = constructor(RatedCall, "_rated_call")
_alert = constructor(Alert, "_alert")
_journal_entry = constructor(JournalEntry, "_journal_entry")
#: the same for the pure core's hot path (`smdrd.core`): every field given, in declaration order.
new_entry = _journal_entry
new_rated_call = _rated_call
