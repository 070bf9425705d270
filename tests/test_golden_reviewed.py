"""Golden lines reviewed by hand against the vendor documents (issue 12, point 10).

`test_golden.py` compares each capture with an ``.expected.jsonl`` that the parsers once wrote themselves, so a
parser bug there is frozen into its own expectation. Here each expectation was written by hand, field by field,
from the raw bytes of the capture and the vendor layout in ``/work/shared/reference/pbx-formats.md`` (section
numbers below are that file's) or the vendor manual named in the docstring, never from parser output. The
review itself (which lines, which document, every disagreement) is in ``tests/fixtures/REVIEW.md``.

A line is fed to a fresh parser after every line before it in its capture (so page headers, held ring records
and multi-leg numbering are what the daemon sees), with the capture's ``options.json``. Only the fields named in
an expectation are compared. A test marked ``xfail(strict=True)`` is a DISAGREEMENT between the document and
today's parser/golden file, recorded in REVIEW.md: it fails loudly (XPASS) once the behaviour is fixed, so the
mark must then be removed.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.framing import Framer
from smdrd.parsing import ParserContext, get_parser_class, parse_line

FIXTURES = Path(__file__).parent / "fixtures"
IPO = FIXTURES / "avaya-ipo" / "ipo500-2017-07.smdr"
CM = FIXTURES / "avaya-cm" / "avaya.smdr"
CM_HEADER = FIXTURES / "avaya-cm" / "avaya_header.smdr"
MIVB = FIXTURES / "mitel-mivb" / "mivb-extended-ani.smdr"
CUCM_CDR = FIXTURES / "cisco-cucm" / "cdr.smdr"
CUCM_CMR = FIXTURES / "cisco-cucm" / "cmr.smdr"
ASTERISK = FIXTURES / "asterisk-csv" / "master.smdr"
THREECX = FIXTURES / "3cx" / "cdr-288831.smdr"


def records_of_line(path: Path, number: int) -> list[dict[str, Any]]:
    """The records the parser emits on physical line ``number`` (1-based) of ``path``, as `to_json` gives them.

    Lines 1 .. number-1 go through the same parser first; it is built from the capture's folder name and its
    ``options.json`` the way the daemon would be configured for that PBX.
    """
    opts_path = path.with_suffix(".options.json")
    opts: dict[str, Any] = json.loads(opts_path.read_text()) if opts_path.exists() else {}
    cls = get_parser_class(path.parent.name)
    tz = ZoneInfo(opts["timezone"]) if opts.get("timezone") else None
    parser = cls(ParserContext(timezone=tz, year=opts.get("year"), options=opts.get("options", {})))
    encoding = opts.get("encoding", cls.encoding)
    lines = path.read_bytes().splitlines(keepends=True)
    assert 1 <= number <= len(lines), f"{path.name} has {len(lines)} lines"
    framer = Framer(1 << 20)
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(lines[:number], 1):
        frames = framer.feed(raw) + (framer.close() if i == len(lines) else [])
        for frame in frames:
            assert isinstance(frame, bytes)
            records = parse_line(parser, frame.decode(encoding, errors="replace"))
            if i == number:
                out.extend(r.to_json() for r in records or ())
    return out


def one(path: Path, number: int) -> dict[str, Any]:
    records = records_of_line(path, number)
    assert len(records) == 1, f"{path.name}:{number}: expected one record, got {records}"
    return records[0]


def check(record: dict[str, Any], want: dict[str, Any]) -> None:
    """Every field of ``want`` has that value in ``record`` (``start`` as the exact ISO text, offset included)."""
    got = {k: record.get(k, "<missing>") for k in want}
    assert got == want


def instant(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["start"])


# --------------------------------------------------------------------------------------------- Avaya IP Office
# Capture: emceha/ipo500-smdr 2017-07.log, IPO 500 V2 in Poland (options: Europe/Warsaw, so July is +02:00).
# Line 1 is the collector's own header (pbx-formats.md §1 "Real sample lines"); records start on line 2.


def test_ipo_header_line_is_not_a_call() -> None:
    """§1 Transport: the IPO sends no header; line 1 is the collector's column list and yields no record."""
    assert records_of_line(IPO, 1) == []


def test_ipo_line_2_internal_call() -> None:
    """§1 Field list: field 5 Direction ``O`` with field 9 Is Internal ``1`` is an internal call ("Internal calls
    are O", direction matrix ``O`` + 1 = internal); field 2 Connected Time 00:00:20 is talk time, field 3 Ring
    Time 7 s; field 1 Call Start is the PBX's local clock (Warsaw, CEST in July)."""
    check(one(IPO, 2), {
        "start": "2017-07-01T08:13:24+02:00", "duration": 20, "ring": 7, "direction": "internal",
        "extension": "214", "number": "215", "trunk": "", "account": "", "call_id": "1005724", "leg": 0,
        "continued": False, "answered": True, "transfer": "",
    })


def test_ipo_line_3_failed_outbound_to_tone_device() -> None:
    """§1: Connected Time 00:00:00 ("Lost calls 00:00:00") and Party2 ``V8000`` = "U1 0.0" tone device (the
    "edge cases" list: tone device on failed calls): an unanswered outbound attempt with no trunk."""
    check(one(IPO, 3), {
        "start": "2017-07-01T08:29:59+02:00", "duration": 0, "ring": 0, "direction": "outbound",
        "extension": "217", "number": "06009889", "trunk": "", "call_id": "1005726", "answered": False,
        "continued": False,
    })


def test_ipo_line_4_outbound_on_trunk() -> None:
    """§1: ``O`` + Is Internal 0 = external outbound; Called Number (field 6) is what went to the line
    (600988600) while Dialled Number (field 7) keeps the user's access digit (0600988600); Party2 ``T9005`` is
    the trunk (``T<9000+line>``); Connected 00:01:01 = 61 s."""
    check(one(IPO, 4), {
        "start": "2017-07-01T08:30:22+02:00", "duration": 61, "ring": 0, "direction": "outbound",
        "extension": "217", "number": "600988600", "trunk": "T9005", "account": "", "call_id": "1005727",
        "leg": 0, "continued": False, "answered": True,
    })


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="REVIEW.md avaya-ipo D1: ExternalTargetingCause 'U' (no reason code) is reported as "
                          "transfer 'U' on a plain outbound call")
def test_ipo_line_4_plain_external_call_is_not_a_transfer() -> None:
    """§1 field 28 ExternalTargetingCause = source + reason; only the reason codes ``XfP``/``Xfd`` are transfers
    ("In the real capture, a blind transfer ... gives U XfP then U Xfd"). ``U`` alone (source user, no reason) is an
    ordinary user-made external call: `CallRecord.transfer` ("transfer information from the PBX") must be empty."""
    assert one(IPO, 4)["transfer"] == ""


def test_ipo_line_5_dial_by_name_to_voicemail() -> None:
    """§1 "edge cases": ``?GRABOWA`` called number is dial-by-name; Party2 ``V9511`` VM Channel 11 is voicemail,
    not a trunk (so trunk is empty); Is Internal 0 with ``O`` makes it outbound per the direction matrix."""
    check(one(IPO, 5), {
        "start": "2017-07-01T09:46:44+02:00", "duration": 15, "direction": "outbound", "extension": "212",
        "number": "?GRABOWA", "trunk": "", "call_id": "1005728", "answered": True,
    })


def test_ipo_line_72_unanswered_inbound_withheld_cli() -> None:
    """§1: Caller (field 4) "blank if withheld"; ``I`` + 0 = external inbound; Connected 00:00:00 with Ring 26 is
    a lost call; Party2 ``T9005`` is the trunk; the extension is Party1 ``E212`` / Called Number 212."""
    check(one(IPO, 72), {
        "start": "2017-07-04T11:01:57+02:00", "duration": 0, "ring": 26, "direction": "inbound",
        "extension": "212", "number": "", "trunk": "T9005", "call_id": "1005817", "answered": False,
        "continued": False,
    })


def test_ipo_line_736_sip_caller_with_host() -> None:
    """§1 field 4: "SIP trunks can give number@ip" (``0518012216@193.43.148.35``): the number is the part before
    ``@``. Party1 is the trunk ``T9003`` (the record's trunk), Called Number 512 the target extension."""
    check(one(IPO, 736), {
        "start": "2017-07-14T12:56:16+02:00", "duration": 30, "ring": 6, "direction": "inbound",
        "extension": "512", "number": "0518012216", "trunk": "T9003", "call_id": "1006685",
    })


def test_ipo_line_1356_hold_time_is_not_talk_time() -> None:
    """§1: "Total duration of a record = Connected + Ring + Hold + Park"; Connected Time excludes hold, so the
    38 s of Hold (field 16) are not in the 25 s of talk. Call ID 1000008 is after the reboot reset (field 10)."""
    check(one(IPO, 1356), {
        "start": "2017-07-28T12:54:49+02:00", "duration": 25, "ring": 5, "direction": "inbound",
        "extension": "513", "number": "0518012216", "call_id": "1000008",
    })


def test_ipo_lines_1364_1366_blind_transfer_legs() -> None:
    """§1 "Transfer" sample: Call ID 1000018 has two records, Continuation (field 11) ``1`` then ``0``; the first
    is the proposal leg (``U XfP``) from E513 on trunk T9003, the second the trunk-to-trunk leg (``U Xfd``) whose
    Party1 is the trunk itself ("Party1 being a trunk (T9003) on the trunk-to-trunk leg"), so no extension. Both
    carry the same Call Start (field 1: "All segments ... carry the same call start time") and one call key."""
    first, second = one(IPO, 1364), one(IPO, 1366)
    check(first, {
        "start": "2017-07-28T13:00:24+02:00", "duration": 10, "ring": 0, "direction": "outbound",
        "extension": "513", "number": "783809110", "trunk": "T9003", "call_id": "1000018", "leg": 0,
        "continued": True, "answered": True, "transfer": "U XfP",
    })
    check(second, {
        "start": "2017-07-28T13:00:24+02:00", "duration": 17, "direction": "outbound", "extension": "",
        "number": "783809110", "trunk": "T9003", "call_id": "1000018", "leg": 1, "continued": False,
        "answered": True, "transfer": "U Xfd",
    })
    assert first["call_key"] == second["call_key"]


def test_ipo_line_1363_transfer_short_code_attempt() -> None:
    """§1 "Transfer" sample, first line: the ``*88`` short code to the V8000 tone device, 0 s, ``U XfP``: its own
    Call ID 1000017, unanswered, Continuation 0."""
    check(one(IPO, 1363), {
        "start": "2017-07-28T12:59:42+02:00", "duration": 0, "direction": "outbound", "extension": "513",
        "number": "*88", "trunk": "", "call_id": "1000017", "continued": False, "answered": False,
        "transfer": "U XfP",
    })
