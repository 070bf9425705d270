"""``/metrics`` and ``/healthz`` of a real daemon: lines over loopback TCP, a real SQLite journal, real scrapes.

Each test starts a `Daemon` in-process with a ``tcp-server`` source on a free port and the HTTP server on port 0,
plays the PBX over a socket and reads the metrics the way Prometheus does, over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from smdrd import testing
from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.metrics import CALL_DURATION_BUCKETS, NO_DEPARTMENT, WRITE_LATENCY_BUCKETS, Metrics
from smdrd.rating.classes import CALL_CLASSES
from smdrd.testing import daemon_config, free_port, open_connection_retry, tcp_server_source

LINE = ("2017/07/01 08:30:22,00:01:{sec:02d},0,{ext},O,600988600,0600988600,,0,{id},0,E{ext},GRZYBEK,T9005,"
        "Line 5.0,0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")
FEATURES = ("metrics", "health")
DIRECTIONS = ("inbound", "outbound", "internal")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def good_lines(n: int, start: int = 1_000_000, ext: str = "217") -> list[bytes]:
    """``n`` distinct Avaya IP Office calls (each a few seconds longer than the last)."""
    return [LINE.format(id=start + i, sec=i % 60, ext=ext).encode() for i in range(n)]


def settings(tmp_path: Path, port: int, **extra: object) -> Settings:
    sections: dict[str, object] = {
        "database": {"commit_interval_ms": 20},
        "tariff": {"currency": "PLN",
                   "rules": [{"name": "pl", "prefixes": ["48"], "rate": "0.60", "billing_unit": 60}]},
        "departments": [{"name": "Sales", "extensions": ["217"]}, {"name": "Support", "extensions": ["550-559"]}],
    }
    return Settings.model_validate(daemon_config(tmp_path, [tcp_server_source("push", port)],
                                                 **{**sections, **extra}))


@dataclass
class Running:
    daemon: Daemon
    pbx_port: int
    tmp_path: Path

    @property
    def http_port(self) -> int:
        assert self.daemon.http is not None
        return self.daemon.http.bound_port


def daemon_metrics(daemon: Daemon) -> Metrics:
    """The metrics feature the daemon was built with."""
    m = daemon.features.metrics
    assert m is not None
    return m


@asynccontextmanager
async def running_daemon(tmp_path: Path, **extra: object) -> AsyncIterator[Running]:
    """The metrics and health features on a daemon with a tcp-server source, "push" (`smdrd.testing`'s harness)."""
    port = free_port()
    async with testing.running_daemon(settings(tmp_path, port, **extra), features=FEATURES) as daemon:
        yield Running(daemon, port, tmp_path)


async def http_get(port: int, path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET over a fresh loopback connection (``Connection: close``, as the server keeps an HTTP/1.1
    connection open otherwise): (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + (f"Accept: {accept}\r\n" if accept else "") + "\r\n")
    writer.write(head.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


async def scrape_text(port: int) -> str:
    status, headers, body = await http_get(port, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    return body.decode()


def parse(text: str, site: str = "smdrd") -> Samples:
    """Each sample's value by name and labels; every sample must carry ``site`` (the daemon's ``[site] name``,
    ``smdrd`` unless set), which is left out of the key."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            assert labels.pop("site", None) == site, f"{s.name}{s.labels} is not labelled site={site!r}"
            out[(s.name, frozenset(labels.items()))] = s.value
    return out


async def scrape(port: int) -> Samples:
    return parse(await scrape_text(port))


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} is not exported"
    return samples[key]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def send(port: int, lines: list[bytes]) -> asyncio.StreamWriter:
    _, writer = await open_connection_retry("127.0.0.1", port)
    writer.write(b"".join(line + b"\r\n" for line in lines))
    await writer.drain()
    return writer


async def test_a_scrape_shows_exactly_the_calls_lines_and_errors_committed(tmp_path: Path) -> None:
    """After 45 calls and 3 garbage lines, the counters match the journal to the unit: a dashboard showing
    more or fewer calls, talk time or cost than the database would fail here."""
    garbage = [b"garbage line one", b"\x01\x02 not a call", b"1,2,3"]
    calls = good_lines(30) + good_lines(10, start=2_000_000, ext="555") + good_lines(5, start=4_000_000, ext="777")
    async with running_daemon(tmp_path) as run:
        writer = await send(run.pbx_port, calls[:20] + garbage + calls[20:])
        await eventually(lambda: run.daemon.writer.stats.lines == 48)
        samples = await scrape(run.http_port)
        writer.close()

    assert value(samples, "smdrd_lines_received_total", source="push", format="avaya-ipo") == 48
    assert value(samples, "smdrd_parse_errors_total", source="push", format="avaya-ipo") == 3
    db = sqlite3.connect(tmp_path / "smdrd.db")
    rows = db.execute("SELECT direction, call_class, sum(leg = 0), sum(duration), sum(cost_micros), currency "
                      "FROM calls GROUP BY direction, call_class, currency").fetchall()
    assert sum(r[2] for r in rows) == 45
    for direction, call_class, n, talk, micros, currency in rows:
        labels = {"source": "push", "direction": direction, "call_class": call_class}
        assert value(samples, "smdrd_calls_total", **labels) == n
        assert value(samples, "smdrd_call_talk_seconds_total", **labels) == talk
        assert value(samples, "smdrd_call_cost_total", source="push", direction=direction, call_class=call_class,
                     currency=currency) == pytest.approx(micros / 1e6)
    assert total(samples, "smdrd_calls_total") == 45
    assert total(samples, "smdrd_call_cost_total") > 0, "the tariff prices these calls: cost must not be 0"
    # Department by extension, as reports resolve it: 217 is Sales, 555 is in Support's range 550-559, 777 is
    # in no department.
    assert total(samples, "smdrd_department_calls_total", department="Sales") == 30
    assert total(samples, "smdrd_department_calls_total", department="Support") == 10
    assert total(samples, "smdrd_department_calls_total", department=NO_DEPARTMENT) == 5
    sales_micros = db.execute("SELECT sum(cost_micros) FROM calls WHERE extension = '217'").fetchone()[0]
    assert value(samples, "smdrd_department_cost_total", source="push", department="Sales", direction="outbound",
                 currency="PLN") == pytest.approx(sales_micros / 1e6)
    # Every answered call is in the duration histogram, in its bucket.
    answered = db.execute("SELECT count(*), sum(duration) FROM calls WHERE answered = 1").fetchone()
    assert value(samples, "smdrd_call_duration_seconds_count", direction="outbound") == answered[0]
    assert value(samples, "smdrd_call_duration_seconds_sum", direction="outbound") == answered[1]
    under_60 = db.execute("SELECT count(*) FROM calls WHERE answered = 1 AND duration <= 60").fetchone()[0]
    assert value(samples, "smdrd_call_duration_seconds_bucket", direction="outbound", le="60.0") == under_60
    db.close()


async def test_parent_departments_include_their_children_as_reports_do(tmp_path: Path) -> None:
    """A report's parent row sums its sub-departments; so does the parent's series, at every level of the
    tree, by direction. ``smdrd_department_info`` gives the tree, so a dashboard can keep to top-level
    departments (which count each call once). A parent reading 0 beside busy children would fail here."""
    departments = [{"name": "Sales", "extensions": ["200"]},
                   {"name": "Sales EU", "parent": "Sales", "extensions": ["217"]},
                   {"name": "Sales PL", "parent": "Sales EU", "extensions": ["555"]},
                   {"name": "Support", "extensions": ["600-699"]}]
    calls = good_lines(4) + good_lines(3, start=2_000_000, ext="555") + good_lines(2, start=3_000_000, ext="777")
    async with running_daemon(tmp_path, departments=departments) as run:
        writer = await send(run.pbx_port, calls)
        await eventually(lambda: run.daemon.writer.stats.lines == 9)
        samples = await scrape(run.http_port)
        writer.close()
    micros = dict(sqlite3.connect(tmp_path / "smdrd.db").execute(
        "SELECT extension, sum(cost_micros) FROM calls GROUP BY extension").fetchall())
    expected = {"Sales": (7, micros["217"] + micros["555"]), "Sales EU": (7, micros["217"] + micros["555"]),
                "Sales PL": (3, micros["555"]), "Support": (0, 0), NO_DEPARTMENT: (2, micros["777"])}
    for dept, (n, cost) in expected.items():
        assert total(samples, "smdrd_department_calls_total", department=dept, direction="outbound") == n, dept
        assert total(samples, "smdrd_department_calls_total", department=dept, direction="inbound") == 0, dept
        assert value(samples, "smdrd_department_cost_total", source="push", department=dept, direction="outbound",
                     currency="PLN") == pytest.approx(cost / 1e6), dept
    tree = {dict(ls)["department"]: dict(ls)["parent"] for (n, ls) in samples if n == "smdrd_department_info"}
    assert tree == {"Sales": "", "Sales EU": "Sales", "Sales PL": "Sales EU", "Support": "", NO_DEPARTMENT: ""}
    top_level = [d for d, parent in tree.items() if parent == ""]
    assert sum(total(samples, "smdrd_department_calls_total", department=d) for d in top_level) == 9


async def test_write_latency_histogram_counts_every_committed_line(tmp_path: Path) -> None:
    """The receipt-to-commit histogram has one observation per journalled line, each no longer than the test's
    own window from the first send to the commit it saw: a count that drifts from the journal, or latencies in
    the wrong unit (milliseconds counted as seconds), would fail here. How long commits take is a figure for
    ``bench/live.py``, not an assertion here."""
    async with running_daemon(tmp_path) as run:
        opened = time.time()
        writer = await send(run.pbx_port, [*good_lines(25), b"junk"])
        await eventually(lambda: run.daemon.writer.stats.lines == 26)
        writer2 = await send(run.pbx_port, good_lines(7, start=3_000_000))
        await eventually(lambda: run.daemon.writer.stats.lines == 33)
        samples = await scrape(run.http_port)
        window = time.time() - opened  # every line was received after `opened` and observed before now
        writer.close()
        writer2.close()
    committed = sqlite3.connect(tmp_path / "smdrd.db").execute("SELECT count(*) FROM lines").fetchone()[0]
    assert committed == 33
    assert value(samples, "smdrd_journal_write_latency_seconds_count") == committed
    assert value(samples, "smdrd_journal_write_latency_seconds_bucket", le="+Inf") == committed
    # Every observation lies in (0, window]: so every bucket from the first at or above the window holds all.
    if above := [le for le in WRITE_LATENCY_BUCKETS if le >= window]:
        assert value(samples, "smdrd_journal_write_latency_seconds_bucket", le=repr(float(above[0]))) == committed
    assert 0 < value(samples, "smdrd_journal_write_latency_seconds_sum") <= committed * window
    assert value(samples, "smdrd_journal_commits_total") >= 2


async def test_known_label_values_are_zero_before_any_call(tmp_path: Path) -> None:
    """A fresh daemon exports every source, direction, call class and department at 0, so a Grafana panel
    shows a flat zero instead of "No data"."""
    async with running_daemon(tmp_path) as run:
        samples = await scrape(run.http_port)
    for cls in CALL_CLASSES:
        for direction in DIRECTIONS:
            assert value(samples, "smdrd_calls_total", source="push", direction=direction, call_class=cls) == 0
            assert value(samples, "smdrd_call_talk_seconds_total", source="push", direction=direction,
                         call_class=cls) == 0
            assert value(samples, "smdrd_call_cost_total", source="push", direction=direction, call_class=cls,
                         currency="PLN") == 0
            for dept in ("Sales", "Support", NO_DEPARTMENT):
                assert value(samples, "smdrd_department_calls_total", source="push", department=dept,
                             direction=direction, call_class=cls) == 0
                assert value(samples, "smdrd_department_cost_total", source="push", department=dept,
                             direction=direction, currency="PLN") == 0
    for direction in DIRECTIONS:
        assert value(samples, "smdrd_call_duration_seconds_count", direction=direction) == 0
        for le in CALL_DURATION_BUCKETS:
            assert value(samples, "smdrd_call_duration_seconds_bucket", direction=direction, le=repr(float(le))) == 0
    assert value(samples, "smdrd_lines_received_total", source="push", format="avaya-ipo") == 0
    assert value(samples, "smdrd_parse_errors_total", source="push", format="avaya-ipo") == 0
    assert value(samples, "smdrd_source_connected", source="push") == 0
    assert value(samples, "smdrd_source_last_line_timestamp_seconds", source="push") == 0
    assert value(samples, "smdrd_journal_pending_rows") == 0
    assert value(samples, "smdrd_alerts_pending_delivery") == 0
    assert value(samples, "smdrd_mqtt_connected") == 0
    assert value(samples, "smdrd_build_info", version="0.1.0", python_version=platform.python_version()) == 1
    # Bounded labels: no series is labelled with an extension or a number.
    assert not any(k in {"extension", "number", "peer", "e164"} for _, ls in samples for k, _ in ls)


async def test_source_connected_flips_to_zero_when_the_pbx_disconnects(tmp_path: Path) -> None:
    """``smdrd_source_connected`` is 1 while the PBX is connected and 0 once it hangs up; a reconnect from
    the same PBX counts in ``smdrd_source_reconnects_total``. A stale "connected" would hide a dead link."""
    async with running_daemon(tmp_path) as run:
        samples = await scrape(run.http_port)
        assert value(samples, "smdrd_source_connected", source="push") == 0
        assert value(samples, "smdrd_source_up", source="push") == 0  # a push source that never heard a PBX
        before = time.time()
        writer = await send(run.pbx_port, good_lines(2))
        await eventually(lambda: run.daemon.writer.stats.lines == 2)
        samples = await scrape(run.http_port)
        assert value(samples, "smdrd_source_connected", source="push") == 1
        assert value(samples, "smdrd_source_last_line_timestamp_seconds", source="push") >= before - 1
        assert value(samples, "smdrd_source_reconnects_total", source="push") == 0
        writer.close()
        await writer.wait_closed()
        status = run.daemon.sources["push"].source.status
        await eventually(lambda: not status.connected)
        samples = await scrape(run.http_port)
        assert value(samples, "smdrd_source_connected", source="push") == 0
        # Still up: a push PBX may connect per record (3CX); "up" waits PUSH_IDLE_GRACE after the last line.
        assert value(samples, "smdrd_source_up", source="push") == 1
        writer = await send(run.pbx_port, good_lines(1, start=5_000_000))
        await eventually(lambda: run.daemon.writer.stats.lines == 3)
        samples = await scrape(run.http_port)
        assert value(samples, "smdrd_source_connected", source="push") == 1
        assert value(samples, "smdrd_source_reconnects_total", source="push") == 1
        assert value(samples, "smdrd_source_connections_total", source="push") == 2
        writer.close()


async def test_alert_and_mqtt_hooks_show_in_the_scrape(tmp_path: Path) -> None:
    """The interface the alerts module uses: declared rules show 0, raised alerts count, and the outbox and
    MQTT states it reports show in the next scrape. An alert that never reaches Prometheus would fail here."""
    async with running_daemon(tmp_path) as run:
        m = daemon_metrics(run.daemon)
        m.declare_alert_rule("night-international", "warning")
        m.declare_alert_rule("premium-number", "critical")
        m.alert_raised("premium-number", "critical")
        m.alert_raised("premium-number", "critical", 2)
        m.alerts_pending(4)
        m.mqtt_connected(True)
        samples = await scrape(run.http_port)
        assert value(samples, "smdrd_alerts_raised_total", rule="night-international", severity="warning") == 0
        assert value(samples, "smdrd_alerts_raised_total", rule="premium-number", severity="critical") == 3
        assert value(samples, "smdrd_alerts_pending_delivery") == 4
        assert value(samples, "smdrd_mqtt_connected") == 1
        m.alerts_pending(0)
        m.mqtt_connected(False)
        samples = await scrape(run.http_port)
        assert value(samples, "smdrd_alerts_pending_delivery") == 0
        assert value(samples, "smdrd_mqtt_connected") == 0


async def test_openmetrics_is_served_when_prometheus_asks_for_it(tmp_path: Path) -> None:
    """Prometheus asks for OpenMetrics first; the answer must be OpenMetrics, ending with ``# EOF``."""
    async with running_daemon(tmp_path) as run:
        status, headers, body = await http_get(run.http_port, "/metrics",
                                               accept="application/openmetrics-text;version=1.0.0,*/*;q=0.1")
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    assert b"smdrd_calls_total{" in body


async def test_every_series_names_the_site_in_both_formats(tmp_path: Path) -> None:
    """One Prometheus scraping many sites' daemons tells them apart by ``site``, the daemon's ``[site] name``,
    on every series (the process's too), in the text format and in OpenMetrics."""
    site = {"timezone": "Europe/Warsaw", "country": "PL", "name": "branch-1"}
    async with running_daemon(tmp_path, site=site) as run:
        writer = await send(run.pbx_port, good_lines(2))
        await eventually(lambda: run.daemon.writer.stats.lines == 2)
        samples = parse(await scrape_text(run.http_port), site="branch-1")
        _, _, body = await http_get(run.http_port, "/metrics", accept="application/openmetrics-text")
        writer.close()
    assert value(samples, "smdrd_lines_received_total", source="push", format="avaya-ipo") == 2
    assert any(name.startswith("process_") for name, _ in samples)
    families = list(openmetrics_families(body.decode()))  # type: ignore[no-untyped-call]
    assert families and all(s.labels["site"] == "branch-1" for f in families for s in f.samples)


async def test_a_resent_buffer_is_not_counted_twice(tmp_path: Path) -> None:
    """A PBX re-sends its buffer after a reconnect: the journal stores each call once, and so must the call
    counters, or the dashboard shows twice the calls and twice the cost."""
    async with running_daemon(tmp_path) as run:
        batch = good_lines(5)
        writer = await send(run.pbx_port, batch)
        await eventually(lambda: run.daemon.writer.stats.lines == 5)
        writer.close()
        writer = await send(run.pbx_port, batch)
        await eventually(lambda: run.daemon.writer.stats.lines == 10)
        samples = await scrape(run.http_port)
        writer.close()
    assert run.daemon.writer.stats.duplicates == 5
    assert total(samples, "smdrd_calls_total") == 5


# --- promtool ----------------------------------------------------------------------------------------------

def prometheus_tool(name: str) -> str:
    """A binary of Debian's ``prometheus`` package (``promtool``, ``prometheus``); a missing one skips the test
    on a workstation and fails it under CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI (Debian: apt-get install prometheus)")
        pytest.skip(f"{name} not installed (Debian: apt-get install prometheus)")
    return path


def promtool() -> str:
    return prometheus_tool("promtool")


async def test_promtool_accepts_a_real_scrape(tmp_path: Path) -> None:
    """``promtool check metrics`` (Prometheus' own linter) accepts what the daemon serves after real traffic:
    a name, type or unit that breaks the exposition rules would fail here before it breaks a scrape."""
    tool = promtool()
    async with running_daemon(tmp_path) as run:
        writer = await send(run.pbx_port, [*good_lines(10), b"not a call"])
        await eventually(lambda: run.daemon.writer.stats.lines == 11)
        daemon_metrics(run.daemon).declare_alert_rule("premium-number", "critical")
        text = await scrape_text(run.http_port)
        writer.close()
    assert "smdrd_calls_total{" in text
    result = await asyncio.to_thread(subprocess.run, [tool, "check", "metrics"], input=text,
                                     capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


# --- /healthz ------------------------------------------------------------------------------------------------

async def health(port: int) -> tuple[int, dict[str, object]]:
    status, headers, body = await http_get(port, "/healthz")
    assert headers["content-type"] == "application/json"
    data: dict[str, object] = json.loads(body)
    return status, data


async def test_healthz_follows_the_source_and_the_database(tmp_path: Path) -> None:
    """``/healthz`` says 503 with a reason while no PBX has sent anything, 200 once lines flow, 503 while the
    database cannot be written (another process holds its write lock past the busy timeout), and 200 again
    once a commit succeeds. A monitoring check that stays green through a stuck journal would fail here."""
    async with running_daemon(tmp_path) as run:
        status, body = await health(run.http_port)
        assert status == 503 and body["status"] == "unhealthy"
        assert any("source push" in r and "no PBX" in r for r in body["reasons"]), body  # type: ignore[attr-defined]

        writer = await send(run.pbx_port, good_lines(3))
        await eventually(lambda: run.daemon.writer.stats.lines == 3)
        status, body = await health(run.http_port)
        assert status == 200, body
        assert body["status"] == "ok" and body["reasons"] == []
        push = body["sources"]["push"]  # type: ignore[index]
        assert push["connected"] is True and push["lines"] == 3 and push["last_line"]

        # Another process takes the database's write lock: the writer's commit waits out the busy timeout
        # (5 s) and fails.
        locker = sqlite3.connect(tmp_path / "smdrd.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            writer.write(good_lines(1, start=9_000_000)[0] + b"\r\n")
            await writer.drain()
            await eventually(lambda: run.daemon.writer.stats.failures > 0, within=15)
            status, body = await health(run.http_port)
            assert status == 503, body
            assert any(r.startswith("database: not writable") for r in body["reasons"]), body  # type: ignore[attr-defined]
            assert body["database"]["writable"] is False  # type: ignore[index]
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await eventually(lambda: run.daemon.writer.stats.lines == 4, within=15)
        status, body = await health(run.http_port)
        assert status == 200, body
        writer.close()


async def test_healthz_needs_no_token_but_metrics_do(tmp_path: Path) -> None:
    """With an HTTP token set, a load balancer's health check still works without it, and the metrics do not
    leak to a client without it."""
    token = "s3cret-http-token-0123"  # at least 16 characters: a shorter token is a configuration error
    async with running_daemon(tmp_path, http={"listen": "127.0.0.1:0", "token": token}) as run:
        status, _, _ = await http_get(run.http_port, "/metrics")
        assert status == 401
        status, _, body = await http_get(run.http_port, f"/metrics?token={token}")
        assert status == 200 and b"smdrd_calls_total" in body
        status, public = await health(run.http_port)
        assert status == 503  # no PBX yet: answered, not refused
        # states for everyone; counts and times only with the token (api.md: "its details ... only to a
        # recognised request")
        assert public["database"] == {"writable": True}
        assert all(set(src) == {"kind", "up", "connected"} for src in public["sources"].values())  # type: ignore[attr-defined]
        status, _, body = await http_get(run.http_port, f"/healthz?token={token}")
        detail = json.loads(body)
        assert {"committed_calls", "last_commit"} <= set(detail["database"])
        assert all("last_line" in src for src in detail["sources"].values())


def test_destination_series_name_the_country_of_the_number_not_of_its_calling_code(tmp_path: Path) -> None:
    """Calls to +1 809, +1 876 and +1 212 count under DO, JM and US (not all under US, the main country of +1),
    with their cost, as the destinations report and the alerts name them."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from smdrd.journal import PARSED, JournalEntry, RatedCall
    from smdrd.rating import Rater
    from smdrd.record import CallRecord, Direction

    conf = settings(tmp_path, free_port(), tariff={
        "currency": "USD", "rules": [{"name": "nanp", "prefixes": ["1"], "rate": "0.60", "billing_unit": 60}]})
    metrics = Metrics(conf)
    rater = Rater.from_config(conf.site, conf.tariff)
    entries = []
    for i, number in enumerate(("+18095551234", "+18765551234", "+12125551234", "+18295551234")):
        rec = CallRecord(format="test", start=datetime(2026, 3, 2, 10, i, tzinfo=UTC), duration=60,
                         direction=Direction.OUTBOUND, extension="217", number=number, trunk="T1", call_key=f"k{i}")
        rating = rater.rate(rec)
        entries.append(JournalEntry("push", "", 1, "test", b"x", PARSED, calls=[RatedCall(f"u{i}", rec, rating)]))
    metrics.on_commit(entries, 0.001)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"source": "push", "direction": "outbound", **labels})

    assert sample("smdrd_destination_calls_total", country="DO") == 2
    assert sample("smdrd_destination_calls_total", country="JM") == 1
    assert sample("smdrd_destination_calls_total", country="US") == 1
    assert Decimal(str(sample("smdrd_destination_cost_total", country="DO", currency="USD"))) == Decimal("1.2")
