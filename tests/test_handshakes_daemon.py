"""The daemon picks each format's transport handshake for a source: a tcp-client source of format `panasonic`
logs in, one of format `mitel-5000` logs in and unwraps length-prefixed records, end to end into the journal.

A user sees this fail when the daemon connects to such a PBX and no call ever arrives.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from smdrd.config import Settings
from smdrd.testing import running_daemon
from tests.test_handshakes_vendor_a import (
    M5000_RECORD,
    PANASONIC_LOGIN,
    PANASONIC_RECORDS,
    fake_pbx,
    m5000_pbx,
    panasonic_pbx,
    panasonic_printing_pbx,
    panasonic_record,
)

pytestmark = pytest.mark.timeout(30)


def settings(tmp_path: Path, fmt: str, port: int, **extra: object) -> Settings:
    return Settings.model_validate({
        "site": {"timezone": "UTC", "country": "US"},
        "database": {"path": str(tmp_path / "hs.db"), "commit_interval_ms": 10},
        "sources": [{"name": "pbx", "kind": "tcp-client", "format": fmt, "host": "127.0.0.1", "port": port,
                     "reconnect_min": 5.0, "reconnect_max": 5.0, "year": 2026, **extra}],
        "http": {"enabled": False},
    })


async def journal_when(tmp_path: Path, statuses: int) -> list[tuple[bytes, str]]:
    for _ in range(300):
        if (tmp_path / "hs.db").exists():
            try:
                rows = sqlite3.connect(tmp_path / "hs.db").execute(
                    "SELECT raw, status FROM lines ORDER BY id").fetchall()
            except sqlite3.OperationalError:  # the daemon is still creating its tables
                rows = []
            if len(rows) >= statuses:
                return [(bytes(r), str(s)) for r, s in rows]
        await asyncio.sleep(0.05)
    raise AssertionError("the journal did not fill")


async def test_panasonic_source_logs_in_with_the_format_s_handshake(tmp_path: Path) -> None:
    async with fake_pbx(panasonic_pbx(b"PCCSMDR")) as port, running_daemon(settings(tmp_path, "panasonic", port)):
        rows = await journal_when(tmp_path, len(PANASONIC_LOGIN) + 3)
    record = [raw for raw, status in rows if status == "parsed"]
    assert record == [PANASONIC_RECORDS[2].rstrip()] or record == [PANASONIC_RECORDS[2]]
    assert sqlite3.connect(tmp_path / "hs.db").execute("SELECT extension FROM calls").fetchone()[0] == "1200"


async def test_panasonic_password_from_the_source_config(tmp_path: Path) -> None:
    async with (fake_pbx(panasonic_pbx(b"s3cret")) as port,
                running_daemon(settings(tmp_path, "panasonic", port, password="s3cret"))):
        rows = await journal_when(tmp_path, len(PANASONIC_LOGIN) + 3)
    assert any(status == "parsed" for _, status in rows)


async def test_mitel_5000_source_unwraps_length_prefixed_records(tmp_path: Path) -> None:
    async with (fake_pbx(m5000_pbx(b"", [M5000_RECORD, M5000_RECORD.replace(b"11202", b"11203")])) as port,
                running_daemon(settings(tmp_path, "mitel-5000", port))):
        rows = await journal_when(tmp_path, 2)
    assert [status for _, status in rows] == ["parsed", "parsed"]
    exts = [r[0] for r in sqlite3.connect(tmp_path / "hs.db").execute("SELECT extension FROM calls ORDER BY id")]
    assert exts == ["11202", "11203"]


async def test_panasonic_records_before_the_prompt_are_journalled(tmp_path: Path) -> None:
    """A Panasonic that was already printing sends records before its password prompt (a reconnect mid-stream):
    every one is journalled and stored as a call, with the login's own lines journalled as skipped."""
    before = [panasonic_record(i) for i in range(4)]
    after = [panasonic_record(i) for i in range(4, 6)]
    async with (fake_pbx(panasonic_printing_pbx(before, after)) as port,
                running_daemon(settings(tmp_path, "panasonic", port))):
        rows = await journal_when(tmp_path, len(before) + len(PANASONIC_LOGIN) + len(after))
    assert [raw for raw, status in rows if status == "parsed"] == [*before, *after]
    assert [(raw, status) for raw, status in rows if status != "parsed"] == [
        (line, "skipped") for line in PANASONIC_LOGIN]
    calls = sqlite3.connect(tmp_path / "hs.db").execute("SELECT count(*) FROM calls").fetchone()[0]
    assert calls == len(before) + len(after)


async def test_a_stop_during_a_panasonic_login_keeps_the_records_it_had_read(tmp_path: Path) -> None:
    """A PBX already printing records but not (yet) prompting: SIGTERM arrives while smdrd waits for the prompt.
    What the login read is journalled, not dropped with the cancelled login."""
    record = PANASONIC_RECORDS[2]

    async def printing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.write(record + b"\r\n")
        await writer.drain()
        await asyncio.sleep(30)  # no prompt, no more output

    async with (fake_pbx(printing) as port,
                running_daemon(settings(tmp_path, "panasonic", port, connect_timeout=20.0,
                                        format_options={"prompt_timeout": 10.0})) as daemon):
        for _ in range(200):
            hs_bytes = [rs.source.status.connected for rs in daemon.sources.values()]
            if all(hs_bytes):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the record is read by the login, which still waits for a prompt
    rows = sqlite3.connect(tmp_path / "hs.db").execute("SELECT raw, status FROM lines ORDER BY id").fetchall()
    assert (record, "parsed") in [(bytes(r), s) for r, s in rows], rows
