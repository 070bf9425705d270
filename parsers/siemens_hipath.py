"""Siemens / Unify HiPath 3000/5000 and OpenScape Business call charge records. No I/O here.

Two forms, told apart line by line:

* **GetAccount**, fixed width (HiPath 3000/5000 V5 to V9 service manual, table "GetAccount - Data Record
  Structure"): `SLICES`, read as the toolkit layout `GETACCOUNT`. Date and time are the **end** of the call
  (``DD.MM.YY``, ``hh:mm:ss``); the duration is given twice (seconds and ``hh:mm:ss``); call type ``1``
  incoming, ``2`` outgoing (the default). There is no ring time.
* **compressed**, ``|``-separated (`COMPRESSED`; the Unify OpenScape Business CDR description, quoted on the
  Telmekom forum; field names from its header ``Datum|Uhrzeit|Lt|Tln|Ruf|Dauer|Rufnummer|Betrag|I|``): date,
  time, line (trunk), subscriber (extension), ring ``mm:ss``, duration ``hh:mm:ss``, number, amount,
  information element, then account code, MSN and seizure code (Hicom 150 E Office service manual, "Output
  Formats for Call Detail Recording"); any further fields are kept as ``field13``... The number of trailing
  ``|`` varies, so the field count is not checked. The German header line is skipped (``None``).

The information element (Hicom 150 E / HiPath manuals): ``1`` incoming, ``2`` outgoing, ``3``/``4`` the same
for other services, ``5``/``6`` incoming/outgoing forwarded, ``7``/``8`` conference or transit by external
transfer with an incoming/outgoing call, ``9`` outgoing through call forwarding to an external destination;
``+50`` marks DISA calls. ``0`` is the "call information" line written while a call is still ringing (one per
called extension, without durations): it is not a finished call and is skipped. Forwarding and transfer codes
are kept in `CallRecord.transfer`.

Start times: both forms are read as the end of the call (documented for GetAccount; assumed for the compressed
form), so start = end - ring - talk. A site whose PBX prints the start instead sets the option
``time_is_end = false``. The PBX reports trunk calls only, so every record is inbound or outbound.

Multi-leg calls: HiPath writes one record per call segment with no call identifier, so segments are not
joined; forwarded and transferred segments are marked through `CallRecord.transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Column, Layout, Slice, hms_seconds, seconds, seconds_text

#: 0-based [start, end) columns of a GetAccount record.
SLICES = {
    "date": (0, 8), "time": (8, 16), "line": (16, 19), "node": (19, 22), "extension": (22, 28),
    "seconds": (28, 33), "duration": (33, 41), "number": (41, 66), "units": (66, 77), "type": (77, 78),
    "account": (78, 89), "msn": (89, 100), "trunk": (100, 105), "lcr_route": (105, 109),
}
GETACCOUNT_LENGTH = 109
#: names of the compressed form's fields after the first nine.
COMPRESSED_TAIL = ("account", "msn", "seizure_code")
#: information element -> (direction, transfer text).
INFO = {
    1: (Direction.INBOUND, ""), 2: (Direction.OUTBOUND, ""), 3: (Direction.INBOUND, ""),
    4: (Direction.OUTBOUND, ""), 5: (Direction.INBOUND, "forwarded"), 6: (Direction.OUTBOUND, "forwarded"),
    7: (Direction.INBOUND, "external transfer"), 8: (Direction.OUTBOUND, "external transfer"),
    9: (Direction.OUTBOUND, "forwarded to external"),
}
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


class SiemensHiPathParser(Parser):
    """Siemens / Unify HiPath 3000/5000, OpenScape Business."""

    name = "siemens-hipath"
    description = "Siemens/Unify HiPath 3000, OpenScape Business (GetAccount fixed width or |-separated)"

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        time_is_end = self.context.options.get("time_is_end", True)
        if not isinstance(time_is_end, bool):
            raise ValueError(f"siemens-hipath option 'time_is_end' must be a boolean, not {time_is_end!r}")
        self.time_is_end = time_is_end

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        text = line.rstrip()
        if not text.strip() or text.startswith(HEADER_START):
            return None
        if "|" in text:
            row = COMPRESSED.split(text)
            if len(row) < 9:
                raise self.error(f"the |-separated form has at least 9 fields, got {len(row)}")
            when = self._when(row[0].strip(), row[1].strip())
            f = COMPRESSED.extract(row)
            for i, value in enumerate(row[12:], 13):
                f[f"field{i}"] = value.strip()
        else:
            if len(text) < SLICES["type"][0]:
                raise self.error(f"a GetAccount record has {GETACCOUNT_LENGTH} columns, got {len(text)}")
            when = self._when(text[0:8].strip(), text[8:16].strip())
            f = GETACCOUNT.extract(text)
        duration: int | None = f["duration"]
        if duration is None:
            try:
                duration = seconds(f.get("seconds", "0") or "0")
            except ValueError as exc:
                raise self.error(str(exc), "duration") from None
        ring: int | None = f.get("ring")
        code: str = f["type"]
        info = int(code)
        if info == 0:
            return None  # the "call information" line written while a call rings: not a finished call
        disa = info > 50
        if info % 50 not in INFO or info > 59:
            raise self.error(f"unknown call type {code!r}", "type")
        direction, transfer = INFO[info % 50]
        start = when - timedelta(seconds=duration + (ring or 0)) if self.time_is_end else when
        extra = {k: v for k, v in f.items()
                 if v and k not in ("date", "time", "line", "extension", "seconds", "duration", "ring",
                                    "number", "account")}
        extra["type"] = code
        if disa:
            extra["disa"] = "1"
        if self.time_is_end:
            extra["end"] = when.isoformat()
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=f["extension"],
            number=f["number"],
            trunk=f["line"],
            account=f.get("account", ""),
            answered=duration > 0,
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
        end = record.start + timedelta(seconds=record.duration)
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
        for line in lines[:20]:
            dated = len(line) >= 17 and line[2] == "." and line[5] == "."
            if line.startswith(HEADER_START) or (dated and line[8] == "|" and line[11] == ":"
                                                 and COMPRESSED.matches(line)):
                score = max(score, 0.9)
            elif dated and line[10] == ":" and line[13] == ":" and GETACCOUNT.matches(line):
                score = max(score, 0.9 if len(line.rstrip()) >= 78 else 0.5)
        return score
