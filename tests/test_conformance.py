"""Every registered format through the conformance kit (`smdrd.testing`): garbage in gives only `ParseError` and
never a record out of bounds, what `render` writes reads back as the same call, and the class is a well-formed
plugin. The per-format parts are data: the real lines to mangle and the calls each format can carry.

These properties were copied into every ``tests/test_parser_*.py``; they live here once (the strategies below
are the ones those files had). Field-by-field checks of real lines stay in the per-format files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from smdrd.errors import ParseError, SmdrdError
from smdrd.parsers.mitel_mivb import MitelMiVBParser
from smdrd.parsing import ParserContext, format_names, get_parser_class
from smdrd.record import MAX_CALL_SECONDS, CallRecord, Direction
from smdrd.sources import handshakes
from smdrd.sources.handshakes import Handshake
from smdrd.testing import (
    ROUND_TRIP_FIELDS,
    call_records,
    check_detection,
    check_garbage,
    check_parser,
    check_round_trip,
)

from . import test_parser_3cx as t3cx
from . import test_parser_asterisk as tast
from . import test_parser_avaya_cm as tcm
from . import test_parser_avaya_ipo as tipo
from . import test_parser_cisco as tcisco
from . import test_parser_custom as tcustom
from . import test_parser_mitel as tmitel
from . import test_parser_nec as tnec
from . import test_parser_panasonic as tpana
from . import test_parser_siemens as tsie

Drawn = SearchStrategy[CallRecord] | SearchStrategy[tuple[CallRecord, ParserContext]]


def _digits(lo: int, hi: int, alphabet: str = "0123456789") -> SearchStrategy[str]:
    return st.text(alphabet, min_size=lo, max_size=hi)


# --- the calls each format can carry (moved from the per-format files) ----------------------------------------

@st.composite
def ipo_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    duration = draw(st.integers(0, 5 * 3600))
    return CallRecord(
        format="avaya-ipo",
        start=draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1))).replace(microsecond=0),
        duration=duration, ring=draw(st.integers(0, 600)), direction=direction,
        extension=draw(_digits(2, 5)), number=draw(_digits(1, 12)),
        trunk="" if direction is Direction.INTERNAL else f"T9{draw(st.integers(0, 999)):03d}",
        call_id=str(draw(st.integers(1_000_000, 9_999_999))), answered=duration > 0,
    )


@st.composite
def threecx_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    answered = draw(st.booleans())
    return CallRecord(
        format="3cx",
        start=datetime(2018, 1, 1, tzinfo=t3cx.TZ) + timedelta(seconds=draw(st.integers(0, 10**9))),
        duration=draw(st.integers(0, 10**5)) if answered else 0,
        ring=draw(st.integers(0, 600)),
        direction=direction,
        extension=draw(_digits(1, 12)),
        number=draw(_digits(1, 12)),
        trunk="" if direction is Direction.INTERNAL else draw(_digits(1, 12)),
        answered=answered,
    )


@st.composite
def asterisk_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    answered = draw(st.booleans())
    peer = draw(st.text("abcdefgh", min_size=1, max_size=8))
    trunk = "" if direction is Direction.INTERNAL else f"SIP/{peer}"
    number = draw(_digits(2, 5)) if direction is Direction.INTERNAL else draw(_digits(1, 12))
    return CallRecord(
        format="asterisk-csv",
        start=datetime(2020, 1, 1, tzinfo=tast.TZ) + timedelta(seconds=draw(st.integers(0, 10**8))),
        duration=draw(st.integers(0, 10**5)) if answered else 0,
        ring=draw(st.integers(0, 600)),
        direction=direction,
        extension=draw(_digits(2, 5)),
        number=number,
        trunk=trunk,
        answered=answered,
    )


@st.composite
def cm_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    start = draw(st.datetimes(min_value=datetime(2001, 1, 2), max_value=datetime(2098, 12, 30)))
    trunk = draw(_digits(1, 4))
    if direction is Direction.INBOUND:
        answered = draw(st.booleans())
        ring = draw(st.none() | st.integers(0, 600)) if answered else draw(st.integers(0, 600))
        duration = draw(st.integers(1, 99999)) if answered else 0
        return CallRecord("avaya-cm", start, duration, direction, draw(_digits(1, 18)), draw(_digits(0, 10)),
                          ring=ring, trunk=trunk, answered=answered)
    duration = draw(st.integers(0, 99999))
    number = draw(_digits(1, 18, "0123456789#*"))
    return CallRecord("avaya-cm", start, duration, direction, draw(_digits(1, 10)), number,
                      trunk=trunk if direction is Direction.OUTBOUND else "", answered=duration > 0)


@st.composite
def cisco_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    answered = draw(st.booleans())
    trunk = "" if direction is Direction.INTERNAL else "GW" + draw(st.text("ABCDEF0123", max_size=8))
    return CallRecord(
        format="cisco-cucm",
        start=datetime(2015, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**9))),
        duration=draw(st.integers(0, 10**5)) if answered else 0,
        ring=draw(st.integers(0, 600)),
        direction=direction,
        extension=draw(_digits(1, 12)),
        number=draw(_digits(1, 12)),
        trunk=trunk,
        call_id=str(draw(st.integers(1, 10**6))),
        answered=answered,
    )


@st.composite
def mivb_records(draw: st.DrawFn) -> tuple[CallRecord, ParserContext]:
    """Up to the longest real call (`MAX_CALL_SECONDS`): MiVB's 4-digit hours reach further, and a line that
    does is a `ParseError` (see `test_mivb_durations_beyond_a_real_call_are_refused`)."""
    direction = draw(st.sampled_from(list(Direction)))
    start = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31)))
    duration = draw(st.integers(0, MAX_CALL_SECONDS))
    ext = draw(_digits(1, 7))
    if direction is Direction.INBOUND:
        answered = draw(st.booleans())
        ring = draw(st.integers(0, 9999))
        trunk = draw(st.just("") | _digits(1, 6).map(lambda d: "T" + d))
        record = CallRecord("mitel-mivb", start, duration if answered else 0, direction, ext,
                            draw(_digits(0, 20)), ring=ring, trunk=trunk, answered=answered)
    elif direction is Direction.INTERNAL:
        record = CallRecord("mitel-mivb", start, duration, direction, ext, draw(_digits(1, 7)),
                            answered=duration > 0)
    else:
        answered = draw(st.booleans())
        trunk = draw(st.just("") | _digits(1, 6).map(lambda d: "T" + d))
        record = CallRecord("mitel-mivb", start, duration if answered else 0, direction, ext,
                            draw(_digits(1, 21)), trunk=trunk, answered=answered)
    return record, ParserContext(year=start.year)


@st.composite
def m5000_records(draw: st.DrawFn) -> tuple[CallRecord, ParserContext]:
    """A call, and a parser that reads it up to 11 hours later (the format's start time has no date)."""
    direction = draw(st.sampled_from(list(Direction)))
    start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 30)))
    answered = draw(st.booleans()) if direction is Direction.INBOUND else True
    number = draw(st.text("0123456789-", min_size=1, max_size=28).filter(lambda s: s.strip() == s))
    # an unanswered ring-in's ELAPSED is its ring time: no talk time
    elapsed = draw(st.integers(0, 359999))
    record = CallRecord("mitel-5000", start, elapsed if answered else 0, direction,
                        draw(_digits(1, 5)) if answered else "", number, trunk=draw(_digits(1, 5)),
                        ring=None if answered else elapsed, answered=answered)
    later = draw(st.integers(0, 11 * 3600))
    return record, ParserContext(now=record.start + timedelta(seconds=later))


@st.composite
def nec_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    answered = draw(st.booleans())
    start = datetime(2019, 12, 1, tzinfo=tnec.TZ) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 25)))
    return CallRecord(
        format="nec-sv", start=start, duration=draw(st.integers(0, 99 * 3600)) if answered else 0, ring=None,
        direction=direction, extension=draw(_digits(1, 10)), number=draw(_digits(0, 20)),
        trunk="" if direction is Direction.INTERNAL else draw(_digits(1, 4)),
        answered=answered,
    )


@st.composite
def panasonic_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 1)))
    answered = draw(st.booleans())
    duration = draw(st.integers(0, 99 * 3600 + 3599)) if answered else 0
    ext = draw(_digits(1, 5))
    if direction is Direction.OUTBOUND:
        number, ring = draw(_digits(1, 25)), None
    else:
        number = draw(_digits(0, 22))
        ring = draw(st.none() | st.integers(0, 599))
    trunk = "" if direction is Direction.INTERNAL else draw(_digits(2, 2))
    return CallRecord("panasonic", start, duration, direction, ext, number, ring=ring, trunk=trunk,
                      answered=answered)


@st.composite
def siemens_records(draw: st.DrawFn) -> CallRecord:
    answered = draw(st.booleans())
    return CallRecord(
        format="siemens-hipath",
        start=datetime(2001, 1, 1, tzinfo=tsie.TZ) + timedelta(seconds=draw(st.integers(0, 10**9))),
        duration=draw(st.integers(1, 99999)) if answered else 0, ring=None,
        direction=draw(st.sampled_from([Direction.INBOUND, Direction.OUTBOUND])), extension=draw(_digits(1, 6)),
        number=draw(_digits(0, 25)),
        trunk=draw(_digits(1, 3)),
        answered=answered,
    )


@st.composite
def custom_records(draw: st.DrawFn) -> CallRecord:
    direction = draw(st.sampled_from(list(Direction)))
    answered = draw(st.booleans())
    number = draw(_digits(1, 4)) if direction is Direction.INTERNAL else draw(_digits(5, 12))
    if direction is Direction.INBOUND:
        number = ""  # the number-length rule reads an empty number as inbound
    return CallRecord(
        format="custom",
        start=datetime(2023, 1, 1, tzinfo=tcustom.TZ) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 360))),
        duration=draw(st.integers(1, 99 * 3600)) if answered else 0,
        ring=draw(st.integers(0, 600)),
        direction=direction, extension=draw(_digits(1, 4)), number=number,
        trunk=draw(st.text("T0123456789", min_size=1, max_size=4)), answered=answered,
    )


# --- what the kit is given per format -------------------------------------------------------------------------

def _exact_width(width: int) -> Callable[[list[str]], None]:
    def check(lines: list[str]) -> None:
        assert [len(line) for line in lines] == [width] * len(lines)
    return check


def _at_most(width: int) -> Callable[[list[str]], None]:
    def check(lines: list[str]) -> None:
        assert all(len(line) <= width for line in lines), lines
    return check


@dataclass
class Case:
    """One format (one set of options) as the kit checks it."""

    format: str
    samples: list[str]
    records: Drawn | None = None
    context: ParserContext = field(default_factory=ParserContext)
    fields: tuple[str, ...] = ROUND_TRIP_FIELDS
    check_lines: Callable[[list[str]], None] | None = None
    encoding: str | None = None
    max_bytes: int = 400
    examples: int = 300
    id: str = ""


MITEL_NOW = ParserContext(now=datetime(2024, 2, 29))
CASES = [
    Case("avaya-ipo", [tipo.INTERNAL, tipo.OUTBOUND, tipo.MISSED_IN, tipo.SIP_IN, *tipo.TRANSFER, tipo.NETWORK_IN,
                       tipo.SHORT_CODE],
         ipo_records(), fields=(*ROUND_TRIP_FIELDS, "call_id"), max_bytes=300),
    Case("avaya-cm", tcm.REAL, cm_records(), ParserContext(country="US"), encoding="ascii", max_bytes=300),
    Case("3cx", [t3cx.REAL, t3cx.PASSIVE.read_text()], threecx_records(), ParserContext(timezone=t3cx.TZ)),
    Case("asterisk-csv", tast.sample_lines() + tast.kafka_lines(), asterisk_records(), ParserContext(timezone=tast.TZ)),
    Case("cisco-cucm", tcisco.lines("cdr.smdr") + tcisco.lines("cmr.smdr") + tcisco.lines("csvutil-2016-01.smdr"),
         cisco_records(),
         ParserContext(timezone=tcisco.TZ), max_bytes=600, examples=150),
    Case("mitel-mivb", tmitel.REAL, mivb_records(), MITEL_NOW, max_bytes=300),
    Case("mitel-5000", [tmitel.M5000_EXAMPLE], m5000_records(), MITEL_NOW, check_lines=_exact_width(80),
         max_bytes=300),
    Case("nec-sv", [tnec.HEADER, tnec.MANUAL, tnec.POT, tnec.PIN, tnec.PTRS, tnec.ICM, tnec.NAMED, tnec.REST],
         nec_records(),
         ParserContext(timezone=tnec.TZ), max_bytes=300),
    Case("panasonic", tpana.MANUAL, panasonic_records(), tpana.US, check_lines=_at_most(80), max_bytes=300),
    Case("siemens-hipath", [*tsie.COMPRESSED, tsie.GETACCOUNT, tsie.SERIAL_IN, tsie.SERIAL_FULL,
                           tsie.CONTROLS + tsie.SERIAL_TRANSFERRED], siemens_records(),
         ParserContext(timezone=tsie.TZ), max_bytes=300),
    Case("custom", ["05/03/2024;14:02:09;201;T3;0612345678;00:03:15;7;O;junk;4711"], custom_records(),
         ParserContext(timezone=tcustom.TZ, options=tcustom.CSV_OPTIONS), max_bytes=300, examples=150,
         id="custom-csv"),
    Case("custom", [], custom_records(), ParserContext(timezone=tcustom.TZ, options=tcustom.FIXED_OPTIONS,
                                                        year=2023),
         fields=("duration", "direction", "extension", "number", "answered"), max_bytes=300, examples=150,
         id="custom-fixed"),
]


def _ids(case: Case) -> str:
    return case.id or case.format


def test_every_registered_format_has_a_case() -> None:
    assert {c.format for c in CASES} == set(format_names())


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_garbage_in_gives_only_parse_errors_and_bounded_records(case: Case) -> None:
    """Line noise and truncated or mangled real lines are bad lines, never a crash or an impossible call."""
    check_garbage(get_parser_class(case.format), samples=case.samples, context=case.context,
                  encoding=case.encoding, max_bytes=case.max_bytes, max_examples=case.examples)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_rendered_records_parse_back(case: Case) -> None:
    """What `smdrd simulate --format X` writes (after the format's header lines) reads back as the same call."""
    assert case.records is not None
    check_round_trip(get_parser_class(case.format), case.records, context=case.context, fields=case.fields,
                     check_lines=case.check_lines, max_examples=min(case.examples, 200))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_each_format_detects_its_own_samples_and_parses_them(case: Case) -> None:
    """`smdrd detect` scores a format high only when its parser reads the lines: its own samples must pass."""
    check_detection(get_parser_class(case.format), case.samples, context=case.context)


@pytest.mark.parametrize("name", format_names())
def test_every_format_is_a_well_formed_plugin(name: str) -> None:
    cls = get_parser_class(name)
    assert cls.name == name
    assert cls.detect([]) == 0.0


def test_mivb_durations_beyond_a_real_call_are_refused() -> None:
    """MiVB's duration field has 4-digit hours (9999 h); past 31 days it is no real call, and says which field."""
    record = CallRecord("mitel-mivb", datetime(2019, 3, 1, 8), MAX_CALL_SECONDS + 1, Direction.OUTBOUND, "2001",
                        "5551234", answered=True)
    (line,) = MitelMiVBParser.render(record)
    with pytest.raises(ParseError) as info:
        MitelMiVBParser(ParserContext(year=2019)).parse(line)
    assert info.value.field == "duration"
    unanswered = CallRecord("mitel-mivb", datetime(2019, 3, 1, 8), 0, Direction.INBOUND, "2001", "5551234",
                            ring=9999 * 3600, trunk="T1", answered=False)
    with pytest.raises(ParseError) as info:
        MitelMiVBParser(ParserContext(year=2019)).parse(MitelMiVBParser.render(unanswered)[0])
    assert info.value.field == "ring"


# --- the kit as a third-party plugin uses it --------------------------------------------------------------------

def test_check_parser_runs_the_whole_kit_on_a_plugin() -> None:
    from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser

    check_parser(AvayaIPOfficeParser, samples=[tipo.INTERNAL, tipo.OUTBOUND], records=ipo_records(),
                 max_examples=30)


def test_the_kit_catches_a_parser_that_crashes_or_goes_out_of_bounds() -> None:
    from smdrd.parsing import Parser

    class Crashes(Parser):
        name = "crashes"
        description = "raises IndexError on short lines"

        def parse(self, line: str) -> Any:
            return [line.split(",")[3]]

    class Unbounded(Parser):
        name = "unbounded"
        description = "reads any number of seconds"

        def parse(self, line: str) -> tuple[CallRecord, ...]:
            return (CallRecord("unbounded", datetime(2024, 1, 1), len(line) * 10**9, Direction.INBOUND, "1",
                               "2"),)

    with pytest.raises(IndexError):
        check_garbage(Crashes, max_examples=20)
    with pytest.raises(ParseError):
        check_garbage(Unbounded, samples=["x"], max_examples=20)


def test_call_records_is_a_default_strategy_for_a_simple_format() -> None:
    from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser

    check_round_trip(AvayaIPOfficeParser, call_records("avaya-ipo", start=datetime(2010, 1, 1)), max_examples=30,
                     fields=("duration", "ring", "direction", "extension", "number", "answered"))


def test_nec_header_page_dates_the_records() -> None:
    """The kit feeds `header_lines(at=start)`: NEC's page header carries the year the records lack."""
    from smdrd.parsers.nec_sv import NecSVParser

    lines = NecSVParser.header_lines(datetime(2019, 12, 1))
    assert lines[0] == NecSVParser.page_header(date(2019, 12, 1))


# --- handshakes: the entry-point group ``smdrd.handshakes`` ---------------------------------------------------

class AcmeLogin(Handshake):
    """A third-party handshake, as a plugin's entry point names it."""

    name = "acme-login"


NOT_A_HANDSHAKE = object()


@pytest.fixture
def handshake_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Handshake]]:
    """A registry holding only ``none``, so lookups go to the entry points and modules again."""
    registry: dict[str, type[Handshake]] = {"none": Handshake}
    monkeypatch.setattr(handshakes, "HANDSHAKES", registry)
    return registry


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    eps = {name: EntryPoint(name, value, handshakes.ENTRY_POINT_GROUP) for name, value in values.items()}
    monkeypatch.setattr(handshakes, "_entry_points", lambda: eps)


def test_built_in_handshakes_are_in_the_entry_point_group() -> None:
    from importlib.metadata import entry_points

    from smdrd.sources.hs_mitel_5000 import Mitel5000Handshake
    from smdrd.sources.hs_panasonic import PanasonicHandshake

    eps = {ep.name: ep.load() for ep in entry_points(group=handshakes.ENTRY_POINT_GROUP)}
    assert eps == {"mitel-5000": Mitel5000Handshake, "panasonic": PanasonicHandshake}
    for name in format_names():  # every handshake a format asks for is found
        assert handshakes.get_handshake(get_parser_class(name).handshake).name == get_parser_class(name).handshake


def test_a_plugin_handshake_is_found_through_its_entry_point(
        monkeypatch: pytest.MonkeyPatch, handshake_registry: dict[str, type[Handshake]]) -> None:
    _with_entry_points(monkeypatch, **{"acme-login": f"{__name__}:AcmeLogin"})
    assert handshakes.get_handshake("acme-login") is AcmeLogin
    assert handshake_registry["acme-login"] is AcmeLogin
    assert "acme-login" in handshakes.handshake_names()


def test_an_entry_point_that_is_no_handshake_is_refused(
        monkeypatch: pytest.MonkeyPatch, handshake_registry: dict[str, type[Handshake]]) -> None:
    _with_entry_points(monkeypatch, bogus=f"{__name__}:NOT_A_HANDSHAKE")
    with pytest.raises(SmdrdError, match="not a smdrd Handshake subclass"):
        handshakes.get_handshake("bogus")


def test_built_ins_load_by_module_name_without_package_metadata(
        monkeypatch: pytest.MonkeyPatch, handshake_registry: dict[str, type[Handshake]]) -> None:
    """A source tree that was never installed has no entry points: ``hs_<name>`` modules still register."""
    import importlib
    import sys

    import smdrd.sources
    import smdrd.sources.hs_panasonic as original

    _with_entry_points(monkeypatch)
    # imported afresh (so its @register runs against the empty registry); the original comes back afterwards
    monkeypatch.setattr(smdrd.sources, "hs_panasonic", original)
    monkeypatch.delitem(sys.modules, "smdrd.sources.hs_panasonic")
    found = handshakes.get_handshake("panasonic")
    assert found is importlib.import_module("smdrd.sources.hs_panasonic").PanasonicHandshake
    with pytest.raises(SmdrdError, match="unknown handshake 'nope'; known: none, panasonic"):
        handshakes.get_handshake("nope")


def test_register_still_adds_a_handshake_by_name(handshake_registry: dict[str, type[Handshake]]) -> None:
    @handshakes.register
    class Local(Handshake):
        name = "local-test"

    assert handshakes.get_handshake("local-test") is Local
