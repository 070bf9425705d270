"""Retention benchmark: how long live lines wait for their commit while the daemon prunes a large backlog.

    python bench/retention.py [--backlog 200000] [--rate 50] [--batch-rows 1000] [--pause-ms 10]

Seeds ``--backlog`` old calls (July 2017), each with its raw line, with ``smdrd import``; then runs
the daemon (a ``tcp-server`` source, 20 ms commit interval) with a commit listener, and beside it a
`smdrd.retention.Pruner` doing what the daemon's retention task does at start (``calls_days = lines_days =
31``), while a PBX sends ``--rate`` lines a second over loopback TCP until the prune is over and one second
more. Reported: how long the prune took and how many rows a second it removed, its batches, the live lines
sent while it ran, the lines lost (must be 0), and the send-to-commit latency (median, p99, max) of the lines
sent during the prune next to that of the lines sent after it.

``tests/test_retention.py`` once asserted that every live line committed within 0.5 s during such a prune
(about 50 ms on a quiet machine); the test now checks that live commits interleave with the prune's batches,
and the figure lives here. Figures belong in bench/, never in tests: a loaded machine makes them flaky.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.cli import main as cli_main  # noqa: E402
from smdrd.config import Settings  # noqa: E402
from smdrd.core import Entry  # noqa: E402
from smdrd.daemon import Daemon  # noqa: E402
from smdrd.logs import configure  # noqa: E402
from smdrd.retention import Pruner  # noqa: E402
from smdrd.testing import free_port, open_connection_retry  # noqa: E402

LINE = ("{start},00:01:01,0,{ext},O,600988600,0600988600,,0,{id},0,E{ext},GRZYBEK,T9005,Line 5.0,"
        "0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")
OLD = datetime(2017, 7, 14, 12, 0, tzinfo=UTC)


def seed(db: Path, n: int) -> float:
    """``n`` distinct old calls (July 2017) with their lines, imported by ``smdrd import`` (the daemon's own
    pipeline), then marked as received when they happened, as a daemon running since 2017 would have them."""
    started = time.monotonic()
    src = db.with_suffix(".smdr")
    with src.open("w") as fh:
        for i in range(1, n + 1):
            at = OLD + timedelta(minutes=i)
            fh.write(LINE.format(start=at.strftime("%Y/%m/%d %H:%M:%S"), ext=200 + i % 100, id=i) + "\r\n")
    argv = ["import", "-q", "--format", "avaya-ipo", "--source", "old", "--database", str(db), str(src)]
    if cli_main(argv) != 0:
        raise SystemExit(f"smdrd {' '.join(argv)} failed")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE lines SET received_at = ? + id * 60000000", (int(OLD.timestamp() * 1_000_000),))
    conn.close()
    src.unlink()
    return time.monotonic() - started


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"lines": 0, "median_ms": -1.0, "p99_ms": -1.0, "max_ms": -1.0}
    v = sorted(x * 1000 for x in values)
    return {"lines": len(v), "median_ms": round(statistics.median(v), 1),
            "p99_ms": round(v[max(0, int(len(v) * 0.99) - 1)], 1), "max_ms": round(v[-1], 1)}


async def run(db: Path, backlog: int, rate: float, batch_rows: int, pause_ms: int) -> dict[str, Any]:
    port = free_port()
    settings = Settings.model_validate({
        "site": {"timezone": "Europe/Warsaw", "country": "PL"},
        "database": {"path": str(db), "commit_interval_ms": 20},
        "sources": [{"name": "push", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}"}],
        "http": {"enabled": False},
        "logging": {"level": "error"},
        "alerts": {"enabled": False},
        # The daemon's own pruner keeps everything; the one below does the run that is measured.
        "retention": {"calls_days": 0, "lines_days": 0},
    })
    pruning = Settings.model_validate({**settings.model_dump(mode="json"), "retention": {
        "calls_days": 31, "lines_days": 31, "batch_rows": batch_rows, "pause_ms": pause_ms}})
    committed: dict[bytes, float] = {}
    expected: list[int] = []  # how many lines were sent, once sending is over
    all_in = asyncio.Event()

    def on_commit(entries: list[Entry], _seconds: float) -> None:
        now = time.monotonic()
        for e in entries:
            committed.setdefault(e.raw, now)
        if expected and len(committed) >= expected[0]:
            all_in.set()

    daemon = Daemon(settings, on_commit=on_commit)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 60)  # a daemon that cannot start says so, not hangs
    pruner = Pruner(db, pruning.retention, pruning.site.tz)
    _, writer = await open_connection_retry("127.0.0.1", port)
    sent: dict[bytes, float] = {}
    during: set[bytes] = set()
    prune = asyncio.create_task(pruner.prune_once())
    prune_started = time.monotonic()
    prune_seconds = 0.0
    stamp = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y/%m/%d %H:%M:%S")
    i = 0
    stop_at: float | None = None
    while stop_at is None or time.monotonic() < stop_at:
        line = LINE.format(start=stamp, ext=217, id=9_000_000 + i).encode()
        writer.write(line + b"\r\n")
        await writer.drain()
        sent[line] = time.monotonic()
        if not prune.done():
            during.add(line)
        elif stop_at is None:
            prune_seconds = time.monotonic() - prune_started
            stop_at = time.monotonic() + 1.0
        i += 1
        await asyncio.sleep(1 / rate)
    counts = await prune
    expected.append(len(sent))
    if len(committed) >= len(sent):
        all_in.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 30)
    writer.close()
    daemon.request_stop()
    await task
    waits_during = [committed[line] - t for line, t in sent.items() if line in during and line in committed]
    waits_after = [committed[line] - t for line, t in sent.items() if line not in during and line in committed]
    removed = counts.calls + counts.lines_deleted
    return {
        "backlog_calls": backlog, "rate": rate,
        "batch_rows": batch_rows, "pause_ms": pause_ms,
        "prune_seconds": round(prune_seconds, 2), "prune_rows_per_s": round(removed / prune_seconds),
        "pruned_calls": counts.calls, "pruned_lines": counts.lines_deleted, "batches": counts.batches,
        "sent": len(sent), "lost": len(sent) - len(committed.keys() & sent.keys()),
        "latency_during_prune": summary(waits_during), "latency_after_prune": summary(waits_after),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backlog", type=int, default=200_000, help="old calls to prune (default 200,000)")
    ap.add_argument("--rate", type=float, default=50.0, help="live lines a second (default 50)")
    ap.add_argument("--batch-rows", type=int, default=1000)
    ap.add_argument("--pause-ms", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smdrd-retention-") as work:
        db = Path(work) / "retention.db"
        seed_seconds = seed(db, args.backlog)  # smdrd import runs its own event loop
        configure("error", "console")  # stdout is for the JSON result
        r = asyncio.run(run(db, args.backlog, args.rate, args.batch_rows, args.pause_ms))
        r["seed_seconds"] = round(seed_seconds, 1)
    during, after = r["latency_during_prune"], r["latency_after_prune"]
    rows = [
        ("backlog", f"{r['backlog_calls']:,} calls and their lines (seeded in {r['seed_seconds']} s)"),
        ("prune", f"{r['prune_seconds']} s, {r['prune_rows_per_s']:,} rows/s, {r['batches']} batches of "
                  f"{r['batch_rows']} with {r['pause_ms']} ms pauses"),
        ("live lines", f"{r['sent']} sent at {r['rate']:.0f}/s, {during['lines']} during the prune, "
                       f"lost {r['lost']}"),
        ("during prune", f"commit latency median {during['median_ms']} ms, p99 {during['p99_ms']} ms, "
                         f"max {during['max_ms']} ms"),
        ("after prune", f"commit latency median {after['median_ms']} ms, p99 {after['p99_ms']} ms, "
                        f"max {after['max_ms']} ms"),
    ]
    report("retention", r, rows)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
