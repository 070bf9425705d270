"""How fast one central collector stores what many sites publish, and how late a call reaches it.

Starts a real PostgreSQL (`smdrd.testing.PostgresServer`, as the tests do) and a real Mosquitto with
config/mosquitto/central.conf's settings, then measures, in one process:

0. **The store alone**: ``--sites`` sites' entries (at most 500 each) as their publishers encode them, decoded and
   stored ``--batch`` at a time through `CentralWriter`, no broker: calls per second, and the CPU time per call of
   the PostgreSQL server process and of the collector's (on a loaded machine, what the store costs).
1. **Store rate**: ``--sites`` site journals of ``--entries`` calls each are published (the sites' publishers,
   straight to the central broker) while the collector is stopped, so the broker queues them for its session;
   then the collector starts and the clock runs until every call is in PostgreSQL: calls stored per second.
   The publishers' own rate into the broker is printed too.
2. **Latency** at a realistic rate: ``--live-sites`` sites (in a process of their own, the collector in this
   one) each commit ``--rate`` calls a second to their own SQLite journal for ``--seconds``; each call's latency
   is from its receipt at the site (its ``received_at``) to the end of the PostgreSQL commit that stored it:
   p50, p99, max.

The machine is shared: the figures are this run's, with the load average printed beside them. aiomqtt's warning
"There are N pending publish calls" is dropped (`quiet_pending_publishes`): the publishers keep a window in flight
by design.

    python -m bench.central [--sites 20] [--entries 2000] [--live-sites 50] [--rate 2] [--seconds 30] [--batch N]
                            [--store-only]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench._util import report
from smdrd.central import Collector
from smdrd.central_config import CentralConfig
from smdrd.config import MqttConfig, Settings
from smdrd.journal import PARSED, JournalEntry, RatedCall
from smdrd.mqtt import Publisher
from smdrd.mqtt_payloads import encode, journal_message, read_journal_message
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.store.postgres.central import CentralWriter
from smdrd.store.sqlite.writer import JournalWriter
from smdrd.testing import Broker, PostgresServer, mosquitto_path, write_entries

CENTRAL_CONF = Path(__file__).resolve().parent.parent / "config" / "mosquitto" / "central.conf"
START = datetime(2026, 3, 2, 8, 0, tzinfo=ZoneInfo("Europe/London"))


class _PendingPublishes(logging.Filter):
    """Drops aiomqtt's "There are N pending publish calls." (logger ``mqtt``, WARNING): it warns for each
    publish past a fixed 10 in flight, while a `Publisher` sends its ``[mqtt] window`` (64 by default) at once
    and waits for their acknowledgements, the client's in-flight count bounded to it (``max_inflight_messages``):
    54 lines a window, thousands a run, none a problem. Every other message of the logger is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "There are %d pending publish calls."


def quiet_pending_publishes() -> None:
    """Install `_PendingPublishes` on aiomqtt's logger (once; in each process that publishes)."""
    logger = logging.getLogger("mqtt")
    if not any(isinstance(f, _PendingPublishes) for f in logger.filters):
        logger.addFilter(_PendingPublishes())


class CentralBroker(Broker):
    """The benchmark's broker with the shipped central settings (less persistence: nothing outlives the run)."""

    def _write_config(self) -> None:
        super()._write_config()
        extra = [line for line in CENTRAL_CONF.read_text().splitlines() if not line.startswith("persistence")]
        self.config_path.write_text(self.config_path.read_text() + "\n".join(extra) + "\n")


def entry(site: int, i: int, received_at: int) -> JournalEntry:
    """One call of site ``site``: extensions 201 to 250 at every site, a rating with a cost."""
    raw = f"{site} {i} 2026/03/02 08:00 00:01:00 2{i % 50:02d} 020794600{i % 100:02d}".encode()
    record = CallRecord(format="avaya-ipo", start=START + timedelta(seconds=i), duration=60 + i % 300,
                        direction=Direction.OUTBOUND, extension=str(201 + i % 50), number=f"020794600{i % 100:02d}",
                        answered=True)
    rating = Rating(f"+4420794600{i % 100:02d}", "national", "uk", "020", Decimal("0.05") * (1 + i % 7), "GBP", "GB")
    return JournalEntry("pbx", "10.0.0.9", received_at, "avaya-ipo", raw, PARSED, None,
                        (RatedCall(f"avaya-ipo:{raw.hex()[:24]}", record, rating),))


def site_config(broker: Broker) -> MqttConfig:
    return MqttConfig(enabled=True, host=broker.host, port=broker.port, publish_journal=True, reconnect_min=0.1,
                      reconnect_max=1.0)


class TimedCollector(Collector):
    """The collector, noting each stored entry's latency (from its receipt at the site to the commit's end)."""

    latencies: list[float]

    async def _commit(self, writer: CentralWriter, entries: list[dict[str, Any]],
                      alerts: list[dict[str, Any]], *, passed: list[dict[str, Any]] | None = None) -> None:
        await super()._commit(writer, entries, alerts, passed=passed)
        now = time.time()
        self.latencies.extend(now - int(e["received_at"]) / 1e6 for e in entries)


async def wait_for(condition: Any, within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def _server_cpu_seconds(pg: PostgresServer) -> float:
    """CPU time every process of the PostgreSQL server ``pg`` used so far: the postmaster's children (the
    collector's backend, the WAL writer, the checkpointer) that are running now."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def store_rate(folder: Path, url: str, broker: Broker, sites: int, entries: int, *,
                     batch: int, pg: PostgresServer) -> dict[str, Any]:
    settings = Settings.model_validate({"database": {"url": url}, "mqtt": {"host": broker.host, "port": broker.port},
                                        "central": {"client_id": "bench-central", "batch": batch}})
    # The collector's session first (then stopped): the broker queues everything published after for it.
    collector = Collector(settings)
    task = asyncio.create_task(collector.run())
    await wait_for(lambda: collector.subscription.connected, 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    dbs = []
    now = int(time.time() * 1e6)
    for s in range(sites):
        db = folder / f"site{s}.db"
        await write_entries(db, [entry(s, i, now + i) for i in range(entries)], site=f"site{s}")
        dbs.append(db)
    publishers: list[Publisher] = []
    tasks: list[asyncio.Task[None]] = []
    parts: list[Any] = []
    began = time.perf_counter()
    for s, db in enumerate(dbs):
        store = open_store(db)
        outbox, feed = store.outbox(), store.call_feed()
        await outbox.open()
        await feed.open()
        parts += [outbox, feed]
        pub = Publisher(site_config(broker), outbox, feed=feed, site=f"site{s}")
        publishers.append(pub)
        tasks.append(asyncio.create_task(pub.run()))
    await wait_for(lambda: all(p.stats.entries_published == entries for p in publishers), 600)
    published = time.perf_counter() - began
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for part in parts:
        await part.close()
    collector = Collector(settings)
    task = asyncio.create_task(collector.run())
    total = sites * entries
    # From the first batch (the store opened, the session resumed) to the last call stored.
    await wait_for(lambda: collector.subscription.stats.batches > 0, 60, 0.001)
    began = time.perf_counter()
    first = collector.stats.calls
    assert broker.process is not None
    cpu, server_cpu, broker_cpu = time.process_time(), _server_cpu_seconds(pg), _cpu_seconds(broker.process.pid)
    await wait_for(lambda: collector.stats.calls >= total, 1200, 0.01)
    stored = time.perf_counter() - began
    cpu, server_cpu = time.process_time() - cpu, _server_cpu_seconds(pg) - server_cpu
    broker_cpu = _cpu_seconds(broker.process.pid) - broker_cpu
    total -= first
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if total <= 0:
        raise SystemExit(f"the first batch held every call ({first:,}): nothing left to time; give more --entries "
                         f"or a smaller --batch (now {batch:,})")
    return {"sites": sites, "batch": batch, "calls": total, "publish_s": round(published, 2),
            "publish_calls_per_s": round(total / published), "store_s": round(stored, 2),
            "store_calls_per_s": round(total / stored), "batches": collector.subscription.stats.batches,
            "stored": collector.stats.calls, "load_after_store": os.getloadavg()[0],
            "collector_cpu_us_per_call": round(cpu / total * 1e6), "server_cpu_us_per_call":
            round(server_cpu / total * 1e6), "broker_cpu_us_per_call": round(broker_cpu / total * 1e6)}


async def live_sites(folder: Path, address: tuple[str, int], sites: int, rate: float,
                     seconds: float) -> tuple[int, float]:
    """``sites`` sites, each a journal writer and a publisher, committing ``rate`` calls a second each for
    ``seconds``; returns the calls sent and the share of a CPU this process used meanwhile."""
    quiet_pending_publishes()  # a process of its own
    broker = Broker(folder / "unused")
    broker.host, broker.port = address
    writers: list[JournalWriter] = []
    publishers: list[Publisher] = []
    tasks: list[asyncio.Task[None]] = []
    runs: list[asyncio.Task[None]] = []
    parts: list[Any] = []
    for s in range(sites):
        db = folder / f"live{s}.db"
        store = open_store(db)
        outbox, feed = store.outbox(), store.call_feed()
        writer = JournalWriter(db, commit_interval=0.025, site=f"live{s}")
        await writer.open()
        await outbox.open()
        await feed.open()
        parts += [outbox, feed]
        pub = Publisher(site_config(broker), outbox, feed=feed, site=f"live{s}")
        writer.on_commit = lambda entries, took, pub=pub: pub.wake(alerts=False, entries=True)
        writers.append(writer)
        publishers.append(pub)
        runs.append(asyncio.create_task(writer.run()))
        tasks.append(asyncio.create_task(pub.run()))
    await wait_for(lambda: all(p.connected for p in publishers), 60)

    async def site(s: int) -> None:
        await asyncio.sleep(s / sites / rate)  # spread the sites over the period
        i = 0
        next_at = time.monotonic()
        while True:
            writers[s].submit(entry(1000 + s, i, int(time.time() * 1e6)))
            i += 1
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    senders = [asyncio.create_task(site(s)) for s in range(sites)]
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    cpu = (time.process_time() - cpu) / seconds
    for t in senders:
        t.cancel()
    await asyncio.sleep(2)  # the last ones go out
    for t in tasks:
        t.cancel()
    await asyncio.gather(*senders, *tasks, return_exceptions=True)
    for w in writers:
        await w.close()
    await asyncio.gather(*runs, return_exceptions=True)
    for part in parts:
        await part.close()
    return sum(w.stats.lines for w in writers), cpu


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time process ``pid`` used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def store_alone(folder: Path, url: str, *, sites: int, entries: int, batch: int) -> dict[str, Any]:
    """The collector's store without the broker: the sites' entries as their publishers encode them, decoded and
    stored ``batch`` at a time, as the collector does. Besides the wall time, the CPU time of the PostgreSQL
    server process that stored them and of this process per call: on a loaded machine these say what the store
    costs, where wall time says how much CPU the other work left it."""
    payloads: list[list[bytes]] = []
    now = int(time.time() * 1e6)
    for s in range(sites):
        db = folder / f"alone{s}.db"
        await write_entries(db, [entry(s, i, now + i) for i in range(entries)], site=f"site{s}")
        feed = open_store(db).call_feed()
        await feed.open()
        payloads.append([encode(journal_message(f"site{s}", e.fields)) for e in await feed.entries(0, entries)])
        await feed.close()
    arrived = [p for one in zip(*payloads, strict=True) for p in one]  # the sites interleaved, as they arrive
    writer = CentralWriter(url)
    await writer.open()
    try:
        row = await (await writer.conn.execute("SELECT pg_backend_pid()")).fetchone()
        server = int(row[0]) if row else 0
        server_cpu, cpu, began = _cpu_seconds(server), time.process_time(), time.perf_counter()
        calls = 0
        for i in range(0, len(arrived), batch):
            calls += (await writer.store([read_journal_message(p) for p in arrived[i:i + batch]])).calls
        took = time.perf_counter() - began
        server_cpu, cpu = _cpu_seconds(server) - server_cpu, time.process_time() - cpu
    finally:
        await writer.close()
    return {"calls": calls, "batch": batch, "seconds": round(took, 2), "calls_per_s": round(calls / took),
            "server_cpu_us_per_call": round(server_cpu / calls * 1e6), "collector_cpu_us_per_call":
            round(cpu / calls * 1e6), "load_after": os.getloadavg()[0]}


def _live_sites_process(*args: Any) -> tuple[int, float]:
    return asyncio.run(live_sites(*args))


async def latency(folder: Path, url: str, broker: Broker, *, sites: int, rate: float,
                  seconds: float) -> dict[str, Any]:
    """The sites in a process of their own (as they are on their own boxes), the collector in this one."""
    settings = Settings.model_validate({"database": {"url": url}, "mqtt": {"host": broker.host, "port": broker.port},
                                        "central": {"client_id": "bench-central-live"}})
    collector = TimedCollector(settings)
    collector.latencies = []
    collector_task = asyncio.create_task(collector.run())
    await wait_for(lambda: collector.subscription.connected, 30)
    cpu = time.process_time()
    began = time.monotonic()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        sent, sites_cpu = await asyncio.get_running_loop().run_in_executor(
            pool, _live_sites_process, folder, (broker.host, broker.port), sites, rate, seconds)
    await wait_for(lambda: len(collector.latencies) >= sent, 30)
    collector_cpu = (time.process_time() - cpu) / (time.monotonic() - began)
    lat = sorted(collector.latencies)
    collector_task.cancel()
    await asyncio.gather(collector_task, return_exceptions=True)
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [float("nan")] * 99
    return {"sites": sites, "rate_per_site": rate, "seconds": seconds, "sent": sent, "stored": len(lat),
            "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1) if lat else None, "load_after_live": os.getloadavg()[0],
            "sites_cpu": round(sites_cpu, 2), "collector_cpu": round(collector_cpu, 2)}


async def main(args: argparse.Namespace) -> None:
    quiet_pending_publishes()
    folder = Path(tempfile.mkdtemp(prefix="smdrd-bench-central-"))
    os.chmod(folder, 0o755)  # the server may run as another user (root runs it as postgres)
    pg = PostgresServer(folder / "pg")
    broker = CentralBroker(folder / "broker", binary=mosquitto_path())
    pg.start()
    broker.start()
    try:
        url = pg.create_database("central")
        load_before = os.getloadavg()
        alone = await store_alone(folder, pg.create_database("alone"), sites=args.sites,
                                  entries=min(args.entries, 500), batch=args.batch)
        alone_row = ("the store alone (calls/s)",
                     f"{alone['calls_per_s']:,} ({alone['calls']:,} calls, batches of {alone['batch']}); CPU a call: "
                     f"PostgreSQL {alone['server_cpu_us_per_call']} µs, collector "
                     f"{alone['collector_cpu_us_per_call']} µs (load after {alone['load_after']:.2f})")
        rate = await store_rate(folder, url, broker, 1 if args.skip_store else args.sites, args.entries,
                                batch=args.batch, pg=pg)
        if args.store_only:
            report("central collector", {"alone": alone, "store": rate, "load_before": load_before}, [
                ("load average before", " ".join(f"{x:.2f}" for x in load_before)), alone_row,
                ("one collector stores (calls/s)", f"{rate['store_calls_per_s']:,} in {rate['batches']} batches "
                                                   f"of up to {args.batch}; CPU a call: collector "
                                                   f"{rate['collector_cpu_us_per_call']} µs, PostgreSQL "
                                                   f"{rate['server_cpu_us_per_call']} µs, Mosquitto "
                                                   f"{rate['broker_cpu_us_per_call']} µs (load after "
                                                   f"{rate['load_after_store']:.2f})")])
            return
        live = await latency(folder, url, broker, sites=args.live_sites, rate=args.rate, seconds=args.seconds)
        report("central collector", {"alone": alone, "store": rate, "live": live, "load_before": load_before}, [
            ("load average before", " ".join(f"{x:.2f}" for x in load_before)), alone_row,
            ("sites publish (calls/s into the broker)", f"{rate['publish_calls_per_s']:,} ({rate['calls']:,} calls "
                                                        f"from {rate['sites']} sites)"),
            ("one collector stores (calls/s)", f"{rate['store_calls_per_s']:,} in {rate['batches']} batches "
                                               f"of up to {args.batch}; CPU a call: collector "
                                               f"{rate['collector_cpu_us_per_call']} µs, PostgreSQL "
                                               f"{rate['server_cpu_us_per_call']} µs, Mosquitto "
                                               f"{rate['broker_cpu_us_per_call']} µs (load after "
                                               f"{rate['load_after_store']:.2f})"),
            (f"latency at {live['sites']} sites x {live['rate_per_site']} calls/s",
             f"p50 {live['p50_ms']} ms, p99 {live['p99_ms']} ms, max {live['max_ms']} ms "
             f"({live['stored']} calls; CPU: sites' process {live['sites_cpu']:.0%}, collector's "
             f"{live['collector_cpu']:.0%}; load after {live['load_after_live']:.2f})"),
        ])
    finally:
        broker.stop()
        pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--entries", type=int, default=2000, help="calls per site for the store rate")
    parser.add_argument("--live-sites", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2.0, help="calls a second per live site")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-store", action="store_true", help="measure the latency only")
    parser.add_argument("--store-only", action="store_true", help="measure the store rate only")
    parser.add_argument("--batch", type=int, default=CentralConfig().batch,
                        help="[central] batch: the most entries per transaction (default: the configuration's)")
    asyncio.run(main(parser.parse_args()))
