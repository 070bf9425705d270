"""Siemens / Unify HiPath 3000/5000 and OpenScape Business call charge records. No I/O here.

Three forms, told apart line by line:

* **serial** (V.24) call charge output, fixed width, 76 to 105 columns (`SERIAL_SLICES`, the layout
  `SERIAL`): what the PBX prints on its serial port (and what most call loggers read). Hicom 150 E Office
  Rel. 1.0 Service Manual, 7.12 "Features for Call Detail Recording" (output fields and the table of positions
  8 to 17; HiPath 2000 Leistungsmerkmal-Beschreibung table 11-1 gives the same fields 4 to 6): date ``DD.MM.YY``
  run into the time ``hh:mm:ss`` (both the END of the call), line (3, right), extension (6, right), ring time
  of an incoming call ``mm:ss`` (5), duration ``hh:mm:ss`` (8; eight blanks when an incoming call was not
  answered), number (25), charge units (11, right), information element (2, right), project (account) code
  (11), MSN (11, right), seizure code (5, right), LCR route (2, right). Trailing blank fields are not sent, so
  a line is 76 columns or more. Serial control characters (DLE STX DLE ETX DC3 DC1 seen in real output) may
  come before the date: they are dropped.
* **GetAccount**, fixed width, 109 columns (HiPath 3000/5000 V5 to V9 service manual, table "GetAccount - Data
  Record Structure"): `SLICES`, read as the toolkit layout `GETACCOUNT`. Date and time are the **end** of the
  call; the duration is given twice (seconds and ``hh:mm:ss``); call type ``1`` incoming, ``2`` outgoing (the
  default). There is no ring time. Told from the serial form by its ``hh:mm:ss`` duration at columns 34 to 41
  (the serial form has its number there), or a line longer than a serial one (112 columns).
* **compressed**, ``|``-separated (`COMPRESSED`; the Unify OpenScape Business CDR description, quoted on the
  Telmekom forum; field names from its header ``Datum|Uhrzeit|Lt|Tln|Ruf|Dauer|Rufnummer|Betrag|I|``): date,
  time, line (trunk), subscriber (extension), ring ``mm:ss``, duration ``hh:mm:ss``, number, amount,
  information element, then account code, MSN and seizure code (Hicom 150 E Office service manual, "Output
  Formats for Call Detail Recording"); any further fields are kept as ``field13``... The number of trailing
  ``|`` varies, so the field count is not checked. The German header line is skipped (``None``).

The information element (Hicom 150 E Office service manual, field 9): ``1`` incoming, ``2`` outgoing,
``3``/``4`` the same for other services, ``5``/``6`` incoming/outgoing forwarded, ``7``/``8`` conference or
transit by external transfer with an incoming/outgoing call, ``9`` outgoing through call forwarding to an
external destination; ``+50`` marks DISA calls. ``0`` is the "call information" line written as soon as a call
arrives (one per called extension, without ring or call time): it is not a finished call and is skipped
(``None``), its call comes later with its own type. ``35`` to ``39`` occur in real HiPath 3000 output
(tests/fixtures/siemens-hipath) for the segments of a transferred call; no Siemens document found describes
them: they are read as ``5`` to ``9`` plus 30 (35/36 incoming/outgoing transferred, 37/38 the incoming and
outgoing legs of a transit after an external transfer, 39 an outgoing forwarded call transferred), which is how
the real sequences pair them. Forwarding and transfer codes are kept in `CallRecord.transfer`, the raw code in
``extra["type"]``.

Start times: every form prints the end of the call (documented for all three), so start = end - ring - talk. A
site whose PBX prints the start instead sets the option ``time_is_end = false`` (`choices` says which is read).
Dates are always day first. The PBX reports trunk calls only, so every record is inbound or outbound.

Answered: an incoming call is answered when its duration field is not blank (the manual: eight blanks when no
call came about); an outgoing one when it lasted more than 0 s (the documents do not say what an unanswered
outgoing call prints).

Multi-leg calls: HiPath writes one record per call segment with no call identifier, so segments are not
joined; forwarded and transferred segments are marked through `CallRecord.transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from smdrd.parsing import Choice, Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Column, Layout, Slice, hms_seconds, seconds, seconds_text, shifted

#: 0-based [start, end) columns of a GetAccount record.
SLICES = {
    "date": (0, 8), "time": (8, 16), "line": (16, 19), "node": (19, 22), "extension": (22, 28),
    "seconds": (28, 33), "duration": (33, 41), "number": (41, 66), "units": (66, 77), "type": (77, 78),
    "account": (78, 89), "msn": (89, 100), "trunk": (100, 105), "lcr_route": (105, 109),
}
GETACCOUNT_LENGTH = 109
#: 0-based [start, end) columns of a serial (V.24) record (1-based positions in the manual).
SERIAL_SLICES = {
    "date": (0, 8), "time": (8, 16), "line": (16, 19), "extension": (19, 25), "ring": (25, 30),
    "duration": (30, 38), "number": (38, 63), "units": (63, 74), "type": (74, 76), "account": (76, 87),
    "msn": (87, 98), "seizure_code": (98, 103), "lcr_route": (103, 105),
}
#: a serial record's width: at least up to its information element, at most up to the LCR route (the USA's
#: PRI fields beyond it, to 112, are accepted too).
SERIAL_MIN, SERIAL_MAX = 76, 112
#: serial control characters a PBX may send before a record (DLE, STX, ETX, DC1, DC3 seen in real output).
CONTROL = "".join(map(chr, range(32)))
#: names of the compressed form's fields after the first nine.
COMPRESSED_TAIL = ("account", "msn", "seizure_code")
#: information element -> (direction, transfer text).
INFO = {
    1: (Direction.INBOUND, ""), 2: (Direction.OUTBOUND, ""), 3: (Direction.INBOUND, ""),
    4: (Direction.OUTBOUND, ""), 5: (Direction.INBOUND, "forwarded"), 6: (Direction.OUTBOUND, "forwarded"),
    7: (Direction.INBOUND, "external transfer"), 8: (Direction.OUTBOUND, "external transfer"),
    9: (Direction.OUTBOUND, "forwarded to external"),
}
#: what an information element from 35 to 39 adds to its code minus 30 (a transferred segment; see above).
TRANSFERRED = 30
#: the information element of the line written while a call rings.
RINGING = 0
HEADER_START = "Datum|"
#: how `render` aligns GetAccount fields: numbers to the right, texts to the left.
_RIGHT = frozenset({"line", "node", "extension", "seconds", "units", "trunk", "lcr_route"})


def _dmy_hms(day: str, time: str) -> tuple[int, int, int, int, int, int]:
    if len(day) != 8 or day[2] != "." or day[5] != "." or not (day[:2] + day[3:5] + day[6:]).isdigit() \
            or not day.isascii():
        raise ValueError(f"expected DD.MM.YY, got {day!r}")
    if len(time) != 8 or time[2] != ":" or time[5] != ":" or not (time[:2] + time[3:5] + time[6:]).isdigit() \
            or not time.isascii():
        raise ValueError(f"expected hh:mm:ss, got {time!r}")
    return (2000 + int(day[6:]), int(day[3:5]), int(day[:2]), int(time[:2]), int(time[3:5]), int(time[6:]))


def _mm_ss(text: str) -> int:
    minutes, sep, seconds = text.partition(":")
    if not sep or not (minutes.isdigit() and seconds.isdigit() and text.isascii()) or len(seconds) != 2:
        raise ValueError(f"expected mm:ss, got {text!r}")
    return int(minutes) * 60 + int(seconds)


def _type_code(text: str) -> str:
    """The call type (the information element); blank is ``2``, outgoing."""
    code = text or "2"
    if not (code.isdigit() and code.isascii() and len(code) <= 2):
        raise ValueError(f"expected a call type digit, got {code!r}")
    return code


#: the GetAccount fields `parse` converts (after the date and time, which it reads first); a blank duration is
#: read from the ``seconds`` field.
_GETACCOUNT_CONVERTED = {
    "duration": Slice("duration", *SLICES["duration"], hms_seconds, optional=True, default=None),
    "type": Slice("type", *SLICES["type"], _type_code),
}
GETACCOUNT = Layout("siemens-hipath", [
    _GETACCOUNT_CONVERTED.get(name) or Slice(name, a, b, align=">" if name in _RIGHT else "<")
    for name, (a, b) in SLICES.items()])
#: the ``|``-separated form: nine fields, then `COMPRESSED_TAIL` when present (any further ones are
#: ``field13``...); the duration is checked before the ring time.
COMPRESSED = Layout("siemens-hipath", [
    Column("date", 0, strip=True), Column("time", 1, strip=True), Column("line", 2, strip=True),
    Column("extension", 3, strip=True),
    Column("duration", 5, hms_seconds, optional=True, default=None, strip=True),
    Column("ring", 4, _mm_ss, optional=True, default=None, strip=True),
    Column("number", 6, strip=True), Column("amount", 7, strip=True), Column("type", 8, _type_code, strip=True),
    *(Column(name, 9 + i, strip=True, optional=True) for i, name in enumerate(COMPRESSED_TAIL)),
], separator="|")


#: the serial form (`SERIAL_SLICES`); a blank ring or duration is ``None`` (the duration's blanks mean "not
#: answered" for an incoming call).
SERIAL = Layout("siemens-hipath", [
    Slice(name, a, b, {"ring": _mm_ss, "duration": hms_seconds, "type": _type_code}.get(name),
          optional=name in ("ring", "duration"), default=None,
          align=">" if name in _RIGHT or name in ("type", "msn", "seizure_code") else "<")
    for name, (a, b) in SERIAL_SLICES.items() if name not in ("date", "time")])


def call_type(code: str) -> tuple[Direction, str, bool]:
    """An information element (`INFO`; ``+30`` transferred, for 5 to 9; ``+50`` DISA) as its direction,
    transfer text and DISA mark.

    Raises:
        ValueError: a code no document or real output gives.
    """
    info = int(code)
    disa = info > 50
    base = info - 50 if disa else info
    if base in INFO:
        direction, transfer = INFO[base]
        return direction, transfer, disa
    if not disa and 5 <= base - TRANSFERRED <= 9:  # seen in real output without the DISA offset only
        direction, how = INFO[base - TRANSFERRED]
        return direction, "transferred" + (f" ({how})" if base > 36 else ""), disa
    raise ValueError(f"unknown call type {code!r}")


class SiemensHiPathParser(Parser):
    """Siemens / Unify HiPath 3000/5000, OpenScape Business."""

    name = "siemens-hipath"
    description = "Siemens/Unify HiPath 3000, OpenScape Business (serial V.24, GetAccount or |-separated)"
    option_names = frozenset({"time_is_end"})

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        time_is_end = self.context.options.get("time_is_end", True)
        if not isinstance(time_is_end, bool):
            raise ValueError(f"siemens-hipath option 'time_is_end' must be a boolean, not {time_is_end!r}")
        self.time_is_end = time_is_end

    def choices(self) -> list[Choice]:
        if self.time_is_end:
            return [Choice("time_is_end", "true", "the time is the END of the call (as every HiPath output form "
                                                  "documents); start = end - ring - talk")]
        return [Choice("time_is_end", "false", "the time is the START of the call, set by the option")]

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        text = line.rstrip().lstrip(CONTROL)
        if not text.strip() or text.startswith(HEADER_START):
            return None
        if "|" in text:
            row = COMPRESSED.split(text)
            if len(row) < 9:
                raise self.error(f"the |-separated form has at least 9 fields, got {len(row)}")
            form = "compressed"
            when = self._when(row[0].strip(), row[1].strip())
            f = COMPRESSED.extract(row)
            for i, value in enumerate(row[12:], 13):
                f[f"field{i}"] = value.strip()
        elif len(text) > SERIAL_MAX or text[38:39] == ":":
            if len(text) < SLICES["type"][0]:
                raise self.error(f"a GetAccount record has {GETACCOUNT_LENGTH} columns, got {len(text)}")
            form = "getaccount"
            when = self._when(text[0:8].strip(), text[8:16].strip())
            f = GETACCOUNT.extract(text)
        else:
            if len(text) < SERIAL_MIN:
                raise self.error(f"a serial call charge record has {SERIAL_MIN} to {SERIAL_MAX} columns, got "
                                 f"{len(text)}")
            form = "serial"
            when = self._when(text[0:8], text[8:16])
            f = SERIAL.extract(text)
        code: str = f["type"]
        if int(code) == RINGING:
            return None  # the "call information" line written while a call rings: not a finished call
        try:
            direction, transfer, disa = call_type(code)
        except ValueError as exc:
            raise self.error(str(exc), "type") from None
        duration: int | None = f["duration"]
        talked = duration is not None
        if duration is None:
            try:
                duration = seconds(f.get("seconds", "0") or "0")
            except ValueError as exc:
                raise self.error(str(exc), "duration") from None
        ring: int | None = f.get("ring")
        start = shifted(when, -(duration + (ring or 0))) if self.time_is_end else when
        extra = {k: v for k, v in f.items()
                 if v and k not in ("date", "time", "line", "extension", "seconds", "duration", "ring",
                                    "number", "account", "type")}
        account: str = f.get("account", "")
        if account and direction is Direction.INBOUND and form == "serial":
            # on an incoming call the serial form's project-code columns hold what the caller dialled (the
            # called MSN/DDI in real output), not a code someone inside entered: kept, but not as an account
            extra["account_or_msn"], account = account, ""
        extra["type"] = code
        if disa:
            extra["disa"] = "1"
        if self.time_is_end:
            extra["end"] = when.isoformat()
        # blanks in an incoming call's duration field mean no call came about; GetAccount gives seconds instead
        inbound = direction is Direction.INBOUND and form != "getaccount"
        answered = talked if inbound else duration > 0
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=f["extension"],
            number=f["number"],
            trunk=f["line"],
            account=account,
            answered=answered,
            transfer=transfer,
            extra=extra,
        ),)

    def _when(self, day: str, time: str) -> datetime:
        """The record's date and time (both forms start with them, and they are checked first)."""
        try:
            y, mo, d, h, mi, s = _dmy_hms(day, time)
            return datetime(y, mo, d, h, mi, s, tzinfo=self.context.timezone)
        except ValueError as exc:
            raise self.error(str(exc), "date") from None

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One GetAccount record; internal calls are not output by the PBX (no lines)."""
        if record.direction is Direction.INTERNAL:
            return []
        end = shifted(record.start, record.duration)
        x = record.extra.get
        code = "1" if record.direction is Direction.INBOUND else "2"
        values = {
            "date": f"{end:%d.%m.%y}", "time": f"{end:%H:%M:%S}", "line": record.trunk[-3:],
            "node": x("node", "1")[-3:], "extension": record.extension[-6:],
            "seconds": str(record.duration % 100000), "duration": seconds_text(record.duration)[-8:],
            "number": record.number, "units": x("units", ""), "type": code, "account": record.account,
            "msn": x("msn", ""), "trunk": x("trunk", ""), "lcr_route": x("lcr_route", ""),
        }
        return [GETACCOUNT.render(values).ljust(GETACCOUNT_LENGTH)]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        score = 0.0
        for raw in lines[:20]:
            line = raw.rstrip().lstrip(CONTROL)
            dated = len(line) >= 17 and line[2] == "." and line[5] == "."
            if line.startswith(HEADER_START) or (dated and line[8] == "|" and line[11] == ":"
                                                 and COMPRESSED.matches(line)):
                score = max(score, 0.9)
            elif dated and line[10] == ":" and line[13] == ":" and GETACCOUNT.matches(line) \
                    and line[38:39] == ":":
                score = max(score, 0.9 if len(line) >= 78 else 0.5)
            elif dated and line[10] == ":" and line[13] == ":" and SERIAL_MIN <= len(line) <= SERIAL_MAX \
                    and SERIAL.matches(line):
                score = max(score, 0.9)
        return score
