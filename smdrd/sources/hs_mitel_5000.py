"""Mitel 5000 CP / MiVoice Office 250 SMDR socket: a binary login, then length-prefixed records.

Protocol (Mitel 5000 CP SMDR socket, as quoted in ripvannwinkler/smdr-logger-5000): the collector connects
(System\\Sockets, often port 4000) and first sends ``<count: 4 bytes little-endian><0x84><password, at most 15
ASCII characters><0x00>``, the count excluding its own 4 bytes (no password: ``02 00 00 00 84 00``).
Each record then arrives as ``<count: 4 bytes little-endian><80 characters>CR LF``, the count again excluding
itself.
A length that no record has (bytes lost or inserted on the way) is not trusted: the framer steps over the
bytes to the next plausible record and hands them to the journal as an ``error`` line (`LengthPrefixedFramer`).
No I/O in the framer: it is fed bytes and returns records.
"""

from __future__ import annotations

import asyncio
import re
import struct
from typing import Any

from smdrd.framing import Frame, Skipped
from smdrd.sources.base import FramerLike
from smdrd.sources.handshakes import Handshake, register

SOCKET_TYPE_SMDR = 0x84
MAX_PASSWORD = 15


def _password(config: Any) -> str:
    secret: Any = getattr(config, "password", None)
    if secret is not None:
        return str(secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret)
    options = getattr(config, "format_options", None) or {}
    return str(options.get("password", ""))


def login_message(password: str) -> bytes:
    """The first message a 5000 CP expects on its SMDR socket."""
    pw = password.encode("ascii")
    if len(pw) > MAX_PASSWORD:
        raise ValueError(f"a Mitel 5000 SMDR password has at most {MAX_PASSWORD} characters")
    body = bytes([SOCKET_TYPE_SMDR]) + pw + b"\x00"
    return struct.pack("<I", len(body)) + body


#: the shortest and longest payload a length prefix may announce (bytes after the 4-byte prefix). A real record
#: is 80 characters and CR LF, 82 bytes; anything outside this range is not a record but a corrupt or
#: desynchronised stream. Both bounds are what make resynchronisation safe (see `LengthPrefixedFramer`): the
#: longest stays below 256, so every plausible prefix is ``<n> 00 00 00``, and the shortest is above 13, so
#: its first byte is never CR, LF or NUL.
MIN_RECORD = 16
MAX_RECORD = 255

#: where a plausible length prefix may start: a count from MIN_RECORD to 255, little-endian.
_PREFIX = re.compile(rb"[\x%02x-\xff]\x00\x00\x00" % MIN_RECORD)
#: a plausible payload: text (no NUL, CR or LF), one or more line ends, NUL padding.
_PAYLOAD = re.compile(rb"[^\x00\r\n]+[\r\n]+\x00*")
#: the start of one (a payload not complete yet that can still become plausible).
_PAYLOAD_START = re.compile(rb"(?:[^\x00\r\n]+(?:[\r\n]+\x00*)?)?")

_ACCEPT, _REJECT, _MORE = 1, 2, 3


class LengthPrefixedFramer:
    """Cut ``<LE32 count><payload>`` records; a payload's trailing CR LF / NULs are removed.

    A record is taken only where it is plausible: a count from `MIN_RECORD` to `MAX_RECORD` (and at most
    ``max_line``), then a payload of text ending in a line end (optionally NUL-padded). Anything else (a corrupt
    length such as ``f0 ff ff 7f``, noise between records, a record cut short when the stream ends) is stepped
    over to the next plausible record and given out as `Skipped` frames holding the exact bytes (at most
    ``max_line`` each), which the journal keeps as ``error`` lines: nothing disappears unrecorded.

    Why garbage cannot cost a good record: a good record's prefix is ``<n> 00 00 00`` with ``n`` from 16 to 255,
    followed by text. A plausible candidate that starts in garbage and overlaps it would need those NULs inside
    its text (impossible), or would end right after ``n`` or among the NULs, which needs ``n`` to be CR or LF
    (it never is); a candidate whose own prefix overlaps it would announce at least ``16 * 256`` bytes. So
    framing never passes the start of a good record: it either lands on it or takes garbage that ends before
    it. Decisions need no bytes beyond the candidate (a good record followed by garbage is taken at once), so
    the frames do not depend on how the stream was chunked. Linear time: candidates are found by one regular
    expression scan, and checking one stops at the first NUL, which is before the next candidate.
    """

    __slots__ = ("_buf", "_continued", "_held", "max_line", "max_record", "skipped_bytes")

    def __init__(self, max_line: int = 8192) -> None:
        if max_line < MIN_RECORD:
            raise ValueError(f"max_line must be at least {MIN_RECORD}")
        self.max_line = max_line
        self.max_record = min(MAX_RECORD, max_line)
        self._buf = bytearray()
        #: ``_buf[:_held]`` is garbage already decided, held to be given out with what follows it.
        self._held = 0
        #: the held garbage continues a run already partly given out (in ``max_line`` pieces).
        self._continued = False
        #: bytes given out as `Skipped` since the framer was made (for metrics and logs).
        self.skipped_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held: garbage not given out yet (under ``max_line``) and a record not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        return self._cut(final=False)

    def close(self) -> list[Frame]:
        """End of stream: whatever is left (garbage, a record cut short) is given out as `Skipped`."""
        out = self._cut(final=True)
        self._buf.clear()
        self._held = 0
        self._continued = False
        return out

    def _check(self, q: int) -> tuple[int, int]:
        """Is there a plausible record at ``q``? ``(_ACCEPT, count)``, ``(_REJECT, 0)`` or ``(_MORE, 0)``."""
        buf = self._buf
        have = len(buf) - q
        if have < 4:  # part of a prefix: can it still become a plausible one?
            if not MIN_RECORD <= buf[q] <= self.max_record or any(buf[q + 1:]):
                return _REJECT, 0
            return _MORE, 0
        count = int.from_bytes(buf[q:q + 4], "little")
        if not MIN_RECORD <= count <= self.max_record:
            return _REJECT, 0
        end = q + 4 + count
        if end <= len(buf):
            return (_ACCEPT, count) if _PAYLOAD.fullmatch(buf, q + 4, end) else (_REJECT, 0)
        return (_MORE, 0) if _PAYLOAD_START.fullmatch(buf, q + 4) else (_REJECT, 0)

    def _cut(self, *, final: bool) -> list[Frame]:
        buf = self._buf
        out: list[Frame] = []
        garbage = 0  # where the garbage run before ``pos`` starts (``pos`` when there is none)
        pos = self._held
        while pos < len(buf):
            verdict, count = self._check(pos)
            if verdict == _ACCEPT:
                self._skip(out, garbage, pos, final=False)
                self._continued = False
                out.append(bytes(buf[pos + 4:pos + 4 + count]).rstrip(b"\r\n\x00"))
                pos = garbage = pos + 4 + count
            elif verdict == _REJECT or final:
                found = _PREFIX.search(buf, pos + 1)
                pos = found.start() if found else max(pos + 1, len(buf) - 3)
                while pos - garbage >= self.max_line:  # bound what is held: give it out in pieces
                    self._skip(out, garbage, garbage + self.max_line, final=False)
                    garbage += self.max_line
                    self._continued = True
            else:
                break
        if final:
            self._skip(out, garbage, len(buf), final=True)
            garbage = len(buf)
        del buf[:garbage]
        self._held = pos - garbage
        return out

    def _skip(self, out: list[Frame], start: int, end: int, *, final: bool) -> None:
        """Give out ``_buf[start:end]`` (garbage) as one `Skipped` frame, saying why it is not a record."""
        if end <= start:
            return
        raw = bytes(self._buf[start:end])
        self.skipped_bytes += len(raw)
        why = "the rest of the bytes skipped before this line" if self._continued else self._why(raw, final)
        then = "at the end of the stream" if final else "framing resynchronises on the next plausible record"
        out.append(Skipped(raw, f"skipped {len(raw)} bytes that are not a length-prefixed record: {why}; {then}"))

    def _why(self, raw: bytes, final: bool) -> str:
        if len(raw) < 4:
            return "a length prefix cut short" + (" by the end of the stream" if final else "")
        count = int.from_bytes(raw[:4], "little")
        if not MIN_RECORD <= count <= self.max_record:
            return f"its length prefix says {count} bytes; a record has {MIN_RECORD} to {self.max_record}"
        if len(raw) < 4 + count and final and _PAYLOAD_START.fullmatch(raw, 4):
            return f"the stream ended {len(raw) - 4} bytes into a {count}-byte record"
        return f"the {count} bytes its length prefix announces are not a line of text"


@register
class Mitel5000Handshake(Handshake):
    """Send the SMDR login; frame the stream by its 4-byte length prefixes."""

    name = "mitel-5000"
    option_names = frozenset({"password"})
    logs_in = True

    @classmethod
    def problem(cls, source_config: Any) -> tuple[str, str] | None:
        """A password the 5000's login cannot carry: refused by ``check-config``, not at every connect."""
        try:
            login_message(_password(source_config))
        except (ValueError, UnicodeEncodeError):
            key = "password" if getattr(source_config, "password", None) is not None else "format_options.password"
            return key, f"a Mitel 5000 SMDR password is at most {MAX_PASSWORD} ASCII characters"
        return None

    def _password(self) -> str:
        return _password(self.config)

    async def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
        if writer is not None:
            writer.write(login_message(self._password()))
            await writer.drain()
        return b""

    def framer(self, max_line: int) -> FramerLike:
        return LengthPrefixedFramer(max_line)
