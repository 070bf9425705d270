"""``smdrd central``'s ``/metrics`` and ``/healthz`` (issue 17, point 3): what the central store took from each
site, labelled by site, against a real Mosquitto, a real PostgreSQL and a real Prometheus scraping the
collector. The counters must equal what PostgreSQL holds of each site (the sites' own figures), a re-delivery
must add nothing but ``smdrd_central_entries_known_total``, and ``/healthz`` must say when PostgreSQL is away."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from smdrd.central import Collector
from smdrd.config import Settings
from smdrd.journal import ERROR, JournalEntry
from smdrd.testing import Broker, free_port, write_entries
from tests.test_central import (
    central_broker,
    central_url,
    collecting,
    publishing,
    report,
    rewind,
    site_entries,
    stored,
    until,
)
from tests.test_dashboards import CENTRAL_DASHBOARD, dashboard_exprs, metric_names
from tests.test_metrics import promtool
from tests.test_prometheus import Prometheus, PrometheusError, expand, prometheus_binary, targets

__all__ = ["central_broker", "central_url"]  # the fixtures

SITES = {"north": 30, "south": 20}


def settings(url: str, broker: Broker, port: int, **sections: object) -> Settings:
    return Settings.model_validate({
        "database": {"url": url},
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min": 0.1, "reconnect_max": 0.5},
        "central": {"client_id": "test-central-metrics"},
        "http": {"listen": f"127.0.0.1:{port}"},
        **sections,
    })


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by_site(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> dict[str, float]:
    """The sum of ``name``'s series for each site."""
    out: dict[str, float] = {}
    for (n, labels), v in scrape.items():
        if n == name:
            site = dict(labels)["site"]
            out[site] = out.get(site, 0.0) + v
    return out


def exported_names(text: str) -> set[str]:
    """The metric names a scrape exports: every sample's, and every declared family's (a labelled counter with no
    series yet, such as the alerts stored before any alert, is exported all the same), as PromQL names them."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def expected(entries: list[JournalEntry]) -> tuple[int, int, int, Decimal]:
    """Lines, error lines, calls and cost of a site's entries."""
    calls = [c for e in entries for c in e.calls]
    return (len(entries), sum(e.status == ERROR for e in entries), len(calls),
            sum((c.rating.cost for c in calls if c.rating is not None), Decimal(0)))


async def test_the_collector_exports_what_it_stored_by_site_and_a_replay_adds_nothing(
        tmp_path: Path, central_broker: Broker, central_url: str) -> None:
    entries = {name: site_entries(k, n) for k, (name, n) in enumerate(SITES.items(), 1)}
    dbs = {name: tmp_path / f"{name}.db" for name in SITES}
    for name in SITES:
        await write_entries(dbs[name], entries[name], site=name)
    port = free_port()
    async with collecting(settings(central_url, central_broker, port)) as collector:
        status, body = await get(port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok", body
        for name, n in SITES.items():
            async with publishing(dbs[name], central_broker, name) as pub:
                assert await until(lambda: pub.stats.entries_published == n)  # noqa: B023
        total = sum(SITES.values())
        assert await until(lambda: collector.stats.lines == total), collector.stats
        status, text = await get(port, "/metrics")
        assert status == 200
        scrape = samples(text)
        lines, calls = stored(central_url)
        assert lines == total and sum(by_site(scrape, "smdrd_central_lines_stored_total").values()) == lines
        assert sum(by_site(scrape, "smdrd_central_calls_total").values()) == calls
        for name in SITES:
            n_lines, errors, n_calls, cost = expected(entries[name])
            assert by_site(scrape, "smdrd_central_lines_stored_total")[name] == n_lines
            assert by_site(scrape, "smdrd_central_parse_errors_total")[name] == errors
            key = ("smdrd_central_calls_total", frozenset({"site": name, "source": "pbx", "direction": "outbound",
                                                           "call_class": "national"}.items()))
            assert scrape[key] == n_calls
            central = report(central_url, "extensions", sites=(name,))["totals"]
            assert isinstance(central, dict) and central["calls"] == n_calls, "as the central report counts"
            exported = Decimal(str(by_site(scrape, "smdrd_central_call_cost_total")[name]))
            assert abs(exported - cost) < Decimal("0.000001"), (name, exported, cost)
            newest = max(e.received_at for e in entries[name]) / 1e6
            assert scrape[("smdrd_central_site_last_line_timestamp_seconds", frozenset({"site": name}.items()))] \
                == pytest.approx(newest)
            assert scrape[("smdrd_central_source_last_line_timestamp_seconds",
                           frozenset({"site": name, "source": "pbx"}.items()))] == pytest.approx(newest)
            assert scrape[("smdrd_central_site_lag_seconds", frozenset({"site": name}.items()))] >= 0
            assert scrape[("smdrd_central_entries_known_total", frozenset({"site": name}.items()))] == 0
        assert scrape[("smdrd_central_store_up", frozenset())] == 1
        assert scrape[("smdrd_central_mqtt_connected", frozenset())] == 1
        # Bounded labels: sites, sources, directions, classes, currencies; never an extension or a number.
        assert not any(k in {"extension", "number", "peer", "e164"} for _, ls in scrape for k, _ in ls)
        lint = await asyncio.to_thread(subprocess.run, [promtool(), "check", "metrics"], input=text,
                                       capture_output=True, text=True, timeout=30, check=False)
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr

        # South publishes its whole journal again: stored once, counted once, the deliveries as known.
        await rewind(dbs["south"])
        async with publishing(dbs["south"], central_broker, "south") as pub:
            assert await until(lambda: pub.stats.entries_published == SITES["south"])
        assert await until(lambda: collector.stats.known == SITES["south"]), collector.stats
        again = samples((await get(port, "/metrics"))[1])
        assert by_site(again, "smdrd_central_entries_known_total") == {"north": 0, "south": SITES["south"]}
        for name in ("smdrd_central_lines_stored_total", "smdrd_central_calls_total",
                     "smdrd_central_call_cost_total"):
            assert by_site(again, name) == by_site(scrape, name), name

        # Every metric the shipped central dashboard queries is one the collector exports (a renamed metric
        # would leave an empty panel with nothing to say so).
        board = {n for e in dashboard_exprs(json.loads(CENTRAL_DASHBOARD.read_text())) for n in metric_names(e)}
        assert {"smdrd_central_calls_total", "smdrd_central_call_cost_total", "smdrd_central_lines_stored_total",
                "smdrd_central_entries_known_total", "smdrd_central_entries_rejected_total",
                "smdrd_central_commit_retries_total", "smdrd_central_site_last_line_timestamp_seconds",
                "smdrd_central_site_lag_seconds"} <= board, "the reader found what the panels need"
        missing = sorted(board - exported_names((await get(port, "/metrics"))[1]))
        assert not missing, f"the central dashboard queries metrics smdrd central does not export: {missing}"
    assert stored(central_url) == (lines, calls)

    # A new collector starts with each site's newest line, read from the store, before any entry arrives.
    port = free_port()
    async with collecting(settings(central_url, central_broker, port)) as collector:
        scrape = samples((await get(port, "/metrics"))[1])
        for name in SITES:
            newest = max(e.received_at for e in entries[name]) / 1e6
            assert scrape[("smdrd_central_site_last_line_timestamp_seconds", frozenset({"site": name}.items()))] \
                == pytest.approx(newest)
            assert scrape[("smdrd_central_entries_known_total", frozenset({"site": name}.items()))] == 0


async def test_healthz_says_when_postgresql_is_away_and_no_http_section_serves_nothing(
        central_broker: Broker) -> None:
    port = free_port()
    nowhere = f"postgresql://smdrd:s3cret@127.0.0.1:{free_port()}/smdrd?connect_timeout=2"
    async with collecting(settings(nowhere, central_broker, port), subscribed=False) as collector:
        assert await until(lambda: collector.store_error is not None, 30)
        status, body = await get(port, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["status"] == "unhealthy" and health["store"]["up"] is False, body
        assert any(r.startswith("PostgreSQL: ") for r in health["reasons"]), health
        assert "s3cret" not in body, "the URL's password is never shown"
        status, text = await get(port, "/metrics")
        assert status == 200 and "smdrd_central_store_up 0.0" in text
    plain = Settings.model_validate({"database": {"url": nowhere},
                                     "mqtt": {"host": central_broker.host, "port": central_broker.port}})
    assert Collector(plain).http is None, "no [http] section: the collector takes no port"


async def test_prometheus_scrapes_the_collector_and_sums_each_sites_calls(
        tmp_path: Path, central_broker: Broker, central_url: str) -> None:
    """The shipped prometheus.yml, pointed at the collector, with the shipped rules loaded: by site, the calls
    and lines Prometheus holds equal the central store's; and every query of the central dashboard, as Grafana
    sends it, evaluates (the per-site panels showing every site)."""
    prometheus_binary()
    entries = {name: site_entries(k, n) for k, (name, n) in enumerate(SITES.items(), 1)}
    port = free_port()
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}")
    async with collecting(settings(central_url, central_broker, port)) as collector:
        try:
            await asyncio.to_thread(prom.start)
            for name, n in SITES.items():
                db = tmp_path / f"{name}.db"
                await write_entries(db, entries[name], site=name)
                async with publishing(db, central_broker, name) as pub:
                    assert await until(lambda: pub.stats.entries_published == n)  # noqa: B023
            assert await until(lambda: collector.stats.lines == sum(SITES.values()))

            def by_site_in_prometheus(expr: str) -> dict[str, float]:
                return {r["metric"]["site"]: float(r["value"][1]) for r in prom.instant(expr, time.time())}

            want_calls = {name: float(expected(entries[name])[2]) for name in SITES}
            want_lines = {name: float(n) for name, n in SITES.items()}
            await asyncio.to_thread(prom.wait, "every site's calls", lambda: by_site_in_prometheus(
                "sum by (site) (smdrd_central_calls_total)") == want_calls)
            assert by_site_in_prometheus('sum by (site) (smdrd_central_lines_stored_total{site=~"north|south"})') \
                == want_lines
            ages = by_site_in_prometheus("time() - smdrd_central_site_last_line_timestamp_seconds")
            assert set(ages) == set(SITES) and all(a > 0 for a in ages.values())

            # increase() needs two samples of a series in its window.
            await asyncio.to_thread(prom.wait, "two samples of each site's series", lambda: (prom.value(
                "min(count_over_time(smdrd_central_parse_errors_total[1h]))") or 0) >= 2)
            failures: list[str] = []
            shown: set[str] = set()
            now = time.time()
            for target in targets(json.loads(CENTRAL_DASHBOARD.read_text())):
                expr = expand(target.expr, interval=3600, rate_interval=3600, range_=86400,
                              variables={"site": ".*", "instance": ".*", "direction": "outbound"})
                try:
                    result = prom.instant(expr, now) if target.instant else [
                        {"metric": r["metric"], "value": r["values"][-1]} for r in prom.range(expr, now - 7200, now,
                                                                                              3600)]
                except PrometheusError as e:
                    failures.append(f"{target.panel!r}: {e}")
                    continue
                per_site = "sum by (site" in expr and not target.panel.startswith(("Re-deliveries", "Revised",
                                                                                     "Alerts"))  # none here
                if per_site and {r["metric"].get("site") for r in result} != set(SITES):
                    failures.append(f"{target.panel!r} does not show every site: {expr} gave {result}")
                if result:
                    shown.add(target.panel)
            assert not failures, "\n".join(failures)
            assert {"Calls stored per interval by site ($direction)", "Cost stored in range by site ($direction)",
                    "PostgreSQL", "Rejected payloads in range", "Site lag (receipt to central commit)"} <= shown
        finally:
            await asyncio.to_thread(prom.stop)


def test_a_batch_of_revisions_only_leaves_the_sites_lag_as_its_live_lines_left_it() -> None:
    """A site's re-rate of last month sends those old lines again (revisions): a batch of them alone says nothing
    of how far behind the site is, and must not raise its lag to a month (an alert on the lag would fire)."""
    from smdrd.central_metrics import CentralMetrics
    from smdrd.store.postgres.central import CentralBatch

    m = CentralMetrics()
    now = int(time.time() * 1_000_000)
    live = {"site": "north", "source": "pbx", "received_at": now - 2_000_000, "id": 9}
    m.stored(CentralBatch(1, 0, 0, {("north", "pbx"): (1, 0)}), [live], 0.01)
    lag = m.site_lag["north"]
    assert 2 <= lag < 60
    month_old = {"site": "north", "source": "pbx", "received_at": now - 30 * 86_400_000_000, "id": 1,
                 "revision": 5}
    m.stored(CentralBatch(0, 0, 0, revised_by={"north": 1}), [month_old], 0.01)
    assert m.site_lag["north"] == lag
    m.stored(CentralBatch(0, 0, 1, known_by={"north": 1}), [{**month_old, "revision": 0}], 0.01)
    assert m.site_lag["north"] > 29 * 86_400, "a first publication (revision 0) still measures the lag"
