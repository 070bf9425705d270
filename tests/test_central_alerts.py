"""The central alerts inbox (issue 17, point 3): sites' alerts reach ``smdrd central`` through the shipped bridge
(real Mosquitto brokers) and are kept once each in the central PostgreSQL inbox, under ``<site>:<id>`` (two sites'
identical calls raise alerts of the same id), where the inbox lists them by site and a resolved event resolves
its own site's alert only."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from smdrd.config import Settings
from smdrd.journal import Alert
from smdrd.store import open_store
from smdrd.store.api import AlertFilter
from smdrd.testing import Broker
from tests.test_central import (
    central_broker,
    central_settings,
    central_url,
    collecting,
    publishing,
    site_broker,
    until,
)
from tests.test_console_alerts import store_alerts

__all__ = ["central_broker", "central_url", "site_broker"]  # the fixtures


def alert(site: str, alert_id: str, *, rule: str = "cost", resolves: str | None = None) -> Alert:
    """An alert as `smdrd.alerts.engine` writes it into the site's outbox."""
    now = time.time()
    payload = {"id": alert_id, "rule": rule, "state": "resolved" if resolves else "raised", "resolves": resolves,
               "severity": "warning", "reason": f"{rule} at {site}", "site": site, "department": "Sales",
               "raised_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")}
    return Alert(alert_id, rule, "warning", int(now * 1_000_000), json.dumps(payload))


def inbox_states(url: str, **kw: object) -> dict[str, str]:
    inbox = open_store(url).alert_inbox()
    try:
        return {a.alert_id: a.state for a in inbox.alerts(AlertFilter(int(time.time()), **kw))}  # type: ignore[arg-type]
    finally:
        inbox.close()


async def test_sites_alerts_reach_the_central_inbox_once_each_by_site(
        tmp_path: Path, site_broker: Broker, central_broker: Broker, central_url: str) -> None:
    sites = {
        # the same alert id at both sites (identical calls), and one resolved at north only
        "north": [alert("north", "cost:avaya-ipo:1"), alert("north", "down:pbx:2", rule="source_down"),
                  alert("north", "down:pbx:2:resolved", rule="source_down", resolves="down:pbx:2")],
        "south": [alert("south", "cost:avaya-ipo:1"), alert("south", "down:pbx:2", rule="source_down")],
    }
    settings: Settings = central_settings(central_url, central_broker)
    async with collecting(settings) as collector:
        for name, alerts in sites.items():
            db = tmp_path / f"{name}.db"
            await store_alerts(db, alerts)
            async with publishing(db, site_broker, name) as pub:
                assert await until(lambda: pub.stats.alerts_published == len(alerts)), pub.stats  # noqa: B023
        assert await until(lambda: collector.stats.alerts == 5, 30), collector.stats
        counted = collector.metrics.registry.get_sample_value
        assert counted("smdrd_central_alerts_stored_total", {"site": "north", "rule": "source_down",
                                                             "severity": "warning"}) == 2
        assert counted("smdrd_central_alerts_stored_total", {"site": "south", "rule": "cost",
                                                             "severity": "warning"}) == 1
        assert inbox_states(central_url, states=()) == {
            "north:cost:avaya-ipo:1": "open", "north:down:pbx:2": "resolved",
            "south:cost:avaya-ipo:1": "open", "south:down:pbx:2": "open"}
        assert inbox_states(central_url, sites=("south",)) == {
            "south:cost:avaya-ipo:1": "open", "south:down:pbx:2": "open"}
        inbox = open_store(central_url).alert_inbox()
        try:
            assert inbox.sites() == ["north", "south"]
            found = inbox.alert("north:cost:avaya-ipo:1", int(time.time()))
            assert found is not None and found.payload["site"] == "north" and found.payload["id"] == "cost:avaya-ipo:1"
        finally:
            inbox.close()

        # The same alerts again (a site broker's redelivery), and one that is no alert: nothing added.
        async with aiomqtt.Client(central_broker.host, central_broker.port) as client:
            for a in sites["south"]:
                await client.publish(f"smdrd/alert/{a.rule}", a.payload.encode(), qos=1)
            await client.publish("smdrd/alert/cost", b'{"id": "x"}', qos=1)
        assert await until(lambda: collector.stats.rejected == 1), collector.stats
        assert collector.stats.alerts == 5 and counted("smdrd_central_alerts_stored_total", {
            "site": "south", "rule": "cost", "severity": "warning"}) == 1
        assert len(inbox_states(central_url, states=())) == 4
