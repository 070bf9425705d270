"""NEC SV8100/SV9100/SL SMDR parser: the manual's layout and example, header years, transfers."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.nec_sv import TITLES, NecSVParser
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

TZ = ZoneInfo("America/Chicago")
HEADER = " " * 60 + "12/09/2019 PAGE   1"
# The manual's example (Electra Elite IPK II, whitespace collapsed as printed).
MANUAL = "PIN 10:53 12/09 022 2142623801 NO ANSWER"
# Records laid out by the manual's columns (SL1100/SL2100 Features & Specifications, PRG 35-02-14 = 1).
POT = "POT  09:15 12/09 0003 00:04:12 201        912145551234         4711"
PIN = "PIN  10:01 12/09 0005 00:01:05 202        2142623801"
PTRS = "PTRS 10:02 12/09 0005 00:06:40 205        2142623801"
ICM = "ICM  11:30 12/09      00:00:45 201        203"


def parse(lines: list[str], **kw: object) -> list[CallRecord]:
    parser = NecSVParser(ParserContext(timezone=TZ, **kw))  # type: ignore[arg-type]
    out: list[CallRecord] = []
    for line in lines:
        out.extend(parser.parse(line) or ())
    return out


def test_page_header_and_titles_are_skipped_and_give_the_year() -> None:
    """Page headers are not calls; their year dates the records that follow."""
    parser = NecSVParser(ParserContext(timezone=TZ))
    assert parser.parse(HEADER) is None
    assert parser.parse(TITLES) is None
    (r,) = parser.parse(POT) or ()
    assert r.start == datetime(2019, 12, 9, 9, 15, tzinfo=TZ)


def test_outgoing_record_fields() -> None:
    """POT: station 201 dialled 912145551234 on line 3 for 4:12 with account 4711."""
    (r,) = parse([HEADER, POT])
    assert (r.direction, r.extension, r.number) == (Direction.OUTBOUND, "201", "912145551234")
    assert r.trunk == "0003"
    assert (r.duration, r.ring, r.answered, r.account) == (252, None, True, "4711")
    assert r.extra["class"] == "POT"


def test_manual_example_no_answer() -> None:
    """The manual's own line: an unanswered incoming call on line 022 from 2142623801."""
    (r,) = parse([HEADER, MANUAL])
    assert r.start == datetime(2019, 12, 9, 10, 53, tzinfo=TZ)
    assert (r.direction, r.number, r.trunk, r.extension) == (Direction.INBOUND, "2142623801", "022", "")
    assert (r.answered, r.duration, r.account) == (False, 0, "")


def test_transferred_call_legs_share_a_key() -> None:
    """PIN then PTRS on the same line: one call with two owners, counted once."""
    first, second = parse([HEADER, PIN, PTRS])
    assert first.key() == second.key() == f"0005@{first.start.isoformat()}"
    assert (first.leg, second.leg) == (0, 1)
    assert (second.direction, second.extension, second.duration, second.transfer) == (
        Direction.INBOUND, "205", 400, "PTRS")


def test_intercom_call_is_internal() -> None:
    (r,) = parse([HEADER, ICM])
    assert (r.direction, r.extension, r.number, r.trunk) == (Direction.INTERNAL, "201", "203", "")


def test_january_records_under_a_december_header_are_next_year() -> None:
    (r,) = parse([HEADER, POT.replace("12/09", "01/02")])
    assert r.start.year == 2020


def test_year_without_header_from_context() -> None:
    (r,) = parse([POT], year=2021)
    assert r.start.year == 2021
    (r,) = parse([POT], now=datetime(2024, 3, 1))
    assert r.start.year == 2023  # 12/09 would be in the future in March 2024


def test_not_calls_are_skipped_and_unknown_classes_rejected() -> None:
    parser = NecSVParser()
    assert parser.parse("BFL  10:00 12/09") is None
    with pytest.raises(ParseError) as err:
        parser.parse("XYZ  10:00 12/09 0001 00:00:01 201        123")
    assert err.value.field == "class"


def test_detect() -> None:
    assert NecSVParser.detect([HEADER, TITLES, POT]) > 0.8
    assert NecSVParser.detect(["2017/07/01 08:13:24,00:00:20,7,214,O,215"]) == 0.0
