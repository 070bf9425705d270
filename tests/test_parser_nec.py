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


# --- issue 13: caller names in the ACCOUNT column, and NEXT lines -----------------------------------------------

#: a fixed-width incoming record whose name fills the 16-character ACCOUNT column (PRG 35-02-17 = 1), and the
#: NEXT line that carries the rest (PRG 35-02-18 = 1). Laid out by the manual's columns; no real capture exists.
NAMED = PIN.ljust(63) + "NEC INFRONTIA CO"
REST = "NEXT RPORATION"


def test_caller_name_is_not_an_account_code() -> None:
    """With caller names on, a user saw the caller's name reported as an account code."""
    (r,) = parse([PIN + " " * 11 + "J SMITH"])
    assert (r.account, r.extra["caller_name"]) == ("", "J SMITH")


def test_next_line_carries_the_rest_of_the_name() -> None:
    """The NEXT line was dropped, and the name cut at 16 characters."""
    parser = NecSVParser(ParserContext(timezone=TZ))
    assert parser.parse(NAMED) == ()  # held: the name fills the column
    (r,) = parser.parse(REST) or ()
    assert r.extra["caller_name"] == "NEC INFRONTIA CORPORATION"
    assert (r.direction, r.number, r.account) == (Direction.INBOUND, "2142623801", "")


def test_next_line_repeating_the_whole_name_replaces_it() -> None:
    parser = NecSVParser(ParserContext(timezone=TZ))
    parser.parse(NAMED)
    (r,) = parser.parse("NEXT NEC INFRONTIA CORPORATION") or ()
    assert r.extra["caller_name"] == "NEC INFRONTIA CORPORATION"


def test_held_record_is_released_by_the_next_record_or_the_end() -> None:
    parser = NecSVParser(ParserContext(timezone=TZ))
    assert parser.parse(NAMED) == ()
    with pytest.raises(ParseError):
        parser.parse("XXXX 10:05 12/09 0005 00:00:01 202        1")  # an error keeps it held
    first, second = parser.parse(POT) or ()
    assert first.extra["caller_name"] == "NEC INFRONTIA CO"
    assert second.account == "4711"
    parser.parse(NAMED)
    (r,) = parser.flush()
    assert r.extra["caller_name"] == "NEC INFRONTIA CO"


def test_after_a_next_line_every_named_record_waits_for_its_own() -> None:
    """Once the PBX is seen printing names on NEXT lines, a short name is held for its NEXT too."""
    parser = NecSVParser(ParserContext(timezone=TZ))
    parser.parse(NAMED)
    parser.parse(REST)
    assert parser.parse(PIN + " " * 11 + "J SMITH") == ()
    (r,) = parser.parse("NEXT J SMITH") or ()
    assert r.extra["caller_name"] == "J SMITH"


def test_account_column_option() -> None:
    """``account_column = "account"`` (PRG 35-02-17 = 0): an incoming record's column is an account code."""
    (r,) = parse([PIN + " " * 11 + "A12"], options={"account_column": "account"})
    assert (r.account, "caller_name" in r.extra) == ("A12", False)
    (r,) = parse([PIN + " " * 11 + "4711"], options={"account_column": "caller_name"})
    assert (r.account, r.extra["caller_name"]) == ("", "4711")
    (r,) = parse([PIN + " " * 11 + "4711"])  # auto: digits are an account code
    assert r.account == "4711"
    with pytest.raises(ValueError, match="account_column"):
        NecSVParser(ParserContext(options={"account_column": "name"}))


def test_outgoing_record_keeps_its_account_code_when_names_are_on() -> None:
    (r,) = parse([POT], options={"account_column": "caller_name"})
    assert r.account == "4711"


def test_next_line_after_an_emitted_record_is_skipped() -> None:
    parser = NecSVParser(ParserContext(timezone=TZ))
    assert parser.parse(PIN + " " * 11 + "J SMITH")
    assert parser.parse("NEXT J SMITH") is None


def test_name_cut_at_a_word_end_keeps_one_space() -> None:
    parser = NecSVParser(ParserContext(timezone=TZ))
    parser.parse(NAMED)
    parser.parse(REST)  # line-feed mode from here on
    assert parser.parse(PIN.ljust(63) + "NEC INFRONTIA   ") == ()
    (r,) = parser.parse("NEXT CORP") or ()
    assert r.extra["caller_name"] == "NEC INFRONTIA CORP"
