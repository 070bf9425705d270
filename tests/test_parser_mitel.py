"""Mitel parsers: MiVoice Business / 3300 (`mitel-mivb`, real capture) and 5000 / MiVO 250 (`mitel-5000`,
the manual's example); their round-trip and fuzz properties are in test_conformance.py."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.mitel_5000 import Mitel5000Parser
from smdrd.parsers.mitel_mivb import STANDARD, MitelMiVBParser
from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

REAL = (Path(__file__).parent / "fixtures" / "mitel-mivb" / "mivb-extended-ani.smdr").read_text().splitlines()
#: the decoded record from the Mitel 5000 SMDR socket example (ripvannwinkler/smdr-logger-5000).
M5000_EXAMPLE = "TLC 11202 94003 961-9000                     08:36 00:00:03 $00.00              "


def one(parser: Parser, line: str) -> CallRecord:
    records = parser.parse(line)
    assert records is not None
    assert len(records) == 1
    return records[0]


def mivb(year: int | None = 2019, now: datetime | None = None) -> MitelMiVBParser:
    return MitelMiVBParser(ParserContext(year=year, now=now))


# --- MiVoice Business: real lines, field by field -------------------------------------------------------

def test_mivb_outgoing_record() -> None:
    """Line 3: station 9999 dialled 9999999999, answer-supervised, 6 min 59 s, long-call flag '-'."""
    r = one(mivb(), REAL[2])
    assert r.start == datetime(2019, 3, 5, 13, 38, 35)
    assert r.duration == 419
    assert r.ring is None
    assert r.direction is Direction.OUTBOUND
    assert (r.extension, r.number, r.trunk) == ("9999", "9999999999", "")
    assert r.answered
    assert r.extra["long_call"] == "-"
    assert r.extra["status"] == "A"
    assert r.extra["meter"] == "00000"
    assert r.extra["ani"] == "89029"
    assert r.extra["oli"] == "A0099648 A"


def test_mivb_incoming_record() -> None:
    """Line 2: an incoming call from 9999999999 (ANI) answered by 9907, 21 s, answered at once."""
    r = one(mivb(), REAL[1])
    assert r.start == datetime(2019, 3, 5, 13, 15, 9)
    assert (r.duration, r.ring) == (21, 0)
    assert r.direction is Direction.INBOUND
    assert (r.extension, r.number) == ("9907", "9999999999")
    assert r.answered
    assert r.extra["dnis"] == "9999"
    assert r.extra["long_call"] == "+"


def test_mivb_unanswered_incoming_record() -> None:
    """Line 6: time to answer '****' is a call nobody answered: it rang 6 s, talked 0 s."""
    r = one(mivb(), REAL[5])
    assert r.direction is Direction.INBOUND
    assert not r.answered
    assert (r.duration, r.ring) == (0, 6)
    assert r.extra["answer_time"] == "****"


def test_mivb_transferred_call() -> None:
    """Line 8: "call received from 9999999999 to 9000 and then transferred to 9025"."""
    r = one(mivb(), REAL[7])
    assert r.direction is Direction.INBOUND
    assert (r.extension, r.number) == ("9000", "9999999999")
    assert (r.duration, r.ring) == (43, 7)
    assert r.transfer == "T 9025"
    assert r.extra["third_party"] == "9025"


def test_mivb_call_to_9025_and_call_from_9025() -> None:
    """Lines 9 and 10: a call received by 9025, then one emitted by 9025 to 9999999999."""
    r = one(mivb(), REAL[8])
    assert (r.direction, r.extension, r.number, r.duration, r.ring) == (Direction.INBOUND, "9025",
                                                                         "9999999999", 5, 2)
    r = one(mivb(), REAL[9])
    assert r.start == datetime(2019, 3, 5, 17, 20, 37)
    assert (r.direction, r.extension, r.number, r.duration) == (Direction.OUTBOUND, "9025", "9999999999", 5)
    assert r.answered


def test_mivb_blank_duration_is_an_unanswered_attempt() -> None:
    """Line 1 has no duration at all: a 0 s call, not an error."""
    r = one(mivb(), REAL[0])
    assert (r.duration, r.answered, r.direction) == (0, False, Direction.OUTBOUND)


def test_mivb_every_real_line_parses() -> None:
    """All ten real records parse."""
    parser = mivb()
    assert all(parser.parse(line) for line in REAL)


def test_mivb_year_rolls_back_for_future_dates() -> None:
    """Without a configured year, a December record read in January is last year's."""
    line = REAL[2].replace("03/05", "12/30", 1)
    assert one(mivb(None, datetime(2025, 1, 3)), line).start.year == 2024
    assert one(mivb(None, datetime(2025, 1, 3)), REAL[2]).start.year == 2024
    assert one(mivb(None, datetime(2025, 6, 3)), REAL[2]).start.year == 2025


def test_mivb_standard_layout_doc_template() -> None:
    """The 90-column standard layout (hh:mm start with P flag) from the MiVB help page's template."""
    fields = {"date": "06/13", "time": "11:42", "pm": "P", "duration": "00:08:29", "calling": "214",
              "digits": "6135952122", "status": "A", "called": "T054", "system_id": "000"}
    chars = [" "] * 90
    for name, text in fields.items():
        a, _ = STANDARD[name]
        chars[a:a + len(text)] = text
    line = "".join(chars)
    assert line.startswith(" 06/13 11:42P 00:08:29 214  ")
    r = one(mivb(), line)
    assert r.start == datetime(2019, 6, 13, 23, 42)
    assert (r.direction, r.extension, r.number, r.trunk, r.duration) == (Direction.OUTBOUND, "214",
                                                                         "6135952122", "T054", 509)
    assert r.answered


def standard_line(time: str, pm: str) -> str:
    """A 90-column standard record (the help page's template) starting at ``time`` with the flag ``pm``."""
    fields = {"date": "04/15", "time": time, "pm": pm, "duration": "00:00:31", "calling": "214",
              "digits": "6135952122", "status": "A", "called": "T054", "system_id": "000"}
    chars = [" "] * 90
    for name, text in fields.items():
        a, _ = STANDARD[name]
        chars[a:a + len(text)] = text
    return "".join(chars)


def test_mivb_12_hour_clock_reads_12_without_the_pm_flag_as_after_midnight() -> None:
    """In 12-hour mode ``p`` marks PM, so a blank flag is AM: 12:05 is five past midnight, not noon. The clock
    is the option's, else the stream's: its first flag says 12-hour, its first hour past 12 says 24-hour."""
    assert one(mivb(), standard_line("12:05", "A")).start == datetime(2019, 4, 15, 0, 5)  # an explicit AM
    twelve = MitelMiVBParser(ParserContext(year=2019, options={"clock": "12h"}))
    assert one(twelve, standard_line("12:05", " ")).start == datetime(2019, 4, 15, 0, 5)
    assert one(twelve, standard_line("12:05", "P")).start == datetime(2019, 4, 15, 12, 5)
    auto = mivb()
    assert one(auto, standard_line("12:05", " ")).start == datetime(2019, 4, 15, 12, 5)  # nothing says yet
    assert one(auto, standard_line("01:10", "P")).start == datetime(2019, 4, 15, 13, 10)  # a flag: 12-hour
    assert one(auto, standard_line("12:05", " ")).start == datetime(2019, 4, 15, 0, 5)
    day = mivb()
    assert one(day, standard_line("13:10", " ")).start == datetime(2019, 4, 15, 13, 10)  # past 12: 24-hour
    assert one(day, standard_line("12:05", " ")).start == datetime(2019, 4, 15, 12, 5)
    with pytest.raises(ValueError, match="clock"):
        MitelMiVBParser(ParserContext(options={"clock": "12"}))


def test_mivb_detect() -> None:
    """`--format auto` recognises a MiVB capture and not Mitel 5000 lines."""
    assert MitelMiVBParser.detect(REAL) > 0.8
    assert MitelMiVBParser.detect([M5000_EXAMPLE]) == 0.0


# --- Mitel 5000: the manual's example -------------------------------------------------------------------

def test_m5000_manual_example() -> None:
    """The Mitel 5000 socket example: TLC call from 11202 on trunk 94003 to 961-9000, 3 s, $00.00."""
    r = one(Mitel5000Parser(ParserContext(now=datetime(2024, 5, 2, 9, 0))), M5000_EXAMPLE)
    assert r.start == datetime(2024, 5, 2, 8, 36)
    assert r.duration == 3
    assert r.direction is Direction.OUTBOUND
    assert (r.extension, r.trunk, r.number) == ("11202", "94003", "961-9000")
    assert r.answered
    assert r.extra == {"type": "TLC", "cost": "$00.00"}


def test_m5000_start_after_now_is_yesterday() -> None:
    """A 23:50 record read at 00:10 belongs to the day before."""
    r = one(Mitel5000Parser(ParserContext(now=datetime(2024, 5, 2, 0, 10))),
            M5000_EXAMPLE.replace("08:36", "23:50"))
    assert r.start == datetime(2024, 5, 1, 23, 50)


def test_m5000_unanswered_ring_in_and_seconds_option() -> None:
    """``*****`` is a ring-in nobody answered, and its ELAPSED is "the length of time an unanswered call was
    ringing" (5000 Administrator Guide 2.3 p.253): ring 42, no talk time; ``S=`` elapsed is in seconds; a trailing
    ``*`` is kept."""
    line = "IN  ***** 94003 6135551234                   08:36 S=000042 $00.00             *"
    r = one(Mitel5000Parser(ParserContext(now=datetime(2024, 5, 2, 9, 0))), line)
    assert (r.direction, r.extension, r.answered, r.duration, r.ring) == (Direction.INBOUND, "", False, 0, 42)
    assert r.number == "6135551234"
    assert r.extra["far_end_disconnect"] == "1"


def test_m5000_header_lines_are_skipped() -> None:
    """The report headers are not calls and not errors."""
    parser = Mitel5000Parser()
    assert parser.parse(Mitel5000Parser.header_lines()[0]) is None
    assert parser.parse("Station Message Detail Recording") is None


#: real Inter-Tel Axxess 8520 lines (fmahnke/axxess_8520_smdr_client tests; tests/fixtures/mitel-5000/SOURCES.md).
AXXESS_TITLE = "Station Message Detailed Recording                          00:00:04 07-03-2012"
AXXESS_RING_ANSWERED = "    181   94129 RING......0063               06:46      S=9                     "
AXXESS_RING_MISSED = "    ***** 94129 RG 612-804-4082         8907 00:29      S=5                    *"
AXXESS_IN = "IN  110   94129 525530894016            0061 08:48      S=1 $00.00             *"


def test_m5000_ring_in_diagnostics() -> None:
    """Ring-in records (blank TYP): an unanswered one (``*****``) is a missed inbound call whose ELAPSED is its ring
    time, caller after ``RG``, DNIS at the end of the field; an answered one is no record (its call has its own
    ``IN`` record). Failed on the parser before: "unknown call type ''"."""
    parser = Mitel5000Parser(ParserContext(now=datetime(2012, 7, 3, 12, 0)))
    assert parser.parse(AXXESS_RING_ANSWERED) is None
    r = one(parser, AXXESS_RING_MISSED)
    assert (r.direction, r.answered, r.extension, r.duration, r.ring) == (Direction.INBOUND, False, "", 0, 5)
    assert (r.number, r.trunk, r.extra["dnis"], r.extra["ring_in"]) == ("612-804-4082", "94129", "8907", "1")


def test_m5000_incoming_caller_and_dnis_are_split() -> None:
    """An incoming record's digits ``<caller>   <DNIS>``: the caller is the number, the DNIS goes to extra (it was
    one number with the blanks inside)."""
    r = one(Mitel5000Parser(ParserContext(now=datetime(2012, 7, 3, 12, 0))), AXXESS_IN)
    assert (r.number, r.extra["dnis"], r.extension, r.duration) == ("525530894016", "0061", "110", 1)


def test_m5000_title_line_dates_the_records() -> None:
    """The title line's date (MM-DD-YYYY) dates the records after it, whatever today is; a start 12 hours or more
    before the previous one is the next day."""
    parser = Mitel5000Parser(ParserContext(now=datetime(2026, 1, 1, 12, 0)))
    assert parser.parse(AXXESS_TITLE) is None
    assert one(parser, AXXESS_IN).start == datetime(2012, 7, 3, 8, 48)
    late = one(parser, M5000_EXAMPLE.replace("08:36", "23:10"))
    assert late.start == datetime(2012, 7, 3, 23, 10)
    assert one(parser, M5000_EXAMPLE.replace("08:36", "00:20")).start == datetime(2012, 7, 4, 0, 20)
    european = Mitel5000Parser()
    european.parse(AXXESS_TITLE.replace("07-03-2012", "25-03-2012"))
    assert one(european, AXXESS_IN).start == datetime(2012, 3, 25, 8, 48)


def test_m5000_unknown_type_is_an_error() -> None:
    """An unknown call type names the field."""
    with pytest.raises(ParseError) as exc:
        Mitel5000Parser().parse("ZZZ" + M5000_EXAMPLE[3:])
    assert exc.value.field == "type"


def test_m5000_detect() -> None:
    assert Mitel5000Parser.detect([M5000_EXAMPLE]) > 0.7
    assert Mitel5000Parser.detect(REAL) == 0.0
