"""``smdrd import``: backfill saved PBX logs through the same pipeline as the live daemon.

The pipeline is the daemon's: `smdrd.core.process_frame` frames, parses and rates each line into a journal
entry, and the `JournalWriter` commits entries in batches. A backfill of millions of lines is CPU-bound on
both halves, and in one process they would take turns holding the GIL, so by default the first half runs in a
worker process (one stream per file, so a parser keeps its state in order) that hands batches of entries to
this process, which only commits them. ``--in-process`` (and standard input) keep both halves here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from smdrd.cli._common import add_config_argument, positive, settings_from
from smdrd.config import Settings, SiteConfig, TariffConfig
from smdrd.core import ERROR, FLUSHED, PARSED, SKIPPED, Entry, flush_entry, process_frame
from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.ingest import SourceIngest
from smdrd.parsing import ParserContext, get_parser_class
from smdrd.store import journal_writer
from smdrd.store.sqlite.bulk import BulkWriter, RowBatch
from smdrd.store.sqlite.writer import JournalWriter

CHUNK = 1 << 16  # small enough that the writer task is serviced between chunks (overlap)
#: the worker process reads bigger chunks: it does nothing but parse.
WORKER_CHUNK = 1 << 20
#: lines per message from the worker process (and per commit) unless ``--batch`` says otherwise.
WORKER_BATCH = 20_000
#: lines per message once the worker reads the last chunk of the last file. The import ends when the last batch
#: is committed, and nothing overlaps that commit: a whole batch there (20,000 lines, over a second) is pure wait,
#: a small one is not. The batch pending when that chunk is read goes first, while the worker parses the rest.
TAIL_BATCH = 2_000
_COUNTED = {PARSED: "parsed", ERROR: "errors", SKIPPED: "skipped"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="backfill saved PBX logs into the database",
                       description="Read saved PBX output through the same framing, parsing and rating as "
                       "the daemon, into the configured database. Lines already stored are recognised and "
                       "not counted twice.")
    p.add_argument("files", nargs="+", metavar="FILE", help="files to import; - reads standard input")
    p.add_argument("-f", "--format", required=True, help="the format name (see `smdrd formats`)")
    add_config_argument(p)
    p.add_argument("--database", type=Path, help="the SQLite file (overrides the configuration's)")
    p.add_argument("--source", default="import",
                   help="the source name to journal the lines under (default import); a saved log of a PBX that also "
                        "sends live: that source's name, so that the calls it already sent are recognised, not "
                        "stored twice (a call is the same call only from the same source)")
    p.add_argument("--year", type=int, help="the year, for formats whose dates have none")
    p.add_argument("--encoding", help="the files' encoding (default: the format's)")
    p.add_argument("--batch", type=positive, default=20_000, help="rows per commit (default 20000)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar or summary (the lines that failed are still listed)")
    p.add_argument("--in-process", action="store_true",
                   help="parse in this process too (the default parses in a worker process, using two cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.encoding is not None:
        import codecs

        try:
            codecs.lookup(args.encoding)
        except LookupError:
            raise SmdrdError(f"--encoding: unknown encoding {args.encoding!r}; expected a Python codec name such as "
                             "cp1252 or latin-1") from None
    for name in args.files:  # before anything is opened or created: a typo costs nothing
        if name != "-" and not Path(name).is_file():
            raise SmdrdError(f"{name}: {'is a folder, not a file' if Path(name).is_dir() else 'no such file'}")
    settings, path = settings_from(args)
    if args.database is not None:
        settings = settings.model_copy(update={"database": settings.database.model_copy(
            update={"path": args.database, "url": ""})})
    from smdrd.tariffs import resolved

    settings, version = resolved(settings)  # [tariff] source = "database": the latest saved version, its number
    base_dir = path.parent if path else None
    failed = FailedLines()
    if args.in_process or "-" in args.files:
        if settings.database.url:
            raise SmdrdError("--in-process and standard input import into a SQLite database only; with "
                             "[database] url, name the files")
        counts = asyncio.run(import_files(settings, args, base_dir, failed, version=version))
    else:
        counts = asyncio.run(import_parallel(settings, args, base_dir, failed, version=version))
    if not args.quiet:
        print(f"imported {counts['lines']} lines: {counts['calls']} calls, {counts['skipped']} skipped, "
              f"{counts['errors']} errors, {counts['duplicates']} already stored; "
              f"{counts['seconds']:.2f} s ({counts['lines'] / max(counts['seconds'], 1e-9):,.0f} lines/s) "
              f"into {settings.database.shown}", file=sys.stderr)
    if failed.total:
        where = "".join(f" --{flag} {value}" for flag, value in (("config", args.config), ("database", args.database))
                        if value is not None)
        for line in failed.describe(f"smdrd errors --source {args.source}{where}"):
            print(line, file=sys.stderr)
    return 1 if counts["errors"] else 0


@dataclass
class FailedLines:
    """The lines an import could not parse: the first `SHOWN` with their file, line number and reason, and
    how many in all. Fed entry by entry, in each file's order (in the worker process, or here)."""

    #: failures listed after an import; the rest are counted.
    SHOWN: ClassVar[int] = 10

    total: int = 0
    first: list[tuple[str, int, str]] = field(default_factory=list)
    _numbers: dict[str, int] = field(default_factory=dict)

    def note(self, peer: str, status: str, error: str | None) -> None:
        if status == FLUSHED:  # records a parser held until the end, not a line of the file
            return
        number = self._numbers[peer] = self._numbers.get(peer, 0) + 1
        if status == ERROR:
            self.total += 1
            if len(self.first) < self.SHOWN:
                self.first.append((peer, number, error or "not parsed"))

    def describe(self, listing: str) -> list[str]:
        """The lines to print: each failure shown, how many more, and how to see every one (``listing``, the
        command that lists them from the journal)."""
        out = [f"  {'stdin' if peer == '-' else peer}:{number}: {reason}" for peer, number, reason in self.first]
        more = self.total - len(self.first)
        out.insert(0, f"{self.total} line{'s' if self.total != 1 else ''} not parsed (stored as errors in the "
                      f"journal, raw bytes kept){':' if self.first else ''}")
        if more:
            out.append(f"  ... and {more} more")
        out.append(f"all of them, with their bytes: {listing}; after a parser or config fix, smdrd reparse "
                   "turns them into calls")
        return out


class _TallyingWriter(JournalWriter):
    """The import's writer in ``--in-process`` mode: notes every entry's fate in `FailedLines` as it is
    submitted (in each stream's order), so the summary can say which lines failed."""

    def __init__(self, *args: Any, failed: FailedLines, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = failed

    def submit(self, entry: Any) -> None:
        self.failed.note(entry.peer, entry.status, entry.error)
        super().submit(entry)


def _open(name: str) -> tuple[BinaryIO, int | None]:
    if name == "-":
        return sys.stdin.buffer, None
    fh = Path(name).open("rb")  # noqa: SIM115 - closed by the caller
    return fh, os.fstat(fh.fileno()).st_size


async def import_files(settings: Settings, args: argparse.Namespace, base_dir: Path | None = None,
                       failed: FailedLines | None = None, *, version: int | None = None) -> dict[str, float]:
    """Import ``args.files`` (relative deck paths are read from ``base_dir``); return the counts. The lines
    that failed are noted in ``failed``; each call names the saved tariff version ``version`` that priced it
    (None: the files' tariff)."""
    # Here only: the daemon's module brings its HTTP server and the rest, which the parallel import (and its
    # worker process, which imports this module before it can parse a line) never needs.
    from smdrd.daemon import build_hooks

    started = time.perf_counter()
    writer = _TallyingWriter(settings.database.path, commit_interval=1.0, batch_rows=args.batch,
                             max_pending=args.batch * 4, site=settings.site.name,
                             failed=failed if failed is not None else FailedLines())
    await writer.open()
    writer_task = asyncio.create_task(writer.run())
    ingest = SourceIngest(name=args.source, format=args.format, site=settings.site, writer=writer,
                          hooks=build_hooks(settings, base_dir, version), encoding=args.encoding,
                          year=args.year or _source_year(settings, args.source),
                          options=_source_options(settings, args.source),
                          max_line=1 << 20)
    c = ingest.counters
    try:
        with ImportProgress(sys.stderr.isatty() and not args.quiet) as progress:
            for name in args.files:
                fh, size = _open(name)
                stream = ingest.open_stream(name)
                done = 0
                try:
                    while chunk := fh.read(CHUNK):
                        await stream.feed(chunk)
                        done += len(chunk)
                        progress.update(name, done, size, lines=c.lines, calls=c.calls, errors=c.errors)
                    await stream.close()
                finally:
                    if fh is not sys.stdin.buffer:
                        fh.close()
    finally:
        # Also when a file fails half-way: what was read is committed (an import again skips it), and the
        # database's thread ends, or the process would wait for it at exit for ever.
        await writer.close()
        await writer_task
    return {"lines": c.lines, "calls": writer.stats.calls, "skipped": c.skipped, "errors": c.errors,
            "duplicates": writer.stats.duplicates, "seconds": time.perf_counter() - started}


async def import_parallel(settings: Settings, args: argparse.Namespace, base_dir: Path | None = None,
                          failed: FailedLines | None = None, *, version: int | None = None) -> dict[str, float]:
    """Import ``args.files`` with the parsing in a worker process and the commits here; return the counts.

    The worker sends `RowBatch`es (the rows, mapped where they were parsed); this process commits each with
    `BulkWriter` (plain ``sqlite3``, one ``executemany`` per table) and nothing else, so it holds no entry
    objects and takes no aiosqlite hop per statement. A batch the fast path declines (a re-imported call, a value
    the database refuses, a locked database) goes through the `JournalWriter` as entries, which handles each of
    those as the live daemon does.
    """
    started = time.perf_counter()
    job = {
        "files": list(args.files), "format": args.format, "source": args.source, "encoding": args.encoding,
        "year": args.year or _source_year(settings, args.source),
        "options": _source_options(settings, args.source),
        "site": settings.site.model_dump(mode="json"), "tariff": settings.tariff.model_dump(mode="json"),
        "version": version, "base_dir": str(base_dir) if base_dir else None, "batch": max(1, args.batch),
    }
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may already hold threads
    receiver, sender = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=parse_worker, args=(sender, job), name="smdrd-import-parser", daemon=True)
    worker.start()
    sender.close()
    writer = journal_writer(settings.database.target, commit_interval=1.0, batch_rows=args.batch,
                            max_pending=args.batch * 4, site=settings.site.name)
    await writer.open()  # migrates the schema first, as the daemon's writer does
    writer_task = asyncio.create_task(writer.run())
    # SQLite's fast path; on PostgreSQL every batch goes through its journal writer (COPY, one statement).
    bulk = None if settings.database.url else BulkWriter(settings.database.path)
    if bulk is not None:
        bulk.open()
    progress = ImportProgress(sys.stderr.isatty() and not args.quiet)
    counters: dict[str, int] = {}
    # Young objects are what this loop makes by the million (rows it commits and drops): nothing for the cycle
    # collector to find, and its passes over them cost more than the inserts. Objects from start-up are frozen.
    gc.freeze()
    gc.disable()
    try:
        progress.start()
        while True:
            try:
                # Blocking: this loop has nothing else to do while the worker parses (the writer task runs
                # only when a declined batch is awaited below).
                kind, payload = receiver.recv()
            except EOFError:
                raise SmdrdError(f"the import's parser process ended unexpectedly (exit {worker.exitcode})") \
                    from None
            if kind == "rows":
                if bulk is None or not bulk.commit(payload):
                    for prepared in payload.entries():
                        writer.submit(prepared)
                    await writer.flushed()
            elif kind == "progress":
                name, done, size, lines, errors = payload
                progress.update(name, done, size, lines=lines, calls=(bulk.calls if bulk else 0) + writer.stats.calls,
                                errors=errors)
            elif kind == "file_done":
                pass
            elif kind == "failed":
                if failed is not None:
                    failed.total, failed.first = payload.total, payload.first
            elif kind == "error":
                raise SmdrdError(str(payload))
            else:
                counters = payload
                break
    finally:
        progress.stop()
        gc.enable()
        gc.unfreeze()
        receiver.close()
        try:
            if bulk is not None:
                bulk.close()
            await writer.close()
            await writer_task
        finally:  # joined last: the worker's exit (its interpreter freeing what it built) overlaps the closing
            worker.join(timeout=10)
    return {"lines": counters.get("lines", 0), "calls": (bulk.calls if bulk else 0) + writer.stats.calls,
            "skipped": counters.get("skipped", 0), "errors": counters.get("errors", 0),
            "duplicates": writer.stats.duplicates, "seconds": time.perf_counter() - started}


def parse_worker(out: Connection, job: dict[str, Any]) -> None:
    """The import's worker process: frame, parse and rate every file (`process_frame`, as the daemon does) and
    send the entries as rows (`RowBatch`), in order and in batches, to the committing process."""
    # Nothing here makes reference cycles; the collector's passes over millions of young rows find nothing.
    gc.disable()
    try:
        _parse_files(out, job)
    except Exception as exc:  # say what went wrong rather than die silently (a bad deck, a missing file)
        out.send(("error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, SmdrdError) else str(exc)))
    finally:
        out.close()


def _parse_files(out: Connection, job: dict[str, Any]) -> None:
    from smdrd.rating import Rater

    site = SiteConfig.model_validate(job["site"])
    base_dir = Path(job["base_dir"]) if job["base_dir"] else None
    rate = Rater.from_config(site, TariffConfig.model_validate(job["tariff"]), base_dir=base_dir,
                             version=job["version"]).rate
    cls = get_parser_class(job["format"])
    encoding = job["encoding"] or cls.encoding
    context = ParserContext(timezone=site.tz, year=job["year"], options=job["options"],
                            country=site.country)
    source = job["source"]
    size_limit = int(job.get("batch", WORKER_BATCH))
    last_file = len(job["files"]) - 1
    counts = {"lines": 0, "skipped": 0, "errors": 0, "parsed": 0, "held": 0}
    batch = RowBatch()
    failed = FailedLines()

    def take(entry: Entry) -> None:
        nonlocal batch
        # The store's rows, mapped here: they cross to the committing process as plain tuples, one message
        # per commit, and are bound there as they are.
        batch.add(entry)
        status = entry.status
        failed.note(entry.peer, status, entry.error)
        if status != FLUSHED:
            counts["lines"] += 1
            counts[_COUNTED.get(status, "held")] += 1
        if len(batch) >= size_limit:
            out.send(("rows", batch))
            batch = RowBatch()

    for index, name in enumerate(job["files"]):
        parser = cls(context)
        framer = Framer(1 << 20)
        size = os.path.getsize(name)
        done = 0
        with open(name, "rb") as fh:
            while chunk := fh.read(WORKER_CHUNK):
                if index == last_file and done + len(chunk) >= size and size_limit > TAIL_BATCH:
                    # The import's last lines (`TAIL_BATCH`): only the batch sizes change, never what is stored.
                    if len(batch):
                        out.send(("rows", batch))
                        batch = RowBatch()
                    size_limit = TAIL_BATCH
                received = time.time_ns() // 1000
                for frame in framer.feed(chunk):
                    take(process_frame(frame, parser, encoding, source=source, peer=name, received_at=received,
                                       rate=rate))
                done += len(chunk)
                out.send(("progress", (name, done, size, counts["lines"], counts["errors"])))
        received = time.time_ns() // 1000
        for frame in framer.close():
            take(process_frame(frame, parser, encoding, source=source, peer=name, received_at=received,
                               rate=rate))
        entry = flush_entry(parser, source=source, peer=name, received_at=received, rate=rate)
        if entry is not None:
            take(entry)
        if len(batch):
            out.send(("rows", batch))
            batch = RowBatch()
        out.send(("file_done", name))
    out.send(("failed", failed))
    out.send(("done", counts))


def _source_year(settings: Settings, name: str) -> int | None:
    """The configured year of the source the lines are imported as (formats without a year need it)."""
    return next((s.year for s in settings.sources if s.name == name), None)


def _source_options(settings: Settings, name: str) -> dict[str, object]:
    """The format options of the configured source the lines are imported as (a `custom` layout)."""
    return next((dict(s.format_options) for s in settings.sources if s.name == name), {})


#: the most characters of a file's path the progress line shows: a long path would leave the bar no room.
PATH_WIDTH = 40


def _shown(path: str, width: int = PATH_WIDTH) -> str:
    """``path`` as the progress line shows it: its end (the file's name and the folders nearest it) when long."""
    return path if len(path) <= width else "…" + path[-(width - 1):]


class ImportProgress:
    """The import's progress on a terminal (rich): one bar per file (bytes read), with the lines, calls and errors
    so far and the speed in lines per second. Disabled, every method does nothing (a pipe or ``--quiet``)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._started = time.perf_counter()
        self._tasks: dict[str, Any] = {}
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=24), TaskProgressColumn(),
                TextColumn("{task.fields[lines]:>11,} lines {task.fields[calls]:>11,} calls "
                           "{task.fields[errors]:>7,} errors {task.fields[speed]:>9,.0f} lines/s"),
                TimeRemainingColumn(), console=Console(stderr=True))

    def start(self) -> None:
        if self._bar is not None:
            self._started = time.perf_counter()
            self._bar.start()

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> ImportProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def update(self, name: str, done: int, size: int | None, *, lines: int, calls: int, errors: int) -> None:
        if self._bar is None:
            return
        task = self._tasks.get(name)
        if task is None:
            task = self._tasks[name] = self._bar.add_task(_shown(name), total=size, lines=0, calls=0, errors=0,
                                                          speed=0.0)
        speed = lines / max(time.perf_counter() - self._started, 1e-6)
        self._bar.update(task, completed=done, lines=lines, calls=calls, errors=errors, speed=speed)
