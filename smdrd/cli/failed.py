"""``smdrd errors``: the journalled lines that could not be parsed, with why, over the whole journal.

What ``smdrd import`` lists the first of, and what the daemon stored from a PBX as ``error`` lines: each with its
line id, when it arrived (UTC), its source and peer (a file name for an import), the reason and the bytes as
received. Reads the database only. After a parser or configuration fix, ``smdrd reparse`` turns them into calls.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path

from smdrd.cli._common import add_config_argument, day, settings_from, store_of
from smdrd.errors import SmdrdError

#: how much of a line's bytes the listing shows (the journal keeps them all).
SHOWN_BYTES = 160


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("errors", help="list the journalled lines that could not be parsed, and why",
                       description="List the lines of the journal whose status is error (from the daemon's "
                       "sources and from smdrd import): line id, when received (UTC), source, peer or file, "
                       "the reason and the raw line. After a parser or config fix, smdrd reparse rebuilds them.")
    add_config_argument(p)
    p.add_argument("--database", type=Path, metavar="PATH", help="the SQLite file (overrides the configuration's)")
    p.add_argument("--from", dest="date_from", type=day, metavar="DATE",
                   help="first day received (site time, YYYY-MM-DD); default: the first")
    p.add_argument("--to", dest="date_to", type=day, metavar="DATE",
                   help="last day received, included; default: the last")
    p.add_argument("--source", help="only the lines of this source (an import's default source is 'import')")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="show at most N lines (0: all; default 100)")
    p.add_argument("--json", action="store_true", help="one JSON object per line (raw bytes as text, escaped)")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    from smdrd.store import open_store
    from smdrd.store.api import utc_bounds

    if args.limit < 0:
        args.parser.error(f"--limit: expected 0 (all) or more, got {args.limit}")
    settings, _ = settings_from(args, existing_database=True)
    first, last = args.date_from or date(1970, 1, 2), args.date_to or date(9998, 12, 30)
    if first > last:
        raise SmdrdError(f"--from {first} is after --to {last}")
    lo, hi = utc_bounds(first, last, settings.site.tz)
    journal = open_store(store_of(args, settings)).journal_errors()
    try:
        lines, total = journal.error_lines(lo, hi, args.source, args.limit)
    finally:
        journal.close()
    for line in lines:
        received = datetime.fromtimestamp(line.received_at / 1e6, UTC).isoformat(timespec="seconds")
        text = line.raw.decode("utf-8", "backslashreplace")
        if args.json:
            print(json.dumps({"line_id": line.line_id, "received": received, "source": line.source,
                              "peer": line.peer, "format": line.format, "error": line.error, "raw": text}))
            continue
        shown = text if len(text) <= SHOWN_BYTES else text[:SHOWN_BYTES] + "..."
        print(f"line {line.line_id}  {received}  {line.source}  {line.peer or '-'}\n  {line.error}\n  {shown!r}")
    if not args.json:
        more = f"; {total - len(lines)} more: --limit 0 shows all" if total > len(lines) else ""
        print(f"{total} line{'s' if total != 1 else ''} not parsed{more}")
    return 0
