"""Avaya Communication Manager (CM / Aura / Definity) CDR: fixed-width records. No I/O here.

Layout: CM's "customized" record is a list of fields chosen on the ``system-parameters cdr`` form, each with a
width, separated by one space. The default here is the one of the real capture in micahhausler/avayafmt (its
README calls it "unformatted"): ``date time sec-dur cond-code code-dial code-used dialed-num clg-num auth-code
in-crt-id out-crt-id isdn-cc ppm acct-code in-trk-code attd-console vdn`` (123 characters, then CR LF). A site
with another customized layout sets ``format_options.layout`` to ``"date:6 time:4 sec-dur:5 ..."``.

When CM connects it first sends a 16-byte date/time header record, ``HH:MM MM/DD`` CR LF NUL NUL NUL; it is
recognised and skipped (``None``).

Times: the ``time`` field is taken as the time the call ended (option ``time = "start"`` to change it): in the
real capture records come out in ``time`` order although some calls last many minutes, which only fits end
times. Start = end - talk - ring, at minute resolution.

Dates: ``MMDDYY`` or ``DDMMYY`` as CM's ``system-parameters cdr`` form says ("CDR Date Format"); never a silent
guess (`._order.DateOrder`): option ``date_order = "mdy"`` or ``"dmy"``, else the first date with a day above
12 decides, else the site's country. `choices` says which, and how the time is read.

Direction comes from the condition code (Admin Guide for CM, Table 53): ``0`` intraswitch,
``7``/``8``/``A``/``B`` outgoing, ``9`` incoming or tandem, ``G``/``H``/``I`` ring records of incoming calls;
for the other codes from which trunk fields are filled (``code-used`` outgoing, ``in-trk-code`` /
``in-crt-id`` incoming).

Multi-leg calls: with a trunk group's "CDR Reports = ring", an answered incoming call first gives a ``G``
record whose duration is the ring time, then its normal record. The ``G`` record is held and merged into the
next record from the same incoming trunk, circuit and calling number (its duration becomes that call's ring);
an ``H`` (abandoned while ringing) or ``I`` (busy) record is a call of its own, unanswered.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from smdrd.errors import ParseError
from smdrd.parsing import Choice, Parser, ParserContext
from smdrd.record import CallRecord, Direction

from ._order import DateOrder
from .toolkit import Layout, Slice, shifted

#: the widths CM gives each customized-record field (the default layout's widths; others are overridable).
FIELD_WIDTHS: Mapping[str, int] = {
    "date": 6, "time": 4, "sec-dur": 5, "duration": 4, "cond-code": 1, "code-dial": 4, "code-used": 4,
    "dialed-num": 18, "clg-num": 10, "auth-code": 7, "in-crt-id": 3, "out-crt-id": 3, "isdn-cc": 11,
    "ppm": 5, "acct-code": 15, "in-trk-code": 4, "attd-console": 2, "vdn": 5, "frl": 1, "feat-flag": 1,
    "node-num": 2, "bcc": 1, "ma-uui": 1, "res-flag": 1, "tsc-flag": 1, "ixc-code": 4, "ins": 3,
}
DEFAULT_LAYOUT = ("date time sec-dur cond-code code-dial code-used dialed-num clg-num auth-code in-crt-id "
                  "out-crt-id isdn-cc ppm acct-code in-trk-code attd-console vdn")
#: condition codes whose meaning fixes the direction (Admin Guide for CM, Nov 2003, Table 53).
COND_DIRECTION: Mapping[str, Direction] = {
    "0": Direction.INTERNAL,
    "7": Direction.OUTBOUND, "8": Direction.OUTBOUND, "A": Direction.OUTBOUND, "B": Direction.OUTBOUND,
    "E": Direction.OUTBOUND, "F": Direction.OUTBOUND,
    "9": Direction.INBOUND, "G": Direction.INBOUND, "H": Direction.INBOUND, "I": Direction.INBOUND,
    "J": Direction.INBOUND,
}
#: codes of calls that never connected: H abandoned while ringing, I busy, E/F not completed, 6 lost.
UNANSWERED = frozenset("HIEF6")
#: codes whose duration is ring time, not talk time.
RING_RECORDS = frozenset("GH")
_HEADER = re.compile(r"\d\d:\d\d \d\d/\d\d")
_CORE = frozenset({"date", "time", "sec-dur", "duration", "dialed-num", "clg-num", "auth-code", "acct-code"})
#: G records remembered at most while waiting for their call's record.
MAX_PENDING = 10_000


def _mmddyy(text: str) -> str:
    """The date as CM writes it (checked here; month and day order is the parser's option)."""
    if not (len(text) == 6 and text.isdigit() and text.isascii()):
        raise ValueError(f"expected MMDDYY, got {text!r}")
    return text


def _hhmm(text: str) -> str:
    if not (len(text) == 4 and text.isdigit() and text.isascii()):
        raise ValueError(f"expected HHMM, got {text!r}")
    return text


def _condition(text: str) -> str:
    t = text.strip()
    if len(t) > 1 or (t and not (t.isascii() and t.isalnum())):
        raise ValueError(f"expected one letter or digit, got {text!r}")
    return t


def _sec_dur(text: str) -> int:
    t = text.strip()
    if not (t.isdigit() and t.isascii()):
        raise ValueError(f"expected seconds, got {text!r}")
    return int(t)


def _hmmt(text: str) -> int:
    """``duration`` is hmmt: hours, minutes and tenths of a minute."""
    if not (len(text) == 4 and text.isdigit() and text.isascii()) or int(text[1:3]) > 59:
        raise ValueError(f"expected hmmt (hours, minutes, tenths), got {text!r}")
    return int(text[0]) * 3600 + int(text[1:3]) * 60 + int(text[3]) * 6


#: the converted fields, in the order `parse` checks them (the talk time is ``sec-dur``, else ``duration``);
#: they see the field as written (``strip=False``), so an error quotes it. Every other field is text.
_CONVERTERS = {"date": _mmddyy, "time": _hhmm, "cond-code": _condition, "sec-dur": _sec_dur, "duration": _hmmt}


def parse_layout(spec: str) -> Layout:
    """``"date time:4 sec-dur ..."`` (the fields of the ``system-parameters cdr`` form, one space between
    them) to a toolkit `Layout` of `Slice`\\ s: the converted fields first, in the order `parse` checks them.

    Raises:
        ValueError: an unknown field without a width, a width that is not a positive number, a field named
            twice, or a layout without date, time, cond-code and sec-dur or duration.
    """
    spans = []
    pos = 0
    for item in spec.split():
        name, _, width_text = item.partition(":")
        if width_text:
            if not width_text.isdigit() or int(width_text) < 1:
                raise ValueError(f"bad width in layout item {item!r}")
            width = int(width_text)
        elif name in FIELD_WIDTHS:
            width = FIELD_WIDTHS[name]
        else:
            raise ValueError(f"unknown field {name!r} in layout (give its width as {name}:N)")
        spans.append((name, pos, pos + width))
        pos += width + 1
    names = {n for n, _, _ in spans}
    if not {"date", "time", "cond-code"} <= names or not names & {"sec-dur", "duration"}:
        raise ValueError("a layout needs date, time, cond-code and sec-dur or duration")
    if len(names) != len(spans):
        raise ValueError(f"a layout names a field twice: {spec!r}")
    converted = [n for n in _CONVERTERS if n in names and not (n == "duration" and "sec-dur" in names)]
    # render pads the account code to the left and every other field to the right, as CM does
    slices = {n: Slice(n, a, b, _CONVERTERS[n] if n in converted else None, strip=n not in converted,
                       align="<" if n == "acct-code" else ">") for n, a, b in spans}
    return Layout("avaya-cm", [*(slices[n] for n in converted), *(s for s in slices.values()
                                                                  if s.name not in converted)])


DEFAULT = parse_layout(DEFAULT_LAYOUT)


class AvayaCMParser(Parser):
    """Avaya Communication Manager CDR (customized / unformatted fixed-width records)."""

    name = "avaya-cm"
    description = "Avaya Communication Manager CDR (fixed width; G ring records merged into their call)"
    option_names = frozenset({"layout", "date_order", "time"})
    time_resolution = 60

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        layout = opts.get("layout")
        self._layout = parse_layout(str(layout)) if layout else DEFAULT
        self._length = self._layout.width
        slices = {f.name: f for f in self._layout.fields if isinstance(f, Slice)}
        self._min_length = max(f.end for f in slices.values()
                               if f.name in ("date", "time", "cond-code", "sec-dur", "duration"))
        self._stamp = (slices["date"].start, slices["date"].end, slices["time"].start, slices["time"].end)
        self._talk = "sec-dur" if "sec-dur" in slices else "duration"
        #: (field, key in extra) of the fields kept in `CallRecord.extra`, in the order of the record.
        self._extra = tuple((f.name, f.name.replace("-", "_")) for f in sorted(slices.values(), key=lambda f: f.start)
                            if f.name not in _CORE and f.name != "cond-code")
        self.dates = DateOrder(self.name, opts.get("date_order", "auto"), self.context.country)
        self._time_is_end = str(opts.get("time", "end")).lower() != "start"
        # (in-trk-code, in-crt-id, clg-num) -> the held G record
        self._pending: OrderedDict[tuple[str, str, str], CallRecord] = OrderedDict()

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        line = line.strip("\x00\r\n")
        body = line.rstrip()
        if not body.strip():
            return None
        if len(body) <= 16 and _HEADER.fullmatch(body.strip()):
            return None  # the date/time header record CM sends when the link comes up
        if len(body) < self._min_length:
            raise self.error(f"record is {len(body)} characters; the layout needs {self._min_length}")
        if len(body) > self._length:
            raise self.error(f"record is {len(body)} characters; the layout has {self._length}")
        try:
            f = self._layout.extract(line)
        except ParseError as exc:
            if exc.field not in ("date", "time"):
                # date and time read; a date that is no day of the calendar is the first error, as it is
                # checked before the other fields
                d0, d1, t0, t1 = self._stamp
                self._end_time(line[d0:d1], line[t0:t1])
            raise
        start = self._end_time(f["date"], f["time"])
        cond: str = f["cond-code"]
        secs: int = f[self._talk]

        g = f.get
        dialed = g("dialed-num", "")
        clg = g("clg-num", "")
        for name, value in (("dialed-num", dialed), ("clg-num", clg)):
            if any(c.isspace() for c in value):  # a number of several words: text spilled across the columns
                raise self.error(f"{value[:40]!r} is no number: the record's columns do not match the layout",
                                 name)
        code_used = g("code-used", "")
        in_trk = g("in-trk-code", "")
        in_crt = g("in-crt-id", "")
        direction = COND_DIRECTION.get(cond)
        if direction is None:
            if code_used:
                direction = Direction.OUTBOUND
            elif in_trk or in_crt:
                direction = Direction.INBOUND
            else:
                direction = Direction.INTERNAL
        if direction is Direction.INBOUND:
            extension, number, trunk = dialed, clg, in_trk
        else:
            extension, number, trunk = clg, dialed, code_used if direction is Direction.OUTBOUND else ""

        ring: int | None = None
        duration = secs
        if cond in RING_RECORDS:
            ring, duration = secs, 0
        if self._time_is_end:
            start = shifted(start, -(duration + (ring or 0)))

        extra = {key: f[name] for name, key in self._extra if f[name]}
        if cond:
            extra["condition"] = cond
        record = CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=extension,
            number=number,
            trunk=trunk,
            account=g("acct-code", ""),
            auth_code=g("auth-code", ""),
            answered=cond not in UNANSWERED and (duration > 0 or cond == "G"),
            extra=extra,
        )
        key = (in_trk, in_crt, clg)
        if cond == "G":
            # Held until the call's own record says how long it talked.
            stale = self._pending.pop(key, None)
            self._pending[key] = record
            if len(self._pending) > MAX_PENDING:
                _, oldest = self._pending.popitem(last=False)
                return (oldest,) if stale is None else (stale, oldest)
            return () if stale is None else (stale,)
        held = self._pending.pop(key, None) if direction is Direction.INBOUND and (in_trk or in_crt) else None
        if held is not None:
            ring = held.ring or 0
            extra["ring_condition"] = "G"
            start = shifted(record.start, -ring) if self._time_is_end else held.start
            record = replace(record, ring=ring, extra=extra, start=start)
        return (record,)

    def choices(self) -> list[Choice]:
        time = (Choice("time", "end", "the time is the END of the call (records come out in time order though "
                                      "calls last minutes); set time = \"start\" if CM prints the start")
                if self._time_is_end else Choice("time", "start", "the time is the START of the call, set by "
                                                                   "the option"))
        return [self.dates.choice(), time]

    def flush(self) -> Sequence[CallRecord]:
        held = tuple(self._pending.values())
        self._pending.clear()
        return held

    def _end_time(self, date: str, time: str) -> datetime:
        """The date and time fields (as `parse_layout`'s converters checked them) as one datetime."""
        a, b, yy = int(date[0:2]), int(date[2:4]), int(date[4:6])
        month, day = self.dates.month_day(date, a, b)
        try:
            return datetime(2000 + yy, month, day, int(time[0:2]), int(time[2:4]),
                            tzinfo=self.context.timezone)
        except ValueError as exc:
            raise self.error(f"not a valid date and time: {date} {time} ({exc})", "date") from None

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """Records in the default layout; an answered incoming call with a ring time gets a G record first."""
        def line(when: datetime, secs: int, cond: str, **fields: str) -> str:
            values = {"date": when.strftime("%m%d%y"), "time": when.strftime("%H%M"),
                      "sec-dur": f"{min(secs, 99999):05d}", "cond-code": cond, "isdn-cc": "0", "ppm": "0",
                      **fields}
            return DEFAULT.render(values).ljust(DEFAULT.width)  # CM pads the last field too

        ext, num = record.extension, record.number
        # trunk access codes are up to 4 digits: a trunk named otherwise (T9008) keeps its last digits
        tac = record.trunk if len(record.trunk) <= 4 else "".join(c for c in record.trunk if c.isdigit())[-4:]
        common = {"acct-code": record.account, "auth-code": record.auth_code}
        ring = record.ring or 0
        if record.direction is Direction.INBOUND:
            trunk = {"in-trk-code": tac, "in-crt-id": record.extra.get("in_crt_id", "001"),
                     "dialed-num": ext, "clg-num": num, **common}
            if not record.answered:
                return [line(shifted(record.start, ring), ring, "H", **trunk)]
            end = shifted(record.start, ring + record.duration)
            talk = line(end, record.duration, "9", **trunk)
            if record.ring is None:
                return [talk]
            return [line(shifted(record.start, ring), ring, "G", **trunk), talk]
        end = shifted(record.start, record.duration)
        if record.direction is Direction.INTERNAL:
            return [line(end, record.duration, "0", **{"dialed-num": num, "clg-num": ext, **common})]
        return [line(end, record.duration, "7" if record.answered else "E",
                     **{"code-dial": "9", "code-used": tac, "dialed-num": num, "clg-num": ext,
                        "out-crt-id": record.extra.get("out_crt_id", "001"), **common})]

    @classmethod
    def header_lines(cls, at: datetime | None = None) -> list[str]:
        # CM sends this when the link comes up (the NULs after it end the line for the framer).
        return [(at or datetime.now()).strftime("%H:%M %m/%d")]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        """0.7 and 0.05 a record the default layout reads (`DEFAULT`), up to 0.95, 0.1 more after the link-up
        header; 0.3 for the header alone."""
        hits = sum(1 for ln in lines[:20] if ln.strip("\x00") and DEFAULT.matches(ln.lstrip("\x00")))
        header = any(_HEADER.fullmatch(ln.strip("\x00 \r\n")) for ln in lines[:3])
        if hits == 0:
            return 0.3 if header else 0.0
        return min(0.95, 0.7 + 0.05 * hits + (0.1 if header else 0.0))
