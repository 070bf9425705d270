"""Export benchmark: a year of calls (1,000,000 by default) exported as CSV, XLSX and PDF; rows/s and peak RSS.

    python bench/export.py [--calls 1000000] [--database PATH] [--only calls:csv,extension-details:xlsx]

1. Generates the year of calls of `bench.reports` (310 extensions in 12 departments, outbound, inbound and
   internal calls over 4 trunks) with the rollups built as the migrations build them; ``--database`` reuses
   (or creates once) a file.
2. Exports each (kind, format) of every direction over the year, each in a child process of its own (as
   ``smdrd report`` runs): the ``calls`` listing and ``extension-details`` as CSV and XLSX, and the details as
   PDF (cut at `smdrd.reports.export.PDF_MAX_ROWS` call legs, as every PDF is). The child reports its resident
   memory before the export, its peak (``VmHWM``, reset after start-up through ``/proc/self/clear_refs``),
   the seconds and the rows written.
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.reports import YEAR, departments, generate_fast  # noqa: E402
from smdrd.store.sqlite.schema import connect  # noqa: E402

EXPORTS = (("calls", "csv"), ("calls", "xlsx"), ("extension-details", "csv"), ("extension-details", "xlsx"),
           ("extension-details", "pdf"))

#: run in the child: the export of one (kind, format) to a file, measured from /proc.
_CHILD = """
import json, re, sys, time
from pathlib import Path
from smdrd.config import Settings
from smdrd.reports.export import write_export
from smdrd.reports.queries import context_from, parse_query
from smdrd.store.sqlite.reports import SqliteReports

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

db, kind, fmt, out, first, last, deps = sys.argv[1:8]
settings = Settings.model_validate({"site": {"timezone": "Europe/Warsaw", "country": "PL"},
                                    "database": {"path": db}, "tariff": {"currency": "PLN"},
                                    "departments": json.loads(deps)})
ctx = context_from(settings)
query = parse_query({"kind": [kind], "from": [first], "to": [last], "direction": ["all"], "page_size": ["0"]}, ctx)
reader = SqliteReports(db)
Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
before = status("VmRSS")
started = time.perf_counter()
with open(out, "wb") as fh:
    write_export(reader, query, ctx, fmt, fh, every=True)
seconds = time.perf_counter() - started
legs = reader.call_totals(query.filters(), ctx.timezone, selected=False)[0]
reader.close()
print(json.dumps({"seconds": seconds, "rss_before_kb": before, "peak_kb": status("VmHWM"), "legs": legs,
                  "bytes": Path(out).stat().st_size}))
"""


def run_export(db: Path, kind: str, fmt: str, out_dir: Path) -> dict[str, Any]:
    out = out_dir / f"{kind}.{fmt}"
    result = subprocess.run([sys.executable, "-c", _CHILD, str(db), kind, fmt, str(out), f"{YEAR}-01-01",
                             f"{YEAR}-12-31", json.dumps(departments())], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    child = json.loads(result.stdout.strip().splitlines()[-1])
    rows = min(child["legs"], 5000) if fmt == "pdf" else child["legs"]
    out.unlink()
    return {"kind": kind, "format": fmt, "rows": rows, "seconds": round(child["seconds"], 1),
            "rows_per_s": round(rows / child["seconds"]), "rss_before_mb": round(child["rss_before_kb"] / 1024, 1),
            "peak_mb": round(child["peak_kb"] / 1024, 1), "file_mb": round(child["bytes"] / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--database", type=Path, help="reuse (or create once) this database file")
    parser.add_argument("--only", help="comma-separated kind:format pairs (default: all five)")
    args = parser.parse_args()
    wanted = EXPORTS if not args.only else tuple(tuple(p.split(":", 1)) for p in args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="smdrd-bench-export-") as tmp:
        db = args.database or Path(tmp) / "export.db"
        load_seconds = None
        if not db.exists():
            conn = connect(str(db))
            try:
                load_seconds = generate_fast(conn, args.calls)
            finally:
                conn.close()
        results = [run_export(db, kind, fmt, Path(tmp)) for kind, fmt in wanted]
    rows = [("load", "reused" if load_seconds is None else f"{load_seconds:.0f} s")]
    rows += [(f"{r['kind']} {r['format']}", f"{r['rows']:,} rows in {r['seconds']} s = {r['rows_per_s']:,} rows/s; "
              f"RSS {r['rss_before_mb']} MB -> peak {r['peak_mb']} MB; file {r['file_mb']} MB") for r in results]
    report("export", {"calls": args.calls, "load_seconds": load_seconds, "exports": results}, rows)


if __name__ == "__main__":
    main()
