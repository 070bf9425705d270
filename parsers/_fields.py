"""Small, fast field converters shared by the parser plugins. Pure functions, no I/O here.

They raise `ValueError` with a short reason; the parser turns it into a `ParseError` naming the field.
`datetime.strptime` is avoided on purpose: slicing and `int()` are several times faster on the hot path.

Every converter bounds what it returns to what a real call can have (`smdrd.record`): durations up to
`MAX_CALL_SECONDS`, years `EARLIEST_YEAR` to `LATEST_YEAR`, whole numbers that fit a signed 64-bit integer.
Only ASCII digits are digits here: ``str.isdigit`` also accepts ``²`` and ``١``, which ``int`` refuses or reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from smdrd.record import EARLIEST_YEAR, LATEST_YEAR, MAX_CALL_SECONDS

__all__ = ["MAX_CALL_SECONDS", "MAX_INT", "call_seconds", "check_year", "digits", "hms_seconds", "seconds",
           "seconds_text", "shifted", "uint", "ymd_hms"]

#: the largest whole number a field may hold (SQLite's and PostgreSQL's signed 64-bit integers).
MAX_INT = 2**63 - 1
_MAX_INT_DIGITS = len(str(MAX_INT))


def shifted(when: datetime, seconds: int) -> datetime:
    """``when`` moved by ``seconds`` of elapsed time (negative: earlier), shown in its own timezone.

    Python's arithmetic on an aware datetime moves its wall clock, not time: 03:10 CEST on the night the clocks
    go forward, less 20 minutes, gives 02:50, a time that does not exist that night (read as 02:50 CET, 40
    minutes after the end). A PBX that prints a call's end works the start out in elapsed time: 01:50 CET."""
    if when.tzinfo is None:
        return when + timedelta(seconds=seconds)
    return (when.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(when.tzinfo)


def digits(text: str) -> bool:
    """``text`` is one or more ASCII digits (``str.isdigit`` alone also accepts superscripts and other scripts)."""
    return text.isascii() and text.isdigit()


def check_year(year: int, text: str) -> None:
    """Refuse a year outside the window real calls have (`smdrd.record.EARLIEST_YEAR` to `LATEST_YEAR`)."""
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"year {year} is outside {EARLIEST_YEAR} to {LATEST_YEAR}: {text!r}")


def call_seconds(seconds: int, text: str) -> int:
    """``seconds`` when a real call can last that long, else `ValueError` (see `MAX_CALL_SECONDS`)."""
    if not 0 <= seconds <= MAX_CALL_SECONDS:
        raise ValueError(f"{text!r} is no real call duration (at most {MAX_CALL_SECONDS} s, 31 days)")
    return seconds


def ymd_hms(text: str, tz: tzinfo | None, date_sep: str = "/") -> datetime:
    """``YYYY/MM/DD HH:MM:SS`` (any one-character date separator) to a datetime in ``tz``."""
    if len(text) != 19 or text[4] != date_sep or text[7] != date_sep or text[10] != " " \
            or text[13] != ":" or text[16] != ":":
        raise ValueError(f"expected YYYY{date_sep}MM{date_sep}DD HH:MM:SS, got {text!r}")
    if not text.isascii():
        raise ValueError(f"expected ASCII digits, got {text!r}")
    try:
        year = int(text[0:4])
        check_year(year, text)
        return datetime(year, int(text[5:7]), int(text[8:10]),
                        int(text[11:13]), int(text[14:16]), int(text[17:19]), tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"not a valid date and time: {text!r} ({exc})") from None


def hms_seconds(text: str) -> int:
    """``H:MM:SS`` (hours may have several digits) to seconds, at most `MAX_CALL_SECONDS`."""
    if len(text) == 8 and text[2] == ":" and text[5] == ":" and text.isascii():
        # The common ``HH:MM:SS``: slices, no split (this runs once per call on the hot path).
        hh, mm, ss = text[0:2], text[3:5], text[6:8]
        if hh.isdigit() and mm.isdigit() and ss.isdigit() and mm < "60" and ss < "60":
            return int(hh) * 3600 + int(mm) * 60 + int(ss)
    parts = text.split(":")
    if len(parts) != 3 or not all(digits(p) for p in parts) or len(parts[1]) != 2 or len(parts[2]) != 2:
        raise ValueError(f"expected HH:MM:SS, got {text!r}")
    if len(parts[0].lstrip("0")) > 4:  # 10,000 hours and more: refused before int() reads a huge number
        return call_seconds(MAX_CALL_SECONDS + 1, text)
    h, m, s = (int(p) for p in parts)
    if m > 59 or s > 59:
        raise ValueError(f"minutes and seconds must be under 60, got {text!r}")
    return call_seconds(h * 3600 + m * 60 + s, text)


def seconds_text(seconds: int) -> str:
    """Seconds to ``HH:MM:SS`` (the inverse of `hms_seconds`)."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def uint(text: str, limit: int = MAX_INT) -> int:
    """A non-negative decimal integer up to ``limit``; surrounding spaces allowed."""
    t = text.strip()
    if not digits(t):
        raise ValueError(f"expected a whole number, got {text!r}")
    if len(t.lstrip("0")) > _MAX_INT_DIGITS or int(t) > limit:
        raise ValueError(f"expected a whole number up to {limit}, got {text!r}")
    return int(t)


def seconds(text: str) -> int:
    """Whole seconds of a call (talk, ring, billed), at most `MAX_CALL_SECONDS`; surrounding spaces allowed."""
    return uint(text, MAX_CALL_SECONDS)
