"""Asterisk / FreePBX ``cdr_csv`` (``Master.csv``): one quoted CSV line per CDR. No I/O here.

Layout (Asterisk ``cdr/cdr_csv.c``, ``build_csv_record()``): 16 fixed columns ``accountcode, src, dst,
dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec, disposition,
amaflags``, then ``uniqueid`` (``loguniqueid``), ``userfield`` (``loguserfield``) and ``peeraccount, linkedid,
sequence`` (``newcdrcolumns``): 16 to 21 columns depending on ``cdr.conf``. Strings are always quoted with
``"`` doubled inside, numbers are not, an empty date is nothing between the commas. Dates are ``YYYY-MM-DD
HH:MM:SS`` in the PBX's local time. There is no header line (a line starting ``accountcode`` is skipped as
one).

Talk time is ``billsec`` of an ``ANSWERED`` record (0 otherwise: see `AsteriskCSVParser.parse`); ring time is
``duration`` minus talk time (start to answer, or start to end when unanswered).

Direction: Asterisk has no direction field. In order:

1. the destination context (``dcontext``) matched against ``inbound_contexts``, ``outbound_contexts`` and
   ``internal_contexts`` (shell-style globs, case-insensitive);
2. the channels: a ``channel`` matching ``trunk_channels`` is an inbound call, a ``dstchannel`` matching it an
   outbound call;
3. the numbers: ``src`` and ``dst`` both matching ``extension_pattern`` is internal, only ``src`` outbound,
   else inbound.

All are options (``[sources.format_options]``); each replaces its default::

    inbound_contexts = ["from-trunk*", "from-pstn*", "from-did*", "ext-did*", "*pstn*", "from-external*"]
    outbound_contexts = ["outbound-allroutes", "outrt-*", "macro-dialout*"]
    internal_contexts = ["ext-local", "from-internal-xfer"]
    trunk_channels = ["Dongle/*", "OOH323/*", "H323/*", "mISDN/*"]
    extension_pattern = '^[*#]?\\d{1,5}$'

Multi-leg calls: one CDR per Dial() attempt or bridge, so parallel ringing (through ``Local`` channels) and
every ``NO ANSWER`` leg is its own line. All of them carry the ``linkedid`` of the call (21-column form), so
the call key is ``linkedid``, falling back to ``uniqueid`` (which the legs of one Dial() share) in shorter
forms; legs are numbered in the order they arrive.

A CDR that ``Dial()`` writes for the *outgoing* channel (``lastapp`` ``AppDial``, ``lastdata`` ``(Outgoing
Line)``; seen in a real 18-column capture after the call that dialled it) has the dialled line as its ``channel``
and the dialled number as its ``src``: read like any other line it would be an inbound answered call from the
number just dialled. It is a leg of the call that dialled it: that call named the same channel as its
``channel`` or ``dstchannel``, so the leg takes that call's key, direction, extension and number (and the
dialled line as its trunk). An ``AppDial`` line whose dialling call was not seen keeps its own key
(``linkedid`` still joins it in the 21-column form), with the dialled line as the far end: outbound on a
trunk, internal to a phone.

Quoting is strict (Asterisk always closes and doubles its quotes): a line with an unterminated quote or text
after a closing quote (a line cut short, two lines run together) is a `ParseError` naming the column where
it happens, not a record with shifted columns.

Encoding: the real sample holds bytes that are not UTF-8 in a caller name. The class keeps UTF-8 (Asterisk
writes names as it gets them, and UTF-8 names are the common case); the daemon decodes with
``errors="replace"``, so such a line keeps every number and only the name shows U+FFFD.
"""

from __future__ import annotations

import csv
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from smdrd.errors import ParseError
from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Column, Layout, seconds, shifted, ymd_hms

BASE = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata", "start",
    "answer", "end", "duration", "billsec", "disposition", "amaflags",
)
#: the optional columns each column count carries (cdr.conf: loguniqueid, loguserfield, newcdrcolumns).
COLUMNS: dict[int, tuple[str, ...]] = {
    16: BASE,
    17: (*BASE, "uniqueid"),
    18: (*BASE, "uniqueid", "userfield"),
    19: (*BASE, "peeraccount", "linkedid", "sequence"),
    20: (*BASE, "uniqueid", "peeraccount", "linkedid", "sequence"),
    21: (*BASE, "uniqueid", "userfield", "peeraccount", "linkedid", "sequence"),
}
DEFAULTS: dict[str, Any] = {
    "inbound_contexts": ["from-trunk*", "from-pstn*", "from-did*", "ext-did*", "*pstn*",
                         "from-external*"],
    "outbound_contexts": ["outbound-allroutes", "outrt-*", "macro-dialout*"],
    "internal_contexts": ["ext-local", "from-internal-xfer"],
    "trunk_channels": ["Dongle/*", "OOH323/*", "H323/*", "mISDN/*"],
    "extension_pattern": r"^[*#]?\d{1,5}$",
}
#: columns that become core fields; every other non-empty column goes to `CallRecord.extra`.
_CORE = frozenset({"accountcode", "start", "answer", "end", "duration", "billsec"})
MAX_OPEN_CALLS = 10_000
#: the ``lastapp`` of a CDR that Dial() writes for the outgoing channel (a leg, not a call of its own).
APP_DIAL = "appdial"
#: the names of the columns by position, for errors in lines whose columns cannot be counted.
_NAMES = COLUMNS[21]


def _bad_quote_column(line: str) -> tuple[int, str]:
    """Where a line's quoting goes wrong: the 0-based column and what is wrong with it.

    Only called on a line `csv` refused in strict mode, so one of the two cases is there.
    """
    column, start, quoted, i = 0, 0, False, 0
    while i < len(line):
        c = line[i]
        if quoted:
            if c == '"':
                if line[i + 1:i + 2] == '"':
                    i += 1
                else:
                    quoted = False
                    if line[i + 1:i + 2] not in ("", ","):
                        return column, "text after its closing quote"
        elif c == '"' and i == start:
            quoted = True
        elif c == ",":
            column, start = column + 1, i + 1
        i += 1
    return column, "an unterminated quote"


def _blank_or_time(text: str) -> datetime | None:
    """``answer`` and ``end``: empty (never answered), else a valid time (only checked: not stored)."""
    return ymd_hms(text, None, "-") if text else None


#: the converted columns, in the order they are checked; the others are text, read by name.
LAYOUT = Layout("asterisk-csv", (
    Column("start", BASE.index("start"), lambda t: ymd_hms(t, None, "-")),  # a parser binds its timezone
    Column("duration", BASE.index("duration"), seconds),
    Column("billsec", BASE.index("billsec"), seconds),
    Column("answer", BASE.index("answer"), _blank_or_time),
    Column("end", BASE.index("end"), _blank_or_time),
), quoted=True, min_fields=len(BASE))
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]+(;\d)?$")


def channel_peer(channel: str) -> str:
    """``SIP/301-00000004`` -> ``SIP/301``; ``OOH323/avayaG700-1919`` -> ``OOH323/avayaG700``."""
    return _CHANNEL_SUFFIX.sub("", channel)


def _globs(options: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = options.get(key, DEFAULTS[key])
    if isinstance(value, str) or not isinstance(value, list | tuple) \
            or not all(isinstance(v, str) for v in value):
        raise ValueError(f"asterisk-csv option {key!r} must be a list of glob patterns, got {value!r}")
    return tuple(v.lower() for v in value)


class AsteriskCSVParser(Parser):
    """Asterisk ``cdr_csv`` Master.csv."""

    name = "asterisk-csv"
    description = "Asterisk / FreePBX Master.csv (16 to 21 quoted columns; legs joined by linkedid)"
    option_names = frozenset(DEFAULTS)

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        self._inbound = _globs(opts, "inbound_contexts")
        self._outbound = _globs(opts, "outbound_contexts")
        self._internal = _globs(opts, "internal_contexts")
        self._trunks = _globs(opts, "trunk_channels")
        pattern = opts.get("extension_pattern", DEFAULTS["extension_pattern"])
        try:
            self._ext = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(f"asterisk-csv option 'extension_pattern' is not a valid regex: {exc}") from None
        self._legs: OrderedDict[str, int] = OrderedDict()
        #: channel name -> the call that used it: (key, direction, extension, number, trunk), for AppDial legs.
        self._channels: OrderedDict[str, tuple[str, Direction, str, str, str]] = OrderedDict()
        tz = self.context.timezone
        self._layout = LAYOUT if tz is None else LAYOUT.with_converters(start=lambda t: ymd_hms(t, tz, "-"))

    def _matches(self, text: str, globs: tuple[str, ...]) -> bool:
        low = text.lower()
        return any(fnmatchcase(low, g) for g in globs)

    def _direction(self, f: Mapping[str, str]) -> Direction:
        ctx = f["dcontext"]
        if self._matches(ctx, self._inbound):
            return Direction.INBOUND
        if self._matches(ctx, self._outbound):
            return Direction.OUTBOUND
        if self._matches(ctx, self._internal):
            return Direction.INTERNAL
        if f["channel"] and self._matches(f["channel"], self._trunks):
            return Direction.INBOUND
        if f["dstchannel"] and self._matches(f["dstchannel"], self._trunks):
            return Direction.OUTBOUND
        if not self._ext.match(f["src"]):
            return Direction.INBOUND
        return Direction.INTERNAL if self._ext.match(f["dst"]) else Direction.OUTBOUND

    def _ext_of(self, channel: str) -> str:
        """The extension behind a phone channel (``SIP/301-0000`` -> ``301``), else ``""``."""
        peer = channel_peer(channel)
        tech, _, name = peer.partition("/")
        if tech.lower() == "local" or not self._ext.match(name):
            return ""
        return name

    def _parties(self, f: Mapping[str, str]) -> tuple[Direction, str, str, str]:
        """Direction, extension, number and trunk of an ordinary CDR."""
        direction = self._direction(f)
        src, dst = f["src"], f["dst"]
        if direction is Direction.INBOUND:
            extension = self._ext_of(f["dstchannel"]) or dst
            number = src
            peer = channel_peer(f["channel"])
            trunk = "" if peer.lower().startswith("local/") else peer
        elif direction is Direction.OUTBOUND:
            extension = src if self._ext.match(src) else (self._ext_of(f["channel"]) or src)
            number = dst
            peer = channel_peer(f["dstchannel"])
            trunk = "" if peer.lower().startswith("local/") else peer
        else:
            extension, number, trunk = src, dst, ""
        return direction, extension, number, trunk

    def _rows(self, line: str) -> list[str]:
        """The line's columns, read strictly.

        Raises:
            ParseError: the quoting is broken, naming the column (by its name where the position has one).
        """
        try:
            rows = list(csv.reader([line], strict=True))
        except csv.Error:
            index, what = _bad_quote_column(line)
            name = _NAMES[index] if index < len(_NAMES) else f"column {index + 1}"
            raise self.error(f"not a Master.csv line: {what} in column {index + 1}", name) from None
        return rows[0] if rows else []

    def _remember(self, f: Mapping[str, str], call: tuple[str, Direction, str, str, str]) -> None:
        for name in (f["channel"], f["dstchannel"]):
            if name:
                self._channels.pop(name, None)
                self._channels[name] = call
        while len(self._channels) > 2 * MAX_OPEN_CALLS:
            self._channels.popitem(last=False)

    def _dialled_leg(self, f: Mapping[str, str], key: str) -> tuple[str, Direction, str, str, str]:
        """Key, direction, extension, number and trunk of an ``AppDial`` line (the outgoing channel of a
        Dial()): those of the call that named its channel, else its own key with the dialled line as the far
        end."""
        peer = channel_peer(f["channel"])
        line = "" if peer.lower().startswith("local/") else peer
        for name in (f["channel"], f["dstchannel"]):
            owner = self._channels.get(name) if name else None
            if owner is not None:
                owner_key, direction, extension, number, trunk = owner
                return owner_key, direction, extension, number, line or trunk
        number = f["src"] or f["dst"]
        phone = self._ext_of(f["channel"])
        if phone:
            return key, Direction.INTERNAL, phone, number, ""
        return key, Direction.OUTBOUND, "", number, line

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        row = self._rows(line)
        names = COLUMNS.get(len(row))
        if names is None:
            if row and row[0].strip().lower() == "accountcode":
                return None
            raise self.error(f"expected 16 to 21 CSV columns, got {len(row)}")
        f = dict(zip(names, row, strict=True))
        try:
            v = self._layout.extract(row)
        except ParseError as exc:
            if exc.field == "start" and f["accountcode"].strip().lower() == "accountcode":
                return None
            raise
        start: datetime = v["start"]
        total: int = v["duration"]
        billsec: int = v["billsec"]

        uniqueid = f.get("uniqueid", "")
        key = f.get("linkedid", "") or uniqueid
        if f["lastapp"].lower() == APP_DIAL:
            key, direction, extension, number, trunk = self._dialled_leg(f, key)
        else:
            direction, extension, number, trunk = self._parties(f)
            self._remember(f, (key, direction, extension, number, trunk))
        answered = f["disposition"] == "ANSWERED"
        # Since Asterisk 12, billsec counts from the *caller's* answer, so a NO ANSWER leg of a call the PBX
        # had already answered (IVR, ringback) carries billsec too: that is not talk time on this leg.
        talk = billsec if answered else 0
        extra = {k: v for k, v in f.items() if v and k not in _CORE}
        if talk != billsec:
            extra["billsec"] = f["billsec"]
        leg = 0
        if key:
            leg = self._legs.pop(key, 0)
            self._legs[key] = leg + 1
            if len(self._legs) > MAX_OPEN_CALLS:
                self._legs.popitem(last=False)
        return (CallRecord(
            format=self.name,
            start=start,
            duration=talk,
            ring=max(total - talk, 0),
            direction=direction,
            extension=extension,
            number=number,
            trunk=trunk,
            account=f["accountcode"],
            call_id=uniqueid,
            leg=leg,
            answered=answered,
            call_key=key,
            extra=extra,
        ),)

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One 21-column line (uniqueid, userfield and newcdrcolumns on), as FreePBX writes it."""
        ring = record.ring or 0
        start = record.start
        answer = shifted(start, ring) if record.answered else None
        end = shifted(start, ring + record.duration)
        ext, num = record.extension, record.number
        uid = record.call_id or f"{int(start.timestamp())}.{record.leg}"
        if record.direction is Direction.INBOUND:
            ctx, src, dst = "from-trunk", num, ext
            chan, dchan = f"{record.trunk or 'SIP/provider'}-0000000a", f"SIP/{ext}-0000000b"
        elif record.direction is Direction.OUTBOUND:
            ctx, src, dst = "outbound-allroutes", ext, num
            chan, dchan = f"SIP/{ext}-0000000a", f"{record.trunk or 'SIP/provider'}-0000000b"
        else:
            ctx, src, dst = "ext-local", ext, num
            chan, dchan = f"SIP/{ext}-0000000a", f"SIP/{num}-0000000b"
        disposition = "ANSWERED" if record.answered else record.extra.get("disposition", "NO ANSWER")

        def q(text: str) -> str:
            return '"' + text.replace('"', '""') + '"'

        def when(t: datetime | None) -> str:
            return q(t.strftime("%Y-%m-%d %H:%M:%S")) if t else ""

        fields = [
            q(record.account), q(src), q(dst), q(ctx), q(f'"{src}" <{src}>'), q(chan), q(dchan), q("Dial"),
            q(dchan.rsplit("-", 1)[0]), when(start), when(answer), when(end), str(ring + record.duration),
            str(record.duration if record.answered else 0), q(disposition), q("DOCUMENTATION"), q(uid), q(""),
            q(""), q(record.call_key or uid), str(record.leg),
        ]
        return [",".join(fields)]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        score = 0.0
        for line in lines[:20]:
            if not line.startswith('"'):
                continue
            try:
                row = next(csv.reader([line]), [])
            except csv.Error:
                continue
            if len(row) in COLUMNS and len(row[9]) == 19 and row[9][4] == "-" \
                    and row[14] in ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"):
                score = max(score, 0.95)
        return score
