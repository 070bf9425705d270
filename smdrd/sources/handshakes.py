"""Vendor transport handshakes, chosen per source by name (by default, the format's own).

Some PBXs need more than a TCP connection: Panasonic waits for ``SMDR`` and a password, Mitel 5000 frames
records with a 4-byte length, NEC polls with request/acknowledge. A `Handshake` runs once after a connection
is made (`start`) and may give the stream its own framer. Register new ones with `register`.

Vendor handshakes live in their own modules, ``smdrd/sources/hs_<name>.py`` (``-`` becomes ``_``), imported the
first time their name is asked for, so adding one touches no shared file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any, ClassVar

from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.sources.base import FramerLike


class Handshake:
    """The default: no login, lines framed by their line ends."""

    name: ClassVar[str] = "none"

    def __init__(self, source_config: Any) -> None:
        self.config = source_config

    async def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
        """Log in after connecting.

        Returns:
            Bytes already read during the handshake that belong to the record stream (often ``b""``): every
            byte read, unless it is certain to be no part of any record. Dropping bytes here loses calls.
        """
        return b""

    def unconsumed(self) -> bytes:
        """What `start` has read so far and not returned yet (``b""`` once it has returned).

        For a caller whose `start` failed or was cancelled (a timeout, a SIGTERM during a login): those bytes
        still belong to the journal (see `smdrd.sources.streams.keep_handshake_bytes`).
        """
        return b""

    def framer(self, max_line: int) -> FramerLike:
        """The framer for this connection's byte stream."""
        return Framer(max_line)


HANDSHAKES: dict[str, type[Handshake]] = {"none": Handshake}


def register(cls: type[Handshake]) -> type[Handshake]:
    """Class decorator: make a handshake available by its `name`."""
    HANDSHAKES[cls.name] = cls
    return cls


def get_handshake(name: str) -> type[Handshake]:
    """The handshake registered as ``name``."""
    if name not in HANDSHAKES:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"smdrd.sources.hs_{name.replace('-', '_')}")
    try:
        return HANDSHAKES[name]
    except KeyError:
        raise SmdrdError(f"unknown handshake {name!r}; known: {', '.join(sorted(HANDSHAKES))}") from None
