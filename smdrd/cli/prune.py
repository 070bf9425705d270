"""``smdrd prune``: apply ``[retention]`` now, by hand, and print what was pruned (or, ``--dry-run``, what would be).

The same batches as the daemon's retention task (`smdrd.store.sqlite.retention.prune`), so it is safe beside a running
daemon: each batch is its own short transaction and the pause between batches lets the daemon's journal writer
in. ``--calls-days`` and ``--lines-days`` override the configuration for this run.

Never here: VACUUM (it rewrites the whole file under an exclusive lock; see docs/retention.md), or any change to
the report rollups.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from smdrd.cli._common import add_config_argument, settings_from, store_of
from smdrd.config import MIN_CALLS_DAYS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``prune`` command to the ``smdrd`` parser."""
    p = sub.add_parser(
        "prune", help="delete call details and raw lines older than [retention] says (reports stay exact)",
        description="Delete call details older than [retention] calls_days and raw journal lines older than "
        "lines_days, in small transactions (safe while the daemon runs). Report figures come from rollups and "
        "do not change; only the call listing of pruned days is gone. The file does not shrink: SQLite reuses "
        "the freed pages (see docs/retention.md).")
    add_config_argument(p)
    p.add_argument("--database", type=Path, metavar="PATH", help="the SQLite file (overrides the configuration's)")
    p.add_argument("--dry-run", action="store_true", help="count what would be pruned; change nothing")
    p.add_argument("--calls-days", type=int, metavar="N",
                   help=f"keep call details N days (0: for ever; at least {MIN_CALLS_DAYS}) for this run")
    p.add_argument("--lines-days", type=int, metavar="N", help="keep raw lines N days (0: for ever) for this run")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Prune (or count) and print the counts."""
    from smdrd.store import open_store
    from smdrd.store.api import cutoffs

    settings, _ = settings_from(args, existing_database=True)
    cfg = settings.retention
    calls_days = cfg.calls_days if args.calls_days is None else args.calls_days
    lines_days = cfg.lines_days if args.lines_days is None else args.lines_days
    if calls_days < 0 or 0 < calls_days < MIN_CALLS_DAYS:
        args.parser.error(f"--calls-days: expected 0 (keep for ever) or at least {MIN_CALLS_DAYS}, got {calls_days}")
    if lines_days < 0:
        args.parser.error(f"--lines-days: expected 0 (keep for ever) or more, got {lines_days}")
    path = store_of(args, settings)  # the SQLite file, or PostgreSQL's [database] url
    cut = cutoffs(datetime.now(UTC), settings.site.tz, calls_days=calls_days, lines_days=lines_days)
    lines_before = None if cut.lines_before is None else cut.lines_before // 1_000_000
    shown = settings.database.shown if path == settings.database.url else path
    print(f"{shown}: call details {_before(cut.calls_before)}; raw lines {_before(lines_before)}")
    store = open_store(path).retention()
    try:
        started = time.monotonic()
        if args.dry_run:
            counts = store.plan(cut)
            verb = "would delete"
        else:
            pause = cfg.pause_ms / 1000
            counts = store.prune(cut, batch_rows=cfg.batch_rows, pause=lambda: time.sleep(pause))
            verb = "deleted"
        seconds = time.monotonic() - started
    finally:
        store.close()
    batches = "" if args.dry_run else f"{counts.batches} batches, "
    print(f"{verb} {counts.calls} calls, {counts.lines_deleted} raw lines; "
          f"{'would empty' if args.dry_run else 'emptied'} {counts.lines_emptied} raw lines of kept calls "
          f"({batches}{seconds:.2f} s)")
    return 0


def _before(stamp: int | None) -> str:
    if stamp is None:
        return "kept for ever"
    return f"before {datetime.fromtimestamp(stamp, UTC).isoformat(timespec='seconds')} go"
