"""``smdrd simulate`` (a PBX that writes generated traffic) and ``smdrd demo`` (the daemon fed by it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from smdrd.cli._common import positive
from smdrd.config import parse_hostport
from smdrd.core import Entry
from smdrd.errors import SmdrdError
from smdrd.journal import RatedCall
from smdrd.parsing import get_parser_class
from smdrd.reports.render import hms
from smdrd.simulator import DEPARTMENTS, Pacer, Traffic, push, render_calls, serve

T = TypeVar("T")
HOSTPORT = "HOST:PORT (port 0 to 65535)"

DEMO_TZ = "America/New_York"
DEMO_DECK = Path(__file__).resolve().parent.parent / "data" / "demo-rates.csv"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="play a PBX: write generated call records in a format",
                       description="Write realistic generated call traffic as a PBX of FORMAT would: to "
                       "stdout, or over TCP as a PBX in listen mode (--listen) or push mode (--connect).")
    p.add_argument("-f", "--format", required=True, help="the format name (see `smdrd formats`)")
    p.add_argument("-n", "--count", type=positive, help="stop after N calls (default: endless)")
    p.add_argument("-r", "--rate", type=float, help="calls per second (default: as fast as possible)")
    p.add_argument("--seed", type=int, help="random seed: the same seed gives the same calls")
    p.add_argument("--country", default="US", help="the dial plan of the generated numbers: US, GB, PL")
    p.add_argument("--timezone", default=DEMO_TZ, help=f"the PBX's timezone (default {DEMO_TZ})")
    p.add_argument("--start", help="the first call's date (YYYY-MM-DD); default: real time with --rate, "
                   "else 2026-01-05")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--listen", metavar="HOST:PORT", help="serve the records to a collector that connects")
    where.add_argument("--connect", metavar="HOST:PORT", help="connect to a collector and push the records")
    p.set_defaults(func=run_simulate)

    d = sub.add_parser("demo", help="run the daemon on an embedded default, fed by the simulator",
                       description="Run the daemon with a built-in configuration (SQLite file, a tcp-server "
                       "source on loopback) while the simulator pushes Avaya IP Office records to it; "
                       "each call is printed as it is committed. Ctrl-C stops it.")
    d.add_argument("--database", type=Path, default=Path("var/demo.db"), help="the SQLite file (var/demo.db)")
    d.add_argument("-r", "--rate", type=float, default=2.0, help="calls per second (default 2)")
    d.add_argument("-n", "--count", type=positive, help="stop after N calls (default: until Ctrl-C)")
    d.add_argument("-f", "--format", default="avaya-ipo", help="the simulated PBX's format (avaya-ipo)")
    d.add_argument("--seed", type=int, help="random seed: the same seed gives the same numbers and durations")
    d.set_defaults(func=run_demo)


def _traffic(args: argparse.Namespace, realtime: bool) -> Traffic:
    start = datetime.fromisoformat(args.start) if getattr(args, "start", None) else None
    return Traffic(seed=args.seed, country=args.country, tz=ZoneInfo(args.timezone), start=start,
                   realtime=realtime and start is None)


def _flag(flag: str, value: str, convert: Callable[[str], T], expected: str) -> T:
    """``convert(value)``, or an `SmdrdError` naming the flag and what was expected (never a traceback)."""
    from zoneinfo import ZoneInfoNotFoundError

    try:
        return convert(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise SmdrdError(f"{flag}: expected {expected}, got {value!r}") from None


def run_simulate(args: argparse.Namespace) -> int:
    parser = get_parser_class(args.format)
    _flag("--timezone", args.timezone, ZoneInfo, "an IANA timezone name such as Europe/Warsaw")
    if args.start:
        _flag("--start", args.start, datetime.fromisoformat, "a date such as 2026-01-05")
    traffic = _traffic(args, realtime=args.rate is not None)
    lines = render_calls(parser, traffic, args.count)
    if args.listen:
        host, port = _flag("--listen", args.listen, lambda v: parse_hostport(v, "127.0.0.1"), HOSTPORT)
        asyncio.run(serve(host, port, lines, args.rate))
    elif args.connect:
        host, port = _flag("--connect", args.connect, lambda v: parse_hostport(v, "127.0.0.1"), HOSTPORT)
        asyncio.run(push(host, port, lines, args.rate))
    else:
        asyncio.run(_to_stdout(lines, args.rate))
    return 0


async def _to_stdout(lines: object, rate: float | None) -> None:
    pacer = Pacer(rate)
    out = sys.stdout
    for line in lines:  # type: ignore[attr-defined]
        out.write(line + "\r\n")
        if rate:
            out.flush()
            await pacer.wait()
    out.flush()


#: how the demo's call lines show a call's direction (the legend above them says so).
_DIRECTIONS = {"inbound": "in", "outbound": "out", "internal": "int"}
_COLUMNS = (f"  {'reported':<9}  {'started':<9}  {'ext':>5}  {'dir':<3}  {'number':<16}  {'class':<13}  "
            f"{'talk':>10}  {'cost':>9}")
DEMO_LEGEND = (
    "Each call is printed as it is committed, in the order the PBX reported it (a PBX reports a call when it\n"
    "ends). Times are UTC, like the log lines (the simulated PBX's clock is America/New_York):\n"
    "  reported: when its record arrived    started: when the call began (ringing included)\n"
    "  dir: out = outbound, in = inbound, int = internal    talk: talk time h:mm:ss, or unanswered\n"
    "  cost: as rated (USD, demo prices)    alerts: the alert rules the call raised (see alert.raised)\n"
    f"\n{_COLUMNS}  alerts"
)


def call_line(call: RatedCall, received_at: int, alerts: str = "", tz: ZoneInfo | None = None) -> str:
    """One of the demo's call lines (see `DEMO_LEGEND`): ``received_at`` in microseconds since the epoch; a
    naive start is in ``tz`` (the PBX's zone)."""
    record = call.record
    start = record.start if record.start.tzinfo else record.start.replace(tzinfo=tz or ZoneInfo(DEMO_TZ))
    reported = datetime.fromtimestamp(received_at / 1_000_000, UTC)
    talk = hms(record.duration) if record.answered else "unanswered"
    rating = call.rating
    cost = "" if rating is None else f"{rating.cost:.2f} {rating.currency}"
    direction = _DIRECTIONS.get(record.direction.value, record.direction.value)
    text = (f"  {reported:%H:%M:%S}Z  {start.astimezone(UTC):%H:%M:%S}Z  {record.extension:>5}  {direction:<3}  "
            f"{record.number:<16}  {call.call_class or '':<13}  {talk:>10}  {cost:>9}")
    if record.leg:
        text += "  (transfer leg)"
    return f"{text}  {alerts}".rstrip()


def _print_calls(entries: list[Entry], _seconds: float) -> None:
    for entry in entries:
        if entry.status == "error":
            print(f"  ! line not parsed: {entry.error}", flush=True)
        alerts = ", ".join(sorted({a.rule for a in entry.alerts}))
        for call in entry.calls:
            print(call_line(call, entry.received_at, alerts), flush=True)


@contextlib.contextmanager
def own_terminal() -> Iterator[None]:
    """While the demo runs, put it alone in the terminal's foreground, so Ctrl-C reaches it and nothing else.

    Under ``make demo`` the terminal's SIGINT would reach make too, and make then exits 130 whatever the demo
    returns. Alone in the foreground the demo stops as the daemon does (commit everything, exit 0), and make
    passes that 0 on. Run from a shell, the demo already leads its own process group and nothing changes.
    """
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else -1
    try:
        if fd < 0 or os.getpgrp() == os.getpid() or os.tcgetpgrp(fd) != os.getpgrp():
            yield  # no terminal, a group of its own already, or running in the background
            return
        previous = os.tcgetpgrp(fd)
        os.setpgid(0, 0)
        _set_foreground(fd, os.getpgrp())
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _set_foreground(fd, previous)


def _set_foreground(fd: int, pgrp: int) -> None:
    # A process outside the foreground group that changes it gets SIGTTOU unless it ignores it.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, old)


def _port_or_free(port: int) -> int:
    """``port`` on loopback if it is free, else any free port."""
    import socket

    from smdrd.testing import free_port

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def run_demo(args: argparse.Namespace) -> int:
    from smdrd.config import load_config
    from smdrd.daemon import Daemon
    from smdrd.logs import configure
    from smdrd.testing import free_port

    get_parser_class(args.format)  # an unknown format is one line here, before a daemon starts with it
    port = free_port()
    http_port = _port_or_free(9464)
    config = {
        "site": {"name": "demo", "timezone": DEMO_TZ, "country": "US", "area_code": "212",
                 "access_codes": ["9"]},
        "database": {"path": str(Path(args.database).resolve())},
        "sources": [{"name": "demo-pbx", "kind": "tcp-server", "format": args.format,
                     "listen": f"127.0.0.1:{port}", "allowed_peers": ["127.0.0.1"]}],
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "tariff": {"currency": "USD", "decimals": 2, "decks": [str(DEMO_DECK)]},
        # The simulator's office is in the database's directory (`demo_directory`): the console's Directory
        # pages edit it, and the reports show its departments and names.
        "directory": {"source": "database"},
    }
    settings = load_config(None, use_env=False).model_validate(config)
    # The other commands (report, rerate, export) need the same site, tariff and departments to read the demo's
    # database right: they get them from this file, beside the database.
    config_file = _write_demo_config(Path(args.database), config)
    password = _demo_admin(Path(args.database))
    demo_directory(Path(args.database))
    sign_in = (f"sign in as {DEMO_ADMIN} with password {password} (shown this once; smdrd user passwd "
               f"{DEMO_ADMIN} --config {config_file} changes it)" if password is not None else
               f"sign in as a user of this database (smdrd user list --config {config_file})")
    configure("info", "console")
    print(f"smdrd demo: database {args.database}; a simulated {args.format} PBX pushes {args.rate:g} calls/s "
          f"to 127.0.0.1:{port}. Ctrl-C stops.\n  console: http://127.0.0.1:{http_port}/   {sign_in}\n"
          f"  reports: http://127.0.0.1:{http_port}/reports   metrics: http://127.0.0.1:{http_port}/metrics\n"
          f"  its configuration, for the other commands: {config_file} "
          f"(smdrd report extensions --config {config_file})", flush=True)
    with own_terminal():
        return asyncio.run(_demo(settings, args, port, Daemon))


#: the console user `smdrd demo` makes in a demo database that has none.
DEMO_ADMIN = "admin"


def _demo_admin(database: Path) -> str | None:
    """Make the demo's console admin in ``database`` when it has no user yet, with a new random password, and
    return that password (printed once, never stored in clear); ``None`` when the database has users already."""
    import secrets

    from smdrd.accounts import hash_password
    from smdrd.store import open_store
    from smdrd.store.api import Actor

    database.parent.mkdir(parents=True, exist_ok=True)
    accounts = open_store(database).accounts()
    try:
        if accounts.any_users():
            return None
        password = secrets.token_urlsafe(12)
        accounts.add_user(DEMO_ADMIN, "admin", hash_password(password), (), at=int(time.time()),
                          actor=Actor("smdrd demo"))
        return password
    finally:
        accounts.close()


#: the demo office's people, one per extension in order (`DEPARTMENTS`): as many names as extensions, each once
#: (two "Zoe Martin"s on the overview would look like a bug in the directory).
DEMO_NAMES = ("Ava Brooks", "Liam Chen", "Maya Patel", "Noah Kim", "Zoe Martin", "Ethan Silva", "Lena Novak",
              "Omar Haddad", "Ines Duarte", "Jonas Berg", "Priya Rao", "Marco Rossi", "Hana Sato", "Felix Wagner",
              "Nora Quinn", "Tariq Aziz", "Elsa Lind", "Diego Ruiz", "Mia Kowalska", "Owen Price",
              "Amara Okafor", "Lucas Moreau", "Sofia Russo", "Kenji Ito", "Leah Cohen", "Mateo Garcia", "Freya Holm",
              "Ravi Menon", "Clara Vogel", "Samir Haddou", "Julia Nowak", "Arjun Shah", "Emma Dubois", "Yusuf Demir",
              "Grace Liu", "Pablo Ortega", "Anna Svensson", "Kofi Mensah", "Ruth Adler", "Ivan Petrov", "Chloe Byrne",
              "Tomas Novak", "Aisha Bello", "Henrik Dahl", "Lucia Ferreira")
#: monthly budgets of the demo's departments, under one "Company" (USD).
DEMO_BUDGETS = {"Company": "20000", "Sales": "8000", "Support": "4000", "Finance": "3000", "Management": "5000"}


def demo_directory(database: Path) -> bool:
    """Give the demo database its directory once (when it has no department yet): the simulator's departments
    under "Company" with monthly budgets, and a name for every extension. True when it was written."""
    from smdrd.directory import replace_all
    from smdrd.store import open_store
    from smdrd.store.api import Actor, DirectoryDepartment, DirectoryMembership

    database.parent.mkdir(parents=True, exist_ok=True)
    store = open_store(database).directory()
    try:
        snapshot = store.snapshot()
        if snapshot.departments:
            return False
        departments = [DirectoryDepartment("Company", None, Decimal(DEMO_BUDGETS["Company"]))]
        departments += [DirectoryDepartment(name, "Company", Decimal(DEMO_BUDGETS[name])) for name, _, _ in DEPARTMENTS]
        memberships = [DirectoryMembership(name, f"{lo}-{hi}") for name, lo, hi in DEPARTMENTS]
        extensions = [str(n) for _, lo, hi in DEPARTMENTS for n in range(lo, hi + 1)]
        names = [(ext, DEMO_NAMES[i % len(DEMO_NAMES)], "") for i, ext in enumerate(extensions)]  # cycled if more
        replace_all(snapshot, departments, memberships, names, source="smdrd demo").write(
            store, snapshot, at=int(time.time()), actor=Actor("smdrd demo"))
        return True
    finally:
        store.close()


def _write_demo_config(database: Path, config: dict[str, object]) -> Path:
    """Write the demo's configuration beside its database (``var/demo.toml``) and return the file's path."""
    from smdrd.testing import config_toml

    path = database.with_suffix(".toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by `smdrd demo` for the other commands: smdrd report extensions --config "
                    f"{path}\n" + config_toml(config), encoding="utf-8")
    path.chmod(0o644)
    return path


async def _demo(settings: object, args: argparse.Namespace, port: int, daemon_cls: type) -> int:
    daemon = daemon_cls(settings, None, on_commit=_print_calls)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    print(f"\n{DEMO_LEGEND}", flush=True)  # after the start-up log lines, just above the calls
    traffic = Traffic(tz=ZoneInfo(DEMO_TZ), realtime=True, seed=args.seed)
    sim = asyncio.create_task(push("127.0.0.1", port, render_calls(get_parser_class(args.format), traffic,
                                                                    args.count), args.rate))
    done, _ = await asyncio.wait({task, sim}, return_when=asyncio.FIRST_COMPLETED)
    if sim in done:
        await asyncio.sleep(0.5)
        daemon.request_stop()
    status: int = await task
    sim.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sim
    return status
