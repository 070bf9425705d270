"""The ``custom`` format: layouts from options (CSV, fixed width), option checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.custom import DEFAULT_OPTIONS, CustomParser
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

TZ = ZoneInfo("Europe/Paris")
CSV_OPTIONS: dict[str, Any] = {
    "type": "csv",
    "columns": ["date", "time", "extension", "trunk", "number", "duration", "ring", "dir", "", "account"],
    "delimiter": ";",
    "date_format": "%d/%m/%Y",
    "duration_format": "hh:mm:ss",
    "skip": ["^Date"],
    "direction": {"field": "dir", "map": {"I": "inbound", "O": "outbound", "X": "internal"}},
}
FIXED_OPTIONS: dict[str, Any] = {
    "type": "fixed",
    "slices": {"start": [0, 11], "extension": [12, 16], "number": [17, 33], "duration": [34, 42]},
    "date_format": "%m/%d %H:%M",
    "duration_format": "hh:mm'ss",
    "direction": {"internal_max_digits": 4},
}


def parser(options: dict[str, Any], **kw: Any) -> CustomParser:
    return CustomParser(ParserContext(timezone=TZ, options=options, **kw))


def one(p: CustomParser, line: str) -> CallRecord:
    got = p.parse(line)
    assert got is not None
    (record,) = got
    return record


def test_csv_layout_fields() -> None:
    """A semicolon CSV PBX: every configured column lands in its field; ignored columns are dropped."""
    p = parser(CSV_OPTIONS)
    assert p.parse("Date;Time;Ext;Trunk;Number;Dur;Ring;Dir;x;Acc") is None
    r = one(p, "05/03/2024;14:02:09;201;T3;0612345678;00:03:15;7;O;junk;4711")
    assert r.start == datetime(2024, 3, 5, 14, 2, 9, tzinfo=TZ)
    assert (r.duration, r.ring, r.answered) == (195, 7, True)
    assert (r.direction, r.extension, r.number, r.trunk, r.account) == (
        Direction.OUTBOUND, "201", "0612345678", "T3", "4711")
    assert r.extra == {"dir": "O"}


def test_direction_map_rejects_unknown_values() -> None:
    with pytest.raises(ParseError) as err:
        parser(CSV_OPTIONS).parse("05/03/2024;14:02:09;201;T3;0612345678;00:03:15;7;Q;;")
    assert err.value.field == "dir"


def test_fixed_layout_without_year_and_number_length_rule() -> None:
    """Fixed-width slices, a date without a year (the context's), direction by number length."""
    p = parser(FIXED_OPTIONS, year=2023)
    r = one(p, "03/05 14:02 201  0612345678       00:03'15")
    assert r.start == datetime(2023, 3, 5, 14, 2, tzinfo=TZ)
    assert (r.direction, r.extension, r.number, r.duration) == (Direction.OUTBOUND, "201", "0612345678", 195)
    assert one(p, "03/05 14:02 201  203              00:00'15").direction is Direction.INTERNAL
    assert one(p, "03/05 14:02 201                   00:00'15").direction is Direction.INBOUND


@pytest.mark.parametrize(("change", "option"), [
    ({"type": "xml"}, "type"),
    ({"columns": "date,time"}, "columns"),
    ({"columns": ["time", "extension"]}, "columns"),
    ({"delimiter": ";;"}, "delimiter"),
    ({"quotechar": ";"}, "quotechar"),
    ({"duration_format": "fortnights"}, "duration_format"),
    ({"skip": ["("]}, "skip"),
    ({"direction": {"field": "nope", "map": {"I": "inbound"}}}, "direction"),
    ({"direction": {"field": "dir", "map": {"I": "sideways"}}}, "direction"),
    ({"direction": {}}, "direction"),
    ({"colums": []}, "colums"),
])
def test_bad_options_name_the_option(change: dict[str, Any], option: str) -> None:
    """A config mistake is reported at start, naming the option, not as a stream of bad lines."""
    with pytest.raises(ValueError, match=repr(option)):
        CustomParser(ParserContext(options={**CSV_OPTIONS, **change}))


def test_bad_slices_name_the_option() -> None:
    bad = {"start": [5, 2], "extension": [0, 1]}
    with pytest.raises(ValueError, match="slices"):
        CustomParser(ParserContext(options={**FIXED_OPTIONS, "slices": bad}))


def test_class_render_uses_default_options() -> None:
    """`smdrd simulate --format custom` renders the documented default layout, which parses back."""
    r = CallRecord("custom", datetime(2024, 1, 2, 3, 4, 5), 60, Direction.INBOUND, "201", "0612345678",
                   ring=3, trunk="T1")
    (line,) = CustomParser.render(r)
    assert line == "2024-01-02 03:04:05,60,3,201,0612345678,T1,I,"
    assert CustomParser(ParserContext(options=DEFAULT_OPTIONS)).parse(line) is not None


ESI_OPTIONS: dict[str, Any] = {
    "type": "csv", "columns": ["type", "date", "time", "duration", "extension", "number", "caller_name", "trunk"],
    "date_format": "%m%d%Y", "time_format": "%H%M%S", "duration_format": "hhmmss",
    "direction": {"field": "type", "map": {"I": "inbound", "O": "outbound"}},
}


def test_hhmmss_duration_reads_esi_csv() -> None:
    """ESI IVX CSV SMDR (the manual's example B, tests/fixtures/custom): duration ``HHMMSS`` without separators;
    a short one is an error naming the field, and a record renders back in the same form."""
    p = parser(ESI_OPTIONS)
    line = '"O","10312003","221502","020512","190","12125551212","","11"'
    r = one(p, line)
    assert (r.start, r.duration, r.direction, r.extension, r.number, r.trunk) == (
        datetime(2003, 10, 31, 22, 15, 2, tzinfo=TZ), 7512, Direction.OUTBOUND, "190", "12125551212", "11")
    assert p.render(r) == ['O,10312003,221502,020512,190,12125551212,,11']
    with pytest.raises(ParseError) as exc:
        p.parse(line.replace('"020512"', '"0512"'))
    assert exc.value.field == "duration"


def test_a_year_out_of_range_is_an_error_of_the_date() -> None:
    """``%Y`` accepts a two-digit year (``24`` is the year 24): the line is an error naming the date field, not a
    record that no real call can have."""
    with pytest.raises(ParseError) as exc:
        parser(CSV_OPTIONS).parse("05/03/24;14:02:09;201;T3;0612345678;00:03:15;7;O;junk;4711")
    assert exc.value.field == "date"
