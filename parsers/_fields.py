"""Small, fast field converters shared by the parser plugins. Pure functions, no I/O here.

They raise `ValueError` with a short reason; the parser turns it into a `ParseError` naming the field.
`datetime.strptime` is avoided on purpose: slicing and `int()` are several times faster on the hot path.
"""

from __future__ import annotations

from datetime import datetime, tzinfo


def ymd_hms(text: str, tz: tzinfo | None, date_sep: str = "/") -> datetime:
    """``YYYY/MM/DD HH:MM:SS`` (any one-character date separator) to a datetime in ``tz``."""
    if len(text) != 19 or text[4] != date_sep or text[7] != date_sep or text[10] != " " \
            or text[13] != ":" or text[16] != ":":
        raise ValueError(f"expected YYYY{date_sep}MM{date_sep}DD HH:MM:SS, got {text!r}")
    try:
        return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]),
                        int(text[11:13]), int(text[14:16]), int(text[17:19]), tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"not a valid date and time: {text!r} ({exc})") from None


def hms_seconds(text: str) -> int:
    """``H:MM:SS`` (hours may have any number of digits) to seconds."""
    if len(text) == 8 and text[2] == ":" and text[5] == ":" and text.isascii():
        # The common ``HH:MM:SS``: slices, no split (this runs once per call on the hot path).
        hh, mm, ss = text[0:2], text[3:5], text[6:8]
        if hh.isdigit() and mm.isdigit() and ss.isdigit() and mm < "60" and ss < "60":
            return int(hh) * 3600 + int(mm) * 60 + int(ss)
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts) \
            or len(parts[1]) != 2 or len(parts[2]) != 2:
        raise ValueError(f"expected HH:MM:SS, got {text!r}")
    h, m, s = (int(p) for p in parts)
    if m > 59 or s > 59:
        raise ValueError(f"minutes and seconds must be under 60, got {text!r}")
    return h * 3600 + m * 60 + s


def seconds_text(seconds: int) -> str:
    """Seconds to ``HH:MM:SS`` (the inverse of `hms_seconds`)."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def uint(text: str) -> int:
    """A non-negative decimal integer; surrounding spaces allowed."""
    t = text.strip()
    if not (t.isdigit() and t.isascii()):
        raise ValueError(f"expected a whole number, got {text!r}")
    return int(t)
