"""Shared bits of the benchmark scripts: machine description and result printing."""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any


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
