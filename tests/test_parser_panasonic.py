"""Panasonic KX-TDA/TDE/NS SMDR parser (`panasonic`): the KX-NS1000 manual's examples, page headers, the
day/month order (never a silent guess) and the ``RC`` line.

`MANUAL` is the manual's Pattern A example values laid out in the documented column widths (pbx-formats.md,
section 4); the real KX-TDE lines are in tests/fixtures/panasonic (see its SOURCES.md), reviewed in
test_golden_reviewed_hipath_panasonic.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.errors import ParseError
from smdrd.parsers.panasonic import HEADER, PanasonicParser
from smdrd.parsing import ParserContext, Undecided
from smdrd.record import CallRecord, Direction

#: the manual is the US one (month/day/year, as the example's 01/02/02 cannot show by itself).
US = ParserContext(country="US")

MANUAL = [
    "01/02/02 10:03AM 1200  01 <I>12345678901234567890   5'15 00:00'00               ",
    "01/02/02 10:07AM 1200  01 <I>                       0'05 00:01'05 9876543210    ",
    "01/02/02 10:15AM 1200  01 1234567890123456               00:01'05 9876543210    ",
    "01/02/02 10:30AM *123  01 1234567890123456               00:01'05 9876543210    ",
    "01/02/02 01:07PM 1234  01 <I>ABC COMPANY12345678    0'05 00:01'05 9876543210    ",
    "01/02/02 01:07PM 1234  01 <D>CDE9876<I>Q COMPANY    0'05 00:01'05 9876543210    ",
]
#: the same first row as printed in pbx-formats.md (its reconstruction widened the dial number by 3 columns).
RECONSTRUCTED = "01/02/02 10:03AM 1200  01 <I>12345678901234567890      5'15 00:00'00                "


def one(line: str, parser: PanasonicParser | None = None) -> CallRecord:
    records = (parser or PanasonicParser(US)).parse(line)
    assert records is not None
    assert len(records) == 1
    return records[0]


def test_unanswered_incoming_call() -> None:
    """Row 1: an incoming call from 12345678901234567890 rang 5'15 and was not answered."""
    r = one(MANUAL[0])
    assert r.direction is Direction.INBOUND
    assert (r.extension, r.trunk, r.number) == ("1200", "01", "12345678901234567890")
    assert (r.ring, r.duration, r.answered) == (315, 0, False)
    assert r.start == datetime(2002, 1, 2, 10, 3) - timedelta(seconds=315)  # the time printed is the end


def test_incoming_call_without_caller_id() -> None:
    """Row 2: ``<I>`` and nothing: a withheld number is "", answered after 5 s, talked 1'05, account kept."""
    r = one(MANUAL[1])
    assert (r.direction, r.number, r.ring, r.duration, r.answered) == (Direction.INBOUND, "", 5, 65, True)
    assert r.account == "9876543210"
    assert r.start == datetime(2002, 1, 2, 10, 7) - timedelta(seconds=70)


def test_outgoing_call() -> None:
    """Row 3: extension 1200 dialled 1234567890123456 on CO 01 for 1'05."""
    r = one(MANUAL[2])
    assert (r.direction, r.extension, r.number, r.trunk) == (Direction.OUTBOUND, "1200", "1234567890123456",
                                                            "01")
    assert (r.ring, r.duration) == (None, 65)
    assert r.start == datetime(2002, 1, 2, 10, 13, 55)


def test_verified_code_extension() -> None:
    """Row 4: ``*123`` in the extension column is a verified code, kept as written and flagged."""
    r = one(MANUAL[3])
    assert r.extension == "*123"
    assert r.extra["ext_code"] == "*"


def test_pm_time_and_caller_name() -> None:
    """Row 5: 01:07PM is 13:07; the caller ID name and number are the number."""
    r = one(MANUAL[4])
    assert r.start == datetime(2002, 1, 2, 13, 7) - timedelta(seconds=70)
    assert r.number == "ABC COMPANY12345678"


def test_ddi_goes_to_extra() -> None:
    """Row 6: ``<D>CDE9876<I>Q COMPANY``: the DDI is kept in extra, the caller is the number."""
    r = one(MANUAL[5])
    assert (r.direction, r.number, r.extra["ddi"]) == (Direction.INBOUND, "Q COMPANY", "CDE9876")


def test_reconstructed_reference_line_is_read_by_its_duration() -> None:
    """A printout whose dial number column is wider still parses (fields found around the duration)."""
    r = one(RECONSTRUCTED)
    assert (r.number, r.ring, r.duration) == ("12345678901234567890", 315, 0)


def test_internal_call_and_codes() -> None:
    """``EXT`` + number is internal; CD ``TR`` is a transfer; 24-hour times are accepted."""
    line = f"12/31/23 23:59   101   00 {'EXT102':<25} 0'03 00:02'00 {'':10} TR"
    r = one(line)
    assert (r.direction, r.extension, r.number, r.trunk, r.transfer) == (Direction.INTERNAL, "101", "102", "",
                                                                         "TR")
    assert r.start == datetime(2023, 12, 31, 23, 59) - timedelta(seconds=123)


def test_day_month_order_option() -> None:
    """``date_order = "dmy"`` reads 02/01/02 as 2 January."""
    parser = PanasonicParser(ParserContext(options={"date_order": "dmy"}))
    r = one(MANUAL[2].replace("01/02/02", "02/01/02"), parser)
    assert r.start.date() == datetime(2002, 1, 2).date()


@pytest.mark.parametrize("line", [
    HEADER,
    "  Date     Time    Ext CO        Dial Number              Ring Duration  Acc code  CD",
    "-" * 80,
    "SMDR",
    "Enter Password:",
    "01/02/02 10:03AM 1200  01 LOG IN                         00:00'00               ",
])
def test_page_headers_prompts_and_status_records_are_skipped(line: str) -> None:
    """Page headers repeat mid-stream; they, login echoes and status records are not calls nor errors."""
    assert PanasonicParser().parse(line) is None


def test_clock_change_marker_is_a_parse_error() -> None:
    """``**/**/** **:****`` (clock changed during the call) has no time: a ParseError naming the date."""
    with pytest.raises(ParseError) as exc:
        PanasonicParser().parse("**/**/** **:****" + MANUAL[2][16:])
    assert exc.value.field == "date"


def test_detect() -> None:
    assert PanasonicParser.detect([HEADER, "-" * 80, *MANUAL]) > 0.8
    assert PanasonicParser.detect(["011416 1508 00005 1    9  102"]) == 0.0


# --- the day/month order (issue 13, item 3) ---------------------------------------------------------------------

#: a real KX-TDE line (tests/fixtures/panasonic): 2 November 2011 on a day/month (Iranian) site.
REAL_TR = "02/11/11 01:06PM   130 09 <I>02614301566            0'00 00:00'56            TR "
REAL_RC = "02/11/11 01:05PM   501 09 <I>02614301566                                     RC "


def parser_for(country: str | None = None, **options: object) -> PanasonicParser:
    return PanasonicParser(ParserContext(country=country, options=options))


def test_site_country_decides_an_ambiguous_date() -> None:
    """02/11/11 on a day/month site is 2 November, not 11 February (the old month/day default)."""
    assert one(REAL_TR, parser_for("IR")).start.date() == datetime(2011, 11, 2).date()
    assert one(REAL_TR, parser_for("US")).start.date() == datetime(2011, 2, 11).date()


def test_a_day_above_12_decides_and_the_order_holds_for_the_stream() -> None:
    """The first date with a day above 12 decides the order, even against the site's country."""
    parser = parser_for("US")
    assert one(REAL_TR.replace("02/11/11", "13/11/11"), parser).start.date() == datetime(2011, 11, 13).date()
    assert one(REAL_TR, parser).start.date() == datetime(2011, 11, 2).date()
    (order, _) = parser.choices()
    assert (order.option, order.value) == ("date_order", "dmy")
    assert "decided by the data: 13/11/11" in order.reason


def test_a_date_the_chosen_order_cannot_read_names_the_option() -> None:
    """A day/month PBX on a site whose country prints month/day: the first day above 12 is an error that says
    to set date_order, not a silent swap."""
    parser = parser_for("US")
    one(REAL_TR, parser)  # 11 February, from the country
    with pytest.raises(ParseError) as err:
        parser.parse(REAL_TR.replace("02/11/11", "13/11/11"))
    assert err.value.field == "date"
    assert 'date_order = "dmy"' in err.value.reason and "country US" in err.value.reason


def test_explicit_order_is_kept_and_a_contradicting_date_names_the_option() -> None:
    parser = parser_for("GB", date_order="mdy")
    assert one(REAL_TR, parser).start.date() == datetime(2011, 2, 11).date()
    with pytest.raises(ParseError, match='date_order = "dmy"'):
        parser.parse(REAL_TR.replace("02/11/11", "25/11/11"))


def test_nothing_to_decide_the_order_is_an_undecided_line_naming_the_option() -> None:
    """No option, no day above 12 and no country (``smdrd parse`` without ``--country``): an error, never a
    guess; it is a ParseError like any other."""
    with pytest.raises(Undecided, match="date_order") as err:
        parser_for().parse(REAL_TR)
    assert isinstance(err.value, ParseError)
    (order, time) = parser_for().choices()
    assert order.value == "" and "no site country" in order.reason
    assert (time.option, time.value) == ("time_is_end", "true")


def test_choices_say_the_country_order_before_any_data() -> None:
    """What check-config prints for a Panasonic source."""
    (order, _) = parser_for("AU").choices()
    assert order.value == "" and "country AU: dmy" in order.reason
    assert str(parser_for("GB", date_order="dmy").choices()[0]) == (
        'date_order = dmy: set by the option (date_order = "dmy")')


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="date_order"):
        parser_for(date_order="ymd")
    with pytest.raises(ValueError, match="time_is_end"):
        parser_for(time_is_end="yes")


def test_start_time_models() -> None:
    """KX-TEA/TES print the start of the call: ``time_is_end = false`` takes the printed time as the start."""
    r = one(REAL_TR, parser_for("IR", time_is_end=False))
    assert r.start == datetime(2011, 11, 2, 13, 6)
    assert r.duration == 56


def test_a_transferred_call_s_number_stops_at_the_dash() -> None:
    """``-``: the digits after it were entered by the transfer target (KX-TDA Feature Guide, Dial Number), so the
    number is the one dialled before it, which rates as itself; the rest is kept in ``extra``."""
    r = one(f"01/02/02 12:07PM 1234  01 {'0123456789-201':<25}      00:02'00            TR")
    assert (r.direction, r.number, r.transfer) == (Direction.OUTBOUND, "0123456789", "TR")
    assert r.extra["after_transfer"] == "201"


def test_kx_ta_incoming_marker_is_an_incoming_call() -> None:
    """KX-TA/TEA print ``< incoming >`` where TDA/TDE/NS print ``<I>`` (KX-TA616 manual's printout, pbx-formats.md
    section 4 (b)): an incoming call with no caller ID, not a call dialled to the text."""
    r = one(f"12/31/23 12:53PM 103   02 {'< incoming >':<25}      00:01'43", parser_for("US", time_is_end=False))
    assert (r.direction, r.number, r.extension, r.trunk, r.duration) == (Direction.INBOUND, "", "103", "02", 103)
    assert r.start == datetime(2023, 12, 31, 12, 53)


def test_rc_line_is_skipped_not_an_error() -> None:
    """``RC`` (an incoming call arriving) is printed before the call's real record: no call, no error."""
    assert parser_for().parse(REAL_RC) is None
    assert PanasonicParser(US).parse(MANUAL[0][:77] + "RC") is not None  # RC after a duration is a record


@given(st.lists(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), min_size=1, max_size=12),
       st.sampled_from(["mdy", "dmy"]))
@settings(max_examples=200, deadline=None)
def test_property_the_data_alone_never_gives_a_wrong_date(days: list[date], printed: str) -> None:
    """Whatever order the PBX prints, a parser with no option and no country never reads a date wrong: each
    line gives its true date or is an error that names date_order (until a day above 12 decides)."""
    parser = PanasonicParser()
    for day in days:
        text = day.strftime("%m/%d/%y" if printed == "mdy" else "%d/%m/%y")
        reason = ""
        try:
            r = one(REAL_TR.replace("02/11/11", text), parser)
        except ParseError as exc:
            reason = exc.reason
        if reason:
            assert "date_order" in reason
        else:
            assert r.start.date() == day


@given(st.lists(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), min_size=1, max_size=12),
       st.sampled_from(["US", "GB", "IR", "AU", "CA"]))
@settings(max_examples=200, deadline=None)
def test_property_the_country_s_order_reads_every_date(days: list[date], country: str) -> None:
    """A PBX printing its country's order (as the manuals say it does) is read right, every line."""
    printed = "%m/%d/%y" if country in ("US", "CA") else "%d/%m/%y"
    parser = parser_for(country)
    for day in days:
        assert one(REAL_TR.replace("02/11/11", day.strftime(printed)), parser).start.date() == day
