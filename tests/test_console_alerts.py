"""The alerts inbox over HTTP, against a real daemon process: filters, acknowledging (who and when) and snoozing
(until a time) from the page's forms and the JSON API, both audited; resolved alerts visible; a manager sees and
acts on their departments' alerts only; a viewer and the service token read but change nothing; a bad snooze
time is named, never a 500."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smdrd.journal import Alert
from smdrd.store import open_store
from smdrd.store.api import AlertFilter
from smdrd.store.sqlite.schema import connect
from tests.test_console_calls import SERVICE_TOKEN, session
from tests.test_console_http import CSRF, Site, sign_in

__all__ = ["session"]  # the fixture



def alert(alert_id: str, rule: str, severity: str, department: str | None, reason: str) -> Alert:
    now = int(time.time() * 1_000_000)
    payload = {"id": alert_id, "rule": rule, "state": "resolved" if alert_id.endswith(":resolved") else "raised",
               "severity": severity, "reason": reason, "department": department, "extension": "201"}
    return Alert(alert_id, rule, severity, now, json.dumps(payload))


ALERTS = [
    alert("high_risk:test:1", "high_risk", "critical", "Sales", "a call to a high-risk destination"),
    alert("cost:test:2", "cost", "warning", "Support", "a call over 5.00 EUR"),
    alert("source_down:pbx:3", "source_down", "critical", None, "source pbx is down"),
    alert("source_down:pbx:3:resolved", "source_down", "critical", None, "source pbx is up again"),
]


async def store_alerts(db: Path | str, alerts: list[Alert] = ALERTS) -> None:
    """``alerts`` into the outbox of ``db``: a SQLite file (created and migrated if need be) or a PostgreSQL URL."""
    if isinstance(db, Path):
        connect(str(db)).close()
    outbox = open_store(db).outbox()
    await outbox.open()
    try:
        await outbox.insert(alerts)
    finally:
        await outbox.close()


@pytest.fixture
def site(console_site: Site) -> Site:
    return console_site


async def listed(session: aiohttp.ClientSession, site: Site, **params: Any) -> dict[str, str]:
    async with session.get(f"{site.base}/api/alerts", params=params) as r:
        assert r.status == 200, await r.text()
        # only this module's alerts: other tests on the same daemon raise their own
        return {a["id"]: a["state"] for a in (await r.json())["alerts"] if ":browser:" not in a["id"]}


async def test_an_admin_acknowledges_and_snoozes_and_each_change_is_audited(
        site: Site, session: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, session, "alice")).status == 303
    assert await listed(session, site) == {"high_risk:test:1": "open", "cost:test:2": "open"}, "open by default"
    assert await listed(session, site, state="resolved") == {"source_down:pbx:3": "resolved"}
    async with session.get(f"{site.base}/alerts") as page:
        text = await page.text()
        assert page.status == 200 and "a call to a high-risk destination" in text and "▲ critical" in text
    token = CSRF.search(text)
    assert token is not None
    form = {"csrf": token.group(1), "id": "high_risk:test:1", "next": "/alerts?state=any"}
    async with session.post(f"{site.base}/alerts/acknowledge", data=form, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/alerts?state=any"
    for bad in ({"until": "tomorrow"}, {"until": "2001-01-01T08:00"}, {"minutes": "9999999"}, {}):
        snooze = {"csrf": token.group(1), "id": "cost:test:2", **bad}
        async with session.post(f"{site.base}/alerts/snooze", data=snooze) as r:
            assert r.status == 400, bad
            assert 'id="action-error"' in await r.text()
    snooze = {"csrf": token.group(1), "id": "cost:test:2", "minutes": "60"}
    async with session.post(f"{site.base}/alerts/snooze", data=snooze, allow_redirects=False) as r:
        assert r.status == 303
    states = await listed(session, site, state="any")
    assert states == {"high_risk:test:1": "acknowledged", "cost:test:2": "snoozed", "source_down:pbx:3": "resolved"}
    async with session.get(f"{site.base}/alerts", params={"state": "acknowledged"}) as page:
        assert re.search(r"acknowledged by alice at \d{4}-\d\d-\d\d \d\d:\d\d", await page.text())
    # The JSON API, with the session's CSRF header: wake it up by snoozing until a given time instead.
    async with session.post(f"{site.base}/api/alerts/cost:test:2/snooze", json={"until": "2099-01-01T08:00"},
                            headers={"X-CSRF-Token": token.group(1)}) as r:
        assert r.status == 400 and "at most 90 days" in (await r.json())["error"]
    async with session.post(f"{site.base}/api/alerts/nope/acknowledge", headers={"X-CSRF-Token": token.group(1)}) as r:
        assert r.status == 404
    async with session.post(f"{site.base}/api/alerts/source_down:pbx:3/acknowledge",
                            headers={"X-CSRF-Token": token.group(1)}) as r:
        assert r.status == 409, "a resolved alert needs nobody"
    async with session.get(f"{site.base}/audit") as audit:
        assert audit.status == 200 and "alert.acknowledge" in await audit.text()
    accounts = open_store(site.daemon.db).accounts()
    try:
        changes = [(e.action, e.target, e.actor) for e in accounts.entries(1000)]
    finally:
        accounts.close()
    assert changes.count(("alert.acknowledge", "high_risk:test:1", "alice")) == 1
    assert changes.count(("alert.snooze", "cost:test:2", "alice")) == 1
    inbox = open_store(site.daemon.db).alert_inbox()
    try:
        acked = inbox.alert("high_risk:test:1", int(time.time()))
        assert [a.alert_id for a in inbox.alerts(AlertFilter(int(time.time()), states=("snoozed",)))
                if ":browser:" not in a.alert_id] == ["cost:test:2"]
    finally:
        inbox.close()
    assert acked is not None and acked.state == "acknowledged" and acked.acked_by == "alice"
    assert abs(int(acked.acked_at or 0) - time.time()) < 600


async def test_a_manager_acts_on_their_departments_alerts_and_a_viewer_reads(
        site: Site, session: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, session, "maria")).status == 303
    states = await listed(session, site, state="any")
    assert set(states) == {"high_risk:test:1"}, "Sales only: not Support's, not the site's source alert"
    async with session.get(f"{site.base}/alerts") as page:
        token = CSRF.search(await page.text())
    assert token is not None
    async with session.post(f"{site.base}/alerts/acknowledge",
                            data={"csrf": token.group(1), "id": "cost:test:2"}) as r:
        assert r.status == 404, "another department's alert does not exist for them"
    async with session.post(f"{site.base}/api/alerts/high_risk:test:1/snooze", json={"minutes": 30},
                            headers={"X-CSRF-Token": token.group(1)}) as r:
        assert r.status == 200 and (await r.json())["snoozed_by"] == "maria"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
        assert (await sign_in(site, viewer, "victor")).status == 303
        async with viewer.get(f"{site.base}/alerts", params={"state": "any"}) as page:
            text = await page.text()
            assert page.status == 200 and "cost:test:2" in text and "Acknowledge</button>" not in text
        found = CSRF.search(text)
        assert found is not None
        async with viewer.post(f"{site.base}/alerts/acknowledge", data={"csrf": found.group(1),
                                                                         "id": "cost:test:2"}) as r:
            assert r.status == 403
        async with viewer.get(f"{site.base}/alerts", params={"from": "2026-02-30"}) as page:
            assert page.status == 400 and 'id="e-from"' in await page.text()
    bearer = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    async with aiohttp.ClientSession(headers=bearer) as service:
        async with service.get(f"{site.base}/api/alerts") as r:
            assert r.status == 200
        async with service.post(f"{site.base}/api/alerts/cost:test:2/acknowledge") as r:
            assert r.status == 403, "the service token reads"
