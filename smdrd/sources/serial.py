"""The ``serial`` source: an RS-232 SMDR port, usually behind a USB adapter.

The port is opened with pyserial-asyncio-fast; when it errors or reaches end of file (the adapter was pulled,
the cable's converter lost power), the stream is closed and the device is opened again every
``reopen_interval`` seconds until it is back. Point ``device`` at a stable name (``/dev/serial/by-id/...``):
udev moves that link to wherever a replugged adapter appears.

Only a handshake named in the config is used here, never the format's default: a format's handshake
describes its TCP transport (Panasonic's login, Mitel 5000's length prefix), not its serial port.
Never here: framing, parsing or storing, and no read timeout (a quiet PBX is normal).
"""

from __future__ import annotations

import asyncio
import termios
import time
from typing import Any

import serial_asyncio_fast
import structlog

from smdrd.backoff import LogThrottle, log_throttled
from smdrd.sources.base import Ingest, Source
from smdrd.sources.config import SerialSource
from smdrd.sources.handshakes import Handshake
from smdrd.sources.streams import (
    CONNECTION_ERRORS,
    close_writer,
    describe,
    log_in,
    read_stream,
    resolve_handshake,
    stream_pair,
)

log = structlog.get_logger(__name__)

#: a handshake gets this long to finish on a freshly opened port (seconds).
HANDSHAKE_TIMEOUT = 10.0
#: what makes a port unusable for now: besides the connection errors, termios rejecting a setting (pyserial
#: lets `termios.error`, which is no OSError, through when an adapter refuses a speed or a parity).
PORT_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, termios.error)
#: a port that stayed open this long (seconds) makes its next failure worth a warning again.
STABLE_AFTER = 30.0


class SerialPort(Source):
    """``serial``: read a serial port, reopening it whenever it goes away."""

    kind = "serial"
    config: SerialSource

    def __init__(self, config: SerialSource, ingest: Ingest) -> None:
        super().__init__(config, ingest)
        self._throttle = LogThrottle()

    async def run(self) -> None:
        handshake = resolve_handshake(self.config, format_default=False)
        log.info("source.starting", source=self.name, kind=self.kind, device=self.config.device,
                 baudrate=self.config.baudrate)
        while True:
            try:
                await self._open_and_read(handshake)
                self._trouble(None)
            except PORT_ERRORS as exc:
                self._trouble(exc)
            await asyncio.sleep(self.config.reopen_interval)

    async def _open_and_read(self, handshake: type[Handshake]) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        reader, protocol = stream_pair(loop)
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: protocol, url=cfg.device, **self._port_settings()
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        opened_at = time.monotonic()
        try:
            self._opened()
            hs = handshake(cfg)
            first = await log_in(hs, reader, writer, within=HANDSHAKE_TIMEOUT, ingest=self.ingest,
                                 peer=cfg.device, max_line=cfg.max_line_length)
            stream = self.ingest.open_stream(cfg.device, hs.framer(cfg.max_line_length))
            await read_stream(reader, stream, self.status, first)
        finally:
            self.status.connected = False
            if time.monotonic() - opened_at >= STABLE_AFTER:
                self._throttle.reset()  # it worked for a while: the next failure is news again
            await close_writer(writer)

    def _port_settings(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "baudrate": cfg.baudrate,
            "parity": cfg.parity,
            "bytesize": cfg.bytesize,
            "stopbits": cfg.stopbits,
            "rtscts": cfg.flow_control == "rtscts",
            "xonxoff": cfg.flow_control == "xonxoff",
            "dsrdtr": cfg.flow_control == "dsrdtr",
        }

    def _opened(self) -> None:
        status = self.status
        status.connected = True
        status.connections += 1
        if status.connections > 1:
            status.reconnects += 1
        fields: dict[str, Any] = {"source": self.name, "device": self.config.device}
        if self._throttle.active():
            # not reset here: a port that opens and fails at once must stay throttled (see STABLE_AFTER)
            fields["after_failures"] = self._throttle.count()
        log.info("source.port_opened", **fields)

    def _trouble(self, exc: BaseException | None) -> None:
        # an open port that reaches end of file has gone away just the same as one that errors
        error = "device closed" if exc is None else describe(exc)
        self.status.failed(exc, error)
        log_throttled(log, self._throttle, "source.port_unavailable", source=self.name,
                      device=self.config.device, error=error)
