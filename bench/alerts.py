"""Alert latency benchmark: a call line written to a tcp-server source, to its alert at an MQTT subscriber.

    python bench/alerts.py [--alerts 500] [--gap-ms 20] [--commit-ms 100] [--background 200]

Starts a Mosquitto broker on a free loopback port, a daemon (in this process) with the alerts extension, a
QoS-1 subscriber, and a fake PBX that writes one alert-raising line (a call to +1 809 at 02:13) every
``--gap-ms``, among ``--background`` ordinary lines per second. For each alert, the time from the line's
write to the subscriber's receipt of the alert is measured; median, p90, p99 and max are printed.

The path measured: framing, parsing, rating and the rules (inline), the journal writer's batch (it commits when
the oldest pending line is ``commit_interval_ms`` old: the main term), the commit listener's wake-up, the
outbox read, the QoS-1 publish and the broker's delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from smdrd.config import Settings  # noqa: E402
from smdrd.daemon import Daemon  # noqa: E402
from smdrd.logs import configure  # noqa: E402
from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser  # noqa: E402
from smdrd.record import CallRecord, Direction  # noqa: E402
from smdrd.testing import Broker, Received, Subscriber, free_port, mosquitto_path, open_connection_retry  # noqa: E402  # noqa: E402  # noqa: E402

UTC = ZoneInfo("UTC")


def line(n: int, *, alert: bool) -> bytes:
    start = datetime(2025, 3, 4, 2 if alert else 10, 13, n % 60, tzinfo=UTC)
    record = CallRecord(format="avaya-ipo", start=start, duration=40 * 60 if alert else 120,
                        direction=Direction.OUTBOUND, extension=str(10_000 + n),
                        number="918095551234" if alert else "912125550100", call_id=str(1_000_000 + n))
    return AvayaIPOfficeParser.render(record)[0].encode() + b"\r\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    broker = Broker(workdir / "broker")
    broker.start()
    sent: dict[str, float] = {}
    latencies: list[float] = []

    def arrived(message: Received) -> None:
        ext = json.loads(message.payload)["extension"]
        if ext in sent:
            latencies.append(message.at - sent.pop(ext))

    port = free_port()
    settings = Settings.model_validate({
        "database": {"path": str(workdir / "smdrd.db"), "commit_interval_ms": args.commit_ms},
        "sources": [{"name": "pbx", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}"}],
        "http": {"enabled": False},
        "mqtt": {"enabled": True, "host": broker.host, "port": broker.port},
        # one alert per alerting line: the look-alike destination only
        "alerts": {"after_hours": {"enabled": False}, "long_call": {"enabled": False},
                   "velocity": {"enabled": False}, "high_risk": {"snooze_minutes": 0}},
        "logging": {"level": "error"},
    })
    daemon = Daemon(settings, features=("alerts", "mqtt"))
    task = asyncio.create_task(daemon.run())
    sub = Subscriber(broker.host, broker.port, ["smdrd/alert/#"], on_message=arrived)
    sub_task = asyncio.create_task(sub.run())
    try:
        await daemon.ready.wait()
        await sub.subscribed.wait()
        _, writer = await open_connection_retry("127.0.0.1", port)
        await asyncio.sleep(0.5)  # the publisher connects
        gap = args.gap_ms / 1000
        per_gap = args.background * gap
        carry = 0.0
        n = 0
        for i in range(args.alerts + args.warmup):
            carry += per_gap
            while carry >= 1:
                carry -= 1
                n += 1
                writer.write(line(n, alert=False))
            n += 1
            data = line(n, alert=True)
            if i >= args.warmup:
                sent[str(10_000 + n)] = time.monotonic()
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(gap)
        await sub.wait_until(lambda: not sent, 10)
        writer.close()
    finally:
        daemon.request_stop()
        await task
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
        broker.stop()
    ms = [x * 1000 for x in latencies]
    return {"alerts": len(ms), "lost": len(sent), "median_ms": statistics.median(ms), "p90_ms": percentile(ms, 0.9),
            "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=500, help="alerts to time (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="alerts sent first and not timed")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="time between alerting lines (default 20)")
    parser.add_argument("--commit-ms", type=int, default=25,
                        help="the journal's commit_interval_ms (default 25, the daemon's default)")
    parser.add_argument("--background", type=float, default=200.0,
                        help="ordinary lines per second around the alerting ones (default 200)")
    args = parser.parse_args()
    if mosquitto_path() is None:
        print("mosquitto is not installed (apt install mosquitto)", file=sys.stderr)
        return 2
    configure("error", "console")
    with tempfile.TemporaryDirectory(prefix="smdrd-bench-alerts-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    report("alert latency (line at the source -> alert at a QoS-1 subscriber)",
           {"settings": vars(args), **results},
           [("alerts timed", f"{results['alerts']:.0f} (lost {results['lost']:.0f})"),
            ("commit_interval_ms", str(args.commit_ms)),
            ("background lines/s", f"{args.background:.0f}"),
            ("median", f"{results['median_ms']:.1f} ms"),
            ("p90", f"{results['p90_ms']:.1f} ms"),
            ("p99", f"{results['p99_ms']:.1f} ms (target < 100 ms)"),
            ("max", f"{results['max_ms']:.1f} ms")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
