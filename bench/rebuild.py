"""Re-rate benchmark on both stores: the same year of calls in a SQLite file and in PostgreSQL, then every call's
rating changed through `smdrd.store.api.Rebuild` (as ``smdrd rerate`` does once its rater has priced them).

    python bench/rebuild.py [--calls 100000] [--url postgresql://...]

1. Stores ``--calls`` calls (`bench.reports.call_rows`) in a new SQLite file (rolled up per batch, as the
   writers do) and in PostgreSQL (its journal writer's `store_batch`; without ``--url`` a throw-away server,
   fsync off, as in the tests).
2. On each store: reads every call's rating (`Rebuild.ratings`), then writes a new one for each (class and cost
   changed, so every call moves in every rollup: the worst case) with `Rebuild.update_ratings`; calls per second
   of each step.
3. Checks that both stores' rollups then hold the same totals (calls, talk time, cost) per rollup table.
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.pg import load  # noqa: E402
from bench.reports import generate  # noqa: E402
from smdrd.store import open_store  # noqa: E402
from smdrd.store.api import RatingUpdate  # noqa: E402
from smdrd.store.sqlite.rollups import ROLLUPS  # noqa: E402
from smdrd.store.sqlite.schema import connect as sqlite_connect  # noqa: E402
from smdrd.testing import PostgresServer  # noqa: E402


def rerate(database: Path | str) -> dict[str, Any]:
    """Every call re-rated on ``database``: the seconds to read and to write, and the rollups' totals after."""
    store = open_store(database).rebuild()
    try:
        started = time.perf_counter()
        ratings = list(store.ratings(0, 2**40))
        read = time.perf_counter() - started
        updates = [RatingUpdate(r.call_id, (r.rating[0], "rerated", "bench", r.rating[3], (r.rating[4] or 0) * 2 + 1,
                                            r.rating[5], r.rating[6], "2")) for r in ratings]
        started = time.perf_counter()
        store.update_ratings(updates)
        write = time.perf_counter() - started
    finally:
        store.close()
    reader: Any = sqlite_connect(str(database)) if isinstance(database, Path) else __import__("psycopg").connect(
        database)
    try:
        totals = {r.table: [int(v or 0) for v in reader.execute(
            f"SELECT sum(calls), sum(duration), sum(cost_micros) FROM {r.table}").fetchone()] for r in ROLLUPS}
    finally:
        reader.close()
    return {"calls": len(ratings), "read_seconds": read, "write_seconds": write, "rollup_totals": totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--url", help="an empty PostgreSQL database to use instead of a throw-away server")
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory(prefix="smdrd-rebuild-bench-")
    pg_folder = tempfile.TemporaryDirectory(prefix="smdrd-pg-bench-")  # its own: the server may run as nobody
    server = None
    try:
        db = Path(folder.name) / "calls.db"
        conn = sqlite_connect(str(db))
        generate(conn, args.calls)
        conn.close()
        url = args.url
        if url is None:
            server = PostgresServer(Path(pg_folder.name))
            server.start()
            url = server.create_database("bench")
        asyncio.run(load(url, args.calls, 5000))
        results = {"sqlite": rerate(db), "postgres": rerate(url)}
    finally:
        if server is not None:
            server.stop("immediate")
        folder.cleanup()
        pg_folder.cleanup()
    same = results["sqlite"]["rollup_totals"] == results["postgres"]["rollup_totals"]
    rows = [(f"{name} {step}", f"{r[f'{step}_seconds']:.1f} s ({r['calls'] / r[f'{step}_seconds']:,.0f} calls/s)")
            for name, r in results.items() for step in ("read", "write")]
    rows.append(("rollup totals equal on both stores", str(same)))
    report("rebuild", {"calls": args.calls, **results, "rollups_equal": same}, rows)
    if not same:
        raise SystemExit("the stores' rollups differ after the same re-rate")


if __name__ == "__main__":
    main()
