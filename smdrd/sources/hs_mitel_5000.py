"""Mitel 5000 CP / MiVoice Office 250 SMDR socket: a binary login, then length-prefixed records.

Protocol (Mitel 5000 CP SMDR socket, as quoted in ripvannwinkler/smdr-logger-5000): the collector connects
(System\\Sockets, often port 4000) and first sends ``<count: 4 bytes little-endian><0x84><password, at most 15
ASCII characters><0x00>``, the count excluding its own 4 bytes (no password: ``02 00 00 00 84 00``).
Each record then arrives as ``<count: 4 bytes little-endian><80 characters>CR LF``, the count again excluding
itself.
No I/O in the framer: it is fed bytes and returns records.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from smdrd.framing import Frame, Oversized
from smdrd.sources.base import FramerLike
from smdrd.sources.handshakes import Handshake, register

SOCKET_TYPE_SMDR = 0x84
MAX_PASSWORD = 15


def login_message(password: str) -> bytes:
    """The first message a 5000 CP expects on its SMDR socket."""
    pw = password.encode("ascii")
    if len(pw) > MAX_PASSWORD:
        raise ValueError(f"a Mitel 5000 SMDR password has at most {MAX_PASSWORD} characters")
    body = bytes([SOCKET_TYPE_SMDR]) + pw + b"\x00"
    return struct.pack("<I", len(body)) + body


class LengthPrefixedFramer:
    """Cut ``<LE32 count><payload>`` frames; a payload's trailing CR LF / NULs are removed.

    A count above ``max_line`` (garbage, or a desynchronised stream) gives one `Oversized` frame and the
    declared bytes are skipped, so memory stays bounded.
    """

    __slots__ = ("_buf", "_skip", "discarded_bytes", "max_line")

    def __init__(self, max_line: int = 8192) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skip = 0
        self.discarded_bytes = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                self.discarded_bytes += n
                if self._skip:
                    return out
            if len(self._buf) < 4:
                return out
            (count,) = struct.unpack_from("<I", self._buf)
            if count > self.max_line:
                out.append(Oversized(bytes(self._buf[4:4 + self.max_line]), self.max_line))
                del self._buf[:4]
                self._skip = count
                continue
            if len(self._buf) < 4 + count:
                return out
            payload = bytes(self._buf[4:4 + count]).rstrip(b"\r\n\x00")
            del self._buf[:4 + count]
            if payload:
                out.append(payload)

    def close(self) -> list[Frame]:
        """End of stream: a record cut short is returned as it is, for the journal."""
        tail = bytes(self._buf[4:]).rstrip(b"\r\n\x00") if not self._skip else b""
        self._buf.clear()
        self._skip = 0
        return [tail[: self.max_line]] if tail else []


@register
class Mitel5000Handshake(Handshake):
    """Send the SMDR login; frame the stream by its 4-byte length prefixes."""

    name = "mitel-5000"

    def _password(self) -> str:
        secret: Any = getattr(self.config, "password", None)
        if secret is not None:
            return str(secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret)
        options = getattr(self.config, "format_options", None) or {}
        return str(options.get("password", ""))

    async def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
        if writer is not None:
            writer.write(login_message(self._password()))
            await writer.drain()
        return b""

    def framer(self, max_line: int) -> FramerLike:
        return LengthPrefixedFramer(max_line)
