"""Panasonic KX-TDA / TDE / NS / NCP / TES SMDR: 80-column printer-style records. No I/O here.

Layout: "Pattern A" of the KX-NS1000 Feature Guide (2.22.1, Record Log Features): Date 8, Time 7, Ext 5,
CO 2, Dial Number 25, Ring 4, Duration 8, ACC Code 10, CD 2; 0-based offsets as in vicriveros/smdr-panasonic
(KX-NS500): date ``[0:8]``, time ``[9:16]``, ext ``[17:22]``, CO ``[23:25]``, dial number ``[26:51]``, ring
``[52:56]``, duration ``[57:65]``, account ``[66:76]``, CD ``[77:79]`` (`SLICES`, the toolkit layout `LAYOUT`;
`layout` moves the fields after the dial number for printouts that widen it).

* Date ``MM/DD/YY`` or ``DD/MM/YY``: the PBX prints its country's order ("The date order varies depending on
  the user's country/area", KX-TEA308 Feature Guide 1.20; the KX-TD816AL manual prints Day/Month/Year), and the
  line cannot say which. Never a silent guess (`._order.DateOrder`): option ``date_order = "mdy"`` or
  ``"dmy"`` says it; otherwise (``"auto"``, the default) the first date with a day above 12 decides, and a first
  date that cannot (``02/11/11``) takes the order of the site's country. Once chosen the order holds for the
  stream: a later date that cannot be read in it is a `ParseError` naming ``date_order``. With no option, no
  deciding date and no country the line is `smdrd.parsing.Undecided`.
* Time ``hh:mmAM``/``hh:mmPM`` (24-hour ``hh:mm`` is accepted too) is the END of the call on KX-TDA/TDE/NS
  ("Shows the end time of a call", KX-TDA/KX-TD816AL manuals), so start = end - duration - ring, at minute
  resolution; KX-TEA/TES print the START ("Shows the start time of a call", KX-TEA308 Feature Guide 1.20):
  option ``time_is_end = false``.
* ``RC`` in the CD column (KX-TD816 manual: "Receive", printed when an incoming call arrives; its real record,
  ``AN``/``NA`` or a duration, follows when it ends) is not a finished call: skipped, like a page header.
* Ring ``M'SS``, duration ``HH:MM'SS``.
* Dial number: ``<I>`` + caller ID = incoming (``<D>`` + DDI before it goes to ``extra``), ``< incoming >`` on
  KX-TA/TEA (no caller ID); ``EXT`` + number = internal; anything else = dialled digits of an outgoing call. A
  ``-`` marks a transferred call: the digits after it were entered by the transfer target (KX-TDA Feature Guide),
  so the number is what comes before it and the rest goes to ``extra["after_transfer"]``.
* Page headers (``Date Time Ext CO Dial Number ...``), ``----`` rules, blank lines, echoed login prompts and
  status records (``LOG IN``, ``Check out``...) are not calls and return ``None``.

Multi-leg calls: none are joined. The PBX writes each leg of a trunk-to-trunk transfer or forward as its own
incoming and outgoing record (CD ``TR`` / ``FW``, kept in ``transfer``); joining them would need a call id the
format does not carry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from smdrd.parsing import Choice, Parser, ParserContext
from smdrd.record import CallRecord, Direction

from ._order import DateOrder
from .toolkit import Layout, Slice, shifted

SLICES: Mapping[str, tuple[int, int]] = {
    "date": (0, 8), "time": (9, 16), "extension": (17, 22), "co": (23, 25), "dial": (26, 51),
    "ring": (52, 56), "duration": (57, 65), "account": (66, 76), "cd": (77, 79),
}
HEADER = "  Date     Time    Ext CO        Dial Number        Ring Duration  Acc code  CD"
#: what the Dial Number field holds on records that are not calls (hotel and status features).
STATUS_RECORDS = ("LOG IN", "LOG OUT", "IN THE OFFICE", "CHECK IN", "CHECK OUT", "TIMED REMINDER")
#: lines a PBX may echo during the login (the handshake cannot always swallow them all).
LOGIN_ECHOES = ("SMDR", "PCCSMDR", "PASSWORD", "ENTER PASSWORD", "LOGIN", "-")
TRANSFER_CODES = frozenset({"TR", "FW"})
#: the CD code of the line printed when an incoming call arrives (not a finished call).
RECEIVE_CODE = "RC"
_DURATION = re.compile(r"[0-9]{2}:[0-9]{2}'[0-9]{2}")


def _ring_text(seconds: int) -> str:
    m, s = divmod(min(seconds, 9 * 60 + 59), 60)
    return f"{m}'{s:02d}"


def _duration(text: str) -> int:
    t = text.strip()
    if not (len(t) == 8 and t[2] == ":" and t[5] == "'" and t[:2].isdigit() and t[3:5].isdigit()
            and t[6:].isdigit() and t.isascii()) or int(t[3:5]) > 59 or int(t[6:]) > 59:
        raise ValueError(f"expected HH:MM'SS, got {text!r}")
    return int(t[:2]) * 3600 + int(t[3:5]) * 60 + int(t[6:])


def _ring(text: str) -> int:
    t = text.strip()
    m, sep, s = t.partition("'")
    if not (sep and m.isdigit() and len(s) == 2 and s.isdigit() and t.isascii()) or int(s) > 59:
        raise ValueError(f"expected M'SS, got {text!r}")
    return int(m) * 60 + int(s)


@functools.cache
def layout(shift: int = 0) -> Layout:
    """Pattern A (`SLICES`) with the fields after the dial number moved ``shift`` columns to the right (a printout
    that widens the dial number; negative: narrows it). Duration, then ring, are converted; the date and time
    are read by the parser first."""
    def moved(name: str, a: int, b: int) -> Slice:
        if name == "dial":
            b += shift
        elif a >= SLICES["ring"][0]:
            a, b = a + shift, b + shift
        # converted as written (unstripped), so an error quotes the field; render right-aligns numbers
        if name == "duration":
            return Slice(name, a, b, _duration, strip=False)
        if name == "ring":
            return Slice(name, a, b, _ring, optional=True, default=None, strip=False, align=">")
        return Slice(name, a, b, align=">" if name == "co" else "<")

    fields = {name: moved(name, a, b) for name, (a, b) in SLICES.items()}
    return Layout("panasonic", [fields.pop("duration"), fields.pop("ring"), *fields.values()])


LAYOUT = layout()


#: the dial number of an incoming call on KX-TA/TEA (spaces left out: ``< incoming >``), where TDA/TDE/NS print ``<I>``.
INCOMING_TA = "<incoming>"


class PanasonicParser(Parser):
    """Panasonic KX-TDA / KX-TDE / KX-NS / KX-NCP / KX-TES SMDR."""

    name = "panasonic"
    description = "Panasonic KX-TDA/TDE/NS/NCP SMDR (80 columns, end times; page headers skipped)"
    option_names = frozenset({"date_order", "time_is_end"})
    handshake = "panasonic"
    encoding = "latin-1"  # the PBX offers IBM ASCII or ISO-8859-1; latin-1 never fails to decode
    time_resolution = 60

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        options = self.context.options
        self.dates = DateOrder(self.name, options.get("date_order", "auto"), self.context.country)
        time_is_end = options.get("time_is_end", True)
        if not isinstance(time_is_end, bool):
            raise ValueError(f"panasonic option 'time_is_end' must be a boolean, not {time_is_end!r}")
        self.time_is_end = time_is_end

    def choices(self) -> list[Choice]:
        time = Choice("time_is_end", "true" if self.time_is_end else "false",
                      "the time is the END of the call (KX-TDA/TDE/NS; KX-TEA/TES print the start: set "
                      "time_is_end = false)" if self.time_is_end else
                      "the time is the START of the call (KX-TEA/TES), set by the option")
        return [self.dates.choice(), time]

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        line = line.rstrip("\r\n\x00\x0c")
        text = line.strip()
        if not text or self._is_noise(text):
            return None
        if text.endswith(" " + RECEIVE_CODE) and _DURATION.search(line) is None:
            return None  # an incoming call arriving: its record follows when it ends
        if len(line) < 65:
            raise self.error(f"record is {len(line.rstrip())} characters; expected at least 65")
        if len(line.rstrip()) > 90:
            raise self.error(f"record is {len(line.rstrip())} characters; expected 80 (pattern A)")
        shift = self._shift(line)
        dial = line[SLICES["dial"][0]:SLICES["dial"][1] + shift].strip()
        if dial.upper().startswith(STATUS_RECORDS):
            return None
        when = self._when(line[0:8], line[9:16])
        f = layout(shift).extract(line)
        duration: int = f["duration"]
        ring: int | None = f["ring"]
        cd: str = f["cd"]

        extra: dict[str, str] = {}
        if dial.startswith(("<I>", "<D>")):
            direction = Direction.INBOUND
            ddi, _, caller = dial.partition("<I>")
            number = caller.strip()
            if ddi.startswith("<D>"):
                extra["ddi"] = ddi[3:].strip()
        elif dial.startswith("EXT"):
            direction, number = Direction.INTERNAL, dial[3:].strip()
        elif dial.replace(" ", "").lower() == INCOMING_TA:
            direction, number = Direction.INBOUND, ""  # KX-TA/TEA: no caller id in the record
        else:
            direction, number = Direction.OUTBOUND, dial
        if direction is not Direction.INBOUND and "-" in number:
            # a transferred call: the digits after "-" are what the transfer target entered, not the number
            number, _, after = number.partition("-")
            extra["after_transfer"] = after.strip()
        ext: str = f["extension"]
        if not ext:
            raise self.error("no extension", "extension")
        if cd:
            extra["cd"] = cd
        if ext[:1] in ("*", "D", "T") and not ext.isdigit():
            extra["ext_code"] = ext[:1]  # * verified code, D doorphone, T TIE line
        answered = cd != "NA" and (duration > 0 or cd == "AN")
        return (CallRecord(
            format=self.name,
            start=shifted(when, -(duration + (ring or 0))) if self.time_is_end else when,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=ext,
            number=number,
            trunk="" if direction is Direction.INTERNAL else f["co"],
            account=f["account"],
            answered=answered,
            transfer=cd if cd in TRANSFER_CODES else "",
            extra=extra,
        ),)

    def _shift(self, line: str) -> int:
        """How far a record's fields after the dial number moved (see `layout`), found from its duration (the one
        field with an unmistakable shape).

        Pattern A puts the duration at column 57, but printouts that widen the dial number (as some
        manual examples do) move everything after it; the fields keep their widths around the duration.
        """
        a, b = SLICES["duration"]
        if _DURATION.fullmatch(line, a, b):
            return 0
        m = _DURATION.search(line, 50)
        if m is None:
            raise self.error(f"no HH:MM'SS duration in {line[50:]!r}", "duration")
        return m.start() - a

    @staticmethod
    def _is_noise(text: str) -> bool:
        upper = text.upper()
        if upper.startswith("DATE") and "TIME" in upper and "EXT" in upper:
            return True  # the page header, matched loosely (its spacing varies by model)
        if set(text) <= {"-", "=", " "}:
            return True
        if upper.startswith(LOGIN_ECHOES) and not text[:2].isdigit():
            return True
        return "PASSWORD" in upper

    def _when(self, date: str, time: str) -> datetime:
        if date.startswith("**"):
            raise self.error("the PBX clock was changed during the call: no time recorded", "date")
        if not (len(date) == 8 and date[2] == "/" and date[5] == "/" and date.isascii()
                and date[0:2].isdigit() and date[3:5].isdigit() and date[6:8].isdigit()):
            raise self.error(f"expected MM/DD/YY or DD/MM/YY, got {date!r}", "date")
        a, b, yy = int(date[0:2]), int(date[3:5]), int(date[6:8])
        month, day = self.dates.month_day(date, a, b)
        t = time.strip().upper()
        suffix = t[5:]
        if len(t) < 5 or t[2] != ":" or not (t[:2].isdigit() and t[3:5].isdigit() and t.isascii()) \
                or suffix not in ("", "AM", "PM"):
            raise self.error(f"expected hh:mmAM or hh:mmPM, got {time!r}", "time")
        hour, minute = int(t[:2]), int(t[3:5])
        if suffix:
            if not 1 <= hour <= 12:
                raise self.error(f"expected an hour from 1 to 12, got {time!r}", "time")
            hour = hour % 12 + (12 if suffix == "PM" else 0)
        try:
            return datetime(2000 + yy, month, day, hour, minute, tzinfo=self.context.timezone)
        except ValueError as exc:
            raise self.error(f"not a valid date and time: {date} {time} ({exc}; read as "
                             f"{self.dates.describe()})", "date") from None

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One pattern A record (MM/DD/YY, 12-hour end time)."""
        ring = record.ring or 0
        end = shifted(record.start, record.duration + ring)
        if record.direction is Direction.INBOUND:
            dial = "<I>" + record.number
            if record.extra.get("ddi"):
                dial = f"<D>{record.extra['ddi']}{dial}"
        elif record.direction is Direction.INTERNAL:
            dial = "EXT" + record.number
        else:
            dial = record.number
        h, rest = divmod(min(record.duration, 99 * 3600 + 3599), 3600)
        cd = record.transfer[:2] if record.transfer in TRANSFER_CODES else ("" if record.answered else "NA")
        if record.answered and record.duration == 0:
            cd = "AN"
        # CO is a 2-digit line number: a trunk named otherwise (T9008) keeps its last digits
        co = record.trunk if len(record.trunk) <= 2 else "".join(c for c in record.trunk if c.isdigit())[-2:]
        values = {"date": end.strftime("%m/%d/%y"), "time": end.strftime("%I:%M%p"), "extension": record.extension,
                  "co": co, "dial": dial, "ring": _ring_text(ring) if record.ring is not None else "",
                  "duration": f"{h:02d}:{rest // 60:02d}'{rest % 60:02d}", "account": record.account, "cd": cd}
        return [LAYOUT.render(values).ljust(SLICES["cd"][1])]  # the PBX pads the last field too

    @classmethod
    def header_lines(cls, at: datetime | None = None) -> list[str]:
        return [HEADER, "-" * 80]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        hits = 0
        header = False
        for ln in lines[:20]:
            if ln.strip().startswith("Date") and "Dial Number" in ln:
                header = True
            elif len(ln) >= 65 and ln[2:3] == "/" and ln[5:6] == "/" and ln[11:12] == ":" \
                    and ln[14:16] in ("AM", "PM") and LAYOUT.matches(ln):
                hits += 1
        if hits:
            return min(0.95, 0.75 + 0.05 * hits + (0.1 if header else 0.0))
        return 0.7 if header else 0.0
