"""Siemens HiPath / OpenScape Business parser: the manuals' examples in both forms."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.siemens_hipath import SiemensHiPathParser
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

TZ = ZoneInfo("Europe/Berlin")
# Verbatim from the Unify OpenScape Business CDR description (compressed form, two header variants).
COMPRESSED = [
    "20.06.12|13:11:35|201|33388|00:02|00:00:07|0123456789||1||||||",
    "20.06.12|13:21:14|202|33388|00:05|00:00:12|0123456789||1|||||",
    "Datum|Uhrzeit|Lt|Tln|Ruf|Dauer|Rufnummer|Betrag|I|",
    "20.06.12|12:53:45|201|33388|00:04|00:00:04|01706340803||1|",
    "20.06.12|13:38:27|202|33388|00:02|00:00:05|01706340803||1|",
]
# GetAccount, laid out by the service manual's table (its own examples: "13.09.00", "14:14:00", "00:04:34").
GETACCOUNT = ("13.09.0014:14:00  1  1   123  27400:04:340891234567" + " " * 15 + "          3" + "2"
              + "4711       " + "           " + "    1" + "   2")


def parse(lines: list[str], **options: object) -> list[CallRecord]:
    parser = SiemensHiPathParser(ParserContext(timezone=TZ, options=options))
    return [r for line in lines for r in parser.parse(line) or ()]


def test_compressed_examples_field_by_field() -> None:
    """Every line of the manual's example: the German header skipped, four calls read."""
    records = parse(COMPRESSED)
    assert len(records) == 4
    r = records[0]
    # the end (13:11:35) minus 2 s ring and 7 s talk
    assert r.start == datetime(2012, 6, 20, 13, 11, 26, tzinfo=TZ)
    assert (r.duration, r.ring, r.answered) == (7, 2, True)
    assert (r.direction, r.extension, r.number, r.trunk) == (Direction.INBOUND, "33388", "0123456789", "201")
    assert r.extra["end"] == "2012-06-20T13:11:35+02:00"
    expected = [(12, 5, "202", "0123456789"), (4, 4, "201", "01706340803"), (5, 2, "202", "01706340803")]
    assert [(x.duration, x.ring, x.trunk, x.number) for x in records[1:]] == expected


def test_getaccount_record_fields() -> None:
    """The fixed-width GetAccount form: outgoing call from 123, 274 s, ending 13.09.00 14:14:00."""
    (r,) = parse([GETACCOUNT])
    assert r.start == datetime(2000, 9, 13, 14, 9, 26, tzinfo=TZ)
    assert (r.duration, r.ring, r.answered) == (274, None, True)
    assert (r.direction, r.extension, r.number, r.trunk, r.account) == (
        Direction.OUTBOUND, "123", "0891234567", "1", "4711")
    assert (r.extra["units"], r.extra["trunk"], r.extra["lcr_route"], r.extra["node"]) == ("3", "1", "2", "1")


def test_time_is_start_option() -> None:
    (r,) = parse(COMPRESSED[:1], time_is_end=False)
    assert r.start == datetime(2012, 6, 20, 13, 11, 35, tzinfo=TZ)
    with pytest.raises(ValueError, match="time_is_end"):
        SiemensHiPathParser(ParserContext(options={"time_is_end": "no"}))


def test_information_codes() -> None:
    """Forwarded calls are marked; the ringing notice (0) is skipped; unknown codes are errors."""
    (fwd,) = parse([COMPRESSED[0].replace("||1|", "||6|")])
    assert (fwd.direction, fwd.transfer) == (Direction.OUTBOUND, "forwarded")
    assert SiemensHiPathParser().parse(COMPRESSED[0].replace("||1|", "||0|")) is None
    with pytest.raises(ParseError) as err:
        SiemensHiPathParser().parse(COMPRESSED[0].replace("||1|", "||X|"))
    assert err.value.field == "type"


def test_detect() -> None:
    assert SiemensHiPathParser.detect(COMPRESSED) > 0.8
    assert SiemensHiPathParser.detect([GETACCOUNT]) > 0.8
    assert SiemensHiPathParser.detect(['"","1","2"']) == 0.0


def test_internal_calls_are_not_rendered() -> None:
    """HiPath reports trunk calls only."""
    r = CallRecord("siemens-hipath", datetime(2020, 1, 1, tzinfo=TZ), 5, Direction.INTERNAL, "1", "2")
    assert SiemensHiPathParser.render(r) == []
