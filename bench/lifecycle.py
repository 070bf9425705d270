"""Lifecycle benchmark: how soon a real ``smdrd run`` tells systemd it is ready, and how soon SIGTERM ends it.

    python bench/lifecycle.py [--runs 5] [--rate 1000] [--seconds 2]

Each run starts ``python -m smdrd run`` as the unit does (a notify socket, ``WATCHDOG_USEC`` from the unit's
WatchdogSec=) with one ``tcp-server`` source, and times the start to ``READY=1``; then a PBX streams Avaya IP
Office lines at ``--rate`` a second for ``--seconds`` and keeps its connection open while the daemon gets
SIGTERM, and the time from the signal to the process's exit is taken, with the lines sent and journalled.
Reported: median and worst of both times over the runs, next to the unit's WatchdogSec= and TimeoutStopSec=.

``tests/test_daemon.py`` and ``tests/test_systemd_unit.py`` once asserted these times (exit within 5 s, READY and
pings within WatchdogSec); they now check the behaviour (an exit with the PBX still connected, pings that go on
after READY, the ping period against WatchdogSec=), and the figures live here.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.testing import config_toml, daemon_config, free_port, tcp_server_source  # noqa: E402

UNIT = ROOT / "systemd" / "smdrd.service"
LINE = ("2017/07/01 08:30:22,00:01:01,0,217,O,600988600,0600988600,,0,{id},0,E217,GRZYBEK,T9005,Line 5.0,"
        "0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")


def unit_seconds(key: str) -> int:
    for line in UNIT.read_text().splitlines():
        if line.startswith(f"{key}="):
            return int(line.partition("=")[2])
    raise SystemExit(f"{UNIT}: no {key}=")


def wait_port(port: int, within: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + within
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def one_run(work: Path, rate: float, seconds: float, watchdog_s: int) -> dict[str, float]:
    port = free_port()
    config = work / "smdrd.toml"
    db = work / "smdrd.db"
    config.write_text(config_toml(daemon_config(work, [tcp_server_source("pbx", port)], http={"enabled": False},
                                                logging={"level": "warning"})))
    notify = work / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": str(watchdog_s * 1_000_000)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "smdrd", "run", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while "READY=1" not in listener.recv(4096).decode():
            pass
        ready = time.monotonic() - started
        pbx = wait_port(port)
        t0 = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                pbx.sendall(LINE.format(id=1_000_000 + sent).encode() + b"\r\n")
                sent += 1
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = proc.wait(timeout=120)
        stop = time.monotonic() - signalled
        pbx.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
        notify.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    journalled = conn.execute("SELECT count(*) FROM lines").fetchone()[0]
    conn.close()
    for path in work.glob("smdrd.db*"):
        path.unlink()
    return {"ready_s": ready, "stop_s": stop, "exit_status": status, "sent": sent, "journalled": journalled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rate", type=float, default=1000.0, help="lines a second before SIGTERM (default 1,000)")
    ap.add_argument("--seconds", type=float, default=2.0, help="how long the PBX streams (default 2)")
    args = ap.parse_args()
    watchdog_s, stop_timeout_s = unit_seconds("WatchdogSec"), unit_seconds("TimeoutStopSec")
    with tempfile.TemporaryDirectory(prefix="smdrd-lifecycle-") as work:
        runs = [one_run(Path(work), args.rate, args.seconds, watchdog_s) for _ in range(args.runs)]
    ready = [r["ready_s"] for r in runs]
    stop = [r["stop_s"] for r in runs]
    lost = sum(r["sent"] - r["journalled"] for r in runs)
    results = {
        "runs": runs, "ready_median_s": round(statistics.median(ready), 3), "ready_max_s": round(max(ready), 3),
        "stop_median_s": round(statistics.median(stop), 3), "stop_max_s": round(max(stop), 3), "lost": lost,
        "nonzero_exits": sum(r["exit_status"] != 0 for r in runs),
        "unit_watchdog_s": watchdog_s, "unit_timeout_stop_s": stop_timeout_s,
    }
    rows = [
        ("start to READY=1", f"median {results['ready_median_s']} s, worst {results['ready_max_s']} s "
                             f"(WatchdogSec={watchdog_s})"),
        ("SIGTERM to exit", f"median {results['stop_median_s']} s, worst {results['stop_max_s']} s with a PBX "
                            f"streaming {args.rate:.0f} lines/s and still connected (TimeoutStopSec={stop_timeout_s})"),
        ("lines", f"{sum(r['sent'] for r in runs):,} sent, {lost} lost, "
                  f"{results['nonzero_exits']} non-zero exits, {len(runs)} runs"),
    ]
    report("lifecycle", results, rows)


if __name__ == "__main__":
    main()
