"""Mitel 5000 CP / MiVoice Office 250 / Inter-Tel Axxess SMDR: 80-column fixed-width records. No I/O here.

Layout (Inter-Tel 5000 Administrator Guide 2.3, "SMDR Report Format", and the Axxess column list):
``TYP EXT# TRUNK DIALED DIGITS START ELAPSED COST ACCOUNT CODE``, 0-based: type ``[0:3]``,
extension ``[3:9]``, trunk ``[9:15]``, dialled digits ``[15:44]`` (28, ``>`` when truncated), start
``HH:MM`` ``[44:50]``, elapsed ``HH:MM:SS`` or ``S=XXXXXX`` ``[50:59]``, cost ``$XX.XX`` ``[59:66]``, account
``[66:79]``, and a ``*`` in column 80 when the far end hung up first. Report header lines
(``Station ...``, ``TYP EXT# ...``) are skipped.

Over TCP each record comes inside a 4-byte length frame (`smdrd.sources.hs_mitel_5000`); over a serial port
or in a file it is a plain line: this parser sees the same 80 characters either way.

The record has no date and its start has no seconds: the date is the day of ``context.now`` (or now), or the
day before when the start time is later than now (plus 5 minutes of clock skew), as a record is written when
its call ends.

Direction comes from the call type: ``IN``, ``DID`` and ``DSA`` (DISA) are incoming, ``NET`` (network, between
nodes) internal, the rest (``LOC``, ``TLC``, ``TLD``, ``O/I``, ``OP``, ``INT``, ``000``, ``CNF``) outgoing.

Multi-leg calls: none to join; the 5000 writes one record per trunk call (EXT is the last endpoint that
handled it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from smdrd.parsing import Parser
from smdrd.record import CallRecord, Direction

from .toolkit import Layout, Slice, hms_seconds, seconds, seconds_text

SLICES: Mapping[str, tuple[int, int]] = {
    "type": (0, 3), "extension": (3, 9), "trunk": (9, 15), "digits": (15, 44), "start": (44, 50),
    "elapsed": (50, 59), "cost": (59, 66), "account": (66, 79), "far_end_disconnect": (79, 80),
}
TYPES: Mapping[str, Direction] = {
    "IN": Direction.INBOUND, "DID": Direction.INBOUND, "DSA": Direction.INBOUND,
    "NET": Direction.INTERNAL,
    "000": Direction.OUTBOUND, "LOC": Direction.OUTBOUND, "TLC": Direction.OUTBOUND,
    "TLD": Direction.OUTBOUND, "O/I": Direction.OUTBOUND, "OP": Direction.OUTBOUND,
    "INT": Direction.OUTBOUND, "CNF": Direction.OUTBOUND,
}
HEADER_STARTS = ("TYP", "STATION", "STATN")


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
    handshake = "mitel-5000"
    time_resolution = 60

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        line = line.strip("\r\n\x00")
        if not line.strip() or line.lstrip().upper().startswith(HEADER_STARTS):
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
        extra = {k: v for k, v in (("type", line[a:b].strip()), ("cost", f["cost"])) if v}
        if "*" in f["far_end_disconnect"]:
            extra["far_end_disconnect"] = "1"
        if f["digits"].endswith(">"):
            extra["digits_truncated"] = "1"
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            direction=direction,
            extension=ext if answered else "",
            number=f["digits"],
            trunk=f["trunk"],
            account=f["account"],
            answered=answered,
            extra=extra,
        ),)

    def _start(self, hour: int, minute: int) -> datetime:
        """Today's (or, when that is ahead of now, yesterday's) ``hour:minute``: the record has no date."""
        tz = self.context.timezone
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
        text = (f"{typ:<3} {ext[:5]:<5} {record.trunk[:5]:<5} {record.number[:28]:<28} "
                f"{record.start.strftime('%H:%M')} {seconds_text(min(record.duration, 359999))} "
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
