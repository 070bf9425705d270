"""Resident memory of a real, idle daemon process: default tariff, and a 100,000-prefix rate deck.

    python bench/memory.py [--prefixes 100000] [--settle 2]

Each case starts ``python -m smdrd run`` with its own configuration (one tcp-server source, the HTTP endpoint
on, every default extension: metrics, reports, alerts), waits for ``daemon.started`` and then ``--settle``
seconds, and reads ``VmRSS`` (resident now) and ``VmHWM`` (peak, which includes compiling the tariff) from
``/proc/<pid>/status``. The deck is the seeded generator of bench/rating.py, so runs compare.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.rating import write_deck  # noqa: E402
from smdrd.testing import free_port  # noqa: E402

CONFIG = """
[site]
timezone = "Europe/London"
country = "GB"
area_code = "020"
access_codes = ["9"]
[database]
path = "{db}"
[logging]
format = "json"
[http]
listen = "127.0.0.1:{http}"
[tariff]
currency = "EUR"
decks = [{decks}]
[[sources]]
name = "pbx"
kind = "tcp-server"
format = "avaya-ipo"
listen = "127.0.0.1:{port}"
"""


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB."""
    out = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = row.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(row.split()[1])
    return out


def measure(work: Path, name: str, decks: list[Path], settle: float) -> dict[str, float]:
    folder = work / name
    folder.mkdir()
    config = folder / "smdrd.toml"
    config.write_text(CONFIG.format(db=folder / "smdrd.db", http=free_port(), port=free_port(),
                                    decks=", ".join(json.dumps(str(d)) for d in decks)))
    log = folder / "daemon.log"
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smdrd", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        while '"daemon.started"' not in log.read_text():
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit(f"{name}: the daemon did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
        started = time.monotonic() - t0
        time.sleep(settle)
        mem = status_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return {"rss_mib": round(mem["VmRSS"] / 1024, 1), "hwm_mib": round(mem["VmHWM"] / 1024, 1),
            "start_seconds": round(started, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--prefixes", type=int, default=100_000)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds idle before reading memory")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        deck = work / "rates.csv"
        write_deck(deck, opts.prefixes, random.Random(2026))
        default = measure(work, "default", [], opts.settle)
        big = measure(work, "deck", [deck], opts.settle)
    results = {"default_tariff": default, f"deck_{opts.prefixes}_prefixes": big,
               "deck_cost_rss_mib": round(big["rss_mib"] - default["rss_mib"], 1)}
    rows = [
        ("idle, default tariff: VmRSS / VmHWM", f"{default['rss_mib']} / {default['hwm_mib']} MiB"),
        (f"idle, {opts.prefixes:,}-prefix deck: VmRSS / VmHWM", f"{big['rss_mib']} / {big['hwm_mib']} MiB"),
        ("the deck adds (VmRSS)", f"{results['deck_cost_rss_mib']} MiB"),
        ("start to daemon.started (default / deck)", f"{default['start_seconds']} s / {big['start_seconds']} s"),
    ]
    report("memory", results, rows)


if __name__ == "__main__":
    main()
