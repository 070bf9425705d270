"""PostgreSQL store benchmark: a year of calls through its journal writer, then the time of each report kind.

    python bench/pg.py [--calls 1000000] [--batch 5000] [--url postgresql://...] [--repeat 3]

1. Without ``--url`` starts a throw-away PostgreSQL (Debian's ``initdb`` and ``pg_ctl``, `smdrd.testing`; fsync
   off, as in the tests: the figure is the store's work, not the disk's flush) in a temporary folder.
2. Stores ``--calls`` calls spread over a year (`bench.reports.call_rows`: the same office as the SQLite reports
   benchmark), one journal line each, ``--batch`` lines per transaction through `store_batch`: what the daemon's
   and the import's writer commit (COPY of the lines, COPY of the calls into a staging table, one statement
   inserting them and adding them to the rollups). Prints calls per second.
3. Times every report kind for one month and for the year through `run_report` on a fresh reader (as each CLI
   run and HTTP request does), ``--repeat`` times each: the median and the slowest.
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
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
from smdrd.store.postgres.connect import aconnect, connect  # noqa: E402
from smdrd.store.postgres.reports import PgReports  # noqa: E402
from smdrd.store.postgres.writer import store_batch  # noqa: E402
from smdrd.store.sqlite.rollups import ROLLUPS  # noqa: E402
from smdrd.store.sqlite.rows import PreparedEntry  # noqa: E402
from smdrd.testing import PostgresServer  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="lines per transaction (default 5000)")
    parser.add_argument("--url", help="an empty PostgreSQL database to use instead of a throw-away server")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = None
    folder = tempfile.TemporaryDirectory(prefix="smdrd-pg-bench-")
    try:
        url = args.url
        if url is None:
            server = PostgresServer(Path(folder.name))
            server.start()
            url = server.create_database("bench")
        seconds = asyncio.run(load(url, args.calls, args.batch))
        with connect(url) as conn:
            conn.execute("VACUUM ANALYZE")
            def count(table: str) -> int:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                return int(row[0]) if row else 0

            stored = count("calls")
            rollup_rows = {r.table: count(r.table) for r in ROLLUPS}
        month = (f"{YEAR}-06-01", f"{YEAR}-06-30")
        year = (f"{YEAR}-01-01", f"{YEAR}-12-31")
        results = [time_report(Path("unused.db"), kind, *span, args.repeat, reader=lambda: PgReports(url))
                   for kind in KINDS for span in (month, year)]
    finally:
        if server is not None:
            server.stop("immediate")
        folder.cleanup()
    rows = [("calls stored", f"{stored:,}"),
            ("load (journal writer, one line per call)",
             f"{seconds:.1f} s ({stored / seconds:,.0f} calls/s, {args.batch} per transaction)"),
            *((f"{table} rows", f"{n:,}") for table, n in rollup_rows.items())]
    rows += [(f"{r['kind']} {r['from']}..{r['to']}", f"median {r['median_ms']} ms, max {r['max_ms']} ms "
              f"({r['rows']} rows)") for r in results]
    report("pg", {"calls": stored, "load_seconds": seconds, "calls_per_second": stored / seconds,
                  "batch": args.batch, "rollup_rows": rollup_rows, "reports": results}, rows)


if __name__ == "__main__":
    main()
