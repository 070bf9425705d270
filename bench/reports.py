"""Reports benchmark: a year of calls (1,000,000 by default), then the time of each accounting report.

    python bench/reports.py [--calls 1000000] [--database PATH] [--repeat 5]

1. Generates the calls (an office of 310 extensions in 12 departments with sub-departments, one extension moving
   mid-year, ten extensions in no department; outbound, inbound and internal calls over 4 trunks, mostly in
   office hours) and inserts them with ``executemany`` into ``calls``, so the rollup trigger of migration 2
   maintains the rollups exactly as in the daemon. This load is timed separately and is not the figure that
   matters. With ``--database`` an existing file is reused (generated once).
2. Times every report kind for one month and for the whole year, through `run_report` on a fresh read-only
   connection (as the CLI and each HTTP request do), ``--repeat`` times each: the median and the slowest.
   Targets: under 200 ms for a month, under 1 s for the year (issue 12 asks it at 10,000,000 calls). Also
   prints each rollup's rows per call (the monthly grain is what keeps a year's reports flat).
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.config import Settings  # noqa: E402
from smdrd.reports.queries import KINDS, context_from, parse_query, run_report  # noqa: E402
from smdrd.store.api import ReportReader  # noqa: E402
from smdrd.store.sqlite.reports import SqliteReports, connect_readonly  # noqa: E402
from smdrd.store.sqlite.rollups import ROLL_UP, ROLLUPS, backfill_sql  # noqa: E402
from smdrd.store.sqlite.rows import CALL_COLUMNS  # noqa: E402
from smdrd.store.sqlite.schema import connect  # noqa: E402

YEAR = 2026
TZ = ZoneInfo("Europe/Warsaw")
BATCH = 50_000
TRUNKS = ("T1", "T2", "T3", "SIP1")
OUTBOUND_CLASSES = (("local", 35, "+4852", 30_000), ("national", 25, "+4822", 60_000),
                    ("mobile", 25, "+48600", 90_000), ("international", 8, "+4420", 450_000),
                    ("toll-free", 5, "+48800", 0), ("premium", 2, "+48700", 1_500_000))


def departments() -> list[dict[str, Any]]:
    """12 departments of 25 extensions (200-499), two of them under parents; 500-509 in none."""
    deps: list[dict[str, Any]] = []
    for i in range(12):
        lo = 200 + 25 * i
        deps.append({"name": f"Dept {i:02d}", "extensions": [f"{lo}-{lo + 24}"], "budget": "2500"})
    deps[3]["parent"] = "Dept 02"
    deps[4]["parent"] = "Dept 02"
    deps[7]["parent"] = "Dept 06"
    # Extension 210 moves from Dept 00 to Dept 05 on 16 June.
    deps[5]["members"] = [{"extensions": ["210"], "valid_from": f"{YEAR}-06-16"}]
    return deps


def settings(db: Path) -> Settings:
    return Settings.model_validate({"site": {"timezone": "Europe/Warsaw", "country": "PL"},
                                    "database": {"path": str(db)}, "tariff": {"currency": "PLN"},
                                    "departments": departments()})


def generate(conn: Any, calls: int, seed: int = 11, roll_up: bool = True) -> float:
    """Insert ``calls`` calls spread over the year, each batch rolled up as the writers do (unless not
    ``roll_up``); return the seconds the load took."""
    conn.execute("INSERT INTO lines (id, source, peer, received_at, format, raw, status) "
                 "VALUES (1, 'bench', '', 0, 'bench', x'00', 'parsed')")
    cols = ", ".join(CALL_COLUMNS)
    sql = f"INSERT INTO calls (line_id, {cols}) VALUES (1, {', '.join('?' * len(CALL_COLUMNS))})"
    started = time.perf_counter()
    rows: list[tuple[object, ...]] = []
    for row in call_rows(calls, seed):
        rows.append(row)
        if len(rows) >= BATCH:
            _flush(conn, sql, rows, roll_up)
    _flush(conn, sql, rows, roll_up)
    return time.perf_counter() - started


def call_rows(calls: int, seed: int = 11) -> Iterator[tuple[object, ...]]:
    """``calls`` calls spread over the year as ``calls`` rows in `CALL_COLUMNS` order (the same for any store)."""
    rng = random.Random(seed)
    extensions = [str(n) for n in range(200, 510)]
    start_of_year = datetime(YEAR, 1, 1, tzinfo=TZ)
    days = (date(YEAR + 1, 1, 1) - date(YEAR, 1, 1)).days
    class_weights = [w for _, w, _, _ in OUTBOUND_CLASSES]
    per_day = calls / days
    n = 0
    for day in range(days):
        base = start_of_year + timedelta(days=day)
        todays = int(per_day * (day + 1)) - int(per_day * day)
        for _ in range(todays):
            # Office hours mostly: a triangular peak around 11:00.
            minute = int(min(max(rng.triangular(7 * 60, 19 * 60, 11 * 60), 0), 24 * 60 - 1))
            local = (base + timedelta(minutes=minute, seconds=rng.randrange(60))).replace(tzinfo=TZ)
            ext = rng.choice(extensions)
            kind = rng.random()
            duration = int(rng.expovariate(1 / 150))
            if kind < 0.55:
                direction = "outbound"
                cls, _, prefix, rate = rng.choices(OUTBOUND_CLASSES, class_weights)[0]
                e164 = f"{prefix}{rng.randrange(10**6):06d}"
                cost = (rate * ((duration + 59) // 60)) // 10_000 * 10_000  # per started minute, whole grosze
                trunk = rng.choice(TRUNKS)
            elif kind < 0.85:
                direction, cls, e164, cost, trunk = "inbound", "national", f"+4822{rng.randrange(10**7):07d}", 0, \
                    rng.choice(TRUNKS)
            else:
                direction, cls, e164, cost, trunk = "internal", "internal", "", 0, ""
            n += 1
            yield (f"bench:{n}", "bench", "bench", f"k{n}", 0, local.isoformat(),
                   int(local.astimezone(UTC).timestamp()), duration, 5, direction, ext,
                   e164[3:] if e164 else "201", trunk, "", "", "", 1, "", "{}", e164 or None, cls, "r",
                   e164[:5] or None, cost, "PLN", "" if not e164 else "GB" if e164[:3] == "+44" else "PL", "1")


def generate_fast(conn: Any, calls: int) -> float:
    """`generate` without the per-batch roll-up, the rollups built afterwards by the same backfills migrations
    use (a GROUP BY over the calls, then the monthly grain from the daily one): the same rollups, quicker."""
    started = time.perf_counter()
    generate(conn, calls, roll_up=False)
    conn.execute("BEGIN IMMEDIATE")
    for rollup in sorted(ROLLUPS, key=lambda r: r.finer is not None):  # daily first: monthly reads them
        conn.execute(backfill_sql(rollup))
    conn.execute("COMMIT")
    return time.perf_counter() - started


def _flush(conn: Any, sql: str, rows: list[tuple[object, ...]], roll_up: bool) -> None:
    conn.execute("BEGIN IMMEDIATE")
    before = conn.execute("SELECT coalesce(max(id), 0) FROM calls").fetchone()[0]
    conn.executemany(sql, rows)
    if roll_up:
        for statement in ROLL_UP:
            conn.execute(statement, (before,))
    conn.execute("COMMIT")
    rows.clear()


def time_report(db: Path, kind: str, first: str, last: str, repeat: int, *,
                reader: Callable[[], ReportReader] | None = None) -> dict[str, Any]:
    """``kind`` over ``first`` to ``last``, ``repeat`` times, each on a fresh reader (of ``db``, or ``reader()``)."""
    ctx = context_from(settings(db))
    samples = []
    rows = 0
    for _ in range(repeat):
        started = time.perf_counter()
        conn = SqliteReports(db) if reader is None else reader()
        try:
            rep = run_report(conn, parse_query({"kind": [kind], "from": [first], "to": [last]}, ctx), ctx)
        finally:
            conn.close()
        samples.append(time.perf_counter() - started)
        rows = len(rep.rows)
    return {"kind": kind, "from": first, "to": last, "median_ms": round(statistics.median(samples) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1), "rows": rows,
            "calls": rep.totals["calls"] if rep.totals else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--database", type=Path, help="reuse (or create once) this database file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fast-load", action="store_true",
                        help="load with the rollup trigger off, then build the rollups with the migrations' "
                             "backfills (same tables; for 10,000,000 calls on a small machine)")
    args = parser.parse_args()
    tmp = None
    if args.database is None:
        tmp = tempfile.TemporaryDirectory(prefix="smdrd-bench-")
        db = Path(tmp.name) / "reports.db"
    else:
        db = args.database
    load_seconds = None
    if not db.exists():
        conn = connect(str(db))
        try:
            load_seconds = generate_fast(conn, args.calls) if args.fast_load else generate(conn, args.calls)
        finally:
            conn.close()
    check = connect_readonly(db)
    try:
        stored = check.execute("SELECT count(*) FROM calls").fetchone()[0]
        rollup_rows = {r.table: check.execute(f"SELECT count(*) FROM {r.table}").fetchone()[0] for r in ROLLUPS}
    finally:
        check.close()
    month = (f"{YEAR}-06-01", f"{YEAR}-06-30")
    year = (f"{YEAR}-01-01", f"{YEAR}-12-31")
    results = [time_report(db, kind, *span, args.repeat) for kind in KINDS for span in (month, year)]
    targets_met = all(r["max_ms"] < (200 if r["from"].endswith("06-01") else 1000) for r in results)
    rows = [("calls stored", f"{stored:,}"),
            *((f"{table} rows", f"{n:,} ({n / max(stored, 1):.4f} per call)") for table, n in rollup_rows.items()),
            ("load (insert + triggers)", "reused" if load_seconds is None else
             f"{load_seconds:.1f} s ({stored / load_seconds:,.0f} calls/s)")]
    rows += [(f"{r['kind']} {r['from']}..{r['to']}", f"median {r['median_ms']} ms, max {r['max_ms']} ms "
              f"({r['rows']} rows)") for r in results]
    rows.append(("targets (month < 200 ms, year < 1 s)", "met" if targets_met else "MISSED"))
    report("reports", {"calls": stored, "rollup_rows": rollup_rows,
                       "rollup_daily_rows": rollup_rows["rollup_daily"], "load_seconds": load_seconds,
                       "reports": results, "targets_met": targets_met}, rows)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
