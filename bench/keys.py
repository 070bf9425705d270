"""Call identity benchmark: does the cost of storing a call grow with the table?

    python bench/keys.py [--calls 2000000] [--segment 250000] [--old-schema 4 --old-schema 5]

Inserts generated calls (time-ordered starts, random line digests, as an import of a PBX's log has them) in
batches of 20,000 with ``executemany`` into a database of this version's schema (rollup triggers included),
and prints the rate of each segment. With ``--old-schema 4`` the same rows also go into a database made by
migrations 1 to 4 only (the uid UNIQUE on its own: before issue 12's point 3), with ``--old-schema 5`` into one
with the time-local identity but not yet the monthly rollups; the runs alternate segment by segment, so a busy
machine slows them alike.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.store.sqlite.rows import CALL_COLUMNS  # noqa: E402
from smdrd.store.sqlite.schema import MIGRATIONS, PRAGMAS, migrate  # noqa: E402

BATCH = 20_000
T0 = 1_767_225_600  # 2026-01-01 UTC


def open_db(path: Path, version: int | None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    if version is None:
        migrate(conn)
    else:
        for n in range(1, version + 1):
            conn.executescript(f"BEGIN;\n{MIGRATIONS[n - 1]}\nPRAGMA user_version = {n};\nCOMMIT;")
    conn.execute("INSERT INTO lines (id, source, peer, received_at, format, raw, status) "
                 "VALUES (1, 'bench', '', 0, 'avaya-ipo', x'00', 'parsed')")
    return conn


def call_insert(conn: sqlite3.Connection) -> tuple[str, list[str]]:
    """The journal writer's INSERT (`INSERT_CALL`) for the columns of ``CALL_COLUMNS`` that this database's
    ``calls`` table has (an older schema lacks the later ones), and those columns."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    columns = [c for c in CALL_COLUMNS if c in have]
    names = ", ".join(["line_id", *columns])
    return f"INSERT OR IGNORE INTO calls ({names}) VALUES ({', '.join('?' * (len(columns) + 1))})", columns


def rows(first: int, count: int) -> list[dict[str, object]]:
    out = []
    for n in range(first, first + count):
        start = T0 + n * 3  # ~10M calls a year
        digest = hashlib.blake2b(n.to_bytes(8, "little"), digest_size=12).hexdigest()
        values = {"uid": f"avaya-ipo:{digest}", "source": "pbx", "format": "avaya-ipo", "call_key": f"ipo:{n}",
                  "leg": 0, "start": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start)),
                  "start_utc": start, "duration": n % 600, "ring": 3, "direction": "outbound",
                  "extension": str(200 + n % 310), "number": "0123456789", "trunk": f"T{n % 4}", "account": "",
                  "auth_code": "", "call_id": str(n), "answered": 1, "transfer": "", "extra": "{}",
                  "e164": f"+4420{n % 10**7:07d}", "region": "GB", "call_class": "national", "rule": "r",
                  "prefix": "4420", "cost_micros": 10_000 * (n % 50), "currency": "GBP", "tariff_version": "1"}
        missing = set(CALL_COLUMNS) - values.keys()
        assert not missing, f"bench/keys.py: give the generated calls {sorted(missing)}"
        out.append(values)
    return out


def insert(conn: sqlite3.Connection, calls: list[dict[str, object]]) -> float:
    sql, columns = call_insert(conn)
    batch = [(1, *(call[c] for c in columns)) for call in calls]
    started = time.perf_counter()
    for i in range(0, len(batch), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, batch[i:i + BATCH])
        conn.execute("COMMIT")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2_000_000)
    ap.add_argument("--segment", type=int, default=250_000)
    ap.add_argument("--old-schema", type=int, action="append", default=[],
                    help="also run on migrations 1..N only (repeatable; 4: before issue 12, 5: the new key alone)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smdrd-keys-") as tmp:
        dbs = {"current": open_db(Path(tmp) / "new.db", None)}
        for version in args.old_schema:
            dbs[f"schema {version}"] = open_db(Path(tmp) / f"v{version}.db", version)
        rates: dict[str, list[int]] = {name: [] for name in dbs}
        for first in range(0, args.calls, args.segment):
            batch = rows(first, min(args.segment, args.calls - first))
            for name, conn in dbs.items():
                rates[name].append(round(len(batch) / insert(conn, batch)))
        for conn in dbs.values():
            conn.close()
    table = [(f"{name}: calls/s per {args.segment:,}", " ".join(f"{r:,}" for r in seq)) for name, seq in rates.items()]
    table += [(f"{name}: last segment / first", f"{seq[-1] / seq[0]:.2f}") for name, seq in rates.items()]
    report("keys", {"calls": args.calls, "segment": args.segment, "rates": rates}, table)


if __name__ == "__main__":
    main()
