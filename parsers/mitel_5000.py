"""Mitel 5000 CP / MiVoice Office 250 / Inter-Tel Axxess SMDR: 80-column fixed-width records. No I/O here.

Layout (Inter-Tel 5000 Administrator Guide 2.3, "SMDR Report Format", and the Axxess column list):
``TYP EXT# TRUNK DIALED DIGITS START ELAPSED COST ACCOUNT CODE``, 0-based: type ``[0:3]``,
extension ``[3:9]``, trunk ``[9:15]``, dialled digits ``[15:44]`` (28, ``>`` when truncated), start
``HH:MM`` ``[44:50]``, elapsed ``HH:MM:SS`` or ``S=XXXXXX`` ``[50:59]``, cost ``$XX.XX`` ``[59:66]``, account
``[66:79]``, and a ``*`` in column 80 when the far end hung up first. Report header lines
(``Station ...``, ``TYP EXT# ...``) are no records.

Over TCP each record comes inside a 4-byte length frame (`smdrd.sources.hs_mitel_5000`); over a serial port
or in a file it is a plain line: this parser sees the same 80 characters either way.

The record has no date and its start has no seconds. The report's title line carries one (``Station Message
Detailed Recording   00:00:04 07-03-2012``: the time and the US date it was printed; the one real Axxess capture
has it at the start of the day): records after it take that date, and one more day each time a start falls more than
12 hours before the previous record's (midnight passed without a title line). Before any title line the date
is the day of ``context.now`` (or now), or the day before when the start time is later than now (plus 5
minutes of clock skew), as a record is written when its call ends. A call that began before a midnight title
and ended after it is dated a day late: the record gives no way to tell.

Ring-in diagnostic records (an option: "a ring-in message is recorded for every incoming call (whether
answered or unanswered) to indicate how long it rang") have a blank TYP and dialled digits ``RING......`` +
DID/DNIS or ``RG`` + Caller ID, DNIS at the end of the field. EXT ``*****`` is "an unanswered ring-in": its
ELAPSED is "the length of time an unanswered call was ringing", so it is an inbound unanswered call with that
ring time and no talk time (whatever its TYP). A ring-in of an answered call gives no record: the call has its
own ``IN``/``DID`` record.

Incoming dialled digits (the 5000 guide's Table 36: by the trunk's service type, Caller ID, ANI and/or
DID/DNIS): a caller number and a DNIS right-aligned at the end of the field (``525530894016  ...  0061``) give
the caller as ``number`` and the DNIS in ``extra["dnis"]``; a single number is kept as ``number`` (the record
does not say whether it is a caller's or a DNIS).

Direction comes from the call type: ``IN``, ``DID`` and ``DSA`` (DISA) are incoming, ``NET`` (network, between
nodes) internal, the rest (``LOC``, ``TLC``, ``TLD``, ``O/I``, ``OP``, ``INT``, ``000``, ``CNF``) outgoing.

Multi-leg calls: none to join; the 5000 writes one record per trunk call (EXT is the last endpoint that
handled it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Layout, Slice, hms_seconds, seconds, seconds_text

SLICES: Mapping[str, tuple[int, int]] = {
    "type": (0, 3), "extension": (3, 9), "trunk": (9, 15), "digits": (15, 44), "start": (44, 50),
    "elapsed": (50, 59), "cost": (59, 66), "account": (66, 79), "far_end_disconnect": (79, 80),
}
TYPES: Mapping[str, Direction] = {
    "": Direction.INBOUND,  # a ring-in diagnostic record
    "IN": Direction.INBOUND, "DID": Direction.INBOUND, "DSA": Direction.INBOUND,
    "NET": Direction.INTERNAL,
    "000": Direction.OUTBOUND, "LOC": Direction.OUTBOUND, "TLC": Direction.OUTBOUND,
    "TLD": Direction.OUTBOUND, "O/I": Direction.OUTBOUND, "OP": Direction.OUTBOUND,
    "INT": Direction.OUTBOUND, "CNF": Direction.OUTBOUND,
}
HEADER_STARTS = ("TYP", "STATION", "STATN")
#: the title line's print time and date, ``HH:MM:SS MM-DD-YYYY`` at its end.
TITLE_CLOCK = re.compile(r"(\d\d):(\d\d):(\d\d) +(\d\d)-(\d\d)-(\d{4})\s*$")
#: a ring-in record's digits: ``RING`` and dots before the DID/DNIS, or ``RG `` before the Caller ID.
RING_PREFIX = re.compile(r"^(?:RING\.*|RG )")
#: a start this far before the previous record's means the day changed.
ROLLOVER = timedelta(hours=12)


def _direction(text: str) -> Direction:
    direction = TYPES.get(text)
    if direction is None:
        raise ValueError(f"unknown call type {text!r}")
    return direction


def _hh_mm(text: str) -> tuple[int, int]:
    if not (len(text) == 5 and text[2] == ":" and text[:2].isdigit() and text[3:].isdigit() and text.isascii()):
        raise ValueError(f"expected HH:MM, got {text!r}")
    hour, minute = int(text[:2]), int(text[3:])
    if hour > 23 or minute > 59:
        raise ValueError(f"not a valid time: {text!r}")
    return hour, minute


def _title_date(line: str) -> date | None:
    """The date of a report title line (``MM-DD-YYYY``; ``DD-MM-YYYY`` when the first part is above 12)."""
    m = TITLE_CLOCK.search(line)
    if m is None:
        return None
    first, second, year = int(m[4]), int(m[5]), int(m[6])
    month, day = (second, first) if first > 12 else (first, second)
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _incoming_digits(text: str) -> tuple[str, str]:
    """(caller number, DID/DNIS) of an incoming record's dialled digits, ring-in prefix removed."""
    ringing = RING_PREFIX.match(text)
    rest = text[ringing.end():].strip() if ringing else text
    if ringing and ringing.group().startswith("RING"):
        return "", rest
    parts = rest.split()
    if len(parts) >= 2:
        return " ".join(parts[:-1]), parts[-1]
    return rest, ""


def _elapsed(text: str) -> int:
    """``HH:MM:SS``, or ``S=`` and seconds."""
    return seconds(text[2:]) if text.startswith("S=") else hms_seconds(text)


#: what `parse` converts, in the order it checks it (``type`` gives the direction), then the text fields.
LAYOUT = Layout("mitel-5000", (
    Slice("type", *SLICES["type"], _direction),
    Slice("start", *SLICES["start"], _hh_mm),
    Slice("elapsed", *SLICES["elapsed"], _elapsed),
    *(Slice(name, a, b) for name, (a, b) in SLICES.items() if name not in ("type", "start", "elapsed")),
))
#: how far a PBX clock may run ahead of ours before a start time is taken for yesterday's.
CLOCK_SKEW = timedelta(minutes=5)


class Mitel5000Parser(Parser):
    """Mitel 5000 CP / MiVoice Office 250 / Inter-Tel Axxess SMDR."""

    name = "mitel-5000"
    description = "Mitel 5000 / MiVoice Office 250 / Inter-Tel SMDR (80 columns; length-framed over TCP)"
    option_names = frozenset[str]()  # it takes none
    handshake = "mitel-5000"
    time_resolution = 60

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        #: the day of the last report title line, and the start of the last record dated from it.
        self._day: date | None = None
        self._last: datetime | None = None

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        line = line.strip("\r\n\x00")
        if not line.strip() or line.lstrip().upper().startswith(HEADER_STARTS):
            day = _title_date(line) if line.lstrip().upper().startswith(HEADER_STARTS[1:]) else None
            if day is not None:
                self._day, self._last = day, None
            return None
        if len(line.rstrip()) < 59:
            raise self.error(f"record is {len(line.rstrip())} characters; expected at least 59")
        if len(line) > 81:
            raise self.error(f"record is {len(line)} characters; expected 80")
        f = LAYOUT.extract(line)
        direction: Direction = f["type"]
        start = self._start(*f["start"])
        duration: int = f["elapsed"]
        ext = f["extension"]
        answered = not ext.startswith("*")  # ***** = a ring-in nobody answered
        a, b = SLICES["type"]
        typ = line[a:b].strip()
        if not typ and answered:
            return None  # the ring-in of an answered call: the call has its own record
        extra = {k: v for k, v in (("type", typ), ("cost", f["cost"])) if v}
        number, dnis = f["digits"], ""
        if direction is Direction.INBOUND:
            number, dnis = _incoming_digits(number)
        if dnis:
            extra["dnis"] = dnis
        if not typ:
            extra["ring_in"] = "1"
        if "*" in f["far_end_disconnect"]:
            extra["far_end_disconnect"] = "1"
        if f["digits"].endswith(">"):
            extra["digits_truncated"] = "1"
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration if answered else 0,
            ring=None if answered else duration,  # an unanswered ring-in's ELAPSED is how long it rang
            direction=direction,
            extension=ext if answered else "",
            number=number,
            trunk=f["trunk"],
            account=f["account"],
            answered=answered,
            extra=extra,
        ),)

    def _start(self, hour: int, minute: int) -> datetime:
        """``hour:minute`` on the last title line's day (a day later after midnight), else today's (or, when that
        is ahead of now, yesterday's): the record has no date."""
        tz = self.context.timezone
        if self._day is not None:
            start = datetime(self._day.year, self._day.month, self._day.day, hour, minute, tzinfo=tz)
            if self._last is not None and start < self._last - ROLLOVER:
                start += timedelta(days=1)
                self._day = start.date()
            self._last = start
            return start
        now = self.context.now or datetime.now(tz)
        if now.tzinfo is not None and tz is not None:
            now = now.astimezone(tz)
        start = now.replace(hour=hour, minute=minute, second=0, microsecond=0, tzinfo=tz)
        if start > now.replace(tzinfo=tz) + CLOCK_SKEW:
            start -= timedelta(days=1)
        return start

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One 80-column record, as the 5000 writes it (TLC outgoing, IN incoming, NET internal)."""
        if record.direction is Direction.INBOUND:
            typ = "IN"
        elif record.direction is Direction.INTERNAL:
            typ = "NET"
        else:
            typ = record.extra.get("type", "TLC")
            typ = typ if TYPES.get(typ) is Direction.OUTBOUND else "TLC"
        # ***** is what the 5000 writes for a ring-in nobody answered: there is no extension to name.
        unanswered_in = record.direction is Direction.INBOUND and not record.answered
        ext = "*****" if unanswered_in else record.extension
        # an unanswered ring-in's ELAPSED is its ring time
        elapsed = (record.ring or 0) if unanswered_in else record.duration
        text = (f"{typ:<3} {ext[:5]:<5} {record.trunk[:5]:<5} {record.number[:28]:<28} "
                f"{record.start.strftime('%H:%M')} {seconds_text(min(elapsed, 359999))} "
                f"{record.extra.get('cost', '$00.00')[:6]:<6} {record.account[:12]:<12}")
        return [text + ("*" if record.extra.get("far_end_disconnect") else " ")]

    @classmethod
    def header_lines(cls, at: datetime | None = None) -> list[str]:
        return ["TYP EXT# TRUNK DIALED DIGITS                START ELAPSED  COST   ACCOUNT CODE"]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        """0.7 and 0.05 a record `LAYOUT` reads (type, start and elapsed), up to 0.95; 0.6 for a header alone."""
        hits = 0
        header = False
        for raw in lines[:20]:
            ln = raw.strip("\r\n\x00")
            if ln.startswith("TYP EXT#"):
                header = True
            elif LAYOUT.matches(ln):
                hits += 1
        if hits:
            return min(0.95, 0.7 + 0.05 * hits)
        return 0.6 if header else 0.0
