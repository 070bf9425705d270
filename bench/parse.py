"""Parser benchmark: records per second for every format, on the simulator's lines.

    python bench/parse.py [--calls 50000] [--format NAME ...]

For each format, the simulator renders the same calls (untimed); then a fresh parser parses every line, the
way the daemon does after framing (decode with the format's encoding, then parse). Best of three runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import report
from smdrd.parsing import ParserContext, format_names, get_parser_class
from smdrd.simulator import Traffic, render_calls

TZ = ZoneInfo("America/New_York")


def bench_format(name: str, calls: int, repeat: int = 3) -> tuple[int, float]:
    cls = get_parser_class(name)
    lines = [line.encode(cls.encoding, errors="replace") for line in render_calls(cls, Traffic(seed=1, tz=TZ),
                                                                                   calls)]
    best = float("inf")
    records = 0
    for _ in range(repeat):
        parser = cls(ParserContext(timezone=TZ, year=2026, country="US"))  # the simulator writes US dates
        encoding = cls.encoding
        started = time.perf_counter()
        n = 0
        for raw in lines:
            out = parser.parse(raw.decode(encoding, errors="replace"))
            if out:
                n += len(out)
        n += len(parser.flush())
        best = min(best, time.perf_counter() - started)
        records = n
    return records, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--format", action="append", help="only these formats (repeatable)")
    args = ap.parse_args()
    results = {}
    rows = []
    for name in args.format or format_names():
        records, seconds = bench_format(name, args.calls)
        rate = records / seconds
        results[name] = {"records": records, "seconds": round(seconds, 3), "records_per_second": round(rate)}
        rows.append((name, f"{rate:>10,.0f} records/s  ({records:,} records, {seconds * 1e6 / records:.1f} µs each)"))
    report("parse", {"formats": results}, rows)


if __name__ == "__main__":
    main()
