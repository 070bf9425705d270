"""Ingest benchmark: ``smdrd import`` of N generated lines per format, beside two plain-SQLite ceilings.

    python bench/ingest.py [--lines 1000000] [--format avaya-ipo --format panasonic ...] [--long 3]

By default: avaya-ipo, panasonic and cisco-cucm. For each format, in one run (so the three figures share the
machine's load of the moment):

1. Generates N lines with the simulator (``smdrd simulate``), once, into a file.
2. **import**: ``smdrd import`` on it into a fresh database, as a user would (a subprocess, wall-clock time
   until everything is committed): lines per second end to end (frame, parse, rate, store).
3. **schema ceiling**: the same rows (lines and calls, the same schema, indexes, triggers and the import's
   pragmas) inserted by plain ``sqlite3.executemany`` in the same batch size with the same per-batch roll-up,
   timing only the inserts, roll-ups, commits and the closing checkpoint.
4. **bare ceiling**: one raw row (id, bytes) and one 13-column call row per line into tables without indexes,
   timed the same way: what SQLite itself costs on this machine.
5. **the import's two halves, each alone**: *parse*, what its worker process does per line (frame, parse, rate,
   map to rows, marshal the batch) and *commit*, what its committing process does (unmarshal, `BulkWriter`
   commit into a third fresh database), both timed on the same batches in this one process. The import runs
   them side by side on two cores, so it can go no faster than the slower half.
Prints a table and JSON with the rates and the ratios (target: import >= 50,000 lines/s for avaya-ipo), and
where the schema ceiling's time goes: the lines, the calls, each rollup, the commits (with checkpoints).

``--long K`` (avaya-ipo) then imports K different million-line files one after the other into one database
(each the first file with its years moved on by four, so its calls are later, as a long backfill's are) and compares
the rate of the last million with the first (target: no more than 20 % slower).
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.config import Settings, SiteConfig  # noqa: E402
from smdrd.core import process_frame  # noqa: E402
from smdrd.daemon import build_hooks  # noqa: E402
from smdrd.framing import Framer  # noqa: E402
from smdrd.parsing import ParserContext, get_parser_class  # noqa: E402
from smdrd.store.sqlite.bulk import IMPORT_PRAGMAS, BulkWriter, RowBatch  # noqa: E402
from smdrd.store.sqlite.rollups import ROLL_UP, ROLLUPS  # noqa: E402
from smdrd.store.sqlite.rows import INSERT_CALL, INSERT_LINE, LAST_IDS  # noqa: E402
from smdrd.store.sqlite.schema import connect  # noqa: E402

BATCH = 20_000
TARGET = 50_000
BARE_COLUMNS = 13


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


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def ceilings(data: Path, work: Path, fmt: str) -> tuple[float, float, int, dict[str, float], dict[str, float]]:
    """Seconds spent in plain executemany + commit for the same rows, into the real schema and into bare tables,
    and the schema's seconds by statement (lines, calls, each rollup, commit), with the import's halves
    (``parse`` and ``commit`` in the parts: see the module's docstring, point 5); the rows are made a batch at a
    time, and each batch goes to the three databases."""
    cls = get_parser_class(fmt)
    site = SiteConfig()  # what `smdrd import` without a config uses
    parser = cls(ParserContext(timezone=site.tz, country=site.country))
    rate = build_hooks(Settings()).rate
    schema_db, bare_db, halves_db = work / "ceiling.db", work / "bare.db", work / "halves.db"
    _fresh(schema_db)
    _fresh(bare_db)
    _fresh(halves_db)
    writer = BulkWriter(halves_db)  # the import's committing half, as `smdrd import` opens it
    writer.open()
    full = connect(str(schema_db))
    for pragma in IMPORT_PRAGMAS:  # as `smdrd import`'s connection
        full.execute(pragma)
    bare = sqlite3.connect(bare_db, isolation_level=None)
    bare.execute("PRAGMA journal_mode = WAL")
    bare.execute("PRAGMA synchronous = NORMAL")
    bare.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, line BLOB NOT NULL)")
    cols = ", ".join(f"c{i}" for i in range(BARE_COLUMNS))
    bare.execute(f"CREATE TABLE calls (id INTEGER PRIMARY KEY, {cols})")
    bare_call = f"INSERT INTO calls ({cols}) VALUES ({', '.join('?' * BARE_COLUMNS)})"
    framer = Framer(1 << 20)
    timed_full = timed_bare = 0.0
    parts: dict[str, float] = {}

    def lap(part: str, since: float) -> float:
        now = time.perf_counter()
        parts[part] = parts.get(part, 0.0) + now - since
        return now

    next_id = 1
    rows = 0
    halves = {"parse": 0.0, "commit": 0.0}
    gc.disable()  # as both of the import's processes run
    with data.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            t = time.perf_counter()
            frames = framer.feed(chunk)
            halves["parse"] += time.perf_counter() - t
            for i in range(0, len(frames), BATCH):
                t = time.perf_counter()
                batch = RowBatch()
                for frame in frames[i:i + BATCH]:
                    batch.add(process_frame(frame, parser, "utf-8", source="bench", peer=str(data), received_at=0,
                                            rate=rate))
                message = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)  # what the worker sends (marshal inside)
                halves["parse"] += time.perf_counter() - t
                t = time.perf_counter()
                if not writer.commit(pickle.loads(message)):
                    raise RuntimeError("the import's fast path declined a batch of new calls")
                halves["commit"] += time.perf_counter() - t
                line_rows = [(next_id + n, *line) for n, line in enumerate(batch.lines)]
                call_rows = [(next_id + n, *row) for n, row in batch.calls]
                raw_rows = [(next_id + n, line[4]) for n, line in enumerate(batch.lines)]
                bare_rows = [row[:BARE_COLUMNS] for _, row in batch.calls]
                next_id += len(batch.lines)
                t = lap_start = time.perf_counter()
                full.execute("BEGIN IMMEDIATE")
                calls_before = full.execute(LAST_IDS).fetchone()[1]
                full.executemany(INSERT_LINE, line_rows)
                lap_start = lap("lines", lap_start)
                full.executemany(INSERT_CALL, call_rows)
                lap_start = lap("calls", lap_start)
                for rollup, statement in zip(ROLLUPS, ROLL_UP, strict=True):
                    full.execute(statement, (calls_before,))
                    lap_start = lap(rollup.table, lap_start)
                full.execute("COMMIT")
                lap("commit", lap_start)
                timed_full += time.perf_counter() - t
                t = time.perf_counter()
                bare.execute("BEGIN IMMEDIATE")
                bare.executemany("INSERT INTO raw (id, line) VALUES (?, ?)", raw_rows)
                bare.executemany(bare_call, bare_rows)
                bare.execute("COMMIT")
                timed_bare += time.perf_counter() - t
                rows += len(line_rows)
    gc.enable()
    t = time.perf_counter()
    writer.close()
    halves["commit"] += time.perf_counter() - t
    t = time.perf_counter()
    full.close()  # the last checkpoint: the import's wall-clock time includes it too
    timed_full += lap("commit", t) - t
    t = time.perf_counter()
    bare.close()
    timed_bare += time.perf_counter() - t
    _fresh(schema_db)
    _fresh(bare_db)
    _fresh(halves_db)
    return timed_full, timed_bare, rows, parts, halves


def bench_format(fmt: str, lines: int, work: Path) -> dict[str, object]:
    data = work / f"{fmt}-{lines}.smdr"
    if not data.exists():
        generate(data, fmt, lines)
    db = work / "import.db"
    _fresh(db)
    seconds = run_import(data, db, fmt)
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT count(*) FROM lines").fetchone()[0]
    calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    conn.close()
    _fresh(db)
    full_seconds, bare_seconds, base_rows, parts, halves = ceilings(data, work, fmt)
    rate = stored / seconds
    full_rate = base_rows / full_seconds
    bare_rate = base_rows / bare_seconds
    parse_rate, commit_rate = (base_rows / halves[half] for half in ("parse", "commit"))
    return {"format": fmt, "lines": stored, "calls": calls, "import_seconds": round(seconds, 2),
            "import_lines_per_second": round(rate), "schema_ceiling_lines_per_second": round(full_rate),
            "bare_ceiling_lines_per_second": round(bare_rate), "ratio_to_schema": round(rate / full_rate, 3),
            "ratio_to_bare": round(rate / bare_rate, 3), "data_bytes": os.path.getsize(data),
            # the import's halves, each alone (point 5): it goes no faster than the slower one
            "parse_half_lines_per_second": round(parse_rate), "commit_half_lines_per_second": round(commit_rate),
            "ratio_to_slower_half": round(rate / min(parse_rate, commit_rate), 3),
            # where the schema ceiling's time goes, as shares of it (the commits include the checkpoints)
            "schema_ceiling_shares": {part: round(sec / full_seconds, 3) for part, sec in parts.items()}}


def long_import(millions: int, work: Path) -> dict[str, object]:
    """Import ``millions`` distinct million-line avaya-ipo files into one database; the rate of each."""
    first = work / "avaya-ipo-1000000.smdr"
    if not first.exists():
        generate(first, "avaya-ipo", 1_000_000)
    db = work / "long.db"
    _fresh(db)
    rates = []
    for k in range(millions):
        data = first if k == 0 else work / f"avaya-ipo-long-{k}.smdr"
        if k and not data.exists():
            with first.open("rb") as src, data.open("wb") as out:
                # IP Office lines start with the year: move it on by 4k (a leap day stays a day: by k, 2028's
                # 29 February became 641 error lines a million)
                for line in src:
                    out.write(str(int(line[:4]) + 4 * k).encode() + line[4:] if line[:4].isdigit() else line)
        seconds = run_import(data, db, "avaya-ipo")
        rates.append(round(1_000_000 / seconds))
        print(f"  long import: million {k + 1}: {rates[-1]:,} lines/s", file=sys.stderr)
    _fresh(db)
    return {"millions": millions, "lines_per_second": rates,
            "last_vs_first": round(rates[-1] / rates[0], 3), "target_last_vs_first": 0.8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--format", action="append", help="repeatable; default avaya-ipo, panasonic, cisco-cucm")
    ap.add_argument("--workdir", type=Path, help="keep the generated data here (default: a temp dir)")
    ap.add_argument("--long", type=int, default=0, metavar="K",
                    help="then import K million-line avaya-ipo files into one database: last million vs first")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="smdrd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = [bench_format(fmt, args.lines, work) for fmt in args.format or ["avaya-ipo", "panasonic", "cisco-cucm"]]
    rows = [(str(r["format"]), f"import {r['import_lines_per_second']:>7,} lines/s ({r['import_seconds']} s)  "
             f"schema ceiling {r['schema_ceiling_lines_per_second']:>7,}  "
             f"bare ceiling {r['bare_ceiling_lines_per_second']:>7,} lines/s  "
             f"ratios {r['ratio_to_schema']:.2f} / {r['ratio_to_bare']:.2f}")
            for r in runs]
    rows += [(f"{r['format']} halves", f"parse {r['parse_half_lines_per_second']:>7,}  "
              f"commit {r['commit_half_lines_per_second']:>7,} lines/s alone; import / slower half "
              f"{r['ratio_to_slower_half']:.2f}") for r in runs]
    rows += [(f"{r['format']} ceiling", "  ".join(f"{part} {share:.0%}" for part, share in
                                                  cast("dict[str, float]", r["schema_ceiling_shares"]).items()))
             for r in runs]
    results: dict[str, object] = {"runs": runs, "target_lines_per_second": TARGET}
    if args.long:
        long = long_import(args.long, work)
        results["long"] = long
        per_million = cast("list[int]", long["lines_per_second"])
        rows.append(("long import", f"{' -> '.join(f'{r:,}' for r in per_million)} lines/s per "
                     f"million; last/first {long['last_vs_first']:.2f} (target >= 0.8)"))
    report("ingest", results, rows)


if __name__ == "__main__":
    main()
