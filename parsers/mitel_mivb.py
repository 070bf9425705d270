"""Mitel MiVoice Business / 3300 ICP / SX-2000 SMDR: fixed-width records, one per trunk call. No I/O here.

Two layouts are read (`STANDARD` and `EXTENDED`, as the toolkit layouts `STANDARD_LAYOUT` and
`EXTENDED_LAYOUT`), chosen per line from the shape of the start time:

* **standard** (Mitel MiVB help, "SMDR summary of fields"): 90 columns,
  ``zmm/dd hh:mmp hh:mm:ss pppp fttt <26 digits>hsqqqqk rrrr <12 account>siii``, optionally followed by
  ANI/DNIS (to 112 columns) and the Standardized Network OLI fields (to 131).
* **extended** (extended digit length, start time with seconds): measured on the real capture published
  with isontheline/smdr-parser (207 columns). Duration ``hhhh:mm:ss``; 7-digit calling party directly
  followed by the attendant flag and a 4-character time to answer; the called party field spans 15 columns;
  then transfer flag, third party, account, route-optimisation flag and system id; then ANI (from column
  113), DNIS (from 134) and a network OLI / call-id block (from 153), kept in ``extra``.

The date has no year: ``context.year``, else the year of ``context.now`` (or now), rolled back one year for a
date that would be in the future.

Direction: a call with a time to answer, or whose calling party is a trunk (``Tnnn``, tie ``Xnnn``), is
incoming (the called party is the answering station); a station calling a station is internal (Internal SMDR);
otherwise a station dialled out on a trunk (the called party field then names the trunk, when it is filled).

Multi-leg calls: none to join. MiVB writes one record per trunk call, and a transfer is described inside that
record (transfer/conference flag ``k`` and the third party), so ``transfer`` holds e.g. ``"T 9025"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from smdrd.errors import ParseError
from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Layout, Slice, check_call_seconds

# (field, start, end), 0-based, end exclusive.
STANDARD: Mapping[str, tuple[int, int]] = {
    "long_call": (0, 1), "date": (1, 6), "time": (7, 12), "pm": (12, 13), "duration": (14, 22),
    "calling": (23, 27), "attendant": (28, 29), "answer_time": (29, 32), "digits": (33, 54),
    "meter": (54, 59), "status": (59, 60), "speed_forward": (60, 61), "called": (61, 65),
    "transfer_flag": (65, 66), "third_party": (67, 71), "account": (72, 84), "route_opt": (84, 85),
    "system_id": (85, 88), "ani": (91, 101), "dnis": (102, 112), "oli": (112, 131),
}
EXTENDED: Mapping[str, tuple[int, int]] = {
    "long_call": (0, 1), "date": (1, 6), "time": (7, 15), "pm": (15, 16), "duration": (17, 27),
    "calling": (28, 35), "attendant": (35, 36), "answer_time": (36, 40), "digits": (41, 62),
    "meter": (62, 67), "status": (67, 68), "speed_forward": (68, 69), "called": (69, 84),
    "transfer_flag": (84, 85), "third_party": (86, 93), "account": (94, 106), "route_opt": (106, 107),
    "system_id": (107, 110), "ani": (112, 133), "dnis": (133, 153), "oli": (153, 240),
}
#: fields that go to `CallRecord.extra` when not blank (the rest are in the core record).
_EXTRA = ("long_call", "attendant", "answer_time", "digits", "meter", "status", "speed_forward", "called",
          "transfer_flag", "third_party", "route_opt", "system_id", "ani", "dnis", "oli")
#: completion statuses of calls that did not connect: busy, error, invalid / toll-denied.
NOT_CONNECTED = frozenset("BEI")


def _long_call(text: str) -> str:
    if text not in (" ", "-", "%", "+"):
        raise ValueError(f"expected blank, -, % or +, got {text!r}")
    return text


def _mmdd(text: str) -> tuple[int, int]:
    if not (text[:2].isdigit() and text[3:5].isdigit() and text.isascii()):
        raise ValueError(f"expected mm/dd, got {text!r}")
    return int(text[:2]), int(text[3:5])


def _time(text: str) -> tuple[int, int, int, str]:
    """``hh:mm`` or ``hh:mm:ss``, then the PM flag (one field for the parser: an error in either is the time's):
    the hour, minute and second as a 24-hour clock reads them when the flag says (``p``: PM, ``a``: AM, so
    12:05a is 00:05), and the flag (``"p"``, ``"a"`` or ``""``) for the parser's clock (`MitelMiVBParser`)."""
    hhmm, pm = text[:-1], text[-1:]
    parts = hhmm.split(":")
    if not all(len(p) == 2 and p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"expected hh:mm or hh:mm:ss, got {hhmm!r}")
    if pm not in (" ", "P", "p", "A", "a", ""):
        raise ValueError(f"expected blank or P, got {pm!r}")
    hour, minute = int(parts[0]), int(parts[1])
    second = int(parts[2]) if len(parts) == 3 else 0
    flag = pm.strip().lower()
    if flag == "p" and hour < 12:
        hour += 12
    elif flag == "a" and hour == 12:
        hour = 0
    return hour, minute, second, flag


def _duration(text: str) -> tuple[int, bool]:
    """Seconds, and whether the call outlasted the field."""
    t = text.strip()
    if not t:
        return 0, False  # the real capture has records with a blank duration
    parts = t.split(":")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts) \
            or len(parts[1]) != 2 or len(parts[2]) != 2:
        raise ValueError(f"expected hh:mm:ss, got {text!r}")
    if parts[1] == parts[2] == "99":
        # the call outlasted the field ("99:99:99"): keep the most it can say, and say so
        return int(parts[0]) * 3600 + 59 * 60 + 59, True
    if int(parts[1]) > 59 or int(parts[2]) > 59:
        raise ValueError(f"minutes and seconds must be under 60, got {text!r}")
    return int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2]), False


def _layout(slices: Mapping[str, tuple[int, int]]) -> Layout:
    """A toolkit layout of ``slices``: the fields `MitelMiVBParser.parse` converts, in the order it checks them
    (``time`` holds the PM flag after it), as written so that an error quotes them; then the texts."""
    converted = {"long_call": _long_call, "date": _mmdd, "time": _time, "duration": _duration}
    spans = {**slices, "time": (slices["time"][0], slices["pm"][1])}
    return Layout("mitel-mivb", [
        *(Slice(name, *spans[name], convert, strip=False) for name, convert in converted.items()),
        *(Slice(name, a, b, align=">" if name == "answer_time" else "<") for name, (a, b) in spans.items()
          if name not in converted and name != "pm"),
    ])


STANDARD_LAYOUT = _layout(STANDARD)
EXTENDED_LAYOUT = _layout(EXTENDED)


def _is_trunk(party: str) -> bool:
    return party[:1] in ("T", "X") and party[1:].isdigit()


def long_call_flag(seconds: int) -> str:
    """The flag MiVB puts in column 1: blank under 5 minutes, ``-`` to 10, ``%`` to 30, ``+`` beyond."""
    if seconds < 300:
        return " "
    if seconds < 600:
        return "-"
    return "%" if seconds < 1800 else "+"


class MitelMiVBParser(Parser):
    """Mitel MiVoice Business / 3300 ICP SMDR."""

    name = "mitel-mivb"
    description = "Mitel MiVoice Business / 3300 SMDR (fixed width; transfers inside the record)"
    option_names = frozenset({"clock"})

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        clock = self.context.options.get("clock", "auto")
        if clock not in ("auto", "12h", "24h"):
            raise ValueError(f"mitel-mivb option 'clock' must be \"auto\", \"12h\" or \"24h\", got {clock!r}")
        #: whether the PBX prints a 12-hour clock (``p`` marks PM, a blank flag AM): set by the option, else
        #: (``auto``) by the first flag (12-hour) or the first hour past 12 (24-hour) the stream shows. Until
        #: then a blank 12:05 is read as noon, the commoner of the two.
        self._twelve: bool | None = None if clock == "auto" else clock == "12h"

    def _clock(self, time: tuple[int, int, int, str]) -> tuple[int, int, int]:
        """``time`` on the 24-hour clock: in 12-hour mode a blank flag is AM, so 12:05 is 00:05."""
        hour, minute, second, flag = time
        if self._twelve is None and (flag or hour > 12):
            self._twelve = bool(flag)
        if self._twelve and not flag and hour == 12:
            hour = 0
        return hour, minute, second

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        line = line.rstrip("\r\n\x00")
        if not line.strip():
            return None
        if len(line) < 22 or line[3:4] != "/" or line[9:10] != ":":
            raise self.error("expected a record starting 'zmm/dd hh:mm'", "date")
        slices, layout = (EXTENDED, EXTENDED_LAYOUT) if line[12:13] == ":" else (STANDARD, STANDARD_LAYOUT)
        if len(line) < slices["calling"][0]:
            raise self.error(f"record is only {len(line)} characters long")
        try:
            f = layout.extract(line)
        except ParseError as exc:
            if exc.field == "duration":
                # the start is checked first: a date that is no day of the calendar is the error to report
                self._start(line, slices, _mmdd(line[1:6]),
                            self._clock(_time(line[slices["time"][0]:slices["pm"][1]])))
            raise
        start = self._start(line, slices, f["date"], self._clock(f["time"]))
        duration, overflow = f["duration"]
        calling: str = f["calling"]
        called: str = f["called"]
        answer_time: str = f["answer_time"]
        digits: str = f["digits"]
        status: str = f["status"]
        ani: str = f["ani"]
        ring: int | None = None
        if answer_time or _is_trunk(calling):
            direction = Direction.INBOUND
            extension, number, trunk = called, ani, calling
            if answer_time.startswith("*"):
                # never answered: the duration is how long it rang
                ring, duration, answered = duration, 0, False
            else:
                if answer_time and not (answer_time.isdigit() and answer_time.isascii()):
                    raw = line[slice(*slices["answer_time"])]
                    raise self.error(f"expected seconds or ***, got {raw!r}", "answer_time")
                ring = int(answer_time) if answer_time else None
                answered = status not in NOT_CONNECTED
        elif called and not _is_trunk(called):
            direction = Direction.INTERNAL
            extension, number, trunk = calling, called, ""
            answered = status not in NOT_CONNECTED and duration > 0
        else:
            direction = Direction.OUTBOUND
            extension, number, trunk = calling, digits, called
            answered = status == "A" or (status not in NOT_CONNECTED and duration > 0)
        if not extension and direction is not Direction.INBOUND:
            raise self.error("no calling party", "calling")

        check_call_seconds(self.name, duration=duration, ring=ring)  # 4-digit hours reach 9999 h

        extra = {name: f[name].strip() for name in _EXTRA if f[name].strip()}  # long_call is unstripped
        if overflow:
            extra["duration_overflow"] = "1"
        flag, third = f["transfer_flag"].strip(), f["third_party"].strip()
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=extension,
            number=number,
            trunk=trunk,
            account=f["account"],
            answered=answered,
            transfer=f"{flag} {third}".strip() if flag else "",
            extra=extra,
        ),)

    def _start(self, line: str, slices: Mapping[str, tuple[int, int]], day_of_year: tuple[int, int],
               time: tuple[int, int, int]) -> datetime:
        """The start (month and day, hour, minute and second), in the context's year or the year that puts it no
        more than a day ahead of now."""
        month, day = day_of_year
        hour, minute, second = time
        tz = self.context.timezone
        year = self.context.year
        if year is None:
            now = self.context.now or datetime.now(tz)
            year = now.year
            try:
                # a date more than a day ahead of now is last year's (the PBX has no year to give)
                if date(year, month, day) > now.date() + timedelta(days=1):
                    year -= 1
            except ValueError:
                year -= 1  # 02/29 seen in a non-leap year: the last leap year is the only fit nearby
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=tz)
        except ValueError as exc:
            mmdd, hhmm = line[slice(*slices["date"])], line[slice(*slices["time"])]
            raise self.error(f"not a valid date and time: {mmdd} {hhmm} ({exc})", "date") from None

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One record in the extended layout (seconds in the start time, like the real capture)."""
        fields = dict.fromkeys(EXTENDED, "")
        duration = record.duration
        fields["date"] = record.start.strftime("%m/%d")
        fields["time"] = record.start.strftime("%H:%M:%S")
        fields["account"] = record.account
        if record.direction is Direction.INBOUND:
            fields["calling"] = record.trunk
            fields["called"] = record.extension
            fields["ani"] = record.number
            if not record.answered:
                fields["answer_time"] = "****"
                duration = record.ring or 0
            else:
                fields["answer_time"] = f"{min(record.ring or 0, 9999):04d}"
                fields["status"] = "A"
        elif record.direction is Direction.INTERNAL:
            fields["calling"] = record.extension
            fields["called"] = record.number
            fields["digits"] = record.number
            fields["status"] = "A" if record.answered else ""
        else:
            fields["calling"] = record.extension
            fields["digits"] = record.number
            fields["called"] = record.trunk
            fields["meter"] = "00000"
            fields["status"] = "A" if record.answered else ""
        h, rest = divmod(duration, 3600)
        fields["duration"] = f"{h:04d}:{rest // 60:02d}:{rest % 60:02d}" if h < 10_000 else "9999:99:99"
        fields["long_call"] = long_call_flag(duration)
        if record.transfer:
            flag, _, third = record.transfer.partition(" ")
            fields["transfer_flag"], fields["third_party"] = flag[:1], third
        fields["system_id"] = record.extra.get("system_id", "001")
        return [EXTENDED_LAYOUT.render(fields)]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        """0.6 and 0.1 a record of 40 columns or more that its layout reads, up to 0.9."""
        hits = 0
        for ln in lines[:20]:
            if len(ln) >= 40 and ln[3:4] == "/" and ln[9:10] == ":" \
                    and (EXTENDED_LAYOUT if ln[12:13] == ":" else STANDARD_LAYOUT).matches(ln):
                hits += 1
        return min(0.9, 0.6 + 0.1 * hits) if hits else 0.0
