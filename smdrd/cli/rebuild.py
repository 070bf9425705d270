"""``smdrd rerate`` and ``smdrd reparse``: rebuild stored calls after a tariff change or a parser fix.

Both work on a range of days (site time) while the daemon keeps running: each batch is one short write
transaction, so the live journal writer waits milliseconds at most. The report rollups stay exact: a re-rated
call moves its figures, and the calls a reparse rebuilds are taken out of the rollups when deleted and added back
when re-inserted (`smdrd.store.api.Rebuild`). On the SQLite file or the PostgreSQL database the configuration
names (``[database] url``); on PostgreSQL, the calls of the box's own site only (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from smdrd.cli._common import add_config_argument, day, settings_from, store_of
from smdrd.config import Settings, SourceConfig
from smdrd.core import FLUSHED, Entry, flush_entry, process_frame
from smdrd.errors import SmdrdError
from smdrd.parsing import Parser, ParserContext, get_parser_class
from smdrd.rating import Rater
from smdrd.store import open_store
from smdrd.store.api import Rebuild, ReplaceResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("rerate", help="re-rate stored calls after a tariff change and say what changed",
                       description="Rate the stored calls of a range of days again with the configured tariff, "
                       "store the new ratings, and print how many changed and how the cost moved.")
    _common(r)
    r.add_argument("--dry-run", action="store_true", help="compute and report, but store nothing")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=run_rerate)

    p = sub.add_parser("reparse", help="rebuild calls from the raw journal after a parser fix",
                       description="Parse the journalled lines of a range of days again (lines that failed "
                       "included), replace the calls they produced, and rate them with the configured tariff. "
                       "Alerts are not raised again.")
    _common(p)
    p.add_argument("--source", help="only the lines of this source")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_reparse)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--database", type=Path, help="the SQLite file (overrides the configuration's)")
    p.add_argument("--from", dest="date_from", type=day, metavar="DATE",
                   help="first day (site time, YYYY-MM-DD); default: the first stored")
    p.add_argument("--to", dest="date_to", type=day, metavar="DATE",
                   help="last day, included; default: the last stored")


def _open(args: argparse.Namespace) -> tuple[Settings, Path | None, Rebuild]:
    settings, path = settings_from(args, existing_database=True, defaults=False)
    return settings, path, open_store(store_of(args, settings)).rebuild()


def _bounds(args: argparse.Namespace, settings: Settings) -> tuple[int, int]:
    from smdrd.store.api import utc_bounds

    first = args.date_from or date(1970, 1, 2)
    last = args.date_to or date(9998, 12, 30)
    if first > last:
        raise SmdrdError(f"--from {first} is after --to {last}")
    return utc_bounds(first, last, settings.site.tz)


def _rater(settings: Settings, path: Path | None) -> Rater:
    from smdrd.tariffs import resolved

    settings, version = resolved(settings)  # [tariff] source = "database": the latest saved version, its number
    return Rater.from_config(settings.site, settings.tariff, base_dir=path.parent if path else None, version=version)


# --- rerate -------------------------------------------------------------------------------------------------

def run_rerate(args: argparse.Namespace) -> int:
    settings, path, store = _open(args)
    try:
        from smdrd.tariffs import rerate

        summary = rerate(store, _rater(settings, path), *_bounds(args, settings), apply=not args.dry_run)
    finally:
        store.close()
    out = summary.as_json()
    if args.json:
        print(json.dumps({**out, "dry_run": args.dry_run}, indent=2))
    else:
        costs = ", ".join(f"{out['cost_before'][c]} -> {out['cost_after'][c]} {c}"  # type: ignore[index]
                          for c in out["cost_after"])  # type: ignore[attr-defined]
        verb = "would change" if args.dry_run else "changed"
        print(f"checked {summary.checked} calls: {summary.changed} {verb}; cost {costs or '0'}")
        for item in out["rule_changes"]:  # type: ignore[attr-defined]
            print(f"  {item['calls']:>6} calls: rule {item['from'] or '(none)'!r} -> {item['to'] or '(none)'!r}")
        for item in out["version_changes"]:  # type: ignore[attr-defined]
            print(f"  {item['calls']:>6} calls: tariff {item['from'] or '(unknown version)'} -> {item['to']}")
    return 0


# --- reparse ------------------------------------------------------------------------------------------------

@dataclass
class _Stream:
    parser: Parser
    encoding: str
    last_line: int = 0


@dataclass
class ReparseSummary:
    lines: int = 0
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    calls_before: int = 0
    calls_after: int = 0


def _stream_for(source: str, fmt: str, settings: Settings, by_name: dict[str, SourceConfig]) -> _Stream:
    cls = get_parser_class(fmt)
    cfg = by_name.get(source)
    context = ParserContext(timezone=settings.site.tz, year=cfg.year if cfg else None,
                            options=cfg.format_options if cfg else {}, country=settings.site.country)
    return _Stream(cls(context), (cfg.encoding if cfg and cfg.encoding else cls.encoding))


def run_reparse(args: argparse.Namespace) -> int:
    settings, path, store = _open(args)
    try:
        summary = _reparse(args, settings, path, store)
    finally:
        store.close()
    out = {"lines": summary.lines, "status_before": dict(summary.before), "status_after": dict(summary.after),
           "calls_before": summary.calls_before, "calls_after": summary.calls_after}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"reparsed {summary.lines} lines: calls {summary.calls_before} -> {summary.calls_after}; "
              f"errors {summary.before['error']} -> {summary.after['error']}")
    return 0


def _reparse(args: argparse.Namespace, settings: Settings, path: Path | None, store: Rebuild) -> ReparseSummary:
    rate = _rater(settings, path).rate
    lo, hi = _bounds(args, settings)
    by_name = {s.name: s for s in settings.sources}
    streams: dict[tuple[str, str], _Stream] = {}
    summary = ReparseSummary()
    for batch in store.lines(lo, hi, args.source):
        entries: list[tuple[int, Entry | None]] = []
        for line in batch:
            summary.before[line.status] += 1
            if line.status == FLUSHED:  # a marker for records a parser held at the end of a stream: rebuilt below
                entries.append((line.line_id, None))
                continue
            stream = streams.get((line.source, line.peer))
            if stream is None:
                stream = streams[(line.source, line.peer)] = _stream_for(line.source, line.format, settings,
                                                                         by_name)
            stream.last_line = line.line_id
            entries.append((line.line_id, process_frame(line.raw, stream.parser, stream.encoding,
                                                        source=line.source, peer=line.peer, received_at=0,
                                                        rate=rate)))
        summary.calls_before += _count(store.replace(entries), summary)
    # Records parsers still hold (multi-leg calls cut off by the range's end) go with each stream's last line.
    tail: list[tuple[int, Entry | None]] = []
    for (source, peer), stream in streams.items():
        entry = flush_entry(stream.parser, source=source, peer=peer, received_at=0, rate=rate)
        if entry is not None:
            tail.append((stream.last_line, entry))
    if tail:
        _count(store.replace(tail, keep_lines=True), summary)
    summary.calls_after = store.calls_received(lo, hi)
    return summary


def _count(result: ReplaceResult, summary: ReparseSummary) -> int:
    """Add a replaced batch's new statuses to ``summary``; the calls it removed."""
    for status in result.statuses.values():
        summary.after[status] += 1
        if status != FLUSHED:
            summary.lines += 1
    return result.removed
