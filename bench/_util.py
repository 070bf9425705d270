"""Shared bits of the benchmark scripts: machine description, result printing, and the receipt-to-commit clock of
the benchmarks that feed a daemon from bench/live.py's PBX (`CommitClock`, `send_lines`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smdrd.core import Entry

#: the PBX: ``live.py --sender PORT RATE SECONDS`` writes Avaya IP Office lines, each stamped with its send time.
LIVE = Path(__file__).resolve().parent / "live.py"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) // 1024 // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "python": platform.python_version(),
            "sqlite": __import__("sqlite3").sqlite_version}


def report(name: str, results: dict[str, Any], rows: list[tuple[str, str]]) -> None:
    """Print a small table on stderr and the JSON on stdout."""
    width = max(len(k) for k, _ in rows)
    print(f"\n{name}", file=sys.stderr)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}", file=sys.stderr)
    print(json.dumps({"benchmark": name, "machine": machine(), **results}, indent=2))


async def send_lines(port: int, rate: float, seconds: float, distinct: int = 0) -> int:
    """Run bench/live.py's PBX against ``127.0.0.1:port`` (``rate`` lines a second for ``seconds``, dialling
    ``distinct`` numbers in turn, 0: every line a new one), in a process of its own; how many lines it sent."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(LIVE), "--sender", str(port), str(rate),
                                                str(seconds), str(distinct), stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    return int(out.decode().strip() or 0)


class CommitClock:
    """Each line's time from the PBX's write to its commit: `committed` is the daemon's commit listener, and
    reads the send time (µs) that bench/live.py's sender writes into the eighth field of every line."""

    def __init__(self) -> None:
        #: milliseconds from send to commit, one a line committed.
        self.latencies: list[float] = []
        #: when the last commit happened (`time.monotonic`).
        self.last_commit = 0.0
        #: the earliest send time read from a committed line, and the last commit, in µs since the epoch: the
        #: rate sustained is timed between them (not from the sender's start, which its interpreter delays).
        self.first_sent = 0
        self.last_commit_us = 0
        self._expected = 0
        self._all_in = asyncio.Event()

    def committed(self, entries: Sequence[Entry], _seconds: float) -> None:
        now = time.time_ns() // 1000
        self.last_commit = time.monotonic()
        self.last_commit_us = now
        first = self.first_sent
        for e in entries:
            fields = e.raw.split(b",", 8)
            if len(fields) > 7 and fields[7].isdigit():
                sent = int(fields[7])
                self.latencies.append((now - sent) / 1000)
                if not first or sent < first:
                    first = sent
        self.first_sent = first
        if self._expected and len(self.latencies) >= self._expected:
            self._all_in.set()

    async def wait(self, sent: int, within: float = 30.0) -> None:
        """Until ``sent`` lines are committed, or ``within`` seconds."""
        self._expected = sent
        if len(self.latencies) < sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_in.wait(), within)

    def sustained(self) -> float:
        """Lines committed a second, from the first line's send to the last commit (0.0 with none)."""
        if not self.latencies:
            return 0.0
        return len(self.latencies) * 1e6 / max(self.last_commit_us - self.first_sent, 1)

    def figures(self) -> dict[str, float]:
        """``latency_median_ms`` and ``latency_p99_ms`` (-1.0 with nothing committed)."""
        lat = sorted(self.latencies)
        return {"latency_median_ms": round(statistics.median(lat), 1) if lat else -1.0,
                "latency_p99_ms": round(lat[int(len(lat) * 0.99) - 1], 1) if lat else -1.0}


def cpu_share(before: os.times_result, after: os.times_result, wall: float) -> float:
    """The share of a CPU this process used (user and system) between two `os.times` over ``wall`` seconds."""
    return round(((after.user - before.user) + (after.system - before.system)) / wall, 3)
