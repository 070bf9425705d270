"""Live benchmark: a PBX feeding the daemon over loopback TCP at a fixed rate.

    python bench/live.py [--rates 1000,20000] [--seconds 30] [--modes worker,loop] [--distinct N]

For each rate, a separate sender process (the PBX) writes Avaya IP Office lines to a `tcp-server` source for
the given time; each line carries its send time (in the account-code field). The daemon runs in this process
with its default configuration (25 ms commit interval; parsing, rating and alert rules in its pipeline worker
process; ``--modes`` also runs each rate with them on the event loop, ``parse_in_worker = false``) and a
commit listener that records, for every line, the time from the sender's write to its commit. Reported per
rate: lines sent, lines journalled, lines lost (must be 0), the rate sustained (lines committed per second from
the first send to the last commit: it keeps up when this equals the offered rate), latency median and p99, the
CPU share of the daemon's process and of its worker, the CPU time each spent a line, and peak memory.

Targets (issue 12, point 6): p99 under 100 ms at 1,000 lines/s; 20,000 lines/s sustained with nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import CommitClock, cpu_share, report, send_lines  # noqa: E402

TEMPLATE = ("{date},00:01:01,3,{ext},O,0{num},0{num},{sent},0,{cid},0,E{ext},Extn{ext},T9005,Line 5.0,0,0,,,,"
            ",,,,,,,,,,")


#: `TEMPLATE` as the sender builds it, with bytes %-formatting (a few times cheaper than ``str.format`` and an
#: encode): date, extension, number twice, send time, call id, extension twice; CRLF-terminated.
LINE = TEMPLATE.format(date="%s", ext="%d", num="%d", sent="%d", cid="%d").encode() + b"\r\n"


def sender(port: int, rate: float, seconds: float, distinct: int = 0) -> None:
    """The PBX: write ``rate`` lines per second for ``seconds``, each stamped with its send time (µs), dialling
    ``distinct`` numbers in turn (0: a new number every line).

    Every millisecond it writes the lines due by then in one write, each line different (its own call id) and
    stamped with the time of that write. Built with `LINE` (about 3 µs a line here), the stamp's date text once
    a second: at 20,000 lines/s the sender must take as little of the daemon's CPU as it can."""
    sock = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    n = 0
    second = -1
    date = b""
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) + 1
        if due > n:
            now = time.time()
            if int(now) != second:
                second = int(now)
                date = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(now)).encode()
            sent = int(now * 1_000_000)
            batch = []
            for i in range(n + 1, due + 1):
                ext = 200 + i % 50
                num = 1_700_000_000 + (i % distinct if distinct else i)
                batch.append(LINE % (date, ext, num, num, sent, 1_000_000 + i, ext, ext))
            sock.sendall(b"".join(batch))
            n = due
        time.sleep(0.001)
    sock.close()
    print(n)


async def run_rate(rate: float, seconds: float, work: Path, worker: bool = False, distinct: int = 0
                   ) -> dict[str, float]:
    # Imported here, not at the top: the sender runs this module too, and importing the daemon cost it over a
    # second of CPU at every start.
    from smdrd.config import Settings
    from smdrd.daemon import Daemon
    from smdrd.testing import free_port

    port = free_port()
    db = work / f"live-{'worker' if worker else 'loop'}-{int(rate)}.db"
    clock = CommitClock()
    settings = Settings.model_validate({
        "site": {"timezone": "UTC", "country": "PL"},
        "database": {"path": str(db), "parse_in_worker": worker},
        "sources": [{"name": "pbx", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}"}],
        "http": {"enabled": False},
        "logging": {"level": "warning"},
    })
    daemon = Daemon(settings, on_commit=clock.committed)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    await asyncio.sleep(0.2)
    cpu0 = os.times()
    worker_cpu0 = _cpu_of(daemon.pipeline.pid) if daemon.pipeline is not None else 0.0
    wall0 = time.monotonic()
    sent = await send_lines(port, rate, seconds, distinct)
    await clock.wait(sent)
    wall = time.monotonic() - wall0
    cpu1 = os.times()
    worker_cpu = _cpu_of(daemon.pipeline.pid) - worker_cpu0 if daemon.pipeline is not None else 0.0
    sustained = clock.sustained()
    daemon.request_stop()
    await task
    import sqlite3

    stored = sqlite3.connect(db).execute("SELECT count(*) FROM lines").fetchone()[0]
    return {
        "rate": rate, "seconds": seconds, "sent": sent, "journalled": stored, "lost": sent - stored,
        **clock.figures(),
        "latency_max_ms": round(max(clock.latencies), 1) if clock.latencies else -1.0,
        "sustained_lines_per_second": round(sustained),
        "cpu_share": cpu_share(cpu0, cpu1, wall),
        "worker_cpu_share": round(worker_cpu / wall, 3),
        # CPU a line (process CPU time over lines journalled): comparable across loads, unlike the shares.
        "cpu_us_per_line": round(((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) * 1e6 / max(stored, 1), 1),
        "worker_cpu_us_per_line": round(worker_cpu * 1e6 / max(stored, 1), 1),
    }


def _cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (the pipeline worker), from /proc."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def main_async(rates: list[float], seconds: float, modes: list[str], distinct: int = 0) -> None:
    work = Path(tempfile.mkdtemp(prefix="smdrd-live-"))
    results: list[dict[str, Any]] = []
    for mode in modes:
        for rate in rates:
            results.append({"mode": mode, **await run_rate(rate, seconds, work, mode == "worker", distinct)})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [(f"{r['mode']:>6} {int(r['rate']):>6} lines/s",
             f"sent {int(r['sent']):>7,}  lost {int(r['lost'])}  sustained {int(r['sustained_lines_per_second']):>6,}"
             f" lines/s  latency median {r['latency_median_ms']} ms, p99 {r['latency_p99_ms']} ms  "
             f"CPU loop {r['cpu_share']:.0%} worker {r['worker_cpu_share']:.0%}, a line: loop "
             f"{r['cpu_us_per_line']:.0f} µs, worker {r['worker_cpu_us_per_line']:.0f} µs") for r in results]
    rows.append(("peak memory", f"{peak_mb:.0f} MB (the daemon's process, all rates)"))
    report("live", {"runs": results, "distinct_numbers": distinct or "every line new",
                    "peak_memory_mb": round(peak_mb, 1), "target_p99_ms_at_1000": 100,
                    "target_sustained_lines_per_second": 20_000}, rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        sender(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 0)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1000,20000")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--modes", default="worker",
                    help="where parse, rate and alert rules run, in order: worker (the default, [database] "
                         "parse_in_worker = true), loop (on the event loop), or both: worker,loop")
    ap.add_argument("--distinct", type=int, default=0,
                    help="distinct dialled numbers the lines cycle through (default: a new number every line, the "
                         "worker's worst case: phonenumbers parses each once; a few thousand is an office's month)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if not set(modes) <= {"worker", "loop"}:
        ap.error(f"--modes takes worker and/or loop, got {args.modes!r}")
    if args.distinct < 0:
        ap.error("--distinct takes 0 (every number new) or more")
    asyncio.run(main_async([float(r) for r in args.rates.split(",")], args.seconds, modes, args.distinct))


if __name__ == "__main__":
    main()
