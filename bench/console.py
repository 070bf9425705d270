"""Console benchmark: the daemon ingesting 1,000 lines/s while ten console users watch the overview.

    python bench/console.py [--rate 1000] [--seconds 20] [--users 10] [--poll 1.0] [--commit-ms MS]

One run, two phases on fresh databases: the PBX alone, then the PBX with the console in use. The PBX is a sender
process (`bench/live.py --sender`) writing Avaya IP Office lines to a ``tcp-server`` source, each stamped with
its send time; the daemon runs in this process with its default configuration plus departments with budgets, and
a commit listener records each line's time from the sender's write to its commit. In the second phase a client
process plays ``--users`` people signed in to the console (each with a session of their own): each holds the
overview's event stream (``/overview/events``) open and reloads the overview page (``/``) every ``--poll``
seconds. Reported per phase: lines sent and lost, latency median and p99 (issue 15's target: p99 under 100 ms at
1,000 lines/s with ten console users), the daemon's CPU share; and for the console: pages served, their median
and p99 time, events received, errors. The load average before and after is printed too: on a shared machine
read the figures with it.

    python bench/console.py --figures 1000000

times instead one computation of the overview's figures (today, this month, every department's budget and
forecast) on a year of a million calls: the most the overview asks of the database per scope and second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import CommitClock, cpu_share, report, send_lines  # noqa: E402
from smdrd.accounts import digest, new_secret  # noqa: E402
from smdrd.config import Settings  # noqa: E402
from smdrd.daemon import Daemon  # noqa: E402
from smdrd.store import open_store  # noqa: E402
from smdrd.store.api import Actor  # noqa: E402
from smdrd.testing import free_port  # noqa: E402

DEPARTMENTS = [{"name": "Sales", "extensions": ["200-224"], "budget": "5000"},
               {"name": "Support", "extensions": ["225-249"], "budget": "3000"}]


def sessions(db: Path, users: int) -> list[str]:
    """``users`` viewers, each signed in (a session cookie each), made in the store as a sign-in would."""
    accounts = open_store(db).accounts()
    cookies = []
    try:
        now = int(time.time())
        for i in range(users):
            user = accounts.add_user(f"viewer{i}", "viewer", "$argon2id$unused", [], at=now, actor=Actor("bench"))
            cookie = new_secret()
            accounts.create_session(user.id, digest(cookie), new_secret(), at=now, expires_at=now + 3600)
            cookies.append(cookie)
    finally:
        accounts.close()
    return cookies


async def console_users(base: str, cookies: list[str], seconds: float, poll: float) -> dict[str, Any]:
    """Each cookie a person: the overview's event stream held open, the page reloaded every ``poll`` s."""
    import aiohttp

    pages: list[float] = []
    events = [0]
    errors = [0]
    deadline = time.monotonic() + seconds

    async def person(cookie: str) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar, cookies={"smdrd_session": cookie},
                                         timeout=aiohttp.ClientTimeout(total=seconds + 30)) as http:
            async def stream() -> None:
                async with http.get(f"{base}/overview/events") as response:
                    if response.status != 200:
                        errors[0] += 1
                        return
                    async for line in response.content:
                        if line.startswith(b"event: overview"):
                            events[0] += 1

            watcher = asyncio.create_task(stream())
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                try:
                    async with http.get(f"{base}/") as response:
                        await response.read()
                        if response.status != 200:
                            errors[0] += 1
                except aiohttp.ClientError:
                    errors[0] += 1
                pages.append((time.monotonic() - t0) * 1000)
                await asyncio.sleep(max(0.0, poll - (time.monotonic() - t0)))
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await watcher

    await asyncio.gather(*(person(c) for c in cookies))
    lat = sorted(pages)
    return {"pages": len(lat), "page_median_ms": round(statistics.median(lat), 1) if lat else -1.0,
            "page_p99_ms": round(lat[max(int(len(lat) * 0.99) - 1, 0)], 1) if lat else -1.0,
            "events": events[0], "errors": errors[0]}


async def phase(rate: float, seconds: float, work: Path, users: int, poll: float, *,
                commit_ms: int | None = None) -> dict[str, Any]:
    port, http_port = free_port(), free_port()
    db = work / f"console-{users}.db"
    clock = CommitClock()
    settings = Settings.model_validate({
        "site": {"timezone": "UTC", "country": "PL"},
        "database": {"path": str(db), **({"commit_interval_ms": commit_ms} if commit_ms else {})},
        "sources": [{"name": "pbx", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}"}],
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "departments": DEPARTMENTS,
        "tariff": {"currency": "PLN", "rules": [{"name": "pl", "prefixes": ["48"], "rate": "0.60",
                                                 "billing_unit": 60}]},
        "logging": {"level": "warning"},
    })
    daemon = Daemon(settings, on_commit=clock.committed)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    cookies = sessions(db, users) if users else []
    await asyncio.sleep(0.5)
    cpu0 = os.times()
    wall0 = time.monotonic()
    clients = None
    if cookies:
        clients = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--clients", f"http://127.0.0.1:{http_port}", str(seconds + 2), str(poll),
            *cookies, stdout=subprocess.PIPE)
        await asyncio.sleep(2.0)  # every person signed in and watching before the PBX starts
    sent = await send_lines(port, rate, seconds)
    await clock.wait(sent)
    console: dict[str, Any] = {}
    if clients is not None:
        client_out, _ = await clients.communicate()
        console = json.loads(client_out.decode() or "{}")
    wall = time.monotonic() - wall0
    cpu1 = os.times()
    daemon.request_stop()
    await task
    return {"users": users, "rate": rate, "sent": sent, "lost": sent - len(clock.latencies), **clock.figures(),
            "cpu_share": cpu_share(cpu0, cpu1, wall), "console": console}


async def main_async(rate: float, seconds: float, users: int, poll: float, commit_ms: int | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="smdrd-console-"))
    load0 = os.getloadavg()
    runs = [await phase(rate, seconds, work, n, poll, commit_ms=commit_ms) for n in (0, users)]
    load1 = os.getloadavg()
    rows = []
    for r in runs:
        c = r["console"]
        extra = (f"  console: {c.get('pages')} pages (median {c.get('page_median_ms')} ms, p99 "
                 f"{c.get('page_p99_ms')} ms), {c.get('events')} events, {c.get('errors')} errors") if c else ""
        rows.append((f"{r['users']:>2} console users", f"sent {r['sent']:,} lost {r['lost']}  latency median "
                     f"{r['latency_median_ms']} ms, p99 {r['latency_p99_ms']} ms  CPU {r['cpu_share']:.0%}{extra}"))
    rows.append(("load average", f"{load0[0]:.2f} before, {load1[0]:.2f} after (1 min)"))
    report("console", {"runs": runs, "load_average": [round(load0[0], 2), round(load1[0], 2)],
                       "target_p99_ms": 100}, rows)


def figures_cost(calls: int, repeat: int) -> None:
    """The time of one computation of the overview's figures (today, this month, budgets with forecasts; every
    department) on a year of ``calls`` calls (`bench.reports`' office), for a day in December: what the overview
    spends at most once a second per scope while calls come in."""
    from bench.reports import TZ, YEAR, generate_fast
    from bench.reports import settings as report_settings
    from smdrd.console.overview import budget_rows, period_figures
    from smdrd.reports.forecast import WorkingCalendar
    from smdrd.reports.queries import context_from
    from smdrd.store.sqlite.schema import connect

    db = Path(tempfile.mkdtemp(prefix="smdrd-console-")) / "year.db"
    conn = connect(str(db))
    load = generate_fast(conn, calls)
    conn.close()
    ctx = context_from(report_settings(db))
    now = datetime(YEAR, 12, 15, 12, 0, tzinfo=TZ)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        reader = open_store(db).reports()
        try:
            period_figures(reader, ctx, now.date(), now.date(), ())
            month = period_figures(reader, ctx, now.date().replace(day=1), now.date(), ())
            budget_rows(ctx, now, (), month["spend"], WorkingCalendar(), min_days=Decimal(2))
        finally:
            reader.close()
        times.append((time.perf_counter() - t0) * 1000)
    report("console-figures", {"calls": calls, "load_seconds": round(load, 1),
                               "figures_median_ms": round(statistics.median(times), 1),
                               "figures_max_ms": round(max(times), 1), "load_average": os.getloadavg()[0]},
           [("calls", f"{calls:,} over a year (loaded in {load:.0f} s)"),
            ("overview figures", f"median {statistics.median(times):.0f} ms, slowest {max(times):.0f} ms "
                                 f"({repeat} runs; every department)"),
            ("load average", f"{os.getloadavg()[0]:.2f}")])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        base, seconds, poll, *cookies = sys.argv[2:]
        print(json.dumps(asyncio.run(console_users(base, cookies, float(seconds), float(poll)))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between two reloads of the page, per user")
    ap.add_argument("--figures", type=int, default=0, metavar="CALLS",
                    help="instead: time one computation of the overview's figures on a year of CALLS calls")
    ap.add_argument("--commit-ms", type=int, metavar="MS",
                    help="[database] commit_interval_ms for the daemon (default: the daemon's default)")
    args = ap.parse_args()
    if args.figures:
        figures_cost(args.figures, 5)
        return
    asyncio.run(main_async(args.rate, args.seconds, args.users, args.poll, args.commit_ms))


if __name__ == "__main__":
    main()
