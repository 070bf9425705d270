"""Panasonic KX-TDA / TDE / NS / NCP login: the collector connects (port 2300) and logs in telnet-style.

Protocol (vicriveros/smdr-panasonic on a KX-NS500; ivnglkv/smdr_server's fake PBX): send ``SMDR`` CR LF, wait
for the password prompt (``Password:`` / ``Enter Password:``; the text varies by model and firmware), send the
password (default ``PCCSMDR``) CR LF; records follow as CR/CR LF lines. A PBX that never prompts gets the
password after ``prompt_timeout`` seconds anyway.

Every byte read while waiting for the prompt goes on to the journal, in order: a PBX that was already printing
(a reconnect mid-stream) sends records before its prompt, and those are real calls. The echo of ``SMDR`` and
the prompt line itself are journalled too, and the parser skips them as login echoes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import structlog

from smdrd.framing import Frame, Framer
from smdrd.sources.base import FramerLike
from smdrd.sources.handshakes import Handshake, register

log = structlog.get_logger(__name__)

#: what the journal keeps instead of a line that is the password echoed back by the PBX.
ECHO_PLACEHOLDER = b"(the PBX echoed the SMDR password; not kept)"

DEFAULT_PASSWORD = "PCCSMDR"
#: seconds to wait for the password prompt before sending the password regardless.
PROMPT_TIMEOUT = 3.0
#: how long a tcp-server or serial source lets a handshake take (seconds; a tcp-client's is its connect_timeout).
SOURCE_HANDSHAKE_LIMIT = 10.0
#: bytes read at most while waiting for the prompt; a PBX that sends more is already printing records, so the
#: password is sent at once (everything read still goes to the journal).
MAX_PROMPT_BYTES = 4096
#: the password prompt (``Password:``, ``Enter Password:``; any case) and the spaces after it.
PROMPT = re.compile(rb"(?i)password[ \t]*:[ \t]*")


def _password(config: Any) -> str:
    secret = getattr(config, "password", None)
    if secret is not None:
        value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        return str(value)
    options = getattr(config, "format_options", None) or {}
    return str(options.get("password", DEFAULT_PASSWORD))


@register
class PanasonicHandshake(Handshake):
    """``SMDR``, then the password, each with CR LF."""

    name = "panasonic"
    option_names = frozenset({"password", "prompt_timeout"})
    logs_in = True

    def __init__(self, source_config: Any) -> None:
        super().__init__(source_config)
        self._seen = bytearray()  # read while logging in, not returned yet

    def unconsumed(self) -> bytes:
        return records_first(bytes(self._seen))

    async def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
        """Log in; return every byte read meanwhile (records sent before the prompt included), for the journal."""
        if writer is None:
            return b""  # a serial port needs no login
        writer.write(b"SMDR\r\n")
        await writer.drain()
        seen = self._seen
        try:
            async with asyncio.timeout(self._prompt_timeout()):
                while PROMPT.search(seen) is None and len(seen) < MAX_PROMPT_BYTES:
                    chunk = await reader.read(256)
                    if not chunk:
                        break
                    seen += chunk
        except TimeoutError:  # some firmware prints no prompt: send the password anyway
            log.info("handshake.no_prompt", handshake=self.name, waited_seconds=self._prompt_timeout(),
                     consequence="sent the SMDR password without a prompt; records should follow")
        try:
            writer.write(_password(self.config).encode("latin-1", "replace") + b"\r\n")
            await writer.drain()
        except ConnectionError:
            pass  # the PBX went away: what it sent is still journalled, and the stream then ends by itself
        first = records_first(bytes(seen))
        seen.clear()
        return first

    def framer(self, max_line: int) -> FramerLike:
        """Lines framed by their line ends, except that a line that is the password (a PBX echoing what was
        typed, telnet-style) is journalled as `ECHO_PLACEHOLDER`: a secret never reaches the journal."""
        secret = _password(self.config).encode("latin-1", "replace")
        return RedactingFramer(Framer(max_line), secret) if secret else Framer(max_line)

    def _prompt_timeout(self) -> float:
        """``prompt_timeout``, at most half the source's own limit on a handshake (``connect_timeout``, else
        `SOURCE_HANDSHAKE_LIMIT`): a wait cut short from outside would lose what was read during it."""
        options = getattr(self.config, "format_options", None) or {}
        timeout = float(options.get("prompt_timeout", PROMPT_TIMEOUT))
        outer = getattr(self.config, "connect_timeout", None)
        limit = float(outer) if isinstance(outer, int | float) else SOURCE_HANDSHAKE_LIMIT
        return min(timeout, limit / 2)


def records_first(seen: bytes) -> bytes:
    """What was read before the password went out, as the start of the record stream: all of it, with a line
    end after the prompt so that a record sent right after it is not glued to the prompt's line."""
    ends = [m.end() for m in PROMPT.finditer(seen)]
    if not ends:
        return seen
    return seen[:ends[-1]] + b"\r\n" + seen[ends[-1]:]


class RedactingFramer:
    """A framer that keeps the password out of the journal: a whole line equal to ``secret`` (spaces around it
    ignored) becomes `ECHO_PLACEHOLDER`, and so does the secret after a prompt on the prompt's own line. That is
    where the echo lands when the prompt came late (after ``prompt_timeout``, or after more than
    `MAX_PROMPT_BYTES` of records): the password was sent first, the PBX then printed its prompt and the echo
    behind it, ``Enter Password: PCCSMDR``. Records elsewhere are never rewritten: a numeric password may well
    be digits of a dialled number."""

    def __init__(self, inner: FramerLike, secret: bytes) -> None:
        self._inner = inner
        self._secret = secret.strip()

    def _clean(self, line: bytes) -> bytes:
        if line.strip() == self._secret:
            return ECHO_PLACEHOLDER
        prompt = PROMPT.search(line)
        if prompt is None or self._secret not in line[prompt.start():]:
            return line
        return line[:prompt.start()] + line[prompt.start():].replace(self._secret, ECHO_PLACEHOLDER)

    def _redact(self, frames: Sequence[Frame]) -> list[Frame]:
        return [self._clean(f) if isinstance(f, bytes) else f for f in frames]

    def feed(self, data: bytes) -> list[Frame]:
        return self._redact(self._inner.feed(data))

    def close(self) -> list[Frame]:
        return self._redact(self._inner.close())
