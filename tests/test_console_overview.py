"""The console's overview (``/``) over HTTP against a real daemon process: today's and this month's figures, budgets
with their month-end forecast, a manager's departments only, and the live event stream that follows committed calls
(a call sent to the daemon's PBX port shows up in the stream), bounded in subscribers and ended at the daemon's stop.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from smdrd.accounts import hash_password
from smdrd.config import Settings
from smdrd.console.overview import MAX_PER_PERSON, MAX_SUBSCRIBERS, QUEUE_SIZE, _Subscriber
from smdrd.journal import Alert
from smdrd.store import open_store
from smdrd.store.api import Actor
from smdrd.testing import DaemonProcess, daemon_config, free_port, running_daemon, tcp_server_source
from tests.test_console_http import PASSWORDS, Site, sign_in
from tests.test_reports import Call, write_calls

ZONE = ZoneInfo("Europe/Warsaw")
DEPARTMENTS = [{"name": "Sales", "extensions": ["200-209"], "budget": "300"},
               {"name": "Support", "extensions": ["300-309"], "budget": "2000"}]
TARIFF = {"currency": "EUR", "rules": [{"name": "pl", "prefixes": ["48"], "rate": "0.60", "billing_unit": 60}]}
SCRIPT = "<script>alert(1)</script>"
#: the shared token the office's wallboards read the overview with.
WALLBOARD = "wallboard-token-0123456789abcdef"


def today_at(hour: int, minute: int = 0) -> str:
    now = datetime.now(ZONE)
    return now.replace(hour=min(hour, now.hour), minute=minute, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")


def avaya_line(extension: str, number: str, seconds: int) -> bytes:
    """An Avaya IP Office SMDR line of an outbound call starting now (site time)."""
    start = datetime.now(ZONE).strftime("%Y/%m/%d %H:%M:%S")
    talk = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return (f"{start},{talk},3,{extension},O,{number},{number},,0,1000001,0,E{extension},Extn{extension},T9005,"
            f"Line 5.0,0,0,,,,,,,,,,,,,").encode() + b"\r\n"


def add_users(db: Path, *users: tuple[str, str, tuple[str, ...]]) -> None:
    """Users as ``smdrd user add`` makes them, without a process each (the CLI itself is tested elsewhere)."""
    accounts = open_store(db).accounts()
    try:
        for name, role, departments in users:
            accounts.add_user(name, role, hash_password(PASSWORDS[name]), departments, at=int(time.time()),
                              actor=Actor("test"))
    finally:
        accounts.close()


ALERTS = [("budget_forecast", "Sales", "department Sales is on course to spend 420.00 EUR this month"),
          ("long_call", "Support", "outbound call of 75 min between extension 301 and +48221234567"),
          ("source_down", None, "source pbx has been disconnected for 12 min")]


async def raise_alerts(db: Path) -> None:
    """An open alert of each department and an operational one, as the alert engine writes them."""
    outbox = open_store(db).outbox()
    await outbox.open()
    now = int(time.time() * 1_000_000)
    try:
        await outbox.insert(Alert(f"{rule}:test", rule, "warning", now, json.dumps(
            {"id": f"{rule}:test", "rule": rule, "severity": "warning", "reason": reason, "department": dept}))
                            for rule, dept, reason in ALERTS)
    finally:
        await outbox.close()


class Overview(Site):
    pbx: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overview]:
    folder = tmp_path_factory.mktemp("overview")
    db = folder / "smdrd.db"
    asyncio.run(write_calls(db, [
        Call(today_at(0), "201", "outbound", "national", 125, "120.00"),
        Call(today_at(0, 5), "202", "outbound", "international", 3725, "9.50", e164="+442071234567"),
        Call(today_at(0, 10), "301", "outbound", "mobile", 61, "0.70", e164="+48600123456"),
        Call(today_at(0, 15), "301", "inbound", "national", 40, "0"),
        Call(today_at(0, 20), "777", "outbound", "national", 10, "0.10", number=SCRIPT),
    ]))
    add_users(db, ("alice", "admin", ()), ("victor", "viewer", ()), ("maria", "manager", ("Sales",)))
    asyncio.run(raise_alerts(db))
    directory = open_store(db).directory()
    try:
        directory.learn_names([("201", "Anna <b>Nowak</b>")], at=int(time.time()))
    finally:
        directory.close()
    port, pbx = free_port(), free_port()
    daemon = DaemonProcess(folder, daemon_config(folder, [tcp_server_source("pbx", pbx)],
                                                 http={"listen": f"127.0.0.1:{port}", "max_connections": 80,
                                                       "token": WALLBOARD},
                                                 departments=DEPARTMENTS, tariff=TARIFF))
    try:
        running = Overview(daemon.start(within=60), port)
        running.pbx = pbx
        yield running
    finally:
        daemon.kill()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def page(site: Site, browser: aiohttp.ClientSession, name: str) -> str:
    assert (await sign_in(site, browser, name)).status == 303
    async with browser.get(f"{site.base}/") as response:
        assert response.status == 200
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        return await response.text()


async def test_an_admin_sees_today_and_the_month_by_class_with_budgets_and_sources(
        site: Overview, browser: aiohttp.ClientSession) -> None:
    html = await page(site, browser, "alice")
    assert "<h1>Overview</h1>" in html
    assert "130.30 EUR" in html, "today's cost, every class, with its currency"
    assert "1:02:05" in html and "0:02:05" in html, "talk time as h:mm:ss"
    assert "international" in html and "mobile" in html
    assert "Sales" in html and "Support" in html and "300.00 EUR" in html, "both departments and a budget"
    assert SCRIPT not in html
    assert "pbx" in html and "tcp-server" in html, "the source's state"
    assert '201 <span class="note ov-name">Anna &lt;b&gt;Nowak&lt;/b&gt;</span>' in html, "a name beside its number"
    for _, _, reason in ALERTS:
        assert reason in html, "every open alert"
    assert "/console/static/overview/overview.js" in html
    async with browser.get(f"{site.base}/console/static/overview/overview.js") as script:
        assert script.status == 200 and "EventSource" in await script.text()


async def test_sales_overspend_shows_as_over_budget_or_forecast_over_budget(
        site: Overview, browser: aiohttp.ClientSession) -> None:
    html = await page(site, browser, "victor")
    budgets = html[html.index('id="ov-budgets"'):]
    budgets = budgets[:budgets.index("</table>")]
    sales = budgets[budgets.index("Sales"):]
    sales = sales[:sales.index("</tr>")]
    assert "129.50 EUR" in sales and "300.00 EUR" in sales and "43 %" in sales
    # 129.50 spent today: unless today is the month's last working day, the forecast exceeds 300.
    assert any(state in sales for state in ("forecast over budget", "on track", "too early to forecast"))


async def test_a_manager_sees_only_their_departments(site: Overview, browser: aiohttp.ClientSession) -> None:
    html = await page(site, browser, "maria")
    assert "Sales" in html and "Support" not in html
    assert "129.50 EUR" in html and "130.30 EUR" not in html, "only Sales' calls"
    assert ">301<" not in html and ">201 <span" in html
    assert ALERTS[0][2] in html, "their department's alert"
    assert ALERTS[1][2] not in html and ALERTS[2][2] not in html, "not another's, nor the site's operational ones"
    async with browser.get(f"{site.base}/overview/events") as response:  # the live figures are scoped too
        first = json.loads((await anext(events(response)))["data"])["html"]
    assert "Sales" in first and "Support" not in first and ALERTS[1][2] not in first


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    """Server-sent events as dicts (heartbeat comments skipped)."""
    event: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value.lstrip(" ")


async def test_the_event_stream_follows_committed_calls(site: Overview, browser: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, browser, "victor")).status == 303
    async with browser.get(f"{site.base}/overview/events") as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        stream = events(response)
        first = json.loads((await anext(stream))["data"])
        assert 'class="ov-calls">5<' in first["html"].replace("\n", "")  # today: 5 calls
        with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
            pbx.sendall(avaya_line("203", "221234567", 95))
        async with asyncio.timeout(20):
            while True:
                update = json.loads((await anext(stream))["data"])
                if 'class="ov-calls">6<' in update["html"].replace("\n", ""):
                    break
        assert "0:01:35" in update["html"] or "0:03:40" in update["html"]


async def test_streams_are_bounded_and_a_signed_out_client_gets_none(
        site: Overview, browser: aiohttp.ClientSession) -> None:
    async with browser.get(f"{site.base}/overview/events", allow_redirects=False) as anonymous:
        assert anonymous.status == 401
    assert (await sign_in(site, browser, "victor")).status == 303
    opened = []
    try:
        for _ in range(MAX_PER_PERSON + 1):
            response = await browser.get(f"{site.base}/overview/events")
            opened.append(response)
            if response.status != 200:
                break
            await response.content.readuntil(b"\n\n")  # subscribed
        # A stream whose client left is noticed at its next write (a heartbeat): the last test's may still count.
        assert opened[-1].status == 429 and "Retry-After" in opened[-1].headers
        assert len(opened) - 1 >= MAX_PER_PERSON - 1
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
            assert (await sign_in(site, other, "alice")).status == 303
            async with other.get(f"{site.base}/overview/events") as theirs:
                assert theirs.status == 200, "one person's tabs leave the others their streams"
    finally:
        for response in opened:
            response.close()
    assert MAX_PER_PERSON < MAX_SUBSCRIBERS
    # Wallboards on the shared token are not one person: a ninth is let in (the whole site's bound applies).
    boards = []
    try:
        for _ in range(MAX_PER_PERSON + 1):
            response = await browser.get(f"{site.base}/overview/events",
                                         headers={"Authorization": f"Bearer {WALLBOARD}"})
            boards.append(response)
            assert response.status == 200, len(boards)
            await response.content.readuntil(b"\n\n")
    finally:
        for response in boards:
            response.close()


async def test_an_alert_acknowledged_leaves_the_open_alerts_at_once(site: Overview,
                                                                     browser: aiohttp.ClientSession) -> None:
    """The overview's open alerts follow an acknowledgement made in the inbox within its one-second push, not
    after its 60-second cache (a quiet office commits no call to refresh it). After the tests that list that
    alert: it closes it."""
    reason = ALERTS[2][2]
    assert reason in await page(site, browser, "alice")
    async with browser.get(f"{site.base}/alerts") as inbox:
        token = re.search(r'name="csrf" value="([^"]+)"', await inbox.text())
    assert token is not None
    async with browser.post(f"{site.base}/api/alerts/source_down:test/acknowledge",
                            headers={"X-CSRF-Token": token.group(1)}) as r:
        assert r.status == 200
    for _ in range(50):  # a few pushes' worth; the cache alone would keep it for a minute
        async with browser.get(f"{site.base}/") as response:
            if reason not in await response.text():
                return
        await asyncio.sleep(0.2)
    raise AssertionError("the acknowledged alert is still listed as open")


async def test_the_daemon_stops_cleanly_with_a_stream_open(site: Overview, browser: aiohttp.ClientSession) -> None:
    """Last in this module: it stops the module's daemon."""
    assert (await sign_in(site, browser, "victor")).status == 303
    async with browser.get(f"{site.base}/overview/events") as response:
        await response.content.readuntil(b"\n\n")
        await site.daemon.aterminate()
        async with asyncio.timeout(10):
            await response.content.read()  # the stream ends (EOF): the daemon closed it on its way out
    site.daemon.assert_clean_log()


async def test_a_client_that_does_not_keep_up_is_dropped_not_buffered(tmp_path: Path) -> None:
    """In the daemon's own loop: a stream whose queue is full when an update comes is ended (its queue cleared
    and closed), the others keep theirs; at the daemon's stop every stream is ended."""
    settings = Settings.model_validate(daemon_config(tmp_path, http={"listen": "127.0.0.1:0"}))
    async with running_daemon(settings, features=("health", "reports", "console")) as daemon:
        assert daemon.http is not None
        found = [r.handler for r in daemon.http.app.router.routes() if r.resource is not None
                 and r.resource.canonical == "/overview/events"]
        overview = found[0].__self__  # type: ignore[attr-defined]
        slow, quick = _Subscriber(None), _Subscriber(None)
        overview.subscribers.update({slow, quick})
        for i in range(QUEUE_SIZE):
            overview._offer(slow, f"update {i}")
        overview._offer(quick, "update 0")
        overview._offer(slow, "one too many")
        assert slow not in overview.subscribers and overview.dropped == 1
        assert slow.queue.qsize() == 1 and slow.queue.get_nowait() is None, "cleared, then told to end"
        assert quick in overview.subscribers and quick.queue.get_nowait() == "update 0"
    assert quick.queue.get_nowait() is None, "the daemon's stop ends every stream"

