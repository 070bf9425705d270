"""``smdrd export``: the stored calls of a time range as CSV or JSON lines, for hand-over to other tools.

Every column of the ``calls`` table is exported (read from the table itself, so columns added by later
migrations follow) but ``auth_code``, the caller's authorisation code (a credential: only with
``--include-auth-codes``), plus ``cost``: ``cost_micros`` as an exact decimal string, never a float, with at least
``[tariff] decimals`` places (``60000`` -> ``"0.06"``, ``200000`` -> ``"0.20"``, ``1234`` -> ``"0.001234"``: padded,
never rounded). Rows stream from the store to the output in start order, so a year of calls needs no more memory than a
row. ``--output`` is written to a temporary file and renamed into place: an interrupted export leaves no
half file behind. The file is created mode 0600 whatever the umask (it holds every call); see `private_output`.

CSV goes through `smdrd.csvsafe`: a cell a spreadsheet would evaluate (``=1+2``, ``+cmd|' /C calc'!A0`` from a
caller ID) gets a leading ``'``; plain numbers such as ``+442071234567`` and every integer column stay as they are.

Times: ``--from`` is included and ``--to`` excluded. A time without a UTC offset (or a bare date) is read in
the site's timezone (``[site] timezone``; UTC without a configuration file).

Never here: writing to the database (it is opened read-only where it can be).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from smdrd.cli._common import add_config_argument, settings_from, store_of
from smdrd.csvsafe import SafeCsvWriter
from smdrd.errors import SmdrdError
from smdrd.record import EARLIEST_YEAR, LATEST_YEAR

if TYPE_CHECKING:
    from smdrd.store.api import CallExport

_MICROS = Decimal(1_000_000)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export", help="export the calls of a time range as CSV or JSON lines",
        description="Export stored calls with every column but auth_code, in start order. --from is included, --to "
        "excluded; times without an offset are in the site's timezone. cost is cost_micros as a decimal "
        "string.")
    p.add_argument("--from", dest="start", metavar="TIME", default=None,
                   help="first start time included: 2026-03-01 or 2026-03-01T08:00[+01:00] (default: the first)")
    p.add_argument("--to", dest="end", metavar="TIME", default=None,
                   help="start times before this one (default: all)")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (default csv)")
    p.add_argument("-o", "--output", type=Path, default=None, help="write to FILE (default: standard output)")
    p.add_argument("--include-auth-codes", action="store_true",
                   help="also export auth_code, the caller's authorisation code: a credential, left out by default")
    add_config_argument(p)
    p.add_argument("--database", type=Path, default=None,
                   help="the database file (default: [database] path from the configuration)")
    p.set_defaults(func=run)


def parse_time(text: str, tz: ZoneInfo) -> int:
    """Seconds since the epoch of an ISO date or date-time; naive ones are local to ``tz``.

    Raises:
        SmdrdError: the text is not an ISO 8601 date or date-time.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SmdrdError(f"expected a date or time such as 2026-03-01 or 2026-03-01T08:00, got {text!r}") from None
    # No call is stored outside these years: a time beyond them is the nearest (``--to 9999-12-31``: to the end,
    # without a day past the calendar's end).
    moment = min(max(moment, datetime(EARLIEST_YEAR, 1, 1, tzinfo=moment.tzinfo)),
                 datetime(LATEST_YEAR, 12, 31, 23, 59, 59, tzinfo=moment.tzinfo))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp())


def cost_text(micros: int | None, decimals: int = 2) -> str | None:
    """``cost_micros`` as an exact decimal string with at least ``decimals`` places; ``None`` if unrated."""
    if micros is None:
        return None
    cost = Decimal(micros) / _MICROS
    exponent = cost.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -decimals:
        cost = cost.quantize(Decimal(1).scaleb(-decimals))  # only adds zeros: the value is unchanged
    return format(cost, "f")


#: the column a hand-over leaves out unless asked (``--include-auth-codes``): a credential, shown to nobody.
SECRET_COLUMN = "auth_code"


def columns(export: CallExport, *, secrets: bool = False) -> list[str]:
    """The stored call fields, in the store's order, with ``cost`` after ``cost_micros``; ``auth_code`` only
    with ``secrets``."""
    out: list[str] = []
    for name in export.columns():
        if name == SECRET_COLUMN and not secrets:
            continue
        out.append(name)
        if name == "cost_micros":
            out.append("cost")
    return out


def rows(export: CallExport, start: int | None, end: int | None,
         decimals: int = 2, *, secrets: bool = False) -> Iterator[dict[str, Any]]:
    """The calls with ``start <= start_utc < end``, as dicts of every field plus ``cost`` (``auth_code`` only
    with ``secrets``), in start order."""
    for row in export.rows(start, end):
        if not secrets:
            row.pop(SECRET_COLUMN, None)
        if "cost_micros" in row:
            row["cost"] = cost_text(row["cost_micros"], decimals)
        yield row


def write_csv(out: IO[str], names: list[str], data: Iterator[dict[str, Any]]) -> int:
    writer = SafeCsvWriter(out)  # RFC 4180 as spreadsheets expect, no cell a formula
    writer.writerow(names)
    n = 0
    for row in data:
        writer.writerow([row.get(k) for k in names])
        n += 1
    return n


def write_jsonl(out: IO[str], names: list[str], data: Iterator[dict[str, Any]]) -> int:
    n = 0
    for row in data:
        obj = {k: row.get(k) for k in names}
        extra = obj.get("extra")
        if isinstance(extra, str):
            with contextlib.suppress(ValueError):
                obj["extra"] = json.loads(extra)
        if "answered" in obj and obj["answered"] is not None:
            obj["answered"] = bool(obj["answered"])
        out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


@contextlib.contextmanager
def private_binary_output(target: Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``target`` (mode 0600, whatever the umask) when the block ends without error.

    Written to a new temporary file beside ``target`` (created exclusively, so never through a planted link)
    and renamed into place: an interrupted write leaves neither a half file nor a readable copy behind.
    """
    if not target.parent.is_dir():  # said as the user named it, not as the temporary file beside it
        raise SmdrdError(f"{target}: no such folder {target.parent} (for --output)")
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.tmp-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            yield fh
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def private_output(target: Path) -> Iterator[IO[str]]:
    """`private_binary_output` as UTF-8 text (newlines as written: CSV ends its lines itself)."""
    with private_binary_output(target) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        yield fh


def run(args: argparse.Namespace) -> int:
    from smdrd.store import open_store

    settings, _ = settings_from(args, existing_database=True)
    db, tz, decimals = store_of(args, settings), settings.site.tz, settings.tariff.decimals
    start = parse_time(args.start, tz) if args.start else None
    end = parse_time(args.end, tz) if args.end else None
    export = open_store(db).export()
    try:
        # One consistent snapshot while the daemon keeps writing (see `smdrd.store.api.CallExport`).
        names = columns(export, secrets=args.include_auth_codes)
        data = rows(export, start, end, decimals, secrets=args.include_auth_codes)
        write = write_csv if args.format == "csv" else write_jsonl
        if args.output is None:
            n = write(sys.stdout, names, data)
        else:
            with private_output(args.output) as fh:
                n = write(fh, names, data)
    finally:
        export.close()
    if args.output is not None:
        print(f"{n} calls written to {args.output}", file=sys.stderr)
    return 0
