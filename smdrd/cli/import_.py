"""``smdrd import``: backfill saved PBX logs through the same pipeline as the live daemon."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

from smdrd.cli._common import add_config_argument, settings_from
from smdrd.config import Settings
from smdrd.daemon import build_rater
from smdrd.ingest import SourceIngest
from smdrd.store.writer import JournalWriter

CHUNK = 1 << 16  # small enough that the writer task is serviced between chunks (overlap)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="backfill saved PBX logs into the database",
                       description="Read saved PBX output through the same framing, parsing and rating as "
                       "the daemon, into the configured database. Lines already stored are recognised and "
                       "not counted twice.")
    p.add_argument("files", nargs="+", metavar="FILE", help="files to import; - reads standard input")
    p.add_argument("-f", "--format", required=True, help="the format name (see `smdrd formats`)")
    add_config_argument(p)
    p.add_argument("--database", type=Path, help="the SQLite file (overrides the configuration's)")
    p.add_argument("--source", default="import", help="the source name to journal the lines under")
    p.add_argument("--year", type=int, help="the year, for formats whose dates have none")
    p.add_argument("--encoding", help="the files' encoding (default: the format's)")
    p.add_argument("--batch", type=int, default=20_000, help="rows per commit (default 20000)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings, path = settings_from(args, required=False)
    if args.database is not None:
        settings = settings.model_copy(update={"database": settings.database.model_copy(
            update={"path": args.database})})
    counts = asyncio.run(import_files(settings, args, path.parent if path else None))
    if not args.quiet:
        print(f"imported {counts['lines']} lines: {counts['calls']} calls, {counts['skipped']} skipped, "
              f"{counts['errors']} errors, {counts['duplicates']} already stored; "
              f"{counts['seconds']:.2f} s ({counts['lines'] / max(counts['seconds'], 1e-9):,.0f} lines/s) "
              f"into {settings.database.path}", file=sys.stderr)
    return 1 if counts["errors"] else 0


def _open(name: str) -> tuple[BinaryIO, int | None]:
    if name == "-":
        return sys.stdin.buffer, None
    fh = Path(name).open("rb")  # noqa: SIM115 - closed by the caller
    return fh, os.fstat(fh.fileno()).st_size


async def import_files(settings: Settings, args: argparse.Namespace,
                       base_dir: Path | None = None) -> dict[str, float]:
    """Import ``args.files`` (relative deck paths are read from ``base_dir``); return the counts."""
    started = time.perf_counter()
    writer = JournalWriter(settings.database.path, commit_interval=1.0, batch_rows=args.batch,
                           max_pending=args.batch * 4)
    await writer.open()
    writer_task = asyncio.create_task(writer.run())
    ingest = SourceIngest(name=args.source, format=args.format, site=settings.site, writer=writer,
                          hooks=build_rater(settings, base_dir), encoding=args.encoding,
                          year=args.year or _source_year(settings, args.source),
                          options=_source_options(settings, args.source),
                          max_line=1 << 20)
    progress = sys.stderr.isatty() and not args.quiet
    for name in args.files:
        fh, size = _open(name)
        stream = ingest.open_stream(name)
        done = 0
        try:
            while chunk := fh.read(CHUNK):
                await stream.feed(chunk)
                done += len(chunk)
                if progress:
                    _progress(name, done, size)
            await stream.close()
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()
        if progress:
            print(file=sys.stderr)
    await writer.close()
    await writer_task
    c = ingest.counters
    return {"lines": c.lines, "calls": writer.stats.calls, "skipped": c.skipped, "errors": c.errors,
            "duplicates": writer.stats.duplicates, "seconds": time.perf_counter() - started}


def _source_year(settings: Settings, name: str) -> int | None:
    """The configured year of the source the lines are imported as (formats without a year need it)."""
    return next((s.year for s in settings.sources if s.name == name), None)


def _source_options(settings: Settings, name: str) -> dict[str, object]:
    """The format options of the configured source the lines are imported as (a `custom` layout)."""
    return next((dict(s.format_options) for s in settings.sources if s.name == name), {})


def _progress(name: str, done: int, size: int | None) -> None:
    if size:
        frac = done / size
        bar = "#" * int(frac * 30)
        print(f"\r{name}: [{bar:<30}] {frac:6.1%}", end="", file=sys.stderr, flush=True)
    else:
        print(f"\r{name}: {done / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)
