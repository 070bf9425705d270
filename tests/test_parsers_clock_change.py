"""Parsers that print a call's end work its start out in elapsed time, not on the wall clock: a 20-minute call that
ended at 03:10 CEST on the night the clocks went forward (31 March 2024, Europe/Berlin) started at 01:50 CET.
Wall-clock arithmetic gave 02:50, a time that does not exist that night, read as CET: 40 minutes after the end.
And the renderers (the simulator's and the round-trip tests' lines) print the end the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from smdrd.parsing import ParserContext, get_parser_class
from smdrd.record import CallRecord, Direction

BERLIN = ZoneInfo("Europe/Berlin")

#: the same call as each PBX prints it: ended 03:10 local time (CEST), 20 minutes of talk, outbound.
ENDED_AT_0310 = {
    "siemens-hipath": "31.03.24|03:10:00|201|33388|00:00|00:20:00|0123456789||2|",
    "avaya-cm": "033124 0310 01200 7    9  102      006666666666#       6168             014           0     0",
    "panasonic": "03/31/24 03:10AM 1200  01 0123456789                        00:20'00",
}


@pytest.mark.parametrize("fmt", sorted(ENDED_AT_0310))
def test_a_call_over_the_spring_clock_change_starts_twenty_minutes_before_its_end(fmt: str) -> None:
    parser = get_parser_class(fmt)(ParserContext(timezone=BERLIN, country="DE"))
    (record,) = parser.parse(ENDED_AT_0310[fmt]) or ()
    assert record.start.isoformat() == "2024-03-31T01:50:00+01:00"
    assert record.duration == 1200
    assert record.start.astimezone(UTC) + timedelta(seconds=1200) == datetime(2024, 3, 31, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("fmt", sorted(ENDED_AT_0310))
def test_a_call_over_the_clock_change_renders_its_real_end_and_reads_back(fmt: str) -> None:
    cls = get_parser_class(fmt)
    start = datetime(2024, 3, 31, 1, 50, tzinfo=BERLIN)
    record = CallRecord(format=fmt, start=start, duration=1200, direction=Direction.OUTBOUND, extension="201",
                        number="0123456789", trunk="01")
    lines = cls.render(record)
    assert any("0310" in line.replace(":", "") or "03:10" in line for line in lines), lines
    parser = cls(ParserContext(timezone=BERLIN, country="DE"))
    back = [r for line in lines for r in parser.parse(line) or ()]
    assert [r.start.isoformat() for r in back][-1:] == ["2024-03-31T01:50:00+01:00"]
