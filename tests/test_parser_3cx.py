"""3CX CDR parser: the real line field by field, configurable field order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.threecx import DEFAULT_FIELDS, ThreeCXParser
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

SAMPLE = Path(__file__).parent / "fixtures" / "3cx" / "cdr-288831.smdr"
TZ = ZoneInfo("Europe/Stockholm")
REAL = SAMPLE.read_text(encoding="utf-8").splitlines()[0]


def parse_one(line: str, **options: object) -> CallRecord:
    got = ThreeCXParser(ParserContext(timezone=TZ, options=options)).parse(line)
    assert got is not None
    (record,) = got
    return record


def test_real_line_fields() -> None:
    """The one real 3CX CDR: extension 10016 calls +46703014082 over line 10020, 9 s ring, 25 s talk."""
    r = parse_one(REAL)
    assert r.start == datetime(2024, 6, 17, 5, 59, 49, tzinfo=UTC)
    assert r.start.utcoffset() == timedelta(hours=2)
    assert (r.duration, r.ring, r.answered) == (25, 9, True)
    assert r.direction is Direction.OUTBOUND
    assert (r.extension, r.number, r.trunk) == ("10016", "+46703014082", "10020")
    assert r.call_id == "4cc2c72490010000_26808"
    assert r.extra["historyid"] == "Call 288831"
    assert r.extra["chain"] == "Chain: Ext.10016;+46703014082;"
    assert r.extra["bill_cost"] == "0.43"
    assert r.extra["reason_terminated"] == "TerminatedBySrc"


def test_local_time_option() -> None:
    """``utc = false``: a 3CX set to write local times keeps them as written."""
    r = parse_one(REAL, utc=False)
    assert r.start == datetime(2024, 6, 17, 5, 59, 49, tzinfo=TZ)


def test_field_order_option() -> None:
    """An administrator who reordered the CDR fields lists them in the options; the line is read by name."""
    fields = list(DEFAULT_FIELDS)
    fields[0], fields[1] = fields[1], fields[0]
    row = REAL.split(",")
    row[0], row[1] = row[1], row[0]
    r = parse_one(",".join(row), fields=fields)
    assert r.call_id == "4cc2c72490010000_26808"
    assert r.extra["historyid"] == "Call 288831"


def test_inbound_unanswered_call() -> None:
    """A missed call from a line to an extension: inbound, ring until the end, no talk."""
    line = ("Call 5,abc_1,00:00:00,2024/06/17 06:00:00,,2024/06/17 06:00:20,TerminatedBySrc,+4670111,10016,"
            "10020,10016,10016,,10016,10016,,,,,Chain: +4670111;Ext.10016;,Line,Extension,Extension,,,,,")
    r = parse_one(line)
    assert (r.direction, r.extension, r.number, r.trunk) == (Direction.INBOUND, "10016", "+4670111", "10020")
    assert (r.duration, r.ring, r.answered) == (0, 20, False)


def test_header_line_is_skipped() -> None:
    assert ThreeCXParser().parse(",".join(DEFAULT_FIELDS)) is None


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="fields"):
        ThreeCXParser(ParserContext(options={"fields": "historyid,callid"}))
    with pytest.raises(ValueError, match="time_start"):
        ThreeCXParser(ParserContext(options={"fields": ["historyid", "from_no"]}))
    with pytest.raises(ValueError, match="utc"):
        ThreeCXParser(ParserContext(options={"utc": "yes"}))


def test_detect() -> None:
    assert ThreeCXParser.detect([REAL]) > 0.9
    assert ThreeCXParser.detect(['"","1","2"']) == 0.0


# --- issue 13: a second real line, 20 fields, an inbound queue call answered by another extension -------------

PASSIVE = Path(__file__).parent / "fixtures" / "3cx" / "passive-socket-612504.smdr"


def test_inbound_call_belongs_to_the_extension_that_finally_took_it() -> None:
    """Without final_type among the fields, a final number ``Ext.504`` is the extension that answered; the queue
    extension first rung (960) was reported instead."""
    r = parse_one(PASSIVE.read_text(), fields=list(DEFAULT_FIELDS[:20]))
    assert r.direction is Direction.INBOUND
    assert (r.extension, r.number, r.trunk) == ("504", "+353861777149", "10021")
    assert (r.duration, r.ring, r.transfer) == (336, 0, "QFwdToDNA")


def test_final_number_that_is_not_an_extension_keeps_the_first_called() -> None:
    line = PASSIVE.read_text().replace(",Ext.504,504,", ",+35312345678,10021,")
    r = parse_one(line, fields=list(DEFAULT_FIELDS[:20]))
    assert r.extension == "960"


def test_default_order_cut_after_chain_reads_without_options() -> None:
    """A site that sends only the first 20 default fields needs no ``fields`` option: the ``Chain:`` marker in
    the 20th field proves the order. Cut before it, the line is still an error naming the count."""
    r = parse_one(PASSIVE.read_text().rstrip("\n"))
    assert (r.extension, r.number) == ("504", "+353861777149")
    with pytest.raises(ParseError, match="expected 27"):
        parse_one(",".join(PASSIVE.read_text().split(",")[:19]))
