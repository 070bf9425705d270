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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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


# ------------------------------------------------------------------------------------- Avaya Communication Manager
# Capture: micahhausler/avayafmt avaya.raw / avaya_header.raw, customized layout of §2 (single space between
# fields). No options.json: no timezone, so starts are naive; the date field carries the year (MMDDYY).


def test_cm_line_1_outbound_cond_1() -> None:
    """§2 "Interpretation": ``011416`` = 2016-01-14, cond ``1``, code-dial 9, code-used 102, dialed ``620666#``,
    calling 4999, out-crt 013: outbound from 4999 on trunk 102, 5 s. The ``time`` 1508 is the END of the call
    (records come out in time order although line 5 lasted 17 min; the data decides, §2 leaves start/end to the CM
    setting), so start = 15:08:00 - 5 s."""
    check(one(CM, 1), {
        "start": "2016-01-14T15:07:55", "duration": 5, "ring": None, "direction": "outbound",
        "extension": "4999", "number": "620666#", "trunk": "102", "account": "", "call_id": "",
        "answered": True, "transfer": "",
    })


def test_cm_line_2_incoming_cond_9() -> None:
    """§2: cond ``9`` = incoming; code-used blank, in-trk-code 102 is the trunk; dialed-num (cols 23-40) ``122``
    is the called extension, clg-num (cols 42-51) ``102`` the calling number, as the slices read."""
    check(one(CM, 2), {
        "start": "2016-01-14T15:08:57", "duration": 3, "direction": "inbound", "extension": "122",
        "number": "102", "trunk": "102", "answered": True,
    })


def test_cm_line_4_outbound_tac_14() -> None:
    """§2: cond ``7`` (ARS/AAR, outgoing) with code-dial 14 and code-used 122: the trunk is the one used (122),
    not the code dialled."""
    check(one(CM, 4), {
        "start": "2016-01-14T15:08:56", "duration": 4, "direction": "outbound", "extension": "6180",
        "number": "6888", "trunk": "122",
    })


def test_cm_line_5_long_call_start_from_end_time() -> None:
    """§2 + data: 01033 s (17 min 13 s) recorded at 1512 between records of 1509 and 1512: only an end time fits,
    so the call started at 15:12:00 - 1033 s = 14:54:47."""
    check(one(CM, 5), {
        "start": "2016-01-14T14:54:47", "duration": 1033, "direction": "inbound", "extension": "6181",
        "number": "2222222222", "trunk": "102", "answered": True,
    })


def test_cm_lines_6_7_ring_record_g_merged_into_answered_call() -> None:
    """Admin Guide for CM (Nov 2003) Table 53 (manualslib page 1463), condition code G: "If the call is answered,
    a CDR record is printed with the condition code G and the duration reflects the time between the start of
    ringing and the answer ... This record is separate from the normal call duration record". (§2's [INF] list
    calls G "ring-no-answer"; the Avaya table decides.) So line 6 (G, 2 s) is the ring time of line 7 (cond 9,
    41 s talk, same calling number, circuit 001, VDN 6100): one answered call, ring 2, start = 15:13:00 - 41 - 2."""
    assert records_of_line(CM, 6) == []
    check(one(CM, 7), {
        "start": "2016-01-14T15:12:17", "duration": 41, "ring": 2, "direction": "inbound", "extension": "0",
        "number": "3333333333", "trunk": "102", "answered": True,
    })


def test_cm_line_10_short_outbound() -> None:
    """§2: cond 7, dialed ``07777777777`` (no ``#``), 2 s on trunk 102, from 6148."""
    check(one(CM, 10), {
        "start": "2016-01-14T15:14:58", "duration": 2, "direction": "outbound", "extension": "6148",
        "number": "07777777777", "trunk": "102", "answered": True,
    })


def test_cm_header_record_is_skipped_and_nul_padding_ignored() -> None:
    """§2 Transport: the first bytes after connect are the 16-byte header ``15:04 01/14`` CR LF NUL NUL NUL; it is
    not a call, and the NULs in front of the first record do not shift its fixed-width fields."""
    assert records_of_line(CM_HEADER, 1) == []
    check(one(CM_HEADER, 2), {
        "start": "2016-01-14T15:07:55", "duration": 5, "direction": "outbound", "extension": "4999",
        "number": "620666#", "trunk": "102",
    })


def test_cm_header_last_line_g_record_held_across_another_call() -> None:
    """Table 53 (as above): the G record of line 13 (4444444444, 2 s) is followed by an unrelated outbound call
    (line 14) before its answered cond-9 record (line 15, 40 s); the ring time still joins the right call."""
    check(one(CM_HEADER, 14), {"direction": "outbound", "extension": "6339", "duration": 49, "ring": None})
    check(one(CM_HEADER, 15), {
        "start": "2016-01-14T15:17:18", "duration": 40, "ring": 2, "direction": "inbound", "extension": "0",
        "number": "4444444444", "trunk": "102", "answered": True,
    })


# ------------------------------------------------------------------------------------------ Mitel MiVoice Business
# Capture: isontheline/smdr-parser test lines, extended digit length + ANI/DNIS (§3a "Real-format lines").
# options.json gives only the year (the record has "mm/dd date (no year!)"), no timezone: naive starts.


def test_mivb_line_1_outgoing_without_duration_or_status() -> None:
    """§3a: calling party 9999 dialled 9999999999; duration is blank ("the first line has a blank duration") and the
    completion status ``h`` is blank. MiVB help "SMDR timing functions": for outgoing calls the duration "is only
    recorded for calls which are answered", so this attempt was not answered: 0 s talk, no ring time (outgoing)."""
    check(one(MIVB, 1), {
        "start": "2019-03-05T13:14:13", "duration": 0, "ring": None, "direction": "outbound",
        "extension": "9999", "number": "9999999999", "trunk": "", "answered": False, "transfer": "",
    })


def test_mivb_line_2_incoming_with_ani() -> None:
    """§3a Direction: incoming calls have time-to-answer filled (``0000``); the called party is 9907 and the
    caller is the ANI ``9999999999`` (ANI/DNIS block); duration 0000:00:21 (extended ``hhhh:mm:ss``)."""
    check(one(MIVB, 2), {
        "start": "2019-03-05T13:15:09", "duration": 21, "ring": 0, "direction": "inbound",
        "extension": "9907", "number": "9999999999", "answered": True,
    })


def test_mivb_line_3_outgoing_answered_long_call_flag() -> None:
    """§3a: status ``A`` = answer supervision; duration 0000:06:59 = 419 s, consistent with the ``-`` long-call
    flag (5 to 9:59)."""
    check(one(MIVB, 3), {
        "start": "2019-03-05T13:38:35", "duration": 419, "direction": "outbound", "extension": "9999",
        "number": "9999999999", "answered": True,
    })


def test_mivb_line_6_unanswered_incoming_stars() -> None:
    """§3a "Note ``****`` time-to-answer (unanswered/overflow)"; MiVB help "SMDR timing functions": the duration
    of an incoming call runs from answer to release, so a never-answered call has no talk time."""
    check(one(MIVB, 6), {
        "start": "2019-03-05T15:42:46", "duration": 0, "direction": "inbound", "extension": "9999",
        "number": "9999999999", "answered": False,
    })


def test_mivb_line_8_transfer_to_third_party() -> None:
    """§3a: "The transfer flag T plus third party rrrr name the station the call was transferred to"; the test's
    comment: "Call received from 9999999999 to 9000 and then transfered to 9025". Time to answer 0007 = 7 s."""
    check(one(MIVB, 8), {
        "start": "2019-03-05T16:47:52", "duration": 43, "ring": 7, "direction": "inbound", "extension": "9000",
        "number": "9999999999", "answered": True, "transfer": "T 9025",
    })


def test_mivb_line_10_call_emitted() -> None:
    """§3a, the test's comment on line 10: "Call emitted from 9025 to 9999999999"; status A, 5 s."""
    check(one(MIVB, 10), {
        "start": "2019-03-05T17:20:37", "duration": 5, "ring": None, "direction": "outbound",
        "extension": "9025", "number": "9999999999", "answered": True,
    })


# ----------------------------------------------------------------------------------------------------- Cisco CUCM
# Capture: sieteunoseis/cisco-cucm-cdr cdr.txt / cmr.txt (§5a). Line 1 = names, line 2 = SQL types. Times are
# UTC epoch seconds (§5a Field semantics); options.json shows them in America/Los_Angeles (PDT, -07:00).


def test_cucm_names_and_types_lines_are_not_calls() -> None:
    """§5a Layout: "Line 1 = quoted field names, line 2 = SQL types, then records"."""
    assert records_of_line(CUCM_CDR, 1) == []
    assert records_of_line(CUCM_CDR, 2) == []


def test_cucm_recording_legs_wait_for_their_call() -> None:
    """§5a "Real rows": rows 1-2 (lines 3-4) are built-in-bridge recording legs of the call in row 3 (line 5);
    they come before it in the file, so nothing is emitted until that call is read."""
    assert records_of_line(CUCM_CDR, 3) == []
    assert records_of_line(CUCM_CDR, 4) == []


def _cucm_line_5() -> dict[str, dict[str, Any]]:
    return {r["call_id"]: r for r in records_of_line(CUCM_CDR, 5)}


def test_cucm_line_5_phone_to_phone_call() -> None:
    """§5a: dateTimeOrigination 1744993928 = 2025-04-18 16:32:08 UTC (09:32:08 PDT); dateTimeConnect 1744993930,
    so 2 s of ringing; ``duration`` 11 s; both ends are ``SEP...`` phones (OnNet partitions): internal, no trunk;
    globalCallID_callId 25447; lastRedirectDn equals the called number, so no redirect."""
    main = _cucm_line_5()["25447"]
    check(main, {
        "start": "2025-04-18T09:32:08-07:00", "duration": 11, "ring": 2, "direction": "internal",
        "extension": "5033466594", "number": "5033466593", "trunk": "", "account": "", "leg": 0,
        "answered": True, "transfer": "",
    })
    assert instant(main) == datetime(2025, 4, 18, 16, 32, 8, tzinfo=UTC)


def test_cucm_line_5_recording_legs_join_the_call() -> None:
    """§5a: the recording rows "share origConversationId 47874239/47874240 with row 3's legs" and "multiple CDRs
    share the Global Call ID"-style grouping: both are legs of call 25447's key; dateTimeConnect 0 and duration 0
    (never answered); origination 1744993930 = 09:32:10 PDT; called number 5030079981 (InformLabRecording)."""
    legs = _cucm_line_5()
    main = legs["25447"]
    for call_id in ("25449", "25448"):
        check(legs[call_id], {
            "start": "2025-04-18T09:32:10-07:00", "duration": 0, "direction": "internal", "number": "5030079981",
            "answered": False, "call_key": main["call_key"],
        })
    assert sorted(legs[c]["leg"] for c in ("25449", "25448")) == [1, 2]
    assert legs["25449"]["extension"] == "5033466594"  # origDeviceName SEPCC7F750586B7 = the caller's phone


def test_cucm_line_5_called_party_recording_leg_extension() -> None:
    """§5a: row 2 (call 25448, line 4) has origConversationId 47874240, which is row 3's destLegIdentifier, and
    origDeviceName ``SEPCC8E7148AD29``, row 3's destDeviceName, whose number is 5033466593. It records the CALLED
    party's leg, so its internal party (`CallRecord.extension`) is 5033466593, not the caller 5033466594."""
    assert _cucm_line_5()["25448"]["extension"] == "5033466593"


def test_cucm_cmr_lines_are_not_calls() -> None:
    """§5a: ``cdrRecordType`` 2 = CMR (call quality), not a call; the names/types lines are not either."""
    for number in range(1, 5):
        assert records_of_line(CUCM_CMR, number) == []


# ----------------------------------------------------------------------------------------- Asterisk cdr_csv
# Capture: mineevburyat/dj-asterisk-cdr Master.csv (§9a Source A), 21 columns: ..., start, answer, end, duration,
# billsec, disposition, amaflags, uniqueid, userfield, peeraccount, linkedid, sequence. options.json: UTC.
# Asterisk docs ("Using the CONTEXT, EXTEN, PRIORITY, UNIQUEID, and CHANNEL Variables", docs.asterisk.org): "The
# UNIQUEID is in the form of 1267568856.11, where 1267568856 is the Unix epoch". Every uniqueid of this capture
# equals its start column read as UTC (1706368044 = 2024-01-27 15:07:24 UTC), so this server wrote UTC (§9a:
# "local time (or GMT if usegmtime=yes)"); see REVIEW.md asterisk-csv D1 (fixed: options.json said Vladivostok).

def test_asterisk_line_1_answered_inbound() -> None:
    """§9a: dcontext ``stadion-pstn`` = from the trunk; src 89245555937 is the caller, dst 211474 the DID;
    ANSWERED, billsec 27 = end - answer, duration - billsec = 0 s ring; uniqueid 1706368044.0 is the call id and,
    being its own linkedid, the call key. Wall clock as written: 2024-01-27 15:07:24."""
    record = one(ASTERISK, 1)
    check(record, {
        "duration": 27, "ring": 0, "direction": "inbound", "extension": "211474", "number": "89245555937",
        "account": "", "call_id": "1706368044.0", "call_key": "1706368044.0", "leg": 0, "answered": True,
        "transfer": "",
    })
    assert record["start"].startswith("2024-01-27T15:07:24")


def test_asterisk_line_1_start_is_utc() -> None:
    """Asterisk docs (UNIQUEID = Unix epoch at channel creation) + §9a (``usegmtime``): uniqueid 1706368044 is
    2024-01-27 15:07:24 UTC, exactly the start column, so the start instant is 15:07:24 UTC (01:07:24 +10:00)."""
    assert instant(one(ASTERISK, 1)) == datetime(2024, 1, 27, 15, 7, 24, tzinfo=UTC)


def test_asterisk_line_84_start_is_utc() -> None:
    """As line 1: uniqueid ``mainserverdss-1706445411.103`` (system-name prefix) = 2024-01-28 12:36:51 UTC, the
    start column; the last line of the file agrees with the first, 21 h later."""
    assert instant(one(ASTERISK, 84)) == datetime(2024, 1, 28, 12, 36, 51, tzinfo=UTC)


def test_asterisk_line_4_no_answer_with_answer_time() -> None:
    """§9a: disposition ``NO ANSWER`` decides that the dialled party (SIP/301) did not answer, although the caller
    channel had an answer time and billsec 60 (it was up before Dial); no talk time, not answered."""
    check(one(ASTERISK, 4), {
        "duration": 0, "direction": "inbound", "extension": "301", "number": "89245555937",
        "call_id": "1706369600.6", "leg": 0, "answered": False,
    })


def test_asterisk_line_7_local_channel_leg_joins_linkedid() -> None:
    """§9a: "Related legs share linkedid": this Local/ch1 leg has uniqueid 1706372196.14 but linkedid
    1706372196.12, so it is a leg of call 1706372196.12; answer is empty (",,") and NO ANSWER: 15 s ringing, no
    talk; a Local channel is not a trunk."""
    check(one(ASTERISK, 7), {
        "duration": 0, "ring": 15, "direction": "inbound", "extension": "301", "number": "89245555937",
        "trunk": "", "call_id": "1706372196.14", "call_key": "1706372196.12", "answered": False,
    })


def test_asterisk_line_26_answered_bridge_leg() -> None:
    """§9a: ANSWERED, start = answer = 02:04:12, end 02:04:29: duration 17 = billsec 17, no ring; the fifth
    record of linkedid 1706407446.50 (lines 22-26), dstchannel SIP/301."""
    record = one(ASTERISK, 26)
    check(record, {
        "duration": 17, "ring": 0, "direction": "inbound", "extension": "301", "number": "89025348783",
        "trunk": "SIP/211553", "call_id": "1706407446.50", "call_key": "1706407446.50", "leg": 4,
        "answered": True,
    })
    assert record["start"].startswith("2024-01-28T02:04:12")


def test_asterisk_line_69_non_utf8_clid_bytes() -> None:
    """§9a byte-exactness note: the ``8107...`` CLID lines carry raw bytes 0xA5 0xA5; the line must still parse,
    and the number comes from ``src`` (81079953571708), not from the damaged CLID name."""
    check(one(ASTERISK, 69), {
        "duration": 0, "ring": 8, "direction": "inbound", "extension": "301", "number": "81079953571708",
        "call_id": "mainserverdss-1706434176.65", "answered": False,
    })


def test_asterisk_line_83_busy() -> None:
    """§9a disposition ``BUSY``: 0 s, not answered."""
    check(one(ASTERISK, 83), {
        "duration": 0, "ring": 0, "direction": "inbound", "number": "89021675872", "answered": False,
        "call_id": "mainserverdss-1706443058.100",
    })


def test_asterisk_line_84_answered_after_ring() -> None:
    """§9a: duration = end - start = 69, billsec = end - answer = 66: 66 s talk after 3 s ringing."""
    record = one(ASTERISK, 84)
    check(record, {
        "duration": 66, "ring": 3, "direction": "inbound", "extension": "211553", "number": "89503999305",
        "call_id": "mainserverdss-1706445411.103", "answered": True,
    })
    assert record["start"].startswith("2024-01-28T12:36:51")


# ------------------------------------------------------------------------------------------------------------ 3CX
# Capture: dorel14/3CX-Cdr-Server, the only real 3CX line found (§9c), default field order. options: Stockholm.


def test_3cx_line_1_outbound_call() -> None:
    """§9c default field set: historyid, callid, duration, time_start, time_answered, time_end, ... from_no,
    to_no, from_dn, to_dn, dial_no, ..., from_type, to_type. Times are UTC (§9c Formats, [INF]), so 05:59:49 is
    07:59:49 in Stockholm (CEST). Talk = end - answered = 06:00:23 - 05:59:58 = 25 s (= the duration field), ring
    = answered - start = 9 s. from_type Extension -> to_type Line: outbound from Ext.10016 (from_dn 10016) to
    +46703014082 on line DN 10020 (to_dn); callid ``4cc2c72490010000_26808``; reason_changed empty: no transfer;
    bill_code ``default`` is a rate name, not an account code."""
    record = one(THREECX, 1)
    check(record, {
        "start": "2024-06-17T07:59:49+02:00", "duration": 25, "ring": 9, "direction": "outbound",
        "extension": "10016", "number": "+46703014082", "trunk": "10020", "account": "",
        "call_id": "4cc2c72490010000_26808", "leg": 0, "continued": False, "answered": True, "transfer": "",
    })
    assert instant(record) == datetime(2024, 6, 17, 5, 59, 49, tzinfo=UTC)


def test_3cx_trailing_blank_line_is_not_a_call() -> None:
    """The capture ends with an empty line; it is not a record."""
    assert records_of_line(THREECX, 2) == []


# ------------------------------------------------------------------------------------- issue 13 (part B) captures

ASTERISK_H323 = FIXTURES / "asterisk-csv" / "kafka-h323.smdr"
IPO_KAFKA = FIXTURES / "avaya-ipo" / "kafka-2018-09.smdr"
NEC_MANUAL = FIXTURES / "nec-sv" / "manual-sl1000-caller-name.smdr"
CUCM_10 = FIXTURES / "cisco-cucm" / "csvutil-2016-01.smdr"
THREECX_V20 = FIXTURES / "3cx" / "v20-issue16.smdr"


def test_asterisk_h323_line_7_appdial_is_a_leg_of_the_dialling_call() -> None:
    """Line 7: ``lastapp`` AppDial, ``lastdata`` (Outgoing Line), channel OOH323/avayaG700-1946 = line 6's
    dstchannel (2863 dialling 09083258557 out on the H.323 trunk). Dial() wrote it for the outgoing channel: a
    third leg of key 1536293284.12655, outbound 2863 -> 09083258557, 0 s (billsec 0), not an inbound call."""
    check(one(ASTERISK_H323, 7), {
        "start": "2018-09-07T11:08:14+07:00", "duration": 0, "ring": 0, "direction": "outbound",
        "extension": "2863", "number": "09083258557", "trunk": "OOH323/avayaG700", "account": "ast_h323",
        "call_id": "1536293284.12658", "leg": 2, "answered": True, "call_key": "1536293284.12655",
    })


def test_ipo_kafka_lines_1_2_sip_caller_to_voicemail() -> None:
    """§1: Direction I, Is Internal 0, Call ID 1949529 with Continuation 1 then 0; no E device (T9017 and the
    voicemail channel V9513), so the extension is Called Number (4209, then 4666); the caller's ``@host`` goes."""
    first, second = one(IPO_KAFKA, 1), one(IPO_KAFKA, 2)
    check(first, {"direction": "inbound", "extension": "4209", "number": "9145661757", "trunk": "T9017",
                  "duration": 27, "leg": 0, "continued": True, "answered": True})
    check(second, {"direction": "inbound", "extension": "4666", "leg": 1, "continued": False, "answered": False,
                   "call_key": first["call_key"]})


def test_nec_manual_caller_name_is_not_an_account_code() -> None:
    """SL1000 manual sample, PRG 35-02-17 = 1: the PIN record's ACCOUNT column is the caller name and the NEXT
    line that follows names the caller for the previous record; the POT record keeps its account code 08754."""
    check(one(NEC_MANUAL, 2), {"direction": "outbound", "account": "08754", "extension": "2001"})
    assert records_of_line(NEC_MANUAL, 3) == []  # held until its NEXT line
    record = one(NEC_MANUAL, 4)
    check(record, {"direction": "inbound", "extension": "2017", "number": "2142623802", "account": "",
                   "duration": 20, "trunk": "001", "start": "2011-12-09T10:52:00"})
    assert record["extra"]["caller_name"] == "NECinfrontia Corp."


def test_cucm_10_line_3_call_forwarded_off_net() -> None:
    """CDAR field descriptions: originalCalledPartyNumber 3091, finalCalledPartyNumber 912677679721 (pattern
    9.@), lastRedirectDn 3091 with redirect reason 15 (call forward all), orig and dest device the SIP trunk
    172.16.11.1. The carrier bills the forward out: outbound from 3091. 1452774590 = 12:29:50 UTC."""
    check(one(CUCM_10, 3), {
        "start": "2016-01-14T07:29:50-05:00", "duration": 15, "ring": 52, "direction": "outbound",
        "extension": "3091", "number": "912677679721", "trunk": "172.16.11.1", "call_id": "872185",
    })


def test_3cx_v20_line_1_inbound_through_a_queue() -> None:
    """A V20 line in the default order: from_type Line (inbound on line 10020), to_type Queue (80002),
    final_type Extension (final_dn 10013 took the call); ring = answered - start = 8 s, talk 00:08:10."""
    record = one(THREECX_V20, 1)
    check(record, {
        "start": "2024-04-30T08:27:28+02:00", "duration": 490, "ring": 8, "direction": "inbound",
        "extension": "10013", "number": "070XXXXXXX", "trunk": "10020", "transfer": "ReplacedDst",
        "answered": True,
    })
    assert instant(record) == datetime(2024, 4, 30, 6, 27, 28, tzinfo=UTC)


# --------------------------------------------------------------------------- issue 13: Mitel 5000 (Axxess) and custom
# Mitel 5000 capture: fmahnke/axxess_8520_smdr_client test lines of an Inter-Tel Axxess 8520 (the 5000's predecessor,
# same report format), options America/Chicago. Document: Inter-Tel 5000 Administrator Guide 2.3, "SMDR Report
# Format" pp. 252-253 (Figure 14, Table 36) and p. 250 (ring-in diagnostics).

AXXESS = FIXTURES / "mitel-5000" / "axxess-8520.smdr"
ESI = FIXTURES / "custom" / "esi-ivx-csv.smdr"


def test_axxess_title_and_header_are_not_calls() -> None:
    """The title line (print time and date) and the column header are no records."""
    assert records_of_line(AXXESS, 1) == []
    assert records_of_line(AXXESS, 2) == []


def test_axxess_line_3_unanswered_ring_in() -> None:
    """Blank TYP = ring-in diagnostic; EXT ``*****`` = "an unanswered ring-in"; ELAPSED S=5 is "the length of time
    an unanswered call was ringing"; ``RG`` + Caller ID, DNIS 8907 right-aligned at the end of the 28 digits; the
    date is the title's (07-03-2012), START 00:29 Central daylight time."""
    record = one(AXXESS, 3)
    check(record, {
        "start": "2012-07-03T00:29:00-05:00", "duration": 0, "ring": 5, "direction": "inbound", "extension": "",
        "number": "612-804-4082", "trunk": "94129", "answered": False,
    })
    assert record["extra"]["dnis"] == "8907"


def test_axxess_lines_4_5_answered_ring_ins_are_not_calls() -> None:
    """A ring-in record of an answered call (EXT 181 / 110) only says how long it rang; the call itself has its own
    ``IN`` record ("Record All Incoming Calls"), so the ring-in adds no call."""
    assert records_of_line(AXXESS, 4) == []
    assert records_of_line(AXXESS, 5) == []


def test_axxess_line_6_toll_local_outbound() -> None:
    """``TLC`` = toll local (outgoing); EXT 104; TRUNK 94151; digits 952-474-1742 as dialled; START 08:52;
    ``S=226`` elapsed in seconds; COST $00.00; no ``*``."""
    check(one(AXXESS, 6), {
        "start": "2012-07-03T08:52:00-05:00", "duration": 226, "direction": "outbound", "extension": "104",
        "number": "952-474-1742", "trunk": "94151", "account": "", "answered": True,
    })


def test_axxess_line_7_international_far_end_hung_up() -> None:
    """``O/I`` = operator/international (outgoing); the ``*`` in column 80 = the trunk's disconnect ended the call."""
    record = one(AXXESS, 7)
    check(record, {"start": "2012-07-03T09:00:00-05:00", "duration": 193, "direction": "outbound",
                   "number": "011-49618296260"})
    assert record["extra"]["far_end_disconnect"] == "1"


def test_axxess_line_10_incoming_caller_and_dnis() -> None:
    """``IN`` incoming, answered by 110; Table 36: the digits are the caller's number (Caller ID) and the DNIS, here
    0061 right-aligned at the end of the field: the caller is the call's number."""
    record = one(AXXESS, 10)
    check(record, {
        "start": "2012-07-03T08:48:00-05:00", "duration": 1, "direction": "inbound", "extension": "110",
        "number": "525530894016", "trunk": "94129", "answered": True,
    })
    assert record["extra"]["dnis"] == "0061"


def test_axxess_line_11_incoming_single_number() -> None:
    """``IN`` 181 with the digits ``0063`` alone: kept as printed (REVIEW.md NOTE: by line 4 it is the DNIS, but the
    record cannot say so)."""
    check(one(AXXESS, 11), {"start": "2012-07-03T09:19:00-05:00", "duration": 80, "direction": "inbound",
                            "extension": "181", "number": "0063"})


# custom capture: the ESI IVX C-Class Installation Manual's CSV SMDR examples A and B (a manual sample), read with the
# options a site would configure (esi-ivx-csv.options.json). Document: the manual's field list, p. I.2.


def test_esi_example_a_inbound() -> None:
    """``"I"`` inbound; start date ``MMDDYYYY`` 07042002 and time ``HHMMSS`` 000852; duration ``HHMMSS`` 000059;
    extension 101; Caller ID 9724229700; name "ESTECH SYS INC. "; line 54. July in Texas: CDT."""
    record = one(ESI, 1)
    check(record, {
        "start": "2002-07-04T00:08:52-05:00", "duration": 59, "direction": "inbound", "extension": "101",
        "number": "9724229700", "trunk": "54", "answered": True,
    })
    assert record["extra"]["caller_name"] == "ESTECH SYS INC."


def test_esi_example_b_outbound_long_call() -> None:
    """``"O"`` outbound on 31 Oct 2003 22:15:02 (CST: daylight time ended on 26 Oct); duration 020512 = 2 h 5 min
    12 s = 7512 s; extension 190 dialled 12125551212 on line 11; the empty name is a place holder."""
    check(one(ESI, 2), {
        "start": "2003-10-31T22:15:02-06:00", "duration": 7512, "direction": "outbound", "extension": "190",
        "number": "12125551212", "trunk": "11", "answered": True,
    })
