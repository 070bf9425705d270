"""Cisco CUCM CDR parser: the real file field by field, recording legs, CMR files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.cisco_cucm import DEFAULT_COLUMNS, CiscoCUCMParser, int_to_ip
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

FIXTURES = Path(__file__).parent / "fixtures" / "cisco-cucm"
TZ = ZoneInfo("America/Los_Angeles")


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def parse_all(text_lines: list[str], tz: ZoneInfo | None = TZ) -> tuple[list[CallRecord], int]:
    """Records (flush included) and the number of lines skipped on purpose."""
    parser = CiscoCUCMParser(ParserContext(timezone=tz))
    out: list[CallRecord] = []
    skipped = 0
    for line in text_lines:
        got = parser.parse(line)
        if got is None:
            skipped += 1
        else:
            out.extend(got)
    out.extend(parser.flush())
    return out, skipped


def test_cdr_file_names_and_types_lines_are_skipped() -> None:
    """The names and types lines of a real CDR file are headers, not errors."""
    records, skipped = parse_all(lines("cdr.smdr"))
    assert skipped == 2
    assert len(records) == 3


def test_phone_to_phone_call_fields() -> None:
    """The real call: 5033466594 to 5033466593, 11 s talk, 2 s ring, times converted from UTC epoch."""
    records, _ = parse_all(lines("cdr.smdr"))
    call = next(r for r in records if "leg_type" not in r.extra)
    assert call.start == datetime(2025, 4, 18, 16, 32, 8, tzinfo=UTC)
    assert call.start.utcoffset() == timedelta(hours=-7)
    assert (call.duration, call.ring, call.answered) == (11, 2, True)
    assert call.direction is Direction.INTERNAL
    assert (call.extension, call.number, call.trunk) == ("5033466594", "5033466593", "")
    assert (call.call_id, call.call_key, call.leg) == ("25447", "cucmOHSUtest/2/25447", 0)
    assert call.extra["origDeviceName"] == "SEPCC7F750586B7"
    assert call.extra["destDeviceName"] == "SEPCC8E7148AD29"
    assert call.extra["origIpAddr"] == "10.248.64.14"
    assert call.extra["destIpAddr"] == "10.248.64.17"
    assert call.extra["origCause_value"] == "16"


def test_recording_legs_join_the_call_they_record() -> None:
    """Both built-in-bridge recording legs must share the recorded call's key, so reports count one call."""
    records, _ = parse_all(lines("cdr.smdr"))
    recordings = [r for r in records if r.extra.get("leg_type") == "recording"]
    assert len(recordings) == 2
    assert {r.key() for r in records} == {"cucmOHSUtest/2/25447"}
    assert sorted(r.leg for r in records) == [0, 1, 2]
    first = next(r for r in recordings if r.call_id == "25449")
    assert first.start == datetime(2025, 4, 18, 16, 32, 10, tzinfo=UTC)
    assert (first.duration, first.answered, first.number) == (0, False, "5030079981")
    assert first.extra["origConversationId"] == "47874239"
    assert first.extra["finalCalledPartyNumberPartition"] == "InformLabRecording"


def test_recording_leg_after_its_call_is_joined_at_once() -> None:
    """The same file with the call first: the recording legs are joined as they arrive."""
    text = lines("cdr.smdr")
    parser = CiscoCUCMParser()
    parser.parse(text[0])
    call = parser.parse(text[4])
    assert call is not None
    assert len(call) == 1
    rec = parser.parse(text[2])
    assert rec is not None
    assert [r.key() for r in rec] == ["cucmOHSUtest/2/25447"]


def test_unmatched_recording_leg_is_released_by_flush() -> None:
    """A recording leg whose call never arrives is not lost at the end of the stream."""
    text = lines("cdr.smdr")
    records, _ = parse_all(text[:3])
    assert [r.call_id for r in records] == ["25449"]
    assert records[0].leg == 1


def test_cmr_file_is_recognised_and_skipped() -> None:
    """A CMR (call quality) file dropped in the same folder yields no calls and no errors."""
    records, skipped = parse_all(lines("cmr.smdr"))
    assert records == []
    assert skipped == 4


def test_no_timezone_keeps_utc() -> None:
    records, _ = parse_all(lines("cdr.smdr"), tz=None)
    assert all(r.start.tzinfo is UTC for r in records)


def test_default_columns_without_names_line() -> None:
    """A stream that starts at a record (no names line) is read with the built-in CUCM 14/15 columns."""
    records, _ = parse_all(lines("cdr.smdr")[2:])
    assert len(records) == 3


# reminisc3/CSVUtil: CUCM 10/11, unquoted header, re-saved by Excel (9.12678E+11): 129 columns.
CSVUTIL_ROW = (
    "1,4,872186,75390609,1452774652,4,75390609,18664714,,,0,16,4,18664714,18530,11,20,0,0,0,0,0,0,0,0,75390612,4,"
    "75390612,1694566154,1300,7990,,0,0,4,1694566154,16608,11,20,0,0,0,0,0,0,0,0,1452774652,1452774662,1300,"
    "d9f70675-cd21-4f05-a400-83b4d999914c,VCC_DN_PT,,Voicemail,VCC_DN_PT,10,10.205.28.1,CALUNITY02,12,0,5,5,15,15,"
    "0,StandAloneCluster,5,,,0,,1,3,0,0,8,8,,,,10.205.28.1,10.7.1.101,0,0,0,0,0,0,0,0,0,0,0,0,2,"
    "7BC49C09B9F111E58274FF09E042C037,1,A4FF6B80000100000003338E1101070A,0,0,0,,,5,,,,,,,,,0,0,,,,,,,,,0,0,0,1300,"
    "7990,1300,"
)


def test_trunk_to_voicemail_row_by_column_name() -> None:
    """Older column sets parse by the names line they come with; a trunk named by its IP makes it inbound."""
    names = ",".join(DEFAULT_COLUMNS[:129])
    records, _ = parse_all([names, CSVUTIL_ROW])
    without_names, _ = parse_all([CSVUTIL_ROW])
    assert without_names == records
    (r,) = records
    assert r.direction is Direction.INBOUND
    assert (r.trunk, r.number, r.extension) == ("10.205.28.1", "", "7990")
    assert (r.duration, r.ring, r.answered) == (10, 0, True)
    assert r.extra["destDeviceName"] == "CALUNITY02"


def test_int_to_ip_is_little_endian() -> None:
    assert int_to_ip(239138826) == "10.248.64.14"
    assert int_to_ip(17502380) == "172.16.11.1"
    assert int_to_ip(-1062731518) == "2.1.168.192"


def test_header_lines_and_detect() -> None:
    header = CiscoCUCMParser.header_lines()
    assert header[0] == lines("cdr.smdr")[0]
    assert header[1] == lines("cdr.smdr")[1]
    assert CiscoCUCMParser.detect(lines("cdr.smdr")[:3]) > 0.9
    assert CiscoCUCMParser.detect(['"","1","2"']) == 0.0


def test_a_ring_time_no_real_call_has_is_refused_before_it_counts_as_a_leg() -> None:
    """A connect time years after the origination (a corrupt line) is an error naming ``ring``, and the call's
    next record is still its next leg: the refused line took no leg number."""
    call = CallRecord("cisco-cucm", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), 30, Direction.OUTBOUND, "201",
                      "5551234", ring=2, trunk="GW1", call_id="77", answered=True)
    (line,) = CiscoCUCMParser.render(call)
    origination = str(int(call.start.timestamp()))
    connect = str(int(call.start.timestamp()) + 2)
    corrupt = line.replace(f",{origination},", f",{int(origination) - 10**9},", 1)
    assert corrupt != line and connect in corrupt
    parser = CiscoCUCMParser(ParserContext(timezone=UTC))
    with pytest.raises(ParseError) as info:
        parser.parse(corrupt)
    assert info.value.field == "ring"
    got = parser.parse(line)
    assert got is not None and [r.leg for r in got] == [0]


# --- issue 13: a real CUCM 10 file (reminisc3/CSVUtil, before it was re-saved), an off-net call forward --------

def test_call_forwarded_off_the_network_is_outbound_from_the_forwarding_number() -> None:
    """3365585309 calls DN 3091, which forwards all calls to 912677679721 back out on the same SIP trunk. A user
    saw an inbound call "to extension 912677679721"; the carrier bills the forward out, from 3091."""
    records, _ = parse_all(lines("csvutil-2016-01.smdr"))
    forwarded, voicemail = records
    assert forwarded.direction is Direction.OUTBOUND
    assert (forwarded.extension, forwarded.number, forwarded.trunk) == ("3091", "912677679721", "172.16.11.1")
    assert forwarded.extra["callingPartyNumber"] == "3365585309"
    assert (forwarded.duration, forwarded.ring) == (15, 52)
    # forwarded to the voicemail pilot 7990: a directory number, not the outside world
    assert voicemail.direction is Direction.INBOUND
    assert (voicemail.extension, voicemail.trunk) == ("7990", "10.205.28.1")
