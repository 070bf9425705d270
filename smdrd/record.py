"""The canonical call record: what every vendor parser produces.

Plain frozen dataclasses, no behaviour beyond small derived values. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
