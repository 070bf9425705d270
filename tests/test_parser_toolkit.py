"""The public parser toolkit (``smdrd.parsers.toolkit``): layouts as data, errors naming the field, detect, render."""

from __future__ import annotations

from datetime import datetime

import pytest

from smdrd.errors import ParseError
from smdrd.parsers import _fields, toolkit
from smdrd.parsers.toolkit import (
    Column,
    Layout,
    Slice,
    detect_from_layout,
    digit_text,
    hms_seconds,
    one_of,
    seconds,
    uint,
    ymd_hms,
)

CSV = Layout("acme", (
    Column("start", 0, lambda t: ymd_hms(t, None)),
    Column("duration", 1, hms_seconds),
    Column("ring", 2, seconds, optional=True, default=0),
    Column("dir", 3, one_of("I", "O")),
    Column("extension", 4),
    Column("call_id", 6, digit_text(7), optional=True),
))
FIXED = Layout("fixie", (
    Slice("type", 0, 3, one_of("IN", "OUT")),
    Slice("extension", 4, 9),
    Slice("duration", 10, 18, hms_seconds, align=">"),
    Slice("flag", 19, 20, strip=False),
    Slice("account", 21, 27, optional=True, default="-"),
))


def test_columns_extract_converted_values_by_name() -> None:
    v = CSV.extract("2024/02/29 23:59:58,00:01:05, ,O,214,x,12\r\n")
    assert v == {"start": datetime(2024, 2, 29, 23, 59, 58), "duration": 65, "ring": 0, "dir": "O",
                 "extension": "214", "call_id": "12"}


def test_optional_columns_past_the_end_of_a_row_take_their_default() -> None:
    assert CSV.min_fields == 5
    v = CSV.extract(["2024/02/29 23:59:58", "00:00:00", "", "I", "1"])
    assert (v["ring"], v["call_id"]) == (0, "")


@pytest.mark.parametrize(("line", "field", "reason"), [
    ("2024/13/01 00:00:00,00:00:01,0,O,1", "start", "not a valid date and time"),
    ("2024/02/01 00:00:00,00:0x:01,0,O,1", "duration", "expected HH:MM:SS"),
    ("2024/02/01 00:00:00,00:00:01,99999999,O,1", "ring", "expected a whole number up to"),
    ("2024/02/01 00:00:00,00:00:01,0,X,1", "dir", "expected I or O, got 'X'"),
    ("2024/02/01 00:00:00,00:00:01,0,O,1,,12345678", "call_id", "expected a number"),
    ("2024/02/01 00:00:00,00:00:01,0,O", None, "expected at least 5 comma-separated fields, got 4"),
])
def test_a_bad_field_is_a_parse_error_naming_it(line: str, field: str | None, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        CSV.extract(line)
    assert (info.value.format, info.value.field) == ("acme", field)
    assert reason in info.value.reason


def test_the_first_bad_field_in_layout_order_is_reported() -> None:
    with pytest.raises(ParseError) as info:
        CSV.extract("bad,bad,bad,bad,1")
    assert info.value.field == "start"


def test_quoted_layouts_read_csv_and_render_it_back() -> None:
    lay = Layout("q", (Column("a", 0), Column("b", 1, seconds), Column("c", 2)), quoted=True, min_fields=3)
    assert lay.extract('"x,y",5,"say ""hi"""') == {"a": "x,y", "b": 5, "c": 'say "hi"'}
    assert lay.extract(lay.render({"a": "x,y", "b": "5", "c": 'say "hi"'})) == {"a": "x,y", "b": 5,
                                                                               "c": 'say "hi"'}
    with pytest.raises(ParseError) as info:
        Layout("q", (Column("a", 0),), quoted=True).extract("a\rb")
    assert info.value.field is None


def test_a_config_described_layout_strips_columns_and_keeps_a_blank_last_tab_field() -> None:
    """What the ``custom`` format needs: its own quote character, stripped values, and a tab-separated line whose
    last column is blank still has all its columns."""
    lay = Layout("t", (Column("a", 0, strip=True), Column("b", 1, seconds, strip=True, optional=True, default=0),
                       Column("c", 2, strip=True)), separator="\t", quoted=True, quotechar="'", rstrip=False)
    assert lay.extract("'x\ty' \t 5 \t\r\n") == {"a": "x\ty", "b": 5, "c": ""}
    assert lay.extract(" a \t \t") == {"a": "a", "b": 0, "c": ""}
    assert lay.render({"a": "x\ty", "b": "5"}) == "'x\ty'\t5\t"
    assert lay.with_converters(b=uint).quotechar == "'"
    with pytest.raises(ParseError) as info:
        Layout("t", (Column("a", 0), Column("c", 2)), separator="\t").extract("x\ty\t")
    assert info.value.reason == "expected at least 3 tab-separated fields, got 2"


def test_other_separators_are_named_in_errors() -> None:
    lay = Layout("p", (Column("a", 0), Column("b", 1)), separator="|")
    assert lay.extract("x|y") == {"a": "x", "b": "y"}
    with pytest.raises(ParseError) as info:
        lay.extract("x")
    assert info.value.reason == "expected at least 2 |-separated fields, got 1"


def test_slices_extract_strip_and_keep_meaningful_blanks() -> None:
    v = FIXED.extract("IN  214   00:00:09  ")
    assert v == {"type": "IN", "extension": "214", "duration": 9, "flag": " ", "account": "-"}
    with pytest.raises(ParseError) as info:
        FIXED.extract("IN  214   00:00:xx")
    assert info.value.field == "duration"
    with pytest.raises(TypeError):
        FIXED.extract(["IN"])


def test_render_is_the_inverse_where_the_layout_is_simple() -> None:
    line = FIXED.render({"type": "OUT", "extension": "2140", "duration": "0:00:05", "flag": "*",
                         "account": "acct-toolong"})
    assert line == "OUT 2140   0:00:05 * acct-t"
    assert FIXED.extract(line)["duration"] == 5
    assert CSV.render({"start": "2024/01/01 00:00:00", "duration": "00:00:01", "dir": "I", "extension": "1"}) \
        == "2024/01/01 00:00:00,00:00:01,,I,1,,"
    assert CSV.render({"extension": "1"}, width=8).count(",") == 7


def test_detect_is_the_share_of_sample_lines_that_extract() -> None:
    good = "2024/02/01 00:00:00,00:00:01,0,O,1"
    assert detect_from_layout(CSV, [good, good]) == 0.95
    assert detect_from_layout(CSV, [good, "junk"], confidence=0.8) == 0.4
    assert detect_from_layout(CSV, ["HEADER", "", good], skip=lambda ln: ln.startswith("HEADER")) == 0.95
    assert detect_from_layout(CSV, ["", "HEADER"], skip=lambda ln: ln.startswith("HEADER")) == 0.0
    assert detect_from_layout(CSV, ["junk"] * 20 + [good] * 5) == 0.0  # only the first 20 lines count
    assert CSV.matches(good) and not CSV.matches("junk")


def test_with_converters_binds_context_without_changing_the_original() -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Warsaw")
    bound = CSV.with_converters(start=lambda t: ymd_hms(t, tz))
    line = "2024/02/01 00:00:00,00:00:01,0,O,1"
    assert bound.extract(line)["start"].tzinfo is tz
    assert CSV.extract(line)["start"].tzinfo is None
    with pytest.raises(ValueError, match="no field 'nope'"):
        CSV.with_converters(nope=str)


@pytest.mark.parametrize("fields", [
    (), (Column("a", 0), Slice("b", 0, 1)), (Column("a", 0), Column("a", 1)), (Slice("a", 3, 3),),
    (Column("a", -1),),
])
def test_inconsistent_layouts_are_refused(fields: tuple[Column | Slice, ...]) -> None:
    with pytest.raises(ValueError):
        Layout("x", fields)


def test_field_names_are_code_safe() -> None:
    """Names are only ever quoted into the generated extractor, never spliced in as code."""
    lay = Layout("x", (Column("a'); import os; ('", 0, seconds),))
    with pytest.raises(ParseError) as info:
        lay.extract("x")
    assert info.value.field == "a'); import os; ('"


def test_bounded_converters_are_the_shared_ones() -> None:
    for name in ("seconds", "hms_seconds", "uint", "ymd_hms", "digits", "check_year", "call_seconds",
                 "seconds_text", "MAX_CALL_SECONDS", "MAX_INT"):
        assert getattr(toolkit, name) is getattr(_fields, name), name
        assert name in toolkit.__all__


def test_computed_times_are_bounded_like_check_record() -> None:
    """Times a parser computes (end minus start) are refused with the words and field `check_record` uses."""
    from smdrd.record import CallRecord, Direction, check_record

    toolkit.check_call_seconds("acme", duration=0, ring=None)
    toolkit.check_call_seconds("acme", duration=toolkit.MAX_CALL_SECONDS, ring=5)
    for bad in ({"duration": toolkit.MAX_CALL_SECONDS + 1}, {"duration": 1, "ring": -1}):
        with pytest.raises(ParseError) as mine:
            toolkit.check_call_seconds("acme", **bad)
        record = CallRecord("acme", datetime(2024, 1, 1), bad["duration"], Direction.INBOUND, "1", "2",
                            ring=bad.get("ring"))
        with pytest.raises(ParseError) as theirs:
            check_record(record)
        assert (mine.value.field, mine.value.reason) == (theirs.value.field, theirs.value.reason)
