"""The console overview's Sites table over a central store: one grouped read for every site, against the two
reports a site it used to run.

    python bench/overview_sites.py [--sites 40] [--calls 500] [--repeat 5]

Starts a throw-away PostgreSQL (`smdrd.testing.PostgresServer`, as the tests do), stores ``--sites`` sites'
journals through the central writer (as `smdrd central` stores what they publish: each site's own SQLite journal
read by its publisher and sent through the payload codec), ``--calls`` calls each over one month from extensions
200 to 219 of every site, and a directory whose memberships name the sites (each site's 200-209 in Sales,
210-219 in Support; so each extension is resolved at its site). Then times, ``--repeat`` times each, the Sites
table for an admin (every department) and for a manager of Sales: `smdrd.console.overview.site_rows` (one
read), and the same figures as two `run_report` extensions reports a site (what it did before). Prints the
median and slowest of each on stderr and JSON on stdout, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.config import DepartmentConfig  # noqa: E402
from smdrd.console.overview import site_rows  # noqa: E402
from smdrd.journal import PARSED, JournalEntry, RatedCall  # noqa: E402
from smdrd.mqtt_payloads import encode, journal_message, read_journal_message  # noqa: E402
from smdrd.rating.tariff import Rating  # noqa: E402
from smdrd.record import CallRecord, Direction  # noqa: E402
from smdrd.reports.departments import Directory  # noqa: E402
from smdrd.reports.queries import DIRECTIONS, Context, Query, run_report  # noqa: E402
from smdrd.store import open_store  # noqa: E402
from smdrd.store.api import ReportReader, SiteSeen  # noqa: E402
from smdrd.store.postgres.central import CentralWriter  # noqa: E402
from smdrd.testing import PostgresServer, write_entries  # noqa: E402

TZ = ZoneInfo("Europe/London")
TODAY = date(2026, 3, 28)


def journal(site: int, calls: int) -> list[JournalEntry]:
    """``calls`` rated outbound calls of March 2026 up to `TODAY`, from extensions 200 to 219."""
    out = []
    for i in range(calls):
        start = datetime(2026, 3, 1 + i % TODAY.day, 8 + i % 10, i % 60, tzinfo=TZ)
        raw = f"site {site} call {i}".encode()
        record = CallRecord(format="avaya-ipo", start=start, duration=30 + i % 300, direction=Direction.OUTBOUND,
                            extension=str(200 + i % 20), number=f"0207{site:03d}{i:05d}", answered=True)
        rating = Rating(f"+44207{site:03d}{i:05d}", "national", "gb", "44", Decimal(i % 97) / 10, "GBP", "GB")
        out.append(JournalEntry("pbx", "10.0.0.9", int(start.timestamp() * 1_000_000), "avaya-ipo", raw, PARSED,
                                None, (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


async def load(url: str, folder: Path, sites: int, calls: int) -> list[str]:
    names = [f"site{n:03d}" for n in range(sites)]
    writer = CentralWriter(url)
    await writer.open()
    try:
        for n, name in enumerate(names):
            db = folder / f"{name}.db"
            await write_entries(db, journal(n, calls), site=name)
            feed = open_store(db).call_feed()
            await feed.open()
            try:
                sent = await feed.entries(0, calls + 10)
            finally:
                await feed.close()
            await writer.store([read_journal_message(encode(journal_message(name, e.fields))) for e in sent])
    finally:
        await writer.close()
    return names


def before(reader: ReportReader, ctx: Context, sites: list[SiteSeen], today: date,
           departments: tuple[str, ...]) -> list[tuple[str, int, Decimal, int, Decimal]]:
    """The Sites table's figures as the overview computed them before: two extensions reports a site."""
    out = []
    for site in sites:
        figures: list[Any] = [site.name]
        for lo in (today, today.replace(day=1)):
            rows = run_report(reader, Query("extensions", lo, today, departments=departments, directions=DIRECTIONS,
                                            sites=(site.name,)), ctx).rows
            figures += [sum(r["calls"] for r in rows), sum((r["cost"] for r in rows), Decimal(0))]
        out.append((figures[0], figures[1], figures[2], figures[3], figures[4]))
    return out


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    seconds, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t)
    return statistics.median(seconds), max(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=40)
    parser.add_argument("--calls", type=int, default=500, help="calls per site")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smdrd-overview-sites-") as folder, \
            tempfile.TemporaryDirectory(prefix="smdrd-overview-pg-") as pg:
        server = PostgresServer(Path(pg))
        server.start()
        try:
            url = server.create_database("bench")
            names = asyncio.run(load(url, Path(folder), args.sites, args.calls))
            members = [{"name": "Sales", "members": [{"extensions": ["200-209"], "site": n} for n in names]},
                       {"name": "Support", "members": [{"extensions": ["210-219"], "site": n} for n in names]}]
            ctx = Context(Directory.from_config([DepartmentConfig.model_validate(d) for d in members]), TZ, "GBP", 2)
            seen = [SiteSeen(n, None) for n in names]
            results: dict[str, Any] = {"sites": args.sites, "calls_per_site": args.calls,
                                       "load_average": os.getloadavg()[0]}
            rows: list[tuple[str, str]] = []
            for scope_name, scope in (("admin", ()), ("manager of Sales", ("Sales",))):
                reader = open_store(url).reports()
                try:
                    new = timed(partial(site_rows, reader, ctx, seen, TODAY, scope), args.repeat)
                    old = timed(partial(before, reader, ctx, seen, TODAY, scope), args.repeat)
                finally:
                    reader.close()
                new_rows: Any = new[2]
                old_rows: Any = old[2]
                assert [(r["site"], r["today"]["calls"], r["month"]["calls"]) for r in new_rows] == [
                    (o[0], o[1], o[3]) for o in old_rows], "the one read and the reports disagree"
                results[scope_name] = {"one_read_s": new[0], "one_read_max_s": new[1], "reports_s": old[0],
                                       "reports_max_s": old[1]}
                rows.append((f"{scope_name}: one grouped read", f"{new[0] * 1000:.0f} ms (max {new[1] * 1000:.0f})"))
                rows.append((f"{scope_name}: 2 reports a site", f"{old[0] * 1000:.0f} ms (max {old[1] * 1000:.0f})"))
            rows.append(("load average", f"{results['load_average']:.1f}"))
            report("overview Sites table", results, rows)
        finally:
            server.stop("immediate")


if __name__ == "__main__":
    main()
