"""Build the source a config entry asks for. Only wiring: no I/O happens until the source's `run`."""

from __future__ import annotations

from typing import Any

from smdrd.errors import SmdrdError
from smdrd.sources.base import Ingest, Source
from smdrd.sources.file import FileReader
from smdrd.sources.serial import SerialPort
from smdrd.sources.spool import SpoolReader
from smdrd.sources.tcp import TcpClient, TcpServer

#: source classes by config ``kind``.
SOURCE_CLASSES: dict[str, type[Source]] = {
    cls.kind: cls for cls in (TcpClient, TcpServer, SerialPort, FileReader, SpoolReader)
}


def build_source(config: Any, ingest: Ingest) -> Source:
    """The source for ``config`` (one of the source models in `smdrd.config`), feeding ``ingest``.

    Raises:
        SmdrdError: no source class handles ``config.kind``.
    """
    try:
        cls = SOURCE_CLASSES[config.kind]
    except KeyError:
        known = ", ".join(sorted(SOURCE_CLASSES))
        raise SmdrdError(f"source {config.name!r}: unknown kind {config.kind!r}; known: {known}") from None
    return cls(config, ingest)
