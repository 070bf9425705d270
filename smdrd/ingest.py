"""The `Ingest` the daemon gives each source: frames, parses, rates and queues lines for the journal.

One `LineStream` per byte stream keeps its own framer and parser (page headers and open multi-leg calls
belong to one connection). The work per line is `smdrd.core.process_frame`; this module only adds the clock,
the counters and the backpressure wait. Given a `smdrd.pipeline.Pipeline` (the daemon), a stream only frames
on the event loop: its parser lives in the pipeline's worker process, and the entries come back to
`LineStream._deliver`, where the alert rules run and the entries go to the writer, in order.

A followed file's position (`LineStream.mark`) goes to the writer once the entries of every line fed before it
have: at once when parsed here, else when the worker's answers for those lines are in. A source's positions reach
the writer in the order they were marked, whichever of its streams they belong to (a rotated file's last one
before the new file's first).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from smdrd.config import SiteConfig
from smdrd.core import ERROR, FLUSHED, PARSED, SKIPPED, Observe, Rate, flush_entry, process_frame
from smdrd.framing import Frame, Framer
from smdrd.parsing import ParserContext, get_parser_class
from smdrd.sources.base import FramerLike
from smdrd.store.sqlite.writer import JournalWriter

if TYPE_CHECKING:
    from smdrd.core import RatingLike
    from smdrd.journal import Alert, FilePosition, JournalEntry
    from smdrd.pipeline import Pipeline, PipelineStream
    from smdrd.record import CallRecord


@dataclass(slots=True)
class Hooks:
    """The current rating function and call observers (alert rules...); a reload swaps each in one assignment.

    ``observe`` is what the pipeline calls per call: the one observer, or all of them in the order added
    (`add_observer`), their alerts together. An observer that raises stops the ones after it for that call,
    and the line keeps the error (`smdrd.core.rate_calls`).
    """

    rate: Rate | None = None
    observe: Observe | None = None
    observers: list[Observe] = field(default_factory=list)

    def add_observer(self, observer: Observe) -> None:
        """Add a call observer: every one added runs (none replaces another)."""
        self.observers.append(observer)
        self.observe = observer if len(self.observers) == 1 else _chain(tuple(self.observers))


def _chain(observers: tuple[Observe, ...]) -> Observe:
    def observe(record: CallRecord, rating: RatingLike | None, uid: str) -> list[Alert]:
        alerts: list[Alert] = []
        for one in observers:
            alerts.extend(one(record, rating, uid))
        return alerts
    return observe


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
        pipeline: Pipeline | None = None,
    ) -> None:
        self.name = name
        self.parser_class = get_parser_class(format)
        self.encoding = encoding or self.parser_class.encoding
        self.context = ParserContext(timezone=site.tz, year=year, options=dict(options or {}),
                                     country=site.country)
        self.writer = writer
        self.hooks = hooks
        self.max_line = max_line
        self.counters = SourceCounters()
        #: where lines are parsed: the daemon's worker process, or ``None`` for here (``import --in-process``).
        self.pipeline = pipeline
        #: positions marked and not yet given to the writer, each with its stream and how many of that stream's
        #: lines must have come back first.
        self._marks: deque[tuple[LineStream | None, int, FilePosition]] = deque()

    def open_stream(self, peer: str, framer: FramerLike | None = None) -> LineStream:
        return LineStream(self, peer, framer or Framer(self.max_line))

    def saved_position(self, path: str) -> FilePosition | None:
        return self.writer.saved_position(self.name, path)

    def committed_position(self, path: str) -> FilePosition | None:
        return self.writer.positions.get((self.name, path))

    def saved_paths(self) -> list[str]:
        return self.writer.saved_paths(self.name)

    def forget_position(self, path: str) -> None:
        from smdrd.journal import FilePosition

        forget = FilePosition.forget(self.name, path)
        self.writer.note_position(forget)
        self._marks.append((None, 0, forget))  # after the marks before it
        self._release_marks()

    def _release_marks(self) -> None:
        """Give the writer, in order, each position whose stream's lines before it are all with the writer."""
        marks = self._marks
        while marks and ((stream := marks[0][0]) is None or stream.delivered >= marks[0][1]):
            self.writer.submit_position(marks.popleft()[2])


class LineStream:
    """One byte stream: bytes in, journal entries out."""

    __slots__ = ("_framer", "_ingest", "_parser", "_remote", "delivered", "peer", "sent")

    def __init__(self, ingest: SourceIngest, peer: str, framer: FramerLike) -> None:
        self._ingest = ingest
        self._framer = framer
        self.peer = peer
        #: lines framed, and lines whose entries went to the writer (fewer while the worker has them).
        self.sent = 0
        self.delivered = 0
        self._remote: PipelineStream | None = None
        if ingest.pipeline is not None:
            self._remote = ingest.pipeline.open_stream(
                source=ingest.name, peer=peer, format=ingest.parser_class.name, encoding=ingest.encoding,
                year=ingest.context.year, options=dict(ingest.context.options), on_entries=self._deliver)
        else:
            self._parser = ingest.parser_class(ingest.context)

    async def feed(self, data: bytes) -> None:
        frames = self._framer.feed(data)
        if frames:
            self._take(frames)
        pipeline = self._ingest.pipeline
        if pipeline is not None:
            await pipeline.wait_capacity()
        await self._ingest.writer.wait_capacity()

    async def close(self) -> None:
        frames = self._framer.close()
        if frames:
            self._take(frames)
        ing = self._ingest
        if self._remote is not None:
            self._remote.close()  # the worker flushes the parser; the entry comes back through _deliver
            return
        now = time.time_ns() // 1000
        entry = flush_entry(self._parser, source=ing.name, peer=self.peer, received_at=now,
                            rate=ing.hooks.rate, observe=ing.hooks.observe)
        if entry is not None:
            ing.writer.submit(entry)
            ing.counters.calls += len(entry.calls)

    def mark(self, position: FilePosition) -> None:
        ing = self._ingest
        ing.writer.note_position(position)
        ing._marks.append((self, self.sent, position))
        ing._release_marks()

    def _take(self, frames: Sequence[Frame]) -> None:
        ing = self._ingest
        counters = ing.counters
        now = time.time()
        received = int(now * 1_000_000)
        self.sent += len(frames)
        if self._remote is not None:
            self._remote.send(frames, received)
            counters.lines += len(frames)
            counters.last_line_at = now
            return
        rate = ing.hooks.rate
        observe = ing.hooks.observe
        parser, encoding, source, peer = self._parser, ing.encoding, ing.name, self.peer
        self._queue(process_frame(frame, parser, encoding, source=source, peer=peer, received_at=received,
                                  rate=rate, observe=observe) for frame in frames)
        self.delivered += len(frames)
        counters.lines += len(frames)
        counters.last_line_at = now

    def _deliver(self, entries: list[JournalEntry]) -> None:
        """The worker's entries for this stream, in order: run the alert rules, count, queue for the journal."""
        observe = self._ingest.hooks.observe
        if observe is None:
            self._queue(entries)
        else:
            self._queue(_observed(e, observe) if e.calls else e for e in entries)
        # One entry per line sent, in order (and a last one for a close's flush, after every line).
        self.delivered += len(entries)
        if self._ingest._marks:
            self._ingest._release_marks()

    def _queue(self, entries: Iterable[JournalEntry]) -> None:
        """Count each entry by its status and queue it for the journal, in order."""
        ing = self._ingest
        counters = ing.counters
        submit = ing.writer.submit
        for entry in entries:
            submit(entry)
            status = entry.status
            if status == PARSED:
                counters.parsed += 1
                counters.calls += len(entry.calls)
            elif status == ERROR:
                counters.errors += 1
            elif status == SKIPPED:
                counters.skipped += 1
            elif status == FLUSHED:
                counters.calls += len(entry.calls)


def _observed(entry: JournalEntry, observe: Observe) -> JournalEntry:
    """``entry`` with the alerts its calls raise, as `smdrd.core.rate_calls` adds them when it is given the
    observer (same failure rule: a rule that raises keeps the call and notes the error on the line)."""
    alerts: list[Alert] = list(entry.alerts)
    error = entry.error
    for call in entry.calls:
        try:
            alerts.extend(observe(call.record, call.rating, call.uid))
        except Exception as exc:
            error = f"alert rules failed: {type(exc).__name__}: {exc}"
    if not alerts and error == entry.error:
        return entry
    return replace(entry, alerts=tuple(alerts), error=error)
