"""PostgreSQL store benchmark: a year of calls through its journal writer, then the time of each report kind.

    python bench/pg.py [--calls 1000000] [--batch 5000] [--url postgresql://...] [--repeat 3]
                       [--fast-load] [--pgdata DIR]

1. Without ``--url`` starts a throw-away PostgreSQL (Debian's ``initdb`` and ``pg_ctl``, `smdrd.testing`; fsync
   off, as in the tests: the figure is the store's work, not the disk's flush) in a temporary folder, or in
   ``--pgdata DIR``, which is kept (stopped) after the run: a later run with the same ``--pgdata`` finds the
   calls stored and only times the reports (``--calls`` and ``--fast-load`` are then not used).
2. Stores ``--calls`` calls spread over a year (`bench.reports.call_rows`: the same office as the SQLite reports
   benchmark), one journal line each, ``--batch`` lines per transaction through `store_batch`: what the daemon's
   and the import's writer commit (COPY of the lines, COPY of the calls into a staging table, one statement
   inserting them and adding them to the rollups). Prints calls per second. With ``--fast-load`` the calls are
   copied in under one journal line and each rollup filled afterwards by one ``INSERT ... SELECT ... GROUP BY``
   over all of them (`smdrd.store.postgres.bulk`: the writer's own rollup statements, the same rows), for
   10,000,000 calls on a small machine. Either way, checks every rollup's rows of two months against a
   ``GROUP BY`` over those months' calls and prints how many differ (0: equal).
3. Times every report kind for one month and for the year through `run_report` on a fresh reader (as each CLI
   run and HTTP request does), ``--repeat`` times each: the median and the slowest.
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.reports import YEAR, call_rows, time_report  # noqa: E402
from smdrd.journal import JournalEntry  # noqa: E402
from smdrd.reports.queries import KINDS  # noqa: E402
from smdrd.store.postgres.bulk import analyze, check_rollups, count_rows, fast_load  # noqa: E402
from smdrd.store.postgres.connect import aconnect, connect  # noqa: E402
from smdrd.store.postgres.reports import PgReports  # noqa: E402
from smdrd.store.postgres.writer import store_batch  # noqa: E402
from smdrd.store.rows import PreparedEntry  # noqa: E402
from smdrd.testing import PostgresServer  # noqa: E402

#: the months whose rollup rows are checked against their calls (both with a change of summer time).
CHECKED = (f"{YEAR}-03", f"{YEAR}-10")


async def load(url: str, calls: int, batch: int) -> float:
    """Store ``calls`` calls, ``batch`` lines per transaction; the seconds it took."""
    conn = await aconnect(url)
    try:
        started = time.perf_counter()
        pending: list[PreparedEntry] = []
        for n, row in enumerate(call_rows(calls)):
            line = JournalEntry("bench", "", 1_700_000_000_000_000 + n, "bench", b"x" * 110, "parsed")
            pending.append(PreparedEntry(line, (row,)))
            if len(pending) >= batch:
                await store_batch(conn, pending)
                pending = []
        if pending:
            await store_batch(conn, pending)
        return time.perf_counter() - started
    finally:
        await conn.close()


def load_fast(url: str, calls: int) -> float:
    """Copy ``calls`` calls in and fill the rollups from them (`fast_load`); the seconds it took."""
    with connect(url) as conn:
        started = time.perf_counter()
        fast_load(conn, call_rows(calls))
        return time.perf_counter() - started


def start_server(folder: Path) -> tuple[PostgresServer, str]:
    """A PostgreSQL server in ``folder`` (initialised once) and the URL of its database ``bench`` (made once)."""
    import psycopg

    server = PostgresServer(folder)
    server.start()
    try:
        return server, server.create_database("bench")
    except psycopg.errors.DuplicateDatabase:
        return server, server.url("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="lines per transaction (default 5000)")
    parser.add_argument("--url", help="a PostgreSQL database to use instead of a throw-away server (loaded if empty)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fast-load", action="store_true",
                        help="COPY the calls in, then fill each rollup with one INSERT ... SELECT ... GROUP BY")
    parser.add_argument("--pgdata", type=Path,
                        help="keep the server's folder here (stopped after the run); reused if it holds calls")
    args = parser.parse_args()
    server = None
    folder = None if args.pgdata else tempfile.TemporaryDirectory(prefix="smdrd-pg-bench-")
    seconds = None
    try:
        url = args.url
        if url is None:
            server, url = start_server(args.pgdata or Path(folder.name if folder else "."))
        with connect(url) as conn:
            stored, _ = count_rows(conn)
        if not stored:
            seconds = load_fast(url, args.calls) if args.fast_load else asyncio.run(load(url, args.calls, args.batch))
            if not args.fast_load:
                with connect(url) as conn:
                    analyze(conn, vacuum=True)
        with connect(url) as conn:
            stored, rollup_rows = count_rows(conn)
            started = time.perf_counter()
            checked = check_rollups(conn, CHECKED)
            check_seconds = time.perf_counter() - started
        load_average: tuple[float, ...] = os.getloadavg()
        month = (f"{YEAR}-06-01", f"{YEAR}-06-30")
        year = (f"{YEAR}-01-01", f"{YEAR}-12-31")
        results = [time_report(Path("unused.db"), kind, *span, args.repeat, reader=lambda: PgReports(url))
                   for kind in KINDS for span in (month, year)]
        load_average = tuple(max(a, b) for a, b in zip(load_average, os.getloadavg(), strict=True))
    finally:
        if server is not None:
            server.stop("fast" if args.pgdata else "immediate")
        if folder is not None:
            folder.cleanup()
    how = "fast: COPY, then one GROUP BY a rollup" if args.fast_load else \
        f"journal writer, one line per call, {args.batch} per transaction"
    differ = sum(d for _, d in checked.values())
    rows = [("calls stored", f"{stored:,}"),
            ("load", "reused (--pgdata)" if seconds is None else
             f"{seconds:.1f} s ({stored / seconds:,.0f} calls/s; {how})"),
            *((f"{table} rows", f"{n:,}") for table, n in rollup_rows.items()),
            (f"rollups against GROUP BY of {', '.join(CHECKED)}",
             f"{sum(n for n, _ in checked.values()):,} rows compared, {differ} differ ({check_seconds:.1f} s)"),
            ("load average (1, 5, 15 min; highest seen)", ", ".join(f"{a:.1f}" for a in load_average))]
    rows += [(f"{r['kind']} {r['from']}..{r['to']}", f"median {r['median_ms']} ms, max {r['max_ms']} ms "
              f"({r['rows']} rows)") for r in results]
    report("pg", {"calls": stored, "load": "fast" if args.fast_load else "writer", "load_seconds": seconds,
                  "calls_per_second": stored / seconds if seconds else None, "batch": args.batch,
                  "rollup_rows": rollup_rows, "rollup_check": {t: {"compared": n, "differ": d}
                                                               for t, (n, d) in checked.items()},
                  "load_average": load_average, "reports": results}, rows)
    if differ:
        sys.exit(f"{differ} rollup rows differ from a GROUP BY over the calls")


if __name__ == "__main__":
    main()
