"""Ingest benchmark: ``smdrd import`` of N generated lines per format, beside the plain-SQLite ceiling.

    python bench/ingest.py [--lines 1000000] [--format avaya-ipo --format panasonic ...]

By default: avaya-ipo, panasonic and cisco-cucm. For each format:

1. Generates N lines with the simulator (``smdrd simulate``), once, into a file.
2. Runs ``smdrd import`` on it into a fresh database, as a user would (a subprocess, wall-clock time until
   everything is committed): records per second end to end (frame, parse, rate, store).
3. The ceiling: the same rows (lines and calls, same schema, indexes and pragmas) inserted by plain
   ``sqlite3.executemany`` in the same batch size, timing only the inserts and commits.
Prints a table and JSON with both rates and their ratio (target: at least 0.5).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.config import SiteConfig  # noqa: E402
from smdrd.core import process_frame  # noqa: E402
from smdrd.daemon import build_hooks  # noqa: E402
from smdrd.framing import Framer  # noqa: E402
from smdrd.parsing import ParserContext, get_parser_class  # noqa: E402
from smdrd.store.sqlite.rows import CALL_COLUMNS, call_row  # noqa: E402
from smdrd.store.sqlite.schema import connect  # noqa: E402

BATCH = 20_000


def smdrd_cmd() -> list[str]:
    return [sys.executable, "-m", "smdrd"]


def generate(path: Path, fmt: str, lines: int) -> None:
    # Calls, not lines: a transferred call has two; generate a few more calls and trim to N lines.
    with path.open("wb") as out:
        proc = subprocess.Popen([*smdrd_cmd(), "simulate", "--format", fmt, "--count", str(lines + lines // 10),
                                 "--seed", "7"], stdout=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None
        for n, line in enumerate(proc.stdout):
            if n >= lines:
                break
            out.write(line)
        proc.kill()
        proc.wait()


def run_import(data: Path, db: Path, fmt: str) -> float:
    started = time.perf_counter()
    subprocess.run([*smdrd_cmd(), "import", "--quiet", "--format", fmt, "--database", str(db),
                    "--batch", str(BATCH), str(data)], check=False, cwd=ROOT)
    return time.perf_counter() - started


def ceiling(data: Path, db: Path, fmt: str) -> tuple[float, int]:
    """Seconds spent in plain executemany + commit for the same rows; the rows are prepared untimed."""
    from smdrd.config import Settings

    cls = get_parser_class(fmt)
    parser = cls(ParserContext(timezone=SiteConfig().tz))
    rate = build_hooks(Settings()).rate
    conn = connect(str(db))
    line_sql = ("INSERT INTO lines (id, source, peer, received_at, format, raw, status, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    call_sql = (f"INSERT OR IGNORE INTO calls (line_id, {', '.join(CALL_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(CALL_COLUMNS))})")
    framer = Framer(1 << 20)
    timed = 0.0
    next_id = 1
    rows = 0
    with data.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            frames = framer.feed(chunk)
            for i in range(0, len(frames), BATCH):
                line_rows: list[tuple[object, ...]] = []
                call_rows: list[tuple[object, ...]] = []
                for frame in frames[i:i + BATCH]:
                    e = process_frame(frame, parser, "utf-8", source="bench", peer=str(data), received_at=0,
                                      rate=rate)
                    line_rows.append((next_id, e.source, e.peer, e.received_at, e.format, e.raw, e.status,
                                      e.error))
                    call_rows.extend((next_id, *call_row(c, e.source)) for c in e.calls)
                    next_id += 1
                t = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(line_sql, line_rows)
                conn.executemany(call_sql, call_rows)
                conn.execute("COMMIT")
                timed += time.perf_counter() - t
                rows += len(line_rows)
    conn.close()
    return timed, rows


def bench_format(fmt: str, lines: int, work: Path) -> dict[str, object]:
    data = work / f"{fmt}-{lines}.smdr"
    if not data.exists():
        generate(data, fmt, lines)
    for old in work.glob("*.db*"):
        old.unlink()
    seconds = run_import(data, work / "import.db", fmt)
    conn = sqlite3.connect(work / "import.db")
    stored = conn.execute("SELECT count(*) FROM lines").fetchone()[0]
    calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    conn.close()
    base_seconds, base_rows = ceiling(data, work / "ceiling.db", fmt)
    for old in work.glob("*.db*"):
        old.unlink()
    rate = stored / seconds
    base_rate = base_rows / base_seconds
    return {"format": fmt, "lines": stored, "calls": calls, "import_seconds": round(seconds, 2),
            "import_lines_per_second": round(rate), "ceiling_seconds": round(base_seconds, 2),
            "ceiling_lines_per_second": round(base_rate), "ratio": round(rate / base_rate, 3),
            "data_bytes": os.path.getsize(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--format", action="append", help="repeatable; default avaya-ipo, panasonic, cisco-cucm")
    ap.add_argument("--workdir", type=Path, help="keep the generated data here (default: a temp dir)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="smdrd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = [bench_format(fmt, args.lines, work) for fmt in args.format or ["avaya-ipo", "panasonic", "cisco-cucm"]]
    rows = [(str(r["format"]), f"import {r['import_lines_per_second']:>7,} lines/s ({r['import_seconds']} s)  "
             f"ceiling {r['ceiling_lines_per_second']:>7,} lines/s  ratio {r['ratio']:.2f} (target >= 0.5)")
            for r in runs]
    report("ingest", {"runs": runs, "target_ratio": 0.5}, rows)


if __name__ == "__main__":
    main()
