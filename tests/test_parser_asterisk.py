"""Asterisk ``Master.csv`` parser: real lines field by field, leg joining, encoding."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smdrd.errors import ParseError
from smdrd.parsers.asterisk_csv import AsteriskCSVParser
from smdrd.parsing import ParserContext
from smdrd.record import CallRecord, Direction

SAMPLE = Path(__file__).parent / "fixtures" / "asterisk-csv" / "master.smdr"
TZ = ZoneInfo("Asia/Vladivostok")


def sample_lines() -> list[str]:
    return [raw.decode("utf-8", errors="replace") for raw in SAMPLE.read_bytes().splitlines() if raw]


def parse_all(lines: list[str], **options: object) -> list[CallRecord]:
    parser = AsteriskCSVParser(ParserContext(timezone=TZ, options=options))
    out: list[CallRecord] = []
    for line in lines:
        out.extend(parser.parse(line) or ())
    return out


def test_every_real_line_parses() -> None:
    """A user tailing a real Master.csv would see parse errors for lines this parser should read."""
    records = parse_all(sample_lines())
    assert len(records) == 84


def test_answered_inbound_line_fields() -> None:
    """The first real line: an answered inbound call on trunk SIP/211474, 27 s of talk."""
    (r,) = parse_all(sample_lines()[:1])
    assert r.start == datetime(2024, 1, 27, 15, 7, 24, tzinfo=TZ)
    assert (r.duration, r.ring, r.answered) == (27, 0, True)
    assert r.direction is Direction.INBOUND
    assert (r.extension, r.number, r.trunk) == ("211474", "89245555937", "SIP/211474")
    assert (r.call_id, r.call_key, r.leg) == ("1706368044.0", "1706368044.0", 0)
    assert r.extra["dcontext"] == "stadion-pstn"
    assert r.extra["clid"] == '"89245555937" <89245555937>'


def test_no_answer_leg_has_no_talk_time() -> None:
    """A NO ANSWER leg to SIP/301 (billsec 60 counts from the caller's answer) is not 60 s of talk."""
    r = parse_all(sample_lines()[3:4])[0]
    assert r.extra["disposition"] == "NO ANSWER"
    assert (r.duration, r.ring, r.answered) == (0, 60, False)
    assert r.extension == "301"
    assert r.extra["billsec"] == "60"


def test_parallel_ringing_legs_share_the_linkedid_key() -> None:
    """Parallel ringing through Local channels: all legs have linkedid 1706372196.12, one call."""
    lines = [ln for ln in sample_lines() if '"1706372196.12",' in ln]
    records = parse_all(lines)
    assert len(records) >= 5
    assert {r.key() for r in records} == {"1706372196.12"}
    assert [r.leg for r in records] == list(range(len(records)))
    local = records[0]
    assert local.extra["channel"] == "Local/ch1@TimeDelay-00000000;2"
    assert (local.direction, local.extension, local.number, local.trunk) == (
        Direction.INBOUND, "301", "89245555937", "")
    assert (local.duration, local.ring, local.answered) == (0, 15, False)


def test_answered_call_with_ring_time() -> None:
    """An answered call 5 s after it started: ring 5, talk 43."""
    (r,) = parse_all([ln for ln in sample_lines() if "1706413165.93" in ln][:1])
    assert r.start == datetime(2024, 1, 28, 3, 39, 25, tzinfo=TZ)
    assert (r.duration, r.ring, r.answered) == (43, 5, True)
    assert (r.extension, r.number) == ("301", "89085951008")


def test_non_utf8_bytes_do_not_lose_the_line() -> None:
    """The sample's CLID holds raw 0xA5 bytes; decoded with errors="replace", the call survives."""
    raw = next(b for b in SAMPLE.read_bytes().splitlines() if b"\xa5\xa5" in b)
    (r,) = parse_all([raw.decode("utf-8", errors="replace")])
    assert r.number == "81079246516548"
    assert "\ufffd" in r.extra["clid"]
    assert (r.duration, r.ring, r.answered) == (0, 5, False)


def test_system_name_prefixed_uniqueid() -> None:
    """After a systemname change, uniqueids read ``mainserverdss-...``; they are still the call key."""
    (r,) = parse_all([ln for ln in sample_lines() if "mainserverdss-1706420300.0" in ln][:1])
    assert r.call_key == "mainserverdss-1706420300.0"
    assert (r.duration, r.ring, r.answered) == (16, 5, True)


OTHER_FORMS = [
    # 18 columns (uniqueid, userfield), an outbound call over an H.323 trunk: Russian ops doc.
    '"","2889","09243820431","pre-rec","""2889"" <2889>","SIP/2889-0000098e","OOH323/avayaG700-1919",'
    '"Dial","Local/09243820431@default,30,t","2018-09-07 11:05:20","2018-09-07 11:05:20",'
    '"2018-09-07 11:08:24",183,183,'
    '"ANSWERED","DOCUMENTATION","1536293101.12458",""',
    # 18 columns, inbound from the H.323 trunk, no answer.
    '"ast_h323","3711","1110","default","""Bryl A"" <3711>","OOH323/avayaipo-1945",'
    '"SIP/1110-000009be","Dial",'
    '"SIP/1110","2018-09-07 11:08:03",,"2018-09-07 11:08:31",28,0,"NO ANSWER","DOCUMENTATION",'
    '"1536293283.12653",""',
]


def test_eighteen_column_forms_and_channel_direction() -> None:
    """Shorter cdr.conf forms: direction from the trunk channel, key from uniqueid."""
    out, inc = parse_all(OTHER_FORMS)
    assert (out.direction, out.extension, out.number, out.trunk) == (
        Direction.OUTBOUND, "2889", "09243820431", "OOH323/avayaG700")
    assert (out.duration, out.call_key) == (183, "1536293101.12458")
    assert (inc.direction, inc.extension, inc.number, inc.trunk) == (
        Direction.INBOUND, "1110", "3711", "OOH323/avayaipo")
    assert (inc.account, inc.answered, inc.ring) == ("ast_h323", False, 28)


def test_context_options_change_direction() -> None:
    """A site whose inbound context is ``pre-rec`` says so in the options."""
    (r,) = parse_all(OTHER_FORMS[:1], inbound_contexts=["pre-rec"])
    assert r.direction is Direction.INBOUND


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="inbound_contexts"):
        AsteriskCSVParser(ParserContext(options={"inbound_contexts": "from-trunk"}))
    with pytest.raises(ValueError, match="extension_pattern"):
        AsteriskCSVParser(ParserContext(options={"extension_pattern": "("}))


def test_detect_recognises_master_csv() -> None:
    assert AsteriskCSVParser.detect(sample_lines()[:5]) > 0.9
    assert AsteriskCSVParser.detect(["2017/07/01 08:13:24,00:00:20,7,214,O,215"]) == 0.0


# --- issue 13: Dial()'s record of the outgoing channel, and strict quoting --------------------------------------

KAFKA = Path(__file__).parent / "fixtures" / "asterisk-csv" / "kafka-h323.smdr"
KRASNOYARSK = ZoneInfo("Asia/Krasnoyarsk")


def kafka_lines() -> list[str]:
    return KAFKA.read_text(encoding="utf-8").splitlines()


def test_appdial_outgoing_line_is_a_leg_of_the_call_that_dialled_it() -> None:
    """Extension 2863 dials 09083258557 out over the H.323 trunk; Asterisk also writes a CDR for that outgoing
    channel (``AppDial``, ``(Outgoing Line)``). A user must see one outbound call of 2863, not an extra
    inbound answered call from the number 2863 dialled."""
    parser = AsteriskCSVParser(ParserContext(timezone=KRASNOYARSK))
    records = [r for line in kafka_lines()[4:7] for r in parser.parse(line) or ()]
    assert len(records) == 3
    dialled = records[2]
    assert dialled.extra["lastapp"] == "AppDial"
    assert dialled.direction is Direction.OUTBOUND
    assert (dialled.extension, dialled.number, dialled.trunk) == ("2863", "09083258557", "OOH323/avayaG700")
    assert {r.key() for r in records} == {"1536293284.12655"}
    assert [r.leg for r in records] == [0, 1, 2]
    assert dialled.call_id == "1536293284.12658"


def test_appdial_line_alone_is_not_an_inbound_call() -> None:
    """Without the dialling call's lines (a file that starts mid-call), the outgoing channel's CDR is still the
    dialled line's side of a call: outbound on the trunk, never inbound from the number dialled."""
    (r,) = parse_all(kafka_lines()[6:7])
    assert r.direction is Direction.OUTBOUND
    assert (r.extension, r.number, r.trunk) == ("", "09083258557", "OOH323/avayaG700")
    assert r.key() == "1536293284.12658"


def test_appdial_to_a_phone_is_internal() -> None:
    """An AppDial CDR on a phone's channel (a Dial() to SIP/1314 whose caller was not seen) is internal."""
    line = kafka_lines()[8].replace('"Dial","SIP/1314"', '"AppDial","(Outgoing Line)"') \
        .replace('"SIP/1111-000009c0","SIP/1314-000009c1"', '"SIP/1314-000009c1","SIP/1111-000009c0"')
    (r,) = parse_all([line])
    assert r.direction is Direction.INTERNAL
    assert r.extension == "1314"


@pytest.mark.parametrize(("cut", "field"), [
    # a real line cut inside its last quoted column (a crash while writing): the old reader took it as 18 columns
    (-1, "userfield"),
    # cut inside the uniqueid: the old reader took it as a 17-column line with a whole uniqueid
    (-4, "uniqueid"),
])
def test_unterminated_quote_is_rejected_naming_the_column(cut: int, field: str) -> None:
    """Asterisk always closes its quotes: a line that does not is broken, and the error says where."""
    line = kafka_lines()[0][:cut]
    with pytest.raises(ParseError) as info:
        parse_all([line])
    assert info.value.field == field
    assert "unterminated quote" in info.value.reason


def test_text_after_a_closing_quote_is_rejected() -> None:
    """Two quoted values run together (``"SIP/2889-0000098e""x"`` is fine, ``"a"b`` is not)."""
    line = kafka_lines()[0].replace('"pre-rec",', '"pre-rec"x,')
    with pytest.raises(ParseError) as info:
        parse_all([line])
    assert info.value.field == "dcontext"
    assert "after its closing quote" in info.value.reason


def test_every_line_of_the_second_capture_parses() -> None:
    assert len(parse_all(kafka_lines())) == 9
