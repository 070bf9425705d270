"""Benchmark of start-up: how long ``python -m smdrd --help`` spends importing smdrd and what it pulls in.

Run ``.venv/bin/python bench/startup.py [--runs N] [--top N] [ARGS...]``; prints one JSON object, then a table.
Target (issue 12, point 9): ``python -m smdrd --help`` imports in under 150 ms. Each run is a fresh interpreter
started with ``-X importtime``; the import figure is the sum of the top-level imports from the ``smdrd`` package
on (what the interpreter imports for itself before, such as ``site`` and ``encodings``, is not counted), and the
median over the runs is reported, with the wall time of the whole command next to that of ``python -c pass``.
``-X importtime`` itself adds a little to each import, so the figure errs on the slow side. The slowest
top-level imports of the median run are listed, to show what to make lazy next.

Figures belong here, never in tests: a loaded machine makes any timing assertion flaky.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import report


def parse_importtime(stderr: str) -> tuple[float, list[tuple[str, float]]]:
    """Milliseconds spent importing from the first ``smdrd`` import on, and each top-level import's share."""
    total_us = 0
    tops: list[tuple[str, float]] = []
    started = False
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header
        if name.startswith("  "):
            continue  # a nested import: counted in its parent's cumulative time
        module = name.strip()
        if module == "smdrd" or module.startswith("smdrd."):
            started = True
        if started:
            total_us += int(cumulative)
            tops.append((module, int(cumulative) / 1000))
    return total_us / 1000, tops


def run_once(args: list[str]) -> tuple[float, float, list[tuple[str, float]]]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "smdrd", *args], capture_output=True,
                          text=True, env=env, check=False)
    wall = (time.perf_counter() - start) * 1000
    imports, tops = parse_importtime(proc.stderr)
    return imports, wall, tops


def bare_wall() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters to start (the median is kept)")
    parser.add_argument("--top", type=int, default=10, help="slowest top-level imports to list")
    parser.add_argument("args", nargs="*", default=["--help"], help="the smdrd command line (default: --help)")
    ns = parser.parse_args()
    run_once(ns.args)  # warm the page cache and the bytecode cache
    runs = [run_once(ns.args) for _ in range(ns.runs)]
    bare = statistics.median(bare_wall() for _ in range(ns.runs))
    runs.sort(key=lambda r: r[0])
    median_imports, _, tops = runs[len(runs) // 2]
    slowest = sorted(tops, key=lambda t: -t[1])[: ns.top]
    results = {
        "command": ["python", "-m", "smdrd", *ns.args],
        "runs": ns.runs,
        "import_ms_median": round(median_imports, 1),
        "import_ms_min": round(runs[0][0], 1),
        "import_ms_max": round(runs[-1][0], 1),
        "wall_ms_median": round(statistics.median(r[1] for r in runs), 1),
        "python_c_pass_wall_ms_median": round(bare, 1),
        "target_import_ms": 150,
        "slowest_top_level_imports_ms": {name: round(ms, 1) for name, ms in slowest},
    }
    rows = [
        ("command", " ".join(results["command"])),
        ("imports (median)", f"{median_imports:.1f} ms (min {runs[0][0]:.1f}, max {runs[-1][0]:.1f}; "
                             f"target < 150 ms)"),
        ("wall (median)", f"{results['wall_ms_median']:.1f} ms (python -c pass: {bare:.1f} ms)"),
        *((f"  {name}", f"{ms:.1f} ms") for name, ms in slowest),
    ]
    report("startup", results, rows)


if __name__ == "__main__":
    main()
