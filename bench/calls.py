"""Call search benchmark: the console's ``/calls`` search on a year of calls (1,000,000 by default).

    python bench/calls.py [--calls 1000000] [--database PATH] [--repeat 5]

Generates the calls as ``bench/reports.py`` does (or reuses ``--database``), then times pages of 50 calls
through `smdrd.store.sqlite.calls.SqliteCalls` (as each HTTP request does, on a fresh read-only connection): the
newest page of a month and of a year, an extension's, a number's (a part of it, looked for in every call of
the range), by cost, and the 20th page after a keyset cursor; and, for someone whose last 3 digits are masked
(`smdrd.console.calls.seen_search`), a whole number and a part of one. Prints each query's plan too: every one
reads a range of an index, never the whole table. Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.reports import TZ, YEAR, generate_fast  # noqa: E402
from smdrd.console.calls import seen_search  # noqa: E402
from smdrd.store.api import CallQuery, utc_bounds  # noqa: E402
from smdrd.store.call_reads import search_sql  # noqa: E402
from smdrd.store.sqlite.calls import SqliteCalls  # noqa: E402
from smdrd.store.sqlite.schema import connect  # noqa: E402


def queries() -> dict[str, CallQuery]:
    june = utc_bounds(date(YEAR, 6, 1), date(YEAR, 6, 30), TZ)
    year = utc_bounds(date(YEAR, 1, 1), date(YEAR, 12, 31), TZ)
    quarter = utc_bounds(date(YEAR, 4, 1), date(YEAR, 6, 30), TZ)
    return {
        "month, newest 50": CallQuery(*june),
        "year, newest 50": CallQuery(*year),
        "year, extension 250": CallQuery(*year, extension="250"),
        "month, number contains 12345": CallQuery(*june, number="12345"),
        "quarter, number contains 123456 (the longest such search)": CallQuery(*quarter, number="123456"),
        "month, dearest first": CallQuery(*june, sort="cost"),
        "month, international over 5.00": CallQuery(*june, classes=("international",), cost_min=5_000_000),
    }


def time_query(db: Path, q: CallQuery, repeat: int, pages: int = 1) -> dict[str, Any]:
    times, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        reader = SqliteCalls(db)
        try:
            query = q
            for _ in range(pages):
                found = reader.search(query)
                rows = len(found)
                if not found:
                    break
                last = found[-1]
                query = CallQuery(**{**{f: getattr(q, f) for f in CallQuery.__dataclass_fields__},
                                     "after": (last.sort_value(q.sort), last.id)})
        finally:
            reader.close()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "rows": rows}


def time_masked(db: Path, q: CallQuery, hidden: int, repeat: int) -> dict[str, Any]:
    """A page of ``q`` as someone who may not see numbers' last ``hidden`` digits searches (`seen_search`)."""
    times, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        reader = SqliteCalls(db)
        try:
            rows = len(seen_search(reader, q, hidden))
        finally:
            reader.close()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--database", type=Path, help="reuse (or create once) this database file")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = None
    if args.database is None:
        tmp = tempfile.TemporaryDirectory(prefix="smdrd-bench-")
        db = Path(tmp.name) / "calls.db"
    else:
        db = args.database
    if not db.exists():
        conn = connect(str(db))
        try:
            generate_fast(conn, args.calls)
        finally:
            conn.close()
    conn = connect(str(db))
    try:
        stored = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        plans = {name: " | ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {search_sql(q)[0]}",
                                                                search_sql(q)[1]))
                 for name, q in queries().items()}
    finally:
        conn.close()
    results = {name: time_query(db, q, args.repeat) for name, q in queries().items()}
    results["month, 20th page of 50"] = time_query(db, queries()["month, newest 50"], args.repeat, pages=20)
    quarter = utc_bounds(date(YEAR, 4, 1), date(YEAR, 6, 30), TZ)
    conn = connect(str(db))
    try:
        row = conn.execute("SELECT number FROM calls WHERE start_utc >= ? AND number <> '' LIMIT 1",
                           (quarter[0],)).fetchone()
    finally:
        conn.close()
    whole = str(row[0]) if row else "0221234567"
    for name, number in ((f"quarter, masked 3 digits, whole number {whole}", whole),
                         ("quarter, masked 3 digits, number contains 123456", "123456")):
        results[name] = time_masked(db, CallQuery(*quarter, number=number), 3, args.repeat)
        results[name.replace("masked 3 digits", "unmasked")] = time_query(db, CallQuery(*quarter, number=number),
                                                                          args.repeat)
    rows = [("calls stored", f"{stored:,}")]
    rows += [(name, f"median {r['median_ms']} ms, max {r['max_ms']} ms ({r['rows']} rows)")
             for name, r in results.items()]
    rows += [(f"plan: {name}", plan) for name, plan in plans.items()]
    report("calls", {"calls": stored, "searches": results, "plans": plans}, rows)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
