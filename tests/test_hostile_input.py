"""Hostile input (issue 11, finding 1): no value a line can carry stops the journal writer or costs a line.

Values no real call has are refused where they enter (the shared field converters and `check_record`, for every
parser); the writer stores any entry the database refuses as an ``error`` line with its raw bytes and goes on;
and arbitrary bytes through every parser and the writer into a real SQLite file always end up in the journal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.core import DUPLICATE, ERROR, PARSED, Entry, process_frame
from smdrd.errors import ParseError
from smdrd.parsers._fields import hms_seconds, seconds, uint, ymd_hms
from smdrd.parsing import ParserContext, format_names, get_parser_class, parse_line
from smdrd.record import MAX_CALL_SECONDS, CallRecord, Direction, check_record
from smdrd.store.sqlite.writer import JournalWriter

IPO_GOOD = ("2017/07/01 08:30:22,00:01:01,0,217,O,600988600,0600988600,,0,{id},0,E217,GRZYBEK,T9005,Line 5.0,"
            "0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")
IPO_HOSTILE = IPO_GOOD.replace("00:01:01", "99999999999999999999:00:00").format(id=1)


def ipo_line(i: int) -> bytes:
    return IPO_GOOD.format(id=1_000_000 + i).encode()


# --- where values enter --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("convert", "text"), [
    (hms_seconds, "99999999999999999999:00:00"),
    (hms_seconds, "744:00:01"),  # 31 days and a second
    (hms_seconds, "1" * 5000 + ":00:00"),  # longer than int() will read
    (seconds, "2678401"),
    (seconds, "18446744073709551616"),
    (seconds, "\uff11\uff12"),  # full-width digits
    (seconds, "\u00b2"),  # a superscript two: isdigit() says yes, int() says no
    (uint, "9223372036854775808"),  # 2**63
    (uint, "\u0661\u0662"),  # Arabic-Indic digits, which int() would read as 12
])
def test_converters_refuse_what_no_call_has(convert: object, text: str) -> None:
    with pytest.raises(ValueError):
        convert(text)  # type: ignore[operator]


def test_converters_keep_the_largest_real_values() -> None:
    assert hms_seconds("744:00:00") == MAX_CALL_SECONDS
    assert seconds(str(MAX_CALL_SECONDS)) == MAX_CALL_SECONDS
    assert uint("9223372036854775807") == 2**63 - 1


@pytest.mark.parametrize("text", ["9999/12/31 23:59:59", "1970/01/01 00:00:00", "2100/01/01 00:00:00"])
def test_dates_outside_the_window_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="year"):
        ymd_hms(text, UTC)


def test_hostile_ipo_line_is_a_parse_error_naming_the_field() -> None:
    entry = process_frame(IPO_HOSTILE.encode(), get_parser_class("avaya-ipo")(), "utf-8", source="s", peer="p",
                          received_at=1)
    assert entry.status == ERROR and not entry.calls
    assert "connected_time" in (entry.error or "") and "31 days" in (entry.error or "")


RECORD = CallRecord(format="x", start=datetime(2026, 1, 5, 8, 0, tzinfo=UTC), duration=60,
                    direction=Direction.OUTBOUND, extension="201", number="0123")


@pytest.mark.parametrize(("change", "field"), [
    ({"duration": 10**20}, "duration"),
    ({"duration": -1}, "duration"),
    ({"duration": 1.5}, "duration"),
    ({"ring": MAX_CALL_SECONDS + 1}, "ring"),
    ({"start": datetime(9999, 12, 31)}, "start"),
    ({"start": datetime(1900, 1, 1)}, "start"),
    ({"leg": 2**64}, "leg"),
    ({"number": "1" * 100_000}, "number"),
    ({"extension": 201}, "extension"),
    ({"answered": 1}, "answered"),
])
def test_check_record_is_the_boundary_for_every_parser(change: dict[str, object], field: str) -> None:
    """What a third-party parser returns is checked too: its bug is a ParseError naming the field."""
    with pytest.raises(ParseError) as info:
        check_record(dataclasses.replace(RECORD, **change))  # type: ignore[arg-type]
    assert info.value.field == field


def test_check_record_accepts_a_real_call() -> None:
    check_record(RECORD)
    check_record(dataclasses.replace(RECORD, duration=MAX_CALL_SECONDS, ring=None))


# --- every parser: only ParseError, only bounded records -----------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)
_DIGITISH = st.text(st.sampled_from("0123456789:/,.- \u00b2\uff11\u0661|\"T9"), max_size=200)


@pytest.mark.parametrize("fmt", format_names())
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.one_of(_TEXT, _DIGITISH))
def test_any_text_is_a_bounded_record_or_a_parse_error(fmt: str, line: str) -> None:
    cls = get_parser_class(fmt)
    parser = cls(ParserContext(timezone=UTC, now=datetime(2026, 1, 5, tzinfo=UTC)))
    try:
        records = parse_line(parser, line)
    except ParseError:
        return
    for record in records or ():
        check_record(record)


@pytest.mark.parametrize("fmt", format_names())
@settings(max_examples=100)
@given(seed=st.integers(0, 2**32 - 1), field_index=st.integers(0, 60), junk=st.sampled_from(
    ["99999999999999999999", "9" * 30, "-1", "\u00b2", "\uff19\uff19", "9999", "99:99:99", "9999/12/31 23:59:59",
     "1e400", "NaN", "", "\x00"]))
def test_mangled_real_lines_never_raise_anything_but_parse_error(fmt: str, seed: int, field_index: int,
                                                                   junk: str) -> None:
    """A rendered real line with one field (or fixed-width slice) replaced by a hostile value."""
    from smdrd.simulator import Traffic, render_calls

    cls = get_parser_class(fmt)
    lines = list(render_calls(cls, Traffic(seed=seed, country="US", format=fmt), 1))
    parser = cls(ParserContext(timezone=UTC, now=datetime(2026, 1, 5, tzinfo=UTC)))
    for header in cls.header_lines():
        parse_line(parser, header)
    for line in lines:
        sep = "," if line.count(",") > 3 else ("|" if line.count("|") > 3 else None)
        if sep:
            parts = line.split(sep)
            parts[field_index % len(parts)] = junk
            mangled = sep.join(parts)
        else:
            at = (field_index * 7) % max(len(line), 1)
            mangled = line[:at] + junk + line[at + len(junk):]
        try:
            records = parse_line(parser, mangled)
        except ParseError:
            continue
        for record in records or ():
            check_record(record)


# --- the writer ---------------------------------------------------------------------------------------------


def _stored(db: Path) -> list[tuple[bytes, str, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return [(bytes(r[0]), r[1], r[2]) for r in conn.execute("SELECT raw, status, error FROM lines ORDER BY id")]
    finally:
        conn.close()


async def test_an_entry_the_database_refuses_is_an_error_line_and_the_writer_goes_on(tmp_path: Path) -> None:
    """The critical finding: an integer SQLite cannot store used to kill the writer task silently."""
    db = tmp_path / "j.db"
    writer = JournalWriter(db, commit_interval=0.01)
    await writer.open()
    task = asyncio.create_task(writer.run())
    parser = get_parser_class("avaya-ipo")()
    good = [process_frame(ipo_line(i), parser, "utf-8", source="s", peer="p", received_at=1) for i in range(1000)]
    # A call as a buggy plugin (or a future field without bounds) could make it, past check_record: a 20-digit
    # ring time.
    call = good[0].calls[0]
    bad = dataclasses.replace(good[0], raw=b"hostile", calls=[dataclasses.replace(
        call, uid=f"hostile-{call.uid}", record=dataclasses.replace(call.record, ring=10**20))])
    text_bad = dataclasses.replace(good[1], raw=b"surrogate", peer="\udcff", calls=[])
    writer.submit(bad)
    writer.submit(text_bad)
    for e in good:
        writer.submit(e)
    await asyncio.wait_for(writer.flushed(), 30)
    assert not task.done(), "the writer task must keep running"
    rows = _stored(db)
    assert len(rows) == 1002
    assert rows[0][0] == b"hostile" and rows[0][1] == ERROR and "OverflowError" in (rows[0][2] or "")
    assert rows[1][0] == b"surrogate"
    assert [r[1] for r in rows[2:]] == [PARSED] * 1000
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 1000
    conn.close()
    assert writer.stats.lines == 1002 and writer.stats.calls == 1000
    await writer.close()
    await task


async def test_the_same_line_three_times_in_one_batch_is_one_call_and_two_duplicates(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    committed: list[Entry] = []
    writer = JournalWriter(db, commit_interval=0.5, on_commit=lambda es, _s: committed.extend(es))
    await writer.open()
    task = asyncio.create_task(writer.run())
    parser = get_parser_class("avaya-ipo")()
    for _ in range(3):
        writer.submit(process_frame(ipo_line(7), parser, "utf-8", source="s", peer="p", received_at=1))
    await asyncio.wait_for(writer.flushed(), 10)
    assert [r[1] for r in _stored(db)] == [PARSED, DUPLICATE, DUPLICATE]
    assert writer.stats.calls == 1 and writer.stats.duplicates == 2
    assert sum(len(e.calls) for e in committed) == 1, "listeners (metrics) must count what was stored"
    await writer.close()
    await task


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=400), min_size=1, max_size=40), fmt=st.sampled_from(format_names()))
def test_arbitrary_bytes_through_every_parser_and_the_writer_are_all_journalled(
        tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], fmt: str) -> None:
    db = tmp_path_factory.mktemp("j") / "j.db"
    cls = get_parser_class(fmt)

    async def run() -> JournalWriter:
        writer = JournalWriter(db, commit_interval=0.001, batch_rows=7)
        await writer.open()
        task = asyncio.create_task(writer.run())
        parser = cls(ParserContext(timezone=UTC))
        for raw in lines:
            writer.submit(process_frame(raw, parser, "utf-8", source="s", peer="p", received_at=1))
        await asyncio.wait_for(writer.flushed(), 30)
        assert not task.done()
        await writer.close()
        await task
        return writer

    writer = asyncio.run(run())
    assert [r[0] for r in _stored(db)] == lines
    assert writer.stats.lines == len(lines)
