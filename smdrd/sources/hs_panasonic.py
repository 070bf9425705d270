"""Panasonic KX-TDA / TDE / NS / NCP login: the collector connects (port 2300) and logs in telnet-style.

Protocol (vicriveros/smdr-panasonic on a KX-NS500; ivnglkv/smdr_server's fake PBX): send ``SMDR`` CR LF, wait
for the password prompt (``Password:`` / ``Enter Password:``; the text varies by model and firmware), send the
password (default ``PCCSMDR``) CR LF; records follow as CR/CR LF lines. A PBX that never prompts gets the
password after ``prompt_timeout`` seconds anyway. Lines the PBX echoes after the login are skipped by the
parser.
"""

from __future__ import annotations

import asyncio
from typing import Any

from smdrd.sources.handshakes import Handshake, register

DEFAULT_PASSWORD = "PCCSMDR"
#: seconds to wait for the password prompt before sending the password regardless.
PROMPT_TIMEOUT = 3.0
#: bytes of prompt and echo read at most while waiting (a PBX that floods us is not logging us in).
MAX_PROMPT_BYTES = 4096


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

    async def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
        if writer is None:
            return b""  # a serial port needs no login
        options = getattr(self.config, "format_options", None) or {}
        timeout = float(options.get("prompt_timeout", PROMPT_TIMEOUT))
        writer.write(b"SMDR\r\n")
        await writer.drain()
        seen = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while b"password" not in seen.lower() or not seen.rstrip().endswith(b":"):
                    chunk = await reader.read(256)
                    if not chunk:
                        break
                    seen += chunk
                    if len(seen) > MAX_PROMPT_BYTES:
                        break
        except TimeoutError:
            pass  # some firmware prints no prompt: send the password anyway
        writer.write(_password(self.config).encode("latin-1", "replace") + b"\r\n")
        await writer.drain()
        # Whatever followed the prompt already belongs to the record stream.
        idx = seen.lower().rfind(b"password")
        if idx < 0:
            return b""
        colon = seen.find(b":", idx)
        return bytes(seen[colon + 1:]).lstrip(b" ") if colon >= 0 else b""
