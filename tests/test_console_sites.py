"""The console over a central store (issue 17, point 3): a daemon on a real PostgreSQL that three sites'
journals were stored into by the central writer (`smdrd.store.postgres.central.CentralWriter`, as ``smdrd
central`` stores what the sites publish), read over HTTP: the reports page offers the sites and filters by one,
the overview compares them (and shows each site's extension 201 apart), the call search filters by site and
shows each call's. A one-site SQLite console offers no site filter or column."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from smdrd.journal import PARSED, JournalEntry, RatedCall
from smdrd.mqtt_payloads import encode, journal_message, read_journal_message
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.store.postgres.central import CentralWriter
from smdrd.testing import DaemonProcess, PostgresServer, daemon_config, free_port, write_entries
from tests.test_console_http import SERVICE_TOKEN

TZ = ZoneInfo("Europe/Warsaw")  # the daemon's (`daemon_config`)
BEARER = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
#: site name -> calls it stores today, each from extension 201 (every site has one), each costing 1.00 more.
SITES = {"north": 2, "south": 3, "west": 4}


def today_entries(site: int, n: int) -> list[JournalEntry]:
    """``n`` rated outbound calls of today (local), in the past, from extension 201 (named "Person <site>" by
    the site's PBX): site ``site``'s costs."""
    now = datetime.now(TZ)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for i in range(n):
        start = (midnight + (now - midnight) * (i + 1) / (n + 2)).replace(microsecond=0)
        raw = f"site {site} call {i}".encode()
        record = CallRecord(format="avaya-ipo", start=start, duration=60 * (i + 1), direction=Direction.OUTBOUND,
                            extension="201", number=f"22{site}00000{i}", answered=True,
                            extra={"party1_device": "E201", "party1_name": f"Person {site}"})
        rating = Rating(f"+4822{site}00000{i}", "national", "pl", "22", Decimal(i + 1), "PLN", "PL")
        out.append(JournalEntry("pbx", "10.0.0.9", int(start.timestamp() * 1_000_000), "avaya-ipo", raw, PARSED,
                                None, (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


async def publish_into(url: str, folder: Path) -> None:
    """Each site's journal written to its own SQLite file, read as its publisher reads it, sent through the
    payload codec and stored by the central writer."""
    writer = CentralWriter(url)
    await writer.open()
    try:
        for k, (name, n) in enumerate(SITES.items(), 1):
            db = folder / f"{name}.db"
            await write_entries(db, today_entries(k, n), site=name)
            feed = open_store(db).call_feed()
            await feed.open()
            try:
                entries = await feed.entries(0, 100)
            finally:
                await feed.close()
            await writer.store([read_journal_message(encode(journal_message(name, e.fields))) for e in entries])
    finally:
        await writer.close()


class Console:
    def __init__(self, daemon: DaemonProcess, port: int, url: str = "") -> None:
        self.daemon = daemon
        self.base = f"http://127.0.0.1:{port}"
        self.url = url

    async def get(self, path: str, **params: str) -> tuple[int, str]:
        async with aiohttp.ClientSession(headers=BEARER) as client, client.get(self.base + path,
                                                                                params=params) as r:
            return r.status, await r.text()


def started(folder: Path, url: str = "", **sections: object) -> Iterator[Console]:
    port = free_port()
    daemon = DaemonProcess(folder, daemon_config(folder, [], http={"listen": f"127.0.0.1:{port}",
                                                                   "token": SERVICE_TOKEN}, **sections))
    try:
        daemon.start(within=60)
        yield Console(daemon, port, url)
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()


@pytest.fixture(scope="module")
def central(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp("console-sites")
    url = postgres.create_database("smdrd_console_sites")
    yield from started(folder, url, database={"url": url}, tariff={"currency": "PLN"})


def cells(html: str, table: str) -> list[list[str]]:
    """The text of each body row's cells of the table with id ``table``."""
    found = re.search(rf'<table id="{table}".*?</table>', html, re.S)
    assert found is not None, f"no table {table}"
    body = found.group(0).split("<tbody>", 1)[-1]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


async def test_the_reports_page_offers_the_sites_and_reports_one(central: Console,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    await publish_into(central.url, tmp_path_factory.mktemp("site-journals"))
    status, html = await central.get("/reports")  # the first read of the site names, after they were stored
    assert status == 200, html
    menu = re.search(r'<select id="site".*?</select>', html, re.S)
    assert menu is not None and re.findall(r'<option value="(\w*)"', menu.group(0)) == ["", "north", "south",
                                                                                        "west"]
    status, html = await central.get("/reports", kind="extensions", site="south")
    assert status == 200, html
    assert re.search(r'<option value="south" selected>', html)
    rows = cells(html, "report")
    assert rows and rows[0][0] == "201" and "3" in rows[0]  # south's three calls, not the nine of all sites
    assert rows[0][1] == "Person 2"  # south's 201, named as south's PBX names it
    assert "site=south" in html  # the downloads and the JSON link keep the site
    status, html = await central.get("/reports", kind="extensions")
    assert status == 200, html
    # Every site's extensions: 201 of each site on a row of its own, with its site and its name there.
    assert [(r[0], r[1], r[2], r[4]) for r in cells(html, "report")[:3]] == [
        ("201", "north", "Person 1", "2"), ("201", "south", "Person 2", "3"), ("201", "west", "Person 3", "4")]
    status, html = await central.get("/reports", kind="extensions", site="east")
    assert status == 400 and 'id="e-site"' in html
    status, body = await central.get("/api/reports")
    assert status == 200 and '"sites": ["north", "south", "west"]' in body
    status, body = await central.get("/api/reports/extensions", site="west")
    assert status == 200 and '"calls": 4' in body


async def test_the_overview_compares_the_sites(central: Console) -> None:
    """After the reports test stored the sites' calls: one row a site, today's and this month's figures."""
    status, html = await central.get("/")
    assert status == 200, html
    found = re.search(r'<table id="ov-sites">.*?</table>', html, re.S)
    assert found is not None
    rows = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", found.group(0).split("<tbody>", 1)[1], re.S)]
    costs = {name: sum(range(1, n + 1)) for name, n in SITES.items()}
    assert 'id="currency-note"' not in html  # every site prices in PLN, the console's currency
    assert [r[:2] for r in rows] == [[name, str(n)] for name, n in SITES.items()]
    for row, (name, n) in zip(rows, SITES.items(), strict=True):
        assert row[3] == row[6] == f"{costs[name]}.00 PLN" and row[4] == str(n), row
        assert row[7].startswith(datetime.now(TZ).strftime("%Y-")), row
    # Every site has an extension 201: three phones, three top extensions (by cost), each with its site, its
    # name there and its own figures; not one 201 of nine calls.
    expected = [[f"201 Person {k}", name, "Unassigned", str(n), f"{costs[name]}.00 PLN"]
                for k, (name, n) in sorted(enumerate(SITES.items(), 1), key=lambda kn: -costs[kn[1][0]])]
    for period in ("today", "month"):
        table = re.search(rf'<table id="ov-extensions-{period}">.*?</table>', html, re.S)
        assert table is not None and '<th scope="col">Site</th>' in table.group(0)
        assert [[r[0], r[1], r[2], r[3], r[5]] for r in cells(html, f"ov-extensions-{period}")] == expected


async def test_the_call_search_filters_by_site_and_shows_each_calls_site(central: Console) -> None:
    status, html = await central.get("/calls")
    assert status == 200 and 'id="col-site"' in html and 'id="f-site"' in html
    assert sorted(re.findall(r'<td class="site">(\w+)</td>', html)) == sorted(
        name for name, n in SITES.items() for _ in range(n))
    status, html = await central.get("/calls", site="north")
    assert status == 200 and re.findall(r'<td class="site">(\w+)</td>', html) == ["north", "north"]
    assert '<option value="north" selected>' in html
    call = re.search(r'<a href="(/calls/\d+)" class="call-link">', html)
    assert call is not None
    status, html = await central.get(call.group(1))
    assert status == 200 and '<dd id="site">north</dd>' in html
    status, body = await central.get("/api/calls", site="west")
    assert status == 200 and body.count('"site": "west"') == 4 and '"site": "north"' not in body
    assert body.count('"name": "Person 3"') == 4  # west's 201 by west's name


async def test_the_alerts_inbox_filters_by_site(central: Console) -> None:
    """Alerts of several sites in the central store's inbox (their payload names the site): a Site menu, and
    ``site=`` on the page and on ``/api/alerts``."""
    from tests.test_alerts_sites import ALERTS
    from tests.test_console_alerts import store_alerts

    await store_alerts(central.url, ALERTS)
    status, html = await central.get("/alerts", state="any")
    assert status == 200, html
    menu = re.search(r'<select id="f-site".*?</select>', html, re.S)
    assert menu is not None and re.findall(r'<option value="(\w*)"', menu.group(0)) == ["", "north", "south",
                                                                                         "west"]
    status, html = await central.get("/alerts", state="any", site="north")
    assert status == 200 and sorted(re.findall(r'data-alert="([^"]+)"', html)) == ["cost:n1", "cost:n2"]
    assert '<option value="north" selected>' in html and "site north" in html
    status, body = await central.get("/api/alerts", state="any", site="west")
    assert status == 200 and [(a["id"], a["site"]) for a in json.loads(body)["alerts"]] == [("down:w1", "west")]
    status, body = await central.get("/api/alerts", site="no\x01site")
    assert status == 400 and "site" in json.loads(body)["fields"]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A box's own SQLite journal with calls of its one site."""
    folder = tmp_path_factory.mktemp("console-one-site")
    asyncio.run(write_entries(folder / "smdrd.db", today_entries(1, 2), site="hq"))
    yield from started(folder, site={"name": "hq"})


async def test_a_one_site_console_offers_no_site_filter_or_column(single: Console) -> None:
    for path in ("/reports", "/", "/calls", "/alerts"):
        status, html = await single.get(path)
        assert status == 200, (path, html)
        assert 'name="site"' not in html and 'id="ov-sites"' not in html and ">Site<" not in html, path
        if path == "/":  # the top extensions: extension, department and figures, no site
            # its calls were priced in PLN, its tariff's currency is another: summed as one, and said so
            assert re.search(r'id="currency-note"[^>]*>Some costs this month were priced in PLN: they are added '
                             r'here as if in [A-Z]{3}\.<', html), html
            assert [r[:2] for r in cells(html, "ov-extensions-today")] == [["201 Person 1", "Unassigned"]]
            assert all(len(r) == 5 for r in cells(html, "ov-extensions-month"))
