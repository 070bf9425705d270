"""The canonical call record: what every vendor parser produces.

Plain frozen dataclasses, no behaviour beyond small derived values. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from smdrd.errors import ParseError
from smdrd.frozen import constructor

#: the longest talk or ring time a real call can have, in seconds (31 days). A PBX field beyond it is corrupt
#: (or hostile) and the line is journalled as an error naming the field, never stored as a call.
MAX_CALL_SECONDS = 31 * 86_400
#: call start times outside [EARLIEST_YEAR, LATEST_YEAR] are no real call (a PBX clock set to a factory date in
#: the 1980s or 1990s still fits).
EARLIEST_YEAR = 1980
LATEST_YEAR = 2099
#: the most legs one call can have, and the longest text a field may hold.
MAX_LEG = 9_999
MAX_FIELD_CHARS = 4_096


class Direction(enum.StrEnum):
    """Which way a call went, seen from the site."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call (or one leg of a multi-leg call) as a PBX reported it.

    Attributes:
        format: the parser's format name (``avaya-ipo``...).
        start: when the call started; timezone-aware when the PBX's timezone is known.
        duration: talk (connected) seconds.
        ring: ring seconds, ``None`` when the format does not say.
        direction: inbound, outbound or internal.
        extension: the internal party (an extension number, as the PBX wrote it).
        number: the other party as the PBX wrote it (dialled digits or CLI); ``""`` when withheld.
        trunk: the trunk or line the call used, ``""`` for internal calls.
        account: the account code entered, if any.
        auth_code: the authorisation code, if any (never logged).
        call_id: the vendor's call identifier, ``""`` when the format has none.
        leg: the position of this record within a multi-leg call (0 for the first or only leg).
        continued: more legs of this call follow.
        answered: the call was answered (talk time may still be 0 for very short calls).
        transfer: transfer information from the PBX (``"U Xfd"``...), ``""`` when none.
        call_key: the key shared by every leg of one call; reports count distinct keys.
            Parsers set it when the format has a call id (with the start time, since ids restart
            after a PBX reboot); otherwise it is derived from the record itself.
        extra: vendor-only fields, as strings.
    """

    format: str
    start: datetime
    duration: int
    direction: Direction
    extension: str
    number: str
    ring: int | None = None
    trunk: str = ""
    account: str = ""
    auth_code: str = ""
    call_id: str = ""
    leg: int = 0
    continued: bool = False
    answered: bool = True
    transfer: str = ""
    call_key: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled by field values (import's and the daemon's workers send millions): several times faster than
        # the slots state; rebuilt by `_record`, which skips the frozen __init__ (half the receiving side's cost).
        return (_record, (self.format, self.start, self.duration, self.direction, self.extension, self.number,
                             self.ring, self.trunk, self.account, self.auth_code, self.call_id, self.leg,
                             self.continued, self.answered, self.transfer, self.call_key, self.extra))

    def key(self) -> str:
        """The key shared by all legs of this call."""
        if self.call_key:
            return self.call_key
        if self.call_id:
            return f"{self.call_id}@{self.start.isoformat()}"
        return f"{self.start.isoformat()}/{self.extension}/{self.number}/{self.duration}"

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object `smdrd parse` prints (stable keys)."""
        return {
            "format": self.format,
            "start": self.start.isoformat(),
            "duration": self.duration,
            "ring": self.ring,
            "direction": self.direction.value,
            "extension": self.extension,
            "number": self.number,
            "trunk": self.trunk,
            "account": self.account,
            "call_id": self.call_id,
            "leg": self.leg,
            "continued": self.continued,
            "answered": self.answered,
            "transfer": self.transfer,
            "call_key": self.key(),
            "extra": dict(self.extra),
        }



#: a `CallRecord` from all its fields, in order: what an unpickled record is rebuilt with (`smdrd.frozen`).
_record = constructor(CallRecord, "_record")
#: the same, for a parser's hot path: ``new_record(format, start, duration, direction, extension, number, ring,
#: trunk, account, auth_code, call_id, leg, continued, answered, transfer, call_key, extra)``, every field given in
#: declaration order, at half the cost of the keyword ``CallRecord(...)`` (the record is the same).
new_record = _record

_TEXT_FIELDS = ("format", "extension", "number", "trunk", "account", "auth_code", "call_id", "transfer", "call_key")


def check_record(record: CallRecord) -> None:
    """Refuse a record holding a value no real call can have; every parser's output passes through here.

    The field converters shared by the parsers (``parsers/_fields.py``) bound what they convert; this check
    is the boundary for every parser, a third-party plugin's included, so that nothing the store cannot hold
    or a report cannot sum leaves the pure core.

    Raises:
        ParseError: naming the field and the bound.
    """
    # The hot path: one expression for a valid record (every call of an import passes here); only a record
    # that fails it goes through the checks below, which say which field is wrong.
    d, r, leg, start, t = record.duration, record.ring, record.leg, record.start, MAX_FIELD_CHARS
    if (type(d) is int and 0 <= d <= MAX_CALL_SECONDS
            and (r is None or (type(r) is int and 0 <= r <= MAX_CALL_SECONDS))
            and type(leg) is int and 0 <= leg <= MAX_LEG
            and isinstance(start, datetime) and EARLIEST_YEAR <= start.year <= LATEST_YEAR
            and type(record.direction) is Direction
            and type(record.continued) is bool and type(record.answered) is bool
            and type(record.format) is str and len(record.format) <= t
            and type(record.extension) is str and len(record.extension) <= t
            and type(record.number) is str and len(record.number) <= t
            and type(record.trunk) is str and len(record.trunk) <= t
            and type(record.account) is str and len(record.account) <= t
            and type(record.auth_code) is str and len(record.auth_code) <= t
            and type(record.call_id) is str and len(record.call_id) <= t
            and type(record.transfer) is str and len(record.transfer) <= t
            and type(record.call_key) is str and len(record.call_key) <= t
            and (not record.extra or all(type(k) is str and type(v) is str for k, v in record.extra.items()))):
        return
    fmt = record.format if isinstance(record.format, str) else "?"
    for name, seconds, optional in (("duration", record.duration, False), ("ring", record.ring, True)):
        if seconds is None and optional:
            continue
        if type(seconds) is not int:
            raise ParseError(fmt, f"expected whole seconds, got {type(seconds).__name__}", name)
        if not 0 <= seconds <= MAX_CALL_SECONDS:
            raise ParseError(fmt, f"{seconds} s is no real call (0 to {MAX_CALL_SECONDS} s, 31 days)", name)
    if type(record.leg) is not int or not 0 <= record.leg <= MAX_LEG:
        raise ParseError(fmt, f"expected a leg number from 0 to {MAX_LEG}, got {record.leg!r}", "leg")
    start = record.start
    if not isinstance(start, datetime):
        raise ParseError(fmt, f"expected a date and time, got {type(start).__name__}", "start")
    if not EARLIEST_YEAR <= start.year <= LATEST_YEAR:
        raise ParseError(fmt, f"year {start.year} is outside {EARLIEST_YEAR} to {LATEST_YEAR}", "start")
    if not isinstance(record.direction, Direction):
        raise ParseError(fmt, f"expected a Direction, got {record.direction!r}", "direction")
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if not isinstance(value, str):
            raise ParseError(fmt, f"expected text, got {type(value).__name__}", name)
        if len(value) > MAX_FIELD_CHARS:
            raise ParseError(fmt, f"{len(value)} characters, more than {MAX_FIELD_CHARS}", name)
    for key, value in record.extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ParseError(fmt, "vendor extras must be text", f"extra.{key}")
    for name in ("continued", "answered"):
        if not isinstance(getattr(record, name), bool):
            raise ParseError(fmt, f"expected true or false, got {getattr(record, name)!r}", name)
