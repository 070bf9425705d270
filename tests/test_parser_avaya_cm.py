"""Avaya CM CDR parser (`avaya-cm`): real capture, condition codes, G-record merge."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.avaya_cm import AvayaCMParser
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

FIXTURES = Path(__file__).parent / "fixtures" / "avaya-cm"
RAW = (FIXTURES / "avaya.smdr").read_bytes().decode("ascii").split("\r\n")
REAL = [line for line in RAW if line]


def parse_one(line: str, parser: AvayaCMParser | None = None) -> CallRecord:
    records = (parser or AvayaCMParser()).parse(line)
    assert records is not None
    assert len(records) == 1
    return records[0]


def test_header_record_is_skipped_not_an_error() -> None:
    """CM's link-up header (``HH:MM MM/DD`` + NULs) must not count as a bad line."""
    parser = AvayaCMParser()
    assert parser.parse("15:04 01/14") is None
    assert parser.parse("15:04 01/14\r\n\x00\x00\x00") is None


def test_outgoing_attendant_record_fields() -> None:
    """Line 1 of the real capture: condition 1, extension 4999 dialled 620666# on trunk access code 102."""
    r = parse_one(REAL[0])
    assert r.start == datetime(2016, 1, 14, 15, 8) - timedelta(seconds=5)
    assert r.duration == 5
    assert r.ring is None
    assert r.direction is Direction.OUTBOUND
    assert r.extension == "4999"
    assert r.number == "620666#"
    assert r.trunk == "102"
    assert r.answered
    assert r.extra == {"code_dial": "9", "code_used": "102", "out_crt_id": "013", "isdn_cc": "0", "ppm": "0",
                       "condition": "1"}


def test_incoming_record_fields() -> None:
    """Line 3: condition 9, 1111111111 called 6180 on incoming trunk 102, circuit 002."""
    r = parse_one(REAL[2])
    assert r.start == datetime(2016, 1, 14, 15, 9) - timedelta(seconds=4)
    assert r.duration == 4
    assert r.direction is Direction.INBOUND
    assert r.extension == "6180"
    assert r.number == "1111111111"
    assert r.trunk == "102"
    assert r.extra["in_crt_id"] == "002"
    assert r.answered


def test_ars_outgoing_fields() -> None:
    """Line 4: condition 7 (ARS), 6180 dialled 6888 over trunk access code 122, code dialled 14."""
    r = parse_one(REAL[3])
    assert (r.direction, r.extension, r.number, r.trunk, r.duration) == (Direction.OUTBOUND, "6180", "6888",
                                                                         "122", 4)
    assert r.extra["code_dial"] == "14"
    assert r.extra["out_crt_id"] == "007"


def test_long_incoming_call_start_is_end_minus_duration() -> None:
    """Line 5: a 1033 s call stamped 15:12 started at 14:54:47 (the time field is the end of the call)."""
    r = parse_one(REAL[4])
    assert r.start == datetime(2016, 1, 14, 14, 54, 47)
    assert r.duration == 1033
    assert (r.extension, r.number) == ("6181", "2222222222")


def test_outgoing_international_fields() -> None:
    """Line 8: 6168 dialled 006666666666# via ARS on trunk 102 circuit 014."""
    r = parse_one(REAL[7])
    assert (r.direction, r.extension, r.number, r.trunk, r.duration) == (Direction.OUTBOUND, "6168",
                                                                         "006666666666#", "102", 28)
    assert r.extra["out_crt_id"] == "014"


def test_g_ring_record_is_merged_into_its_call() -> None:
    """Lines 6-7: the G record (2 s ringing at VDN 6100) and the answered call make ONE call, ring 2 s."""
    parser = AvayaCMParser()
    assert parser.parse(REAL[5]) == ()
    r = parse_one(REAL[6], parser)
    assert r.direction is Direction.INBOUND
    assert (r.extension, r.number, r.trunk) == ("0", "3333333333", "102")
    assert r.duration == 41
    assert r.ring == 2
    assert r.start == datetime(2016, 1, 14, 15, 13) - timedelta(seconds=43)
    assert r.extra["vdn"] == "6100"
    assert r.extra["ring_condition"] == "G"
    assert parser.flush() == ()


def test_unmatched_g_record_comes_out_at_flush() -> None:
    """A G record whose call record never came is not lost at the end of the stream."""
    parser = AvayaCMParser()
    assert parser.parse(REAL[5]) == ()
    held = parser.flush()
    assert len(held) == 1
    assert (held[0].ring, held[0].duration, held[0].answered) == (2, 0, True)


def test_whole_capture_parses_without_errors() -> None:
    """Every record of the real capture (with its header) parses: 14 lines, 2 G records merged, 12 calls."""
    raw = (FIXTURES / "avaya_header.smdr").read_bytes()
    parser = AvayaCMParser()
    out: list[CallRecord] = []
    for line in raw.replace(b"\x00", b"\n").decode("ascii").splitlines():
        out.extend(parser.parse(line) or ())
    out.extend(parser.flush())
    assert len(out) == 12
    assert sum(r.direction is Direction.INBOUND for r in out) == 5


def test_condition_h_is_an_unanswered_ring() -> None:
    """An H record (abandoned while ringing) is a missed call: not answered, its duration is ring time."""
    line = REAL[5].replace(" G ", " H ", 1)
    r = parse_one(line)
    assert not r.answered
    assert (r.duration, r.ring) == (0, 2)


def test_custom_layout_option() -> None:
    """A site's own customized layout (format_options.layout) is read by its field names and widths."""
    layout = "date time sec-dur cond-code dialed-num:10 clg-num:6"
    parser = AvayaCMParser(ParserContext(options={"layout": layout}))
    r = parse_one("011416 1508 00065 7 0612345678   4999", parser)
    assert (r.direction, r.extension, r.number, r.duration) == (Direction.OUTBOUND, "4999", "0612345678", 65)


def test_start_time_option() -> None:
    """With ``time = "start"`` the time field is the call's start."""
    r = parse_one(REAL[4], AvayaCMParser(ParserContext(options={"time": "start"})))
    assert r.start == datetime(2016, 1, 14, 15, 12)


def test_detect_prefers_real_capture() -> None:
    """`--format auto` recognises a CM capture."""
    assert AvayaCMParser.detect(["15:04 01/14", *REAL[:5]]) > 0.8
    assert AvayaCMParser.detect(["2017/07/01 08:13:24,00:00:20,7,214,O,215"]) == 0.0


def test_bad_date_names_the_field() -> None:
    """A corrupt date says which field is wrong."""
    with pytest.raises(ParseError) as exc:
        AvayaCMParser().parse("13" + REAL[0][2:])
    assert exc.value.field == "date"


def test_date_order_is_decided_by_the_data_or_the_site_country() -> None:
    """CM prints MMDDYY or DDMMYY as its CDR form says: 011416 decides month first (no month 14); an ambiguous
    first date (010216) takes the site's country, and without one it is an error naming date_order (issue 13)."""
    parser = AvayaCMParser()
    assert parse_one(REAL[0], parser).start.date() == datetime(2016, 1, 14).date()
    (order, time) = parser.choices()
    assert (order.option, order.value, time.value) == ("date_order", "mdy", "end")
    assert "decided by the data: 011416" in order.reason
    ambiguous = "010216" + REAL[0][6:]
    assert parse_one(ambiguous, AvayaCMParser(ParserContext(country="GB"))).start.date() == datetime(
        2016, 2, 1).date()
    assert parse_one(ambiguous, AvayaCMParser(ParserContext(country="US"))).start.date() == datetime(
        2016, 1, 2).date()
    with pytest.raises(ParseError, match="date_order"):
        AvayaCMParser().parse(ambiguous)


def test_a_date_the_chosen_order_cannot_read_names_date_order() -> None:
    parser = AvayaCMParser(ParserContext(options={"date_order": "dmy"}))
    with pytest.raises(ParseError, match='date_order = "mdy"') as exc:
        parser.parse(REAL[0])
    assert exc.value.field == "date"


def test_a_record_whose_columns_are_shifted_is_an_error_not_a_call() -> None:
    """Text pushed across the fixed columns (here 16 nines written into the duration) must not come out as a
    call whose extension is '999 7    9 9003': a number field holding several words names the mismatch."""
    good = "010526 0912 04321 7    9 9003          600907686        217             001           0     0"
    polish = AvayaCMParser(ParserContext(country="PL"))  # day/month, as the simulator's Polish PBX writes
    assert parse_one(good, polish).number == "600907686"
    shifted = good.replace("4321", "9" * 20, 1)
    with pytest.raises(ParseError, match="columns do not match the layout") as caught:
        AvayaCMParser(ParserContext(country="PL")).parse(shifted)
    assert caught.value.field in ("clg-num", "dialed-num")
