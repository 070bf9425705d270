"""Siemens HiPath / OpenScape Business parser: the manuals' examples in the GetAccount and ``|`` forms, and real
serial (V.24) lines (tests/fixtures/siemens-hipath, reviewed in test_golden_reviewed_hipath_panasonic.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.errors import ParseError
from smdrd.parsers.siemens_hipath import SiemensHiPathParser, call_type
from smdrd.parsing import ParserContext, detect_formats
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


# --- the serial (V.24) output (issue 13) ------------------------------------------------------------------------

#: real lines of tests/fixtures/siemens-hipath/quartx-v24.smdr (lines 10, 8, 58, 25).
SERIAL_IN = "11.04.1900:35:48  1   10400:0100:00:070876153281                           1"
SERIAL_RINGING = "11.04.1900:35:38  1   104             0876153281                           0"
SERIAL_TRANSFERRED = "31.01.2115:24:25  9   110     00:00:26353877629926                        35"
SERIAL_FULL = ("11.12.0008:23:23  4    16     00:05:2302317324856                       12 2"
               "                902725  841")
CONTROLS = "\x10\x02\x10\x03\x13\x11"


def test_serial_line_fields() -> None:
    """76 columns: date run into the time (the end), line, extension, ring mm:ss, duration, number, type."""
    (r,) = parse([SERIAL_IN])
    assert r.start == datetime(2019, 4, 11, 0, 35, 40, tzinfo=TZ)
    assert (r.duration, r.ring, r.answered, r.direction) == (7, 1, True, Direction.INBOUND)
    assert (r.extension, r.number, r.trunk, r.transfer) == ("104", "0876153281", "1", "")


def test_serial_units_msn_and_seizure_code() -> None:
    (r,) = parse([SERIAL_FULL])
    assert (r.duration, r.direction, r.extension, r.number, r.trunk) == (323, Direction.OUTBOUND, "16",
                                                                          "02317324856", "4")
    assert (r.extra["units"], r.extra["msn"], r.extra["seizure_code"]) == ("12", "902725", "841")


def test_serial_control_characters_before_the_date_are_dropped() -> None:
    """Real output sends DLE STX DLE ETX DC3 DC1 before some records; the record is read all the same."""
    (r,) = parse([CONTROLS + SERIAL_IN])
    assert (r.duration, r.extension) == (7, "104")
    assert parse([CONTROLS + SERIAL_RINGING]) == []


def test_ringing_information_is_not_a_call_in_either_form() -> None:
    """Type 0 is written as a call arrives (one line per called extension): skipped, the call comes later."""
    assert SiemensHiPathParser().parse(SERIAL_RINGING) is None
    assert SiemensHiPathParser().parse(COMPRESSED[0].replace("||1|", "||0|")) is None


@pytest.mark.parametrize(("code", "direction", "transfer"), [
    ("35", Direction.INBOUND, "transferred"),
    ("36", Direction.OUTBOUND, "transferred"),
    ("37", Direction.INBOUND, "transferred (external transfer)"),
    ("38", Direction.OUTBOUND, "transferred (external transfer)"),
    ("39", Direction.OUTBOUND, "transferred (forwarded to external)"),
])
def test_transfer_types_35_to_39_in_both_forms(code: str, direction: Direction, transfer: str) -> None:
    """Real HiPath output has them (they were "unknown call type"); read as 5 to 9 plus 30."""
    (serial,) = parse([SERIAL_TRANSFERRED[:74] + code])
    (piped,) = parse([COMPRESSED[0].replace("||1|", f"||{code}|")])
    for r in (serial, piped):
        assert (r.direction, r.transfer, r.extra["type"]) == (direction, transfer, code)


def test_unknown_and_disa_types() -> None:
    assert call_type("51") == (Direction.INBOUND, "", True)
    assert call_type("57") == (Direction.INBOUND, "external transfer", True)
    for bad in ("10", "34", "40", "87", "99"):
        with pytest.raises(ValueError, match="unknown call type"):
            call_type(bad)
    with pytest.raises(ParseError) as err:
        SiemensHiPathParser().parse(SERIAL_IN[:74] + "40")
    assert err.value.field == "type"


def test_short_serial_line_says_what_was_expected() -> None:
    with pytest.raises(ParseError, match="76 to 112 columns"):
        SiemensHiPathParser().parse(SERIAL_IN[:60])


def test_serial_lines_are_detected_and_parse() -> None:
    """`smdrd detect` scored these 0.90 and then every one failed to parse; now the claim is checked."""
    lines = [SERIAL_RINGING, SERIAL_IN, CONTROLS + SERIAL_RINGING, SERIAL_TRANSFERRED, SERIAL_FULL]
    assert SiemensHiPathParser.detect(lines) == pytest.approx(0.9)
    best = detect_formats(lines)[0]
    assert (best.format, best.rejected, best.records) == ("siemens-hipath", 0, 3)
    assert best.score == pytest.approx(0.9)


def test_choices_say_the_time_is_the_end() -> None:
    (choice,) = SiemensHiPathParser().choices()
    assert (choice.option, choice.value) == ("time_is_end", "true")
    (choice,) = SiemensHiPathParser(ParserContext(options={"time_is_end": False})).choices()
    assert choice.value == "false"



def serial_line(f: dict[str, Any]) -> str:
    """A serial record laid out by the manual's table (positions 1-87), independently of the parser."""
    ring, talk = f["ring"], f["talk"]
    ring_text = f"{ring // 60:02d}:{ring % 60:02d}" if ring is not None else ""
    talk_text = f"{talk // 3600:02d}:{talk // 60 % 60:02d}:{talk % 60:02d}" if talk is not None else ""
    return (f"{f['end']:%d.%m.%y%H:%M:%S}{f['line']:>3}{f['ext']:>6}{ring_text:<5}{talk_text:<8}"
            f"{f['number']:<25}{f['units']:>11}{f['code']:>2}").rstrip().ljust(76)


SERIAL_FIELDS = st.fixed_dictionaries({
    "end": st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0)),
    "line": st.integers(1, 999), "ext": st.text("0123456789", min_size=1, max_size=6),
    "ring": st.none() | st.integers(0, 59 * 60 + 59), "talk": st.none() | st.integers(0, 23 * 3600 + 3599),
    "number": st.text("0123456789", max_size=25), "units": st.sampled_from(["", "1", "12345678901"]),
    "code": st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 35, 36, 37, 38, 39, 51, 52]),
    "control": st.sampled_from(["", CONTROLS]),
})


@given(SERIAL_FIELDS)
@settings(max_examples=300, deadline=None)
def test_property_serial_records_read_back(f: dict[str, Any]) -> None:
    """Any serial record the manual's table allows is read field for field, control characters or not."""
    (r,) = parse([f["control"] + serial_line(f)])
    direction, transfer, _ = call_type(str(f["code"]))
    talk = f["talk"] or 0
    assert (r.direction, r.transfer, r.extension, r.number, r.trunk) == (direction, transfer, f["ext"],
                                                                           f["number"], str(f["line"]))
    assert (r.ring, r.duration) == (f["ring"], talk)
    assert r.start == f["end"].replace(tzinfo=TZ) - timedelta(seconds=talk + (f["ring"] or 0))
    assert r.answered == (f["talk"] is not None if direction is Direction.INBOUND else talk > 0)
    assert r.extra.get("units", "") == f["units"]
