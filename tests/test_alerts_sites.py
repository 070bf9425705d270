"""The alerts inbox's site filter (issue 17, point 3) on both stores, a real SQLite file and a real PostgreSQL:
an alert's site is its payload's ``site`` (`smdrd.alerts.engine`), and the filter composes with the others."""

from __future__ import annotations

import json
import time
from pathlib import Path

from smdrd.journal import Alert
from smdrd.store import open_store
from smdrd.store.api import AlertFilter
from tests.test_console_alerts import store_alerts


def alert(alert_id: str, site: str | None, department: str | None = None, rule: str = "cost") -> Alert:
    payload = {"id": alert_id, "rule": rule, "severity": "warning", "reason": "r", "department": department}
    if site is not None:
        payload["site"] = site
    return Alert(alert_id, rule, "warning", int(time.time() * 1_000_000), json.dumps(payload))


ALERTS = [alert("cost:n1", "north", "Sales"), alert("cost:n2", "north"), alert("cost:s1", "south", "Sales"),
          alert("down:w1", "west", rule="source_down"), alert("cost:none", None),
          alert("cost:n1:resolved", "north", "Sales")]


async def test_the_inbox_lists_one_sites_alerts(any_database: Path | str) -> None:
    await store_alerts(any_database, ALERTS)
    inbox = open_store(any_database).alert_inbox()
    now = int(time.time())
    try:
        def ids(**kw: object) -> list[str]:
            return sorted(a.alert_id for a in inbox.alerts(AlertFilter(now, **kw)))  # type: ignore[arg-type]

        assert inbox.sites() == ["north", "south", "west"], "the sites the alerts name, once each, sorted"
        assert ids() == ["cost:n1", "cost:n2", "cost:none", "cost:s1", "down:w1"]
        assert ids(sites=("north",)) == ["cost:n1", "cost:n2"], "the resolved event is not an alert"
        assert ids(sites=("north", "west")) == ["cost:n1", "cost:n2", "down:w1"]
        assert ids(sites=("east",)) == []
        assert ids(sites=("north",), states=("resolved",)) == ["cost:n1"]
        assert ids(sites=("north",), states=("open",)) == ["cost:n2"]
        assert ids(sites=("south", "north"), departments=("Sales",)) == ["cost:n1", "cost:s1"]
        assert ids(sites=("west",), rules=("cost",)) == []
    finally:
        inbox.close()
