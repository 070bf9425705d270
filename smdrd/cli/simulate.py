"""``smdrd simulate`` (a PBX that writes generated traffic) and ``smdrd demo`` (the daemon fed by it)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from smdrd.config import parse_hostport
from smdrd.core import MICROS, Entry
from smdrd.parsing import get_parser_class
from smdrd.simulator import DEPARTMENTS, Pacer, Traffic, push, render_calls, serve

DEMO_TZ = "America/New_York"
DEMO_DECK = Path(__file__).resolve().parent.parent / "data" / "demo-rates.csv"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="play a PBX: write generated call records in a format",
                       description="Write realistic generated call traffic as a PBX of FORMAT would: to "
                       "stdout, or over TCP as a PBX in listen mode (--listen) or push mode (--connect).")
    p.add_argument("-f", "--format", required=True, help="the format name (see `smdrd formats`)")
    p.add_argument("-n", "--count", type=int, help="stop after N calls (default: endless)")
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
    d.add_argument("-n", "--count", type=int, help="stop after N calls (default: until Ctrl-C)")
    d.add_argument("-f", "--format", default="avaya-ipo", help="the simulated PBX's format (avaya-ipo)")
    d.set_defaults(func=run_demo)


def _traffic(args: argparse.Namespace, realtime: bool) -> Traffic:
    start = datetime.fromisoformat(args.start) if getattr(args, "start", None) else None
    return Traffic(seed=args.seed, country=args.country, tz=ZoneInfo(args.timezone), start=start,
                   realtime=realtime and start is None)


def run_simulate(args: argparse.Namespace) -> int:
    parser = get_parser_class(args.format)
    traffic = _traffic(args, realtime=args.rate is not None)
    lines = render_calls(parser, traffic, args.count)
    if args.listen:
        host, port = parse_hostport(args.listen, "127.0.0.1")
        asyncio.run(serve(host, port, lines, args.rate))
    elif args.connect:
        host, port = parse_hostport(args.connect, "127.0.0.1")
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


def _print_calls(entries: list[Entry], _seconds: float) -> None:
    for entry in entries:
        if entry.status == "error":
            print(f"  ! line not parsed: {entry.error}", flush=True)
        for call in entry.calls:
            record, micros = call.record, call.cost_micros
            cost = "" if micros is None else f"{Decimal(micros) / MICROS:.2f} {call.currency}"
            arrow = {"inbound": "<-", "outbound": "->", "internal": "<>"}.get(record.direction.value, "--")
            m, s = divmod(record.duration, 60)
            print(f"  {record.start.isoformat()[11:19]}  ext {record.extension:>4} {arrow} {record.number:<16} "
                  f"{call.call_class or '':<13} {m:3d}m{s:02d}s {cost}{'  (transfer leg)' if record.leg else ''}",
                  flush=True)


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

    port = free_port()
    http_port = _port_or_free(9464)
    base = load_config(None, use_env=False)
    settings = base.model_validate({
        "site": {"name": "demo", "timezone": DEMO_TZ, "country": "US", "area_code": "212",
                 "access_codes": ["9"]},
        "database": {"path": str(args.database)},
        "sources": [{"name": "demo-pbx", "kind": "tcp-server", "format": args.format,
                     "listen": f"127.0.0.1:{port}", "allowed_peers": ["127.0.0.1"]}],
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "tariff": {"currency": "USD", "decimals": 2, "decks": [str(DEMO_DECK)]},
        # The simulator's office: its departments, so the reports page has something to show.
        "departments": [{"name": name, "extensions": [f"{lo}-{hi}"]} for name, lo, hi in DEPARTMENTS],
    })
    configure("info", "console")
    print(f"smdrd demo: database {args.database}; a simulated {args.format} PBX pushes {args.rate:g} calls/s "
          f"to 127.0.0.1:{port}. Ctrl-C stops.\n  reports: http://127.0.0.1:{http_port}/reports   "
          f"metrics: http://127.0.0.1:{http_port}/metrics", flush=True)
    return asyncio.run(_demo(settings, args, port, Daemon))


async def _demo(settings: object, args: argparse.Namespace, port: int, daemon_cls: type) -> int:
    daemon = daemon_cls(settings, None, on_commit=_print_calls)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    traffic = Traffic(tz=ZoneInfo(DEMO_TZ), realtime=True)
    sim = asyncio.create_task(push("127.0.0.1", port, render_calls(get_parser_class(args.format), traffic,
                                                                    args.count), args.rate))
    done, _ = await asyncio.wait({task, sim}, return_when=asyncio.FIRST_COMPLETED)
    if sim in done:
        await asyncio.sleep(0.5)
        daemon.request_stop()
    status: int = await task
    sim.cancel()
    return status
