"""Avaya IP Office SMDR: comma-separated, one record per call segment. No I/O here.

Layout (Avaya "SMDR Fields", IP Office R8 to R12): 17 fields in the oldest documents, 30 in most releases, 34
with the server IP / unique id columns, 35 to 37 in R11 and later. There is no quoting: fields never hold a
comma. Direction is field 5 (``I``/``O``) with field 9 (IsInternal): ``O`` + 1 is an internal call.

``I`` + 1 is possible too (Avaya's field list pairs the two fields without excluding it; it is how a call that
reaches this system over a multi-site network (SCN) line from another IP Office reads, by our reading, which no
document we could read confirms). Such a record is internal, as Is Internal says (no carrier charged this
system for it), but its other party is the **caller**, not the called number: ``number`` is the Caller field
(``@host`` dropped, as for inbound calls), so an external caller delivered over the network keeps its number;
the raw Caller and the ``I`` are kept in ``extra`` (``caller``, ``direction``).

The number of an outbound call is **Called Number** (field 6), not Dialled Number (field 7). Avaya: Called
Number is "the number called by the IP Office" (for outbound calls the dialled digits after short-code
processing), Dialled Number the digits the user dialled. They differ when a short code rewrote them: an access
prefix removed (dialled ``0600988600``, called ``600988600``), a feature code stripped (``*88783809110`` ->
``783809110``), or digits added or replaced (``99040`` against ``00540299040``). Called Number is what went out
on the trunk and what the carrier bills, so it is what is rated; Dialled Number is kept in ``extra``
(``dialled_number``), and used only when Called Number is empty.

Multi-leg calls: every segment of one call carries the same Call ID and the same call start time; all but the
last have Continuation = 1. Call IDs restart at 1000000 after a reboot, so the call key is Call ID plus start
time. Each segment is stored as a leg under that key, and reports count a key once.

This module is the model for a new parser (see `smdrd.parsers.toolkit`): the layout is data, `LAYOUT`, whose
columns (`Column`) name each converted field with a bounded converter, so a bad field is a `ParseError` naming it;
`parse` keeps only vendor logic (header lines, the direction rules, continuation records); `detect` is derived
from the layout; `render` is the inverse the simulator and the conformance kit (`smdrd.testing.check_parser`)
use.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from smdrd.errors import ParseError
from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction, new_record

from .toolkit import Column, Layout, detect_from_layout, digit_text, hms_seconds, one_of, seconds, seconds_text, ymd_hms

FIELDS = (
    "call_start", "connected_time", "ring_time", "caller", "direction", "called_number", "dialled_number",
    "account", "is_internal", "call_id", "continuation", "party1_device", "party1_name", "party2_device",
    "party2_name", "hold_time", "park_time", "auth_valid", "auth_code", "user_charged", "call_charge",
    "currency", "amount_at_last_user_change", "call_units", "units_at_last_user_change", "cost_per_unit",
    "mark_up", "external_targeting_cause", "external_targeter_id", "external_targeted_number",
    "calling_party_server_ip", "caller_unique_call_id", "called_party_server_ip", "called_unique_call_id",
    "smdr_record_time", "caller_consent_directive", "calling_number_verification",
)
MIN_FIELDS = 17
#: first fields of header lines written by collectors and Avaya's old Delta Server, skipped on purpose.
HEADER_STARTS = ("DATETIME", "CALL START", "CALLSTART")
#: open multi-leg calls remembered at most (a PBX that never closes a call must not grow memory).
MAX_OPEN_CALLS = 10_000
#: fields kept in `CallRecord.extra` when not empty (the rest are in the core record or always empty).
_EXTRA = (5, 6, 11, 12, 13, 14, 15, 16, 19, 20, 21, 23, 28, 29, 30, 31, 32, 33, 34, 35, 36)
#: `ymd_hms` remembering the last few thousand stamps: a busy PBX writes many lines a second, and a datetime is
#: immutable (a stamp it refuses is refused again each time: errors are not remembered).
_call_start = lru_cache(maxsize=4096)(ymd_hms)
#: the fields the parser converts, in the order they are checked (the first bad one is the error's field).
#: The other fields are text, read by position.
LAYOUT = Layout("avaya-ipo", (
    Column("call_start", 0, lambda text: _call_start(text, None)),  # a parser binds its site's timezone
    Column("connected_time", 1, hms_seconds),
    Column("ring_time", 2, seconds, optional=True, default=0),
    Column("direction", 4, one_of("I", "O")),
    Column("is_internal", 8, one_of("0", "1", "I", "", expected="0 or 1")),
    Column("call_id", 9, digit_text(19), optional=True),
    Column("continuation", 10, one_of("0", "1", "")),
), min_fields=MIN_FIELDS)


def _is_header(line: str) -> bool:
    """A header line a collector wrote (skipped by `parse`, not counted by `detect`)."""
    return line.split(",", 1)[0].strip().upper() in HEADER_STARTS


def _device_ext(device: str) -> str:
    """``E214`` -> ``214``; other devices (trunks ``T``, voicemail and tones ``V``) -> ``""``."""
    return device[1:] if device[:1] == "E" else ""


class AvayaIPOfficeParser(Parser):
    """Avaya IP Office SMDR."""

    name = "avaya-ipo"
    description = "Avaya IP Office SMDR (CSV, 17 to 37 fields; transfers joined by Call ID)"
    option_names = frozenset[str]()  # it takes none

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        self._legs: OrderedDict[str, int] = OrderedDict()
        tz = self.context.timezone
        self._layout = LAYOUT if tz is None else LAYOUT.with_converters(call_start=lambda text: _call_start(text, tz))

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        f = LAYOUT.split(line)
        try:
            v = self._layout.extract(f)
        except ParseError:
            if f[0].strip().upper() in HEADER_STARTS:
                return None
            raise
        start: datetime = v["call_start"]
        duration: int = v["connected_time"]
        dir_code: str = v["direction"]
        internal: str = v["is_internal"]
        call_id: str = v["call_id"]
        cont: str = v["continuation"]

        caller, called = f[3], f[5]
        p1, p2 = f[11], f[13]
        trunk = p1 if p1[:1] == "T" else (p2 if p2[:1] == "T" else "")
        extension = _device_ext(p1) or _device_ext(p2)
        extra = {FIELDS[i]: f[i] for i in _EXTRA if i < len(f) and f[i]}
        if internal in ("1", "I") and dir_code == "I":
            # an inbound network (SCN) call: internal, but the other party is the caller
            direction = Direction.INTERNAL
            extension = extension or called
            number = caller.split("@", 1)[0]
            extra["direction"] = dir_code
            if caller:
                extra["caller"] = caller
        elif internal in ("1", "I"):
            direction = Direction.INTERNAL
            extension = extension or caller
            number = called
        elif dir_code == "I":
            direction = Direction.INBOUND
            extension = extension or called
            number = caller.split("@", 1)[0]
        else:
            direction = Direction.OUTBOUND
            if not extension and caller.isdigit() and len(caller) <= 8:
                extension = caller
            number = called or f[6]  # what went out on the trunk (see the module docstring)

        key = f"{call_id}@{f[0]}" if call_id else ""
        leg = 0
        if key:
            leg = self._legs.pop(key, 0)
            if cont == "1":
                self._legs[key] = leg + 1
                if len(self._legs) > MAX_OPEN_CALLS:
                    self._legs.popitem(last=False)

        # ExternalTargetingCause is a source (``U`` user, ``HG`` hunt group, ``LINE``...) and, when the call was
        # forwarded or transferred, a reason (``U XfP``, ``U Xfd``, ``HG fnr``): only the reason is transfer
        # information; the source alone is kept with the vendor fields.
        cause = f[27].strip() if len(f) > 27 else ""
        if cause and " " not in cause:
            extra["external_targeting_cause"] = cause
        if "@" in caller:
            extra["caller"] = caller
        auth_code = f[18] if len(f) > 18 and f[18] not in ("", "n/a") else ""
        # Every field, in CallRecord's order (`new_record`: this runs for every line).
        return (new_record(
            self.name,  # format
            start,
            duration,
            direction,
            extension,
            number,
            v["ring_time"],  # ring
            trunk,
            f[7],  # account
            auth_code,
            call_id,
            leg,
            cont == "1",  # continued
            duration > 0,  # answered
            cause if " " in cause else "",  # transfer: a bare source (``U``, ``HG``) names no transfer
            key,  # call_key
            extra,
        ),)

    @classmethod
    def extension_name(cls, record: CallRecord) -> str:
        """The name of the party whose device is the extension (``E214``): Party1Name, else Party2Name. IP
        Office's placeholder for a user without a name (``Extn214``) is no name."""
        ext, extra = record.extension, record.extra
        for device, name in (("party1_device", "party1_name"), ("party2_device", "party2_name")):
            if extra.get(device) == f"E{ext}":
                found = extra.get(name, "").strip()
                return "" if found == f"Extn{ext}" else found
        return ""

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One 30-field line, as IP Office R9 to R12 write it."""
        ext = record.extension
        trunk = record.trunk or "T9001"
        if record.direction is Direction.INTERNAL:
            caller, dirc, called, internal, p2 = ext, "O", record.number, "1", f"E{record.number}"
        elif record.direction is Direction.INBOUND:
            caller, dirc, called, internal, p2 = record.number, "I", ext, "0", trunk
        else:
            caller, dirc, called, internal, p2 = ext, "O", record.number, "0", trunk
        fields = [
            record.start.strftime("%Y/%m/%d %H:%M:%S"), seconds_text(record.duration), str(record.ring or 0),
            caller, dirc, called, called, record.account, internal, record.call_id,
            "1" if record.continued else "0", f"E{ext}", record.extra.get("party1_name", f"Extn{ext}"),
            p2, record.extra.get("party2_name", "Line 1.1" if p2[:1] == "T" else f"Extn{record.number}"),
            "0", "0", "", record.auth_code or "", "", "", "", "", "", "", "", "", record.transfer, "", "",
        ]
        return [",".join(fields)]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        """0.95 times the share of the first lines (headers and blank lines aside) that `LAYOUT` reads."""
        return detect_from_layout(LAYOUT, lines, skip=_is_header)
