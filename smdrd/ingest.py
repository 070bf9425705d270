"""The `Ingest` the daemon gives each source: frames, parses, rates and queues lines for the journal.

One `LineStream` per byte stream keeps its own framer and parser (page headers and open multi-leg calls
belong to one connection). The work per line is `smdrd.core.process_frame`; this module only adds the clock,
the counters and the backpressure wait.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from smdrd.config import SiteConfig
from smdrd.core import ERROR, PARSED, SKIPPED, Observe, Rate, flush_entry, process_frame
from smdrd.framing import Frame, Framer
from smdrd.parsing import ParserContext, get_parser_class
from smdrd.sources.base import FramerLike
from smdrd.store.sqlite.writer import JournalWriter


@dataclass(slots=True)
class Hooks:
    """The current rating function and call observer (alert rules); a reload swaps each in one assignment."""

    rate: Rate | None = None
    observe: Observe | None = None


@dataclass(slots=True)
class SourceCounters:
    """Per-source counts for metrics, `/healthz` and logs."""

    lines: int = 0
    parsed: int = 0
    skipped: int = 0
    errors: int = 0
    calls: int = 0
    last_line_at: float | None = None


class SourceIngest:
    """The `smdrd.sources.base.Ingest` of one configured source."""

    def __init__(
        self,
        *,
        name: str,
        format: str,
        site: SiteConfig,
        writer: JournalWriter,
        hooks: Hooks,
        encoding: str | None = None,
        year: int | None = None,
        options: dict[str, object] | None = None,
        max_line: int = 8192,
    ) -> None:
        self.name = name
        self.parser_class = get_parser_class(format)
        self.encoding = encoding or self.parser_class.encoding
        self.context = ParserContext(timezone=site.tz, year=year, options=dict(options or {}))
        self.writer = writer
        self.hooks = hooks
        self.max_line = max_line
        self.counters = SourceCounters()

    def open_stream(self, peer: str, framer: FramerLike | None = None) -> LineStream:
        return LineStream(self, peer, framer or Framer(self.max_line))


class LineStream:
    """One byte stream: bytes in, journal entries out."""

    __slots__ = ("_framer", "_ingest", "_parser", "peer")

    def __init__(self, ingest: SourceIngest, peer: str, framer: FramerLike) -> None:
        self._ingest = ingest
        self._parser = ingest.parser_class(ingest.context)
        self._framer = framer
        self.peer = peer

    async def feed(self, data: bytes) -> None:
        frames = self._framer.feed(data)
        if frames:
            self._take(frames)
        await self._ingest.writer.wait_capacity()

    async def close(self) -> None:
        frames = self._framer.close()
        if frames:
            self._take(frames)
        ing = self._ingest
        now = time.time_ns() // 1000
        entry = flush_entry(self._parser, source=ing.name, peer=self.peer, received_at=now, tag=now,
                            rate=ing.hooks.rate, observe=ing.hooks.observe)
        if entry is not None:
            ing.writer.submit(entry)
            ing.counters.calls += len(entry.calls)

    def _take(self, frames: Sequence[Frame]) -> None:
        ing = self._ingest
        counters = ing.counters
        now = time.time()
        received = int(now * 1_000_000)
        rate = ing.hooks.rate
        observe = ing.hooks.observe
        submit = ing.writer.submit
        for frame in frames:
            entry = process_frame(frame, self._parser, ing.encoding, source=ing.name,
                                  peer=self.peer, received_at=received, rate=rate, observe=observe)
            submit(entry)
            status = entry.status
            if status == PARSED:
                counters.parsed += 1
                counters.calls += len(entry.calls)
            elif status == ERROR:
                counters.errors += 1
            elif status == SKIPPED:
                counters.skipped += 1
        counters.lines += len(frames)
        counters.last_line_at = now
