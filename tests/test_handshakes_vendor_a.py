"""Vendor handshakes (Panasonic login, Mitel 5000 login and length framing) against fake PBXs on loopback TCP.

A user sees these fail when smdrd connects to the PBX but never receives a record: wrong login bytes, a
prompt it does not wait for, or records cut in the wrong place.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from smdrd.framing import Frame, Skipped
from smdrd.sources.handshakes import Handshake, get_handshake
from smdrd.sources.hs_mitel_5000 import LengthPrefixedFramer, login_message
from smdrd.sources.hs_panasonic import MAX_PROMPT_BYTES, SOURCE_HANDSHAKE_LIMIT
from smdrd.sources.streams import keep_handshake_bytes
from smdrd.testing import CollectingIngest

pytestmark = pytest.mark.timeout(20)

PANASONIC_RECORDS = [
    b"  Date     Time    Ext CO        Dial Number        Ring Duration  Acc code  CD",
    b"-" * 80,
    b"01/02/02 10:15AM 1200  01 1234567890123456               00:01'05 9876543210    ",
]
M5000_RECORD = b"TLC 11202 94003 961-9000                     08:36 00:00:03 $00.00              "

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_pbx(handler: Handler) -> AsyncIterator[int]:
    """A one-connection-at-a-time fake PBX on 127.0.0.1; yields its port."""
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def collect(hs: Handshake, port: int) -> list[Frame]:
    """Connect, run the handshake, and frame everything the PBX sends until it hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        framer = hs.framer(8192)
        frames = list(framer.feed(await hs.start(reader, writer)))
        while chunk := await reader.read(4096):
            frames += framer.feed(chunk)
        return frames + list(framer.close())
    finally:
        writer.close()


def panasonic_pbx(password: bytes, prompt: bytes | None = b"Enter Password: ") -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.readuntil(b"\r\n") != b"SMDR\r\n":
            return
        writer.write(b"SMDR\r\n")  # telnet-style echo
        if prompt is not None:
            writer.write(prompt)
        await writer.drain()
        if await reader.readuntil(b"\r\n") != password + b"\r\n":
            writer.write(b"\r\nInvalid password\r\n")
            return
        writer.write(b"\r\n" + b"\r\n".join(PANASONIC_RECORDS) + b"\r\n")
        await writer.drain()

    return handler


def config(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"password": None, "format_options": {}, **kw})


#: what the journal gets of the login itself: the echo and the prompt, which the parser skips as login echoes.
PANASONIC_LOGIN = [b"SMDR", b"Enter Password: "]


async def test_panasonic_default_password_login_delivers_records() -> None:
    """With no password configured, smdrd logs in with PCCSMDR and the records come through (after the login's
    own lines, which are journalled too and skipped by the parser)."""
    hs = get_handshake("panasonic")(config())
    async with fake_pbx(panasonic_pbx(b"PCCSMDR")) as port:
        frames = await collect(hs, port)
    assert frames == [*PANASONIC_LOGIN, *PANASONIC_RECORDS]


async def test_panasonic_configured_secret_password() -> None:
    """The tcp-client source's ``password`` (a SecretStr) is what is sent."""
    hs = get_handshake("panasonic")(config(password=SecretStr("s3cret")))
    async with fake_pbx(panasonic_pbx(b"s3cret")) as port:
        frames = await collect(hs, port)
    assert frames[-1] == PANASONIC_RECORDS[-1]


async def test_panasonic_password_from_format_options_and_no_prompt() -> None:
    """A PBX that prints no prompt still gets the password (from format_options) after the timeout."""
    hs = get_handshake("panasonic")(config(format_options={"password": "1234", "prompt_timeout": 0.2}))
    async with fake_pbx(panasonic_pbx(b"1234", prompt=None)) as port:
        frames = await collect(hs, port)
    assert frames[-1] == PANASONIC_RECORDS[-1]


async def test_panasonic_wrong_password_gives_no_records() -> None:
    """With the wrong password the fake PBX refuses, and no record line appears."""
    hs = get_handshake("panasonic")(config(password=SecretStr("wrong")))
    async with fake_pbx(panasonic_pbx(b"PCCSMDR")) as port:
        frames = await collect(hs, port)
    assert PANASONIC_RECORDS[-1] not in frames


def panasonic_record(i: int) -> bytes:
    """A distinct Panasonic call record (its end time is 10:00AM plus ``i`` minutes, ``i`` < 60)."""
    return PANASONIC_RECORDS[2].replace(b"10:15AM", b"10:%02dAM" % i)


def panasonic_printing_pbx(before: list[bytes], after: list[bytes], *, prompt: bytes | None = b"Enter Password: ",
                           hang_up: bool = False) -> Handler:
    """A Panasonic that was already printing: ``before`` goes out as soon as the collector says ``SMDR``, ahead
    of the echo and the prompt (a reconnect mid-stream); ``after`` follows the login. ``hang_up``: it closes the
    connection after ``before``, without ever prompting."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.write(b"".join(line + b"\r\n" for line in before))
        await writer.drain()
        if hang_up:
            return
        writer.write(b"SMDR\r\n" + (prompt or b""))
        await writer.drain()
        if await reader.readuntil(b"\r\n") != b"PCCSMDR\r\n":
            return
        writer.write(b"".join(line + b"\r\n" for line in after))
        await writer.drain()

    return handler


async def test_panasonic_records_sent_before_the_prompt_are_kept() -> None:
    """Records the PBX prints before its password prompt reach the stream, in order, ahead of the login's own
    lines and the records after it. Before the fix the handshake kept only what followed the prompt, and these
    calls were lost."""
    before = [panasonic_record(i) for i in range(3)]
    after = [panasonic_record(i) for i in range(3, 5)]
    hs = get_handshake("panasonic")(config())
    async with fake_pbx(panasonic_printing_pbx(before, after)) as port:
        frames = await collect(hs, port)
    assert frames == [*before, *PANASONIC_LOGIN, *after]
    assert hs.unconsumed() == b""  # all of it was returned by start: nothing to journal twice


async def test_panasonic_record_glued_to_the_prompt_stays_whole() -> None:
    """A record written in the same packet as the prompt, right after it, is not glued to the prompt's line."""
    record = panasonic_record(7)
    async with fake_pbx(panasonic_printing_pbx([], [], prompt=b"Password:" + record + b"\r\n")) as port:
        frames = await collect(get_handshake("panasonic")(config()), port)
    assert frames == [b"SMDR", b"Password:", record]


async def test_panasonic_that_prints_more_than_a_prompt_s_worth_without_prompting() -> None:
    """A PBX that is printing and never prompts: past MAX_PROMPT_BYTES the password goes out at once and every
    record read meanwhile is kept (the handshake used to drop them all when no prompt came)."""
    before = [panasonic_record(i % 60).replace(b"9876543210", b"%010d" % i) for i in range(80)]
    assert sum(len(r) + 2 for r in before) > MAX_PROMPT_BYTES
    async with fake_pbx(panasonic_printing_pbx(before, [], prompt=None)) as port:
        frames = await collect(get_handshake("panasonic")(config(format_options={"prompt_timeout": 10})), port)
    assert frames == [*before, b"SMDR"]


async def test_panasonic_that_hangs_up_before_prompting_loses_nothing() -> None:
    """The PBX sends records and closes before any prompt: the handshake does not fail on sending the password
    into a closed connection, and the records are kept."""
    before = [panasonic_record(i) for i in range(3)]
    async with fake_pbx(panasonic_printing_pbx(before, [], hang_up=True)) as port:
        frames = await collect(get_handshake("panasonic")(config()), port)
    assert frames == before


async def test_panasonic_prompt_wait_ends_inside_the_source_s_handshake_limit() -> None:
    """A prompt_timeout longer than the source allows a handshake is cut to half of it, so the wait ends by
    itself and what was read reaches the stream (a cancellation from outside would lose it). tcp-server and
    serial sources allow SOURCE_HANDSHAKE_LIMIT or more."""
    from smdrd.sources import serial, tcp

    assert min(tcp.SERVER_HANDSHAKE_TIMEOUT, serial.HANDSHAKE_TIMEOUT) >= SOURCE_HANDSHAKE_LIMIT
    before = [panasonic_record(i) for i in range(2)]
    hs = get_handshake("panasonic")(config(connect_timeout=4.0, format_options={"prompt_timeout": 600}))

    async def silent_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.write(b"".join(line + b"\r\n" for line in before))
        await writer.drain()
        await reader.read()  # no prompt, ever; wait for the collector to go

    async with fake_pbx(silent_after) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(4.0):  # what TcpClientSource puts around the handshake
                first = await hs.start(reader, writer)
        finally:
            writer.close()
    assert hs.framer(8192).feed(first) == before


async def test_records_read_by_a_login_that_is_cancelled_are_kept() -> None:
    """The login is cut short from outside (a SIGTERM, the source's own limit) after records arrived and before
    any prompt: `keep_handshake_bytes` journals what the handshake had read, and nothing is journalled twice
    once `start` has returned."""
    before = [panasonic_record(i) for i in range(3)]
    hs = get_handshake("panasonic")(config(format_options={"prompt_timeout": 600}))

    async def no_prompt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.write(b"".join(line + b"\r\n" for line in before))
        await writer.drain()
        await reader.read()

    ingest = CollectingIngest()
    async with fake_pbx(no_prompt) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            login = asyncio.create_task(hs.start(reader, writer))
            for _ in range(500):  # until the records have been read (bounded: 10 s)
                if hs.unconsumed().count(b"\r\n") >= len(before):
                    break
                await asyncio.sleep(0.02)
            login.cancel()
            with pytest.raises(asyncio.CancelledError):
                await login
            await keep_handshake_bytes(hs, ingest, "pbx:2300", 8192)
        finally:
            writer.close()
    assert ingest.lines == before and ingest.streams[0].closed
    assert get_handshake("none")(config()).unconsumed() == b""


def m5000_pbx(password: bytes, records: list[bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (count,) = struct.unpack("<I", await reader.readexactly(4))
        body = await reader.readexactly(count)
        if body != b"\x84" + password + b"\x00":
            return
        for rec in records:
            payload = rec + b"\r\n"
            frame = struct.pack("<I", len(payload)) + payload
            # dribble the frame in two pieces so the framer must reassemble it
            writer.write(frame[:3])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(frame[3:])
            await writer.drain()

    return handler


def test_mitel_5000_login_message_matches_the_documented_bytes() -> None:
    """No password: 02 00 00 00 84 00; password 12345678: 0A 00 00 00 84 '12345678' 00."""
    assert login_message("") == b"\x02\x00\x00\x00\x84\x00"
    assert login_message("12345678") == b"\x0a\x00\x00\x00\x8412345678\x00"


async def test_mitel_5000_handshake_and_framing() -> None:
    """The handshake logs in, and the 4-byte length frames come out as the 80-character records."""
    hs = get_handshake("mitel-5000")(config())
    second = M5000_RECORD.replace(b"08:36", b"08:37")
    async with fake_pbx(m5000_pbx(b"", [M5000_RECORD, second])) as port:
        frames = await collect(hs, port)
    assert frames == [M5000_RECORD, second]


async def test_mitel_5000_password_login() -> None:
    """A configured SMDR password is sent in the login; a wrong one gets nothing."""
    async with fake_pbx(m5000_pbx(b"1234", [M5000_RECORD])) as port:
        good = await collect(get_handshake("mitel-5000")(config(password=SecretStr("1234"))), port)
        bad = await collect(get_handshake("mitel-5000")(config(password=SecretStr("9999"))), port)
    assert good == [M5000_RECORD]
    assert bad == []


def test_length_framer_bounds_garbage() -> None:
    """A corrupt length is stepped over: its bytes come out as Skipped frames of at most max_line bytes (all of
    them, in order), then framing resumes; a record cut short by the end of the stream is Skipped whole."""
    framer = LengthPrefixedFramer(100)
    good = struct.pack("<I", 82) + M5000_RECORD + b"\r\n"
    bad = struct.pack("<I", 200) + b"x" * 200
    frames = framer.feed(bad + good)
    skipped = [f for f in frames if isinstance(f, Skipped)]
    assert b"".join(f.raw for f in skipped) == bad and all(len(f.raw) <= 100 for f in skipped)
    assert "says 200 bytes" in skipped[0].reason and "skipped 100 bytes" in skipped[0].reason
    assert frames[len(skipped):] == [M5000_RECORD]
    assert framer.feed(good[:10]) == []
    [tail] = framer.close()
    assert isinstance(tail, Skipped) and tail.raw == good[:10]
    assert "ended 6 bytes into a 82-byte record" in tail.reason


async def test_panasonic_password_echoed_by_the_pbx_never_reaches_the_journal() -> None:
    """A telnet-style PBX echoes what it is sent, the password included: the journal keeps a placeholder."""
    from smdrd.sources.hs_panasonic import ECHO_PLACEHOLDER

    async def echoing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.write(b"SMDR\r\nPassword: ")
        await writer.drain()
        typed = await reader.readuntil(b"\r\n")
        writer.write(typed + b"\r\n".join(PANASONIC_RECORDS) + b"\r\n")
        await writer.drain()

    hs = get_handshake("panasonic")(config(password=SecretStr("s3cret-Pw")))
    async with fake_pbx(echoing) as port:
        frames = await collect(hs, port)
    assert ECHO_PLACEHOLDER in frames
    assert not any(isinstance(f, bytes) and b"s3cret-Pw" in f for f in frames), frames
    assert frames[-3:] == PANASONIC_RECORDS


async def test_panasonic_password_echoed_after_a_late_prompt_never_reaches_the_journal() -> None:
    """A prompt that comes after ``prompt_timeout``: the password went out first, and the PBX's echo lands on
    the prompt's own line (``Enter Password: s3cret-Pw``), which was journalled as it came."""
    from smdrd.sources.hs_panasonic import ECHO_PLACEHOLDER

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        typed = await reader.readuntil(b"\r\n")  # the password, sent when no prompt came in time
        writer.write(b"SMDR\r\nEnter Password: " + typed + b"\r\n".join(PANASONIC_RECORDS) + b"\r\n")
        await writer.drain()

    hs = get_handshake("panasonic")(config(password=SecretStr("s3cret-Pw"),
                                           format_options={"prompt_timeout": 0.2}))
    async with fake_pbx(late) as port:
        frames = await collect(hs, port)
    assert not any(isinstance(f, bytes) and b"s3cret-Pw" in f for f in frames), frames
    assert b"Enter Password: " + ECHO_PLACEHOLDER in frames
    assert frames[-3:] == PANASONIC_RECORDS


def test_a_numeric_password_in_a_record_is_left_alone() -> None:
    """Only the prompt's line and a line that is the password are rewritten: digits of a dialled number that
    happen to be the password are a call, not an echo."""
    from smdrd.framing import Framer
    from smdrd.sources.hs_panasonic import ECHO_PLACEHOLDER, RedactingFramer

    framer = RedactingFramer(Framer(8192), b"1234")
    record = PANASONIC_RECORDS[2]
    assert b"1234" in record
    frames = framer.feed(record + b"\r\n1234\r\nPassword: 1234\r\n")
    assert frames == [record, ECHO_PLACEHOLDER, b"Password: " + ECHO_PLACEHOLDER]
