"""Vendor transport handshakes, chosen per source by name (by default, the format's own).

Some PBXs need more than a TCP connection: Panasonic waits for ``SMDR`` and a password, Mitel 5000 frames
records with a 4-byte length, NEC polls with request/acknowledge. A `Handshake` runs once after a connection
is made (`start`) and may give the stream its own framer.

Handshakes are found, the first time their name is asked for, through the entry-point group ``smdrd.handshakes``
(name = handshake name, value = the `Handshake` subclass), so a third-party package adds one the way it adds a
parser (``smdrd.parsers``)::

    [project.entry-points."smdrd.handshakes"]
    "acme-login" = "acme_smdr.handshake:AcmeHandshake"

smdrd's own live in ``smdrd/sources/hs_<name>.py`` (``-`` becomes ``_``) and are registered in that group too;
when the package metadata is missing (a source tree that was not installed) the module is imported by that name
instead, and its `register` decorator adds it. Either way, adding one touches no shared module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.sources.base import FramerLike


class Handshake:
    """The default: no login, lines framed by their line ends."""

    name: ClassVar[str] = "none"
    #: the ``format_options`` it reads (its password, its timeouts): `smdrd.parsing.unknown_option` allows them
    #: beside the format's own. ``None``: not said (a plugin), so the options are not checked.
    option_names: ClassVar[frozenset[str] | None] = frozenset()
    #: it logs in to the PBX, password and all: only for a source that connects to the PBX (``tcp-client``) or
    #: a serial line, never a ``tcp-server``, where it would log in to whoever connected.
    logs_in: ClassVar[bool] = False

    def __init__(self, source_config: Any) -> None:
        self.config = source_config

    @classmethod
    def problem(cls, source_config: Any) -> tuple[str, str] | None:
        """A setting of ``source_config`` this handshake cannot work with, found before anything connects:
        (the source's key, what was expected); ``None`` when there is none."""
        return None

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


ENTRY_POINT_GROUP = "smdrd.handshakes"
HANDSHAKES: dict[str, type[Handshake]] = {"none": Handshake}


def register(cls: type[Handshake]) -> type[Handshake]:
    """Class decorator: make a handshake available by its `name`."""
    HANDSHAKES[cls.name] = cls
    return cls


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def handshake_names() -> list[str]:
    """Every handshake known by name (registered, or in the entry-point group), sorted."""
    return sorted(set(HANDSHAKES) | set(_entry_points()))


def get_handshake(name: str) -> type[Handshake]:
    """The handshake registered as ``name``: already registered, else from the entry-point group
    ``smdrd.handshakes``, else from the module ``smdrd.sources.hs_<name>``.

    Raises:
        SmdrdError: no such handshake, or its entry point is not a `Handshake` subclass.
    """
    if name not in HANDSHAKES:
        ep = _entry_points().get(name)
        if ep is not None:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Handshake)):
                raise SmdrdError(f"entry point {name!r} ({ep.value}) is not a smdrd Handshake subclass")
            HANDSHAKES[name] = cls
        else:
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(f"smdrd.sources.hs_{name.replace('-', '_')}")
    try:
        return HANDSHAKES[name]
    except KeyError:
        raise SmdrdError(f"unknown handshake {name!r}; known: {', '.join(handshake_names())}") from None
