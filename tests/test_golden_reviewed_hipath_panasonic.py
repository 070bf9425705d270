"""Golden lines of the Siemens HiPath and Panasonic captures, reviewed by hand against the vendor documents
(issue 13; the method is test_golden_reviewed.py's, the review itself is in tests/fixtures/REVIEW.md).

Each expectation was written field by field from the raw bytes of the capture and the vendor's column table
(Hicom 150 E Office service manual 7.12 for the HiPath serial output, the KX-NS1000 / KX-TDA manuals for
Panasonic), never from parser output. A line is fed to a fresh parser after every line before it, with the
capture's ``options.json`` (its ``country`` is the site's); only the fields named are compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.framing import Framer
from smdrd.parsing import ParserContext, get_parser_class, parse_line

FIXTURES = Path(__file__).parent / "fixtures"
HIPATH = FIXTURES / "siemens-hipath" / "quartx-v24.smdr"
PANASONIC = FIXTURES / "panasonic" / "tde-2011.smdr"


def records_of_line(path: Path, number: int) -> list[dict[str, Any]]:
    """The records the parser emits on physical line ``number`` (1-based) of ``path``, as `to_json` gives them,
    after lines 1 .. number-1 went through the same parser (built as the daemon would for that site)."""
    opts_path = path.with_suffix(".options.json")
    opts: dict[str, Any] = json.loads(opts_path.read_text()) if opts_path.exists() else {}
    cls = get_parser_class(path.parent.name)
    tz = ZoneInfo(opts["timezone"]) if opts.get("timezone") else None
    parser = cls(ParserContext(timezone=tz, year=opts.get("year"), options=opts.get("options", {}),
                               country=opts.get("country")))
    lines = path.read_bytes().splitlines(keepends=True)
    assert 1 <= number <= len(lines), f"{path.name} has {len(lines)} lines"
    framer = Framer(1 << 20)
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(lines[:number], 1):
        for frame in framer.feed(raw) + (framer.close() if i == len(lines) else []):
            assert isinstance(frame, bytes)
            records = parse_line(parser, frame.decode(opts.get("encoding", cls.encoding), errors="replace"))
            if i == number:
                out.extend(r.to_json() for r in records or ())
    return out


def check(path: Path, number: int, want: dict[str, Any]) -> None:
    records = records_of_line(path, number)
    assert len(records) == 1, f"{path.name}:{number}: expected one record, got {records}"
    assert {k: records[0].get(k, "<missing>") for k in want} == want


# --------------------------------------------------------------------------- Siemens HiPath 3000 serial (V.24)

#: line -> the record, from the manual's columns: 1-8 date, 9-16 time (end of call), 17-19 line, 20-25
#: extension, 26-30 ring mm:ss, 31-38 duration hh:mm:ss, 39-63 number, 64-74 units, 75-76 information element,
#: 77-87 project code, 88-98 MSN, 99-103 seizure code, 104-105 LCR route. Europe/Dublin: +01:00 in April 2019.
HIPATH_LINES: dict[int, dict[str, Any]] = {
    # outgoing (2), no ring column, 5 s, ending 23:19:06
    1: {"start": "2019-04-10T23:19:01+01:00", "duration": 5, "ring": None, "direction": "outbound",
        "extension": "104", "number": "00441619251900", "trunk": "2", "answered": True, "transfer": ""},
    # outgoing with no extension and a ring time of 1 s, 0 s talk: not answered (the PBX printed 00:00:00)
    2: {"start": "2019-04-10T23:28:00+01:00", "duration": 0, "ring": 1, "direction": "outbound",
        "extension": "", "number": "0061393038625", "trunk": "2", "answered": False},
    # incoming (1) answered by 104 after 1 s, 7 s talk
    10: {"start": "2019-04-11T00:35:40+01:00", "duration": 7, "ring": 1, "direction": "inbound",
         "extension": "104", "number": "0876153281", "trunk": "1", "answered": True},
    # incoming, rang 10 s, duration printed as 00:00:00: the manual prints blanks for a call that did not
    # come about, so this one was answered, for under a second
    17: {"start": "2019-04-11T00:49:14+01:00", "duration": 0, "ring": 10, "answered": True},
    # incoming, 41 s ring, 10:03 talk; the 5 characters after the type sit in the project-code columns
    22: {"start": "2019-02-22T23:00:59+00:00", "duration": 603, "ring": 41, "direction": "inbound",
         "extension": "048", "account": "", "extra": {"account_or_msn": "54416", "type": "1",
                                                       "end": "2019-02-22T23:11:43+00:00"}},
    # outgoing, 12 units, MSN 902725 (right-aligned in 88-98), seizure code 841 (99-103)
    25: {"start": "2000-12-11T08:18:00+00:00", "duration": 323, "direction": "outbound", "extension": "16",
         "number": "02317324856", "trunk": "4",
         "extra": {"units": "12", "msn": "902725", "seizure_code": "841", "type": "2",
                   "end": "2000-12-11T08:23:23+00:00"}},
    # outgoing with project code 12345678901 (77-87) and LCR route 2 (104-105)
    26: {"duration": 83, "account": "12345678901", "number": "834756",
         "extra": {"units": "34", "lcr_route": "2", "type": "2", "end": "2000-12-11T09:12:45+00:00"}},
    # incoming that rang 34 s on extension 11 and was not answered (duration field blank)
    27: {"start": "2000-12-11T09:25:00+00:00", "duration": 0, "ring": 34, "direction": "inbound",
         "extension": "11", "number": "", "trunk": "2", "answered": False},
    # an outgoing line with units only (23) and no extension, number or times
    54: {"start": "2000-01-01T00:00:00+00:00", "duration": 0, "extension": "", "number": "", "trunk": "8",
         "answered": False},
    # 35: the incoming caller (answered on 250 at line 57) transferred to 110, 26 s
    58: {"start": "2021-01-31T15:23:59+00:00", "duration": 26, "direction": "inbound", "extension": "110",
         "number": "353877629926", "trunk": "9", "transfer": "transferred"},
    # 38 and 37: the outgoing and incoming legs joined by 110's external transfer, 15 and 16 s
    66: {"start": "2021-01-31T15:26:23+00:00", "duration": 15, "direction": "outbound", "trunk": "5",
         "number": "0857739075", "transfer": "transferred (external transfer)"},
    67: {"start": "2021-01-31T15:26:23+00:00", "duration": 16, "direction": "inbound", "trunk": "9",
         "number": "353877629926", "transfer": "transferred (external transfer)"},
    # 36: an outgoing call of 110's (line 75, type 2) transferred to 223, 11 s
    76: {"start": "2021-01-31T15:34:58+00:00", "duration": 11, "direction": "outbound", "extension": "223",
         "transfer": "transferred"},
    # 39: the outgoing leg after a forward to an external number (line 98, type 9) was transferred, 16 s
    100: {"start": "2021-01-31T16:06:43+00:00", "duration": 16, "direction": "outbound",
          "transfer": "transferred (forwarded to external)"},
}
#: type 0, "call information" while a call rings (8, 9: the same call ringing on 104 and 103; 134: after
#: DLE STX DLE ETX DC3 DC1): no record.
HIPATH_RINGING = [8, 9, 18, 24, 55, 134, 135, 136]


@pytest.mark.parametrize("number", sorted(HIPATH_LINES))
def test_hipath_serial_line(number: int) -> None:
    check(HIPATH, number, HIPATH_LINES[number])


@pytest.mark.parametrize("number", HIPATH_RINGING)
def test_hipath_ringing_information_is_no_call(number: int) -> None:
    assert records_of_line(HIPATH, number) == []


# ---------------------------------------------------------------------------------- Panasonic KX-TDE (pattern A)

def test_panasonic_rc_line_is_no_call() -> None:
    """Line 1: CD ``RC``, the call arriving (KX-TD816 manual: "Receive"); its record is line 2."""
    assert records_of_line(PANASONIC, 1) == []


def test_panasonic_day_month_site_reads_2_november() -> None:
    """Line 2: 02/11/11 on a day/month site (country IR) is 2 November 2011; end 01:06PM, ring 0'00, talk
    00:00'56, so the start is 13:05:04; CO 09, transferred (CD TR)."""
    check(PANASONIC, 2, {"start": "2011-11-02T13:05:04+03:30", "duration": 56, "ring": 0, "direction": "inbound",
                         "extension": "130", "number": "02614301566", "trunk": "09", "answered": True,
                         "transfer": "TR"})


def test_panasonic_outgoing_call() -> None:
    """Line 4: extension 132 dialled 09192128583 on CO 67, 1'22, ending 02:19PM on 6 November."""
    check(PANASONIC, 4, {"start": "2011-11-06T14:17:38+03:30", "duration": 82, "ring": None,
                         "direction": "outbound", "extension": "132", "number": "09192128583", "trunk": "67"})
