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

from smdrd.framing import Oversized
from smdrd.sources.handshakes import Handshake, get_handshake
from smdrd.sources.hs_mitel_5000 import LengthPrefixedFramer, login_message

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


async def collect(hs: Handshake, port: int) -> list[bytes | Oversized]:
    """Connect, run the handshake, and frame everything the PBX sends until it hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        framer = hs.framer(8192)
        frames = framer.feed(await hs.start(reader, writer))
        while chunk := await reader.read(4096):
            frames += framer.feed(chunk)
        return frames + framer.close()
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


async def test_panasonic_default_password_login_delivers_records() -> None:
    """With no password configured, smdrd logs in with PCCSMDR and the records come through."""
    hs = get_handshake("panasonic")(config())
    async with fake_pbx(panasonic_pbx(b"PCCSMDR")) as port:
        frames = await collect(hs, port)
    assert frames == PANASONIC_RECORDS


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
    """A corrupt length gives one Oversized frame and its bytes are skipped, then framing resumes."""
    framer = LengthPrefixedFramer(100)
    good = struct.pack("<I", 82) + M5000_RECORD + b"\r\n"
    frames = framer.feed(struct.pack("<I", 200) + b"x" * 200 + good)
    assert isinstance(frames[0], Oversized)
    assert frames[1:] == [M5000_RECORD]
    assert framer.feed(good[:10]) == []
    assert framer.close() == [good[4:10]]
