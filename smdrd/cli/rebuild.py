"""``smdrd rerate`` and ``smdrd reparse``: rebuild stored calls after a tariff change or a parser fix.

Both work on a range of days (site time) while the daemon keeps running: each batch is one short write
transaction, so the live journal writer waits milliseconds at most. The report rollups stay exact: a re-rated
call moves its figures (the update trigger of migration 4), and the calls a reparse rebuilds are taken out of
the rollups when deleted (a temporary trigger on this connection only) and added back when re-inserted.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from smdrd.cli._common import add_config_argument, settings_from
from smdrd.config import Settings, SourceConfig
from smdrd.core import DUPLICATE, ERROR, FLUSHED, MICROS, Entry, flush_entry, process_frame
from smdrd.errors import SmdrdError
from smdrd.parsing import Parser, ParserContext, get_parser_class
from smdrd.rating import Rater
from smdrd.store.sqlite.rows import INSERT_CALL, call_row
from smdrd.store.sqlite.schema import UNROLL_ON_DELETE, connect
from smdrd.store.sqlite.writer import unwritable

BATCH = 2000


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
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, metavar="DATE",
                   help="first day (site time, YYYY-MM-DD); default: the first stored")
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, metavar="DATE",
                   help="last day, included; default: the last stored")


def _open(args: argparse.Namespace) -> tuple[Settings, Path | None, sqlite3.Connection]:
    settings, path = settings_from(args, required=False)
    db = args.database or settings.database.path
    if not Path(db).exists():
        raise SmdrdError(f"no database at {db}")
    return settings, path, connect(str(db))


def _bounds(args: argparse.Namespace, settings: Settings) -> tuple[int, int]:
    from smdrd.store.api import utc_bounds

    first = args.date_from or date(1970, 1, 2)
    last = args.date_to or date(9998, 12, 30)
    if first > last:
        raise SmdrdError(f"--from {first} is after --to {last}")
    return utc_bounds(first, last, settings.site.tz)


def _rater(settings: Settings, path: Path | None) -> Rater:
    return Rater.from_config(settings.site, settings.tariff, base_dir=path.parent if path else None)


def _money(micros: int) -> str:
    return str(Decimal(micros) / MICROS)


# --- rerate -------------------------------------------------------------------------------------------------

@dataclass
class RerateSummary:
    checked: int = 0
    changed: int = 0
    cost_before: Counter[str] = field(default_factory=Counter)
    cost_after: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        currencies = sorted(set(self.cost_before) | set(self.cost_after))
        return {
            "checked": self.checked,
            "changed": self.changed,
            "cost_before": {c: _money(self.cost_before[c]) for c in currencies},
            "cost_after": {c: _money(self.cost_after[c]) for c in currencies},
            "rule_changes": [{"from": a, "to": b, "calls": n} for (a, b), n in self.rules.most_common(20)],
        }


def run_rerate(args: argparse.Namespace) -> int:
    settings, path, conn = _open(args)
    rater = _rater(settings, path)
    lo, hi = _bounds(args, settings)
    summary = RerateSummary()
    updates: list[tuple[object, ...]] = []
    rows = conn.execute(
        "SELECT id, number, start, duration, direction, trunk, answered, e164, call_class, rule, prefix, "
        "cost_micros, currency FROM calls WHERE start_utc >= ? AND start_utc < ? ORDER BY id", (lo, hi))
    for (call_id, number, start, duration, direction, trunk, answered, *old) in rows:
        summary.checked += 1
        r = rater.rate_call(number, datetime.fromisoformat(start), duration, direction=direction, trunk=trunk,
                            answered=bool(answered))
        new = (r.e164, r.call_class, r.rule, r.prefix, int(r.cost * MICROS), r.currency)
        summary.cost_before[str(old[5] or "")] += int(old[4] or 0)
        summary.cost_after[r.currency] += new[4]
        if tuple(old) != new:
            summary.changed += 1
            if old[2] != r.rule:
                summary.rules[(str(old[2] or ""), r.rule)] += 1
            updates.append((*new, call_id))
    if not args.dry_run:
        for i in range(0, len(updates), BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("UPDATE calls SET e164 = ?, call_class = ?, rule = ?, prefix = ?, cost_micros = ?, "
                             "currency = ? WHERE id = ?", updates[i:i + BATCH])
            conn.execute("COMMIT")
    conn.close()
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
                            options=cfg.format_options if cfg else {})
    return _Stream(cls(context), (cfg.encoding if cfg and cfg.encoding else cls.encoding))


def _batches(conn: sqlite3.Connection, lo: int, hi: int, source: str | None
             ) -> Iterator[list[tuple[int, str, str, str, bytes, str]]]:
    # Lines whose bytes retention pruned (their calls are kept) cannot be parsed again: leave them and their calls.
    where = ("received_at >= ? AND received_at < ? AND (length(raw) > 0 OR status = 'flushed')"
             + (" AND source = ?" if source else ""))
    params: list[object] = [lo * 1_000_000, hi * 1_000_000] + ([source] if source else [])
    last = 0
    while True:
        rows = conn.execute(f"SELECT id, source, peer, format, raw, status FROM lines WHERE {where} AND id > ? "
                            f"ORDER BY id LIMIT {BATCH}", [*params, last]).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def run_reparse(args: argparse.Namespace) -> int:
    settings, path, conn = _open(args)
    conn.execute(UNROLL_ON_DELETE)
    rate = _rater(settings, path).rate
    lo, hi = _bounds(args, settings)
    by_name = {s.name: s for s in settings.sources}
    streams: dict[tuple[str, str], _Stream] = {}
    summary = ReparseSummary()
    for rows in _batches(conn, lo, hi, args.source):
        entries: list[tuple[int, Entry | None]] = []
        for line_id, source, peer, fmt, raw, status in rows:
            summary.before[status] += 1
            if status == FLUSHED:  # a marker for records a parser held at the end of a stream: rebuilt below
                entries.append((line_id, None))
                continue
            stream = streams.get((source, peer))
            if stream is None:
                stream = streams[(source, peer)] = _stream_for(source, fmt, settings, by_name)
            stream.last_line = line_id
            entries.append((line_id, process_frame(bytes(raw), stream.parser, stream.encoding, source=source,
                                                   peer=peer, received_at=0, rate=rate)))
        summary.calls_before += _replace(conn, entries, summary)
    # Records parsers still hold (multi-leg calls cut off by the range's end) go with each stream's last line.
    tail: list[tuple[int, Entry | None]] = []
    for (source, peer), stream in streams.items():
        entry = flush_entry(stream.parser, source=source, peer=peer, received_at=0, tag=stream.last_line,
                            rate=rate)
        if entry is not None:
            tail.append((stream.last_line, entry))
    if tail:
        _replace(conn, tail, summary, keep_lines=True)
    summary.calls_after = conn.execute(
        "SELECT count(*) FROM calls JOIN lines ON lines.id = calls.line_id WHERE lines.received_at >= ? "
        "AND lines.received_at < ?", (lo * 1_000_000, hi * 1_000_000)).fetchone()[0]
    conn.close()
    out = {"lines": summary.lines, "status_before": dict(summary.before), "status_after": dict(summary.after),
           "calls_before": summary.calls_before, "calls_after": summary.calls_after}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"reparsed {summary.lines} lines: calls {summary.calls_before} -> {summary.calls_after}; "
              f"errors {summary.before['error']} -> {summary.after['error']}")
    return 0


def _replace(conn: sqlite3.Connection, entries: list[tuple[int, Entry | None]], summary: ReparseSummary, *,
             keep_lines: bool = False) -> int:
    """Replace the calls of ``entries``' lines with the new ones, in one transaction; return the old count."""
    ids = [(line_id,) for line_id, _ in entries]
    conn.execute("BEGIN IMMEDIATE")
    try:
        removed = 0
        if not keep_lines:
            # rowcount, not total_changes: the rollup trigger's writes are no calls.
            removed = conn.executemany("DELETE FROM calls WHERE line_id = ?", ids).rowcount
        rows = [(line_id, *call_row(c, entry.source)) for line_id, entry in entries if entry for c in entry.calls]
        refused: dict[int, str] = {}
        try:
            conn.executemany(INSERT_CALL, rows)
        except Exception as exc:
            if unwritable(exc):
                raise
            # One entry holds what the database refuses: store the others, and that line as an error.
            for line_id, entry in entries:
                if not entry or not entry.calls:
                    continue
                conn.execute("SAVEPOINT one")
                try:
                    conn.executemany(INSERT_CALL, [(line_id, *call_row(c, entry.source)) for c in entry.calls])
                except Exception as one:
                    if unwritable(one):
                        raise
                    conn.execute("ROLLBACK TO one")
                    refused[line_id] = f"could not store what was parsed from this line: {type(one).__name__}: {one}"
                conn.execute("RELEASE one")
        status_rows: list[tuple[str, str | None, int]] = []
        for line_id, entry in entries:
            if entry is None:
                summary.after[FLUSHED] += 1
                continue
            if keep_lines:
                continue
            status, error = entry.status, entry.error
            if line_id in refused:
                status, error = ERROR, refused[line_id]
            # A call already stored from another line (a re-sent buffer) was ignored: this line is a duplicate.
            elif entry.calls and conn.execute("SELECT 1 FROM calls WHERE line_id = ? LIMIT 1",
                                              (line_id,)).fetchone() is None:
                status = DUPLICATE
            status_rows.append((status, error, line_id))
            summary.after[status] += 1
            summary.lines += 1
        conn.executemany("UPDATE lines SET status = ?, error = ? WHERE id = ?", status_rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return removed

