"""The contract between sources (async edges) and the core pipeline.

A source calls `Ingest.open_stream` once per byte stream (a TCP connection, an opened serial port, a file),
feeds it every chunk it reads with ``await stream.feed(data)`` (which may wait when the writer is behind: that
is the backpressure that keeps memory bounded) and ``await stream.close()`` when the stream ends. The stream
frames, journals and parses; one stream keeps one parser's state (page headers, open multi-leg calls).

A source that can resume (a followed file) also tells its stream, with ``stream.mark(position)``, where the
lines fed so far end in the file: the position is saved with the last of them, and `Ingest.saved_position` gives
it back at the next start.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from smdrd.framing import Frame
from smdrd.journal import FilePosition


class FramerLike(Protocol):
    """What a stream needs from a framer (`smdrd.framing.Framer`, or a handshake's own)."""

    def feed(self, data: bytes) -> Sequence[Frame]: ...

    def close(self) -> Sequence[Frame]: ...


class Stream(Protocol):
    """One byte stream from a PBX."""

    async def feed(self, data: bytes) -> None:
        """Frame, journal and parse ``data``; waits while the journal writer is over its pending limit."""

    async def close(self) -> None:
        """End of stream: the unterminated tail (if any) is journalled as a last line."""

    def mark(self, position: FilePosition) -> None:
        """The lines fed so far (after `close`: and the tail it journalled) end at ``position``: save it with
        the last of them, in the same commit. Marks of one source are saved in the order given."""


class Ingest(Protocol):
    """The core's entry point, given to every source."""

    def open_stream(self, peer: str, framer: FramerLike | None = None) -> Stream:
        """A new stream from ``peer`` (``host:port``, a device path or a file path)."""
        ...

    def saved_position(self, path: str) -> FilePosition | None:
        """Where to resume this source's file ``path``: where its lines were last fed in this process (a source
        restarted by a reload), else where they were committed to when it last ran; ``None`` if nowhere (never
        followed, or a store that keeps no positions)."""
        ...

    def committed_position(self, path: str) -> FilePosition | None:
        """Where this source's lines of ``path`` are committed to (the journal holds them): what may be done to
        the file once they are (delete it, forget it) waits for this, not for `saved_position`."""
        ...

    def saved_paths(self) -> list[str]:
        """The files this source has a saved position for."""
        ...

    def forget_position(self, path: str) -> None:
        """Delete this source's saved position of ``path`` (a file gone for good), after the positions marked
        before, in a commit of its own if need be."""
        ...


@dataclass(slots=True)
class SourceStatus:
    """What a source reports about itself (for `/healthz`, metrics and logs)."""

    name: str
    kind: str
    connected: bool = False
    connections: int = 0
    reconnects: int = 0
    refused: int = 0
    bytes_read: int = 0
    last_data_at: float | None = None
    #: files read to their end, and the last of them (a ``spool`` source's).
    files_read: int = 0
    last_file: str | None = None
    #: the last error in full (logs and the token-protected health detail; may name the PBX's address).
    last_error: str | None = None
    #: the same error as a reason a person can act on, with no exception text or address (public `/healthz`).
    last_error_reason: str | None = None
    started_at: float = field(default_factory=time.time)

    def failed(self, exc: BaseException | None, detail: str | None = None) -> None:
        """Note an error: ``exc`` (``None``: the peer closed the link), or ``detail`` as the full text."""
        from smdrd.errors import public_reason
        from smdrd.sources.streams import describe

        self.last_error = detail if detail is not None else describe(exc)
        self.last_error_reason = public_reason(exc)

    def saw_data(self, n: int) -> None:
        self.bytes_read += n
        self.last_data_at = time.time()


class Source(abc.ABC):
    """A named source of PBX bytes. `run` runs until cancelled, reconnecting on its own.

    On cancellation a source stops reading, closes its streams (so their tails are journalled) and returns
    promptly: the daemon's shutdown waits for it.
    """

    kind: ClassVar[str]

    def __init__(self, config: Any, ingest: Ingest) -> None:
        self.config = config
        self.ingest = ingest
        self.status = SourceStatus(name=config.name, kind=self.kind)

    @property
    def name(self) -> str:
        return str(self.config.name)

    @abc.abstractmethod
    async def run(self) -> None:
        """Read until cancelled."""
