"""Rates in the console (issue 15, points 3 and 4), against real daemon processes over HTTP: an admin adds,
edits, reorders and deletes rules with mistakes shown beside their field; a call sent over TCP right after is
priced by the new rule, also inside the pipeline worker (the live swap); the number tester follows the order in
first-match mode; the JSON API does the same with a personal token; viewers, managers and the service token
only read; every change is audited with its before and after; with ``source = "files"`` the pages are
read-only and say so."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from smdrd.config import Settings
from smdrd.store import open_store
from smdrd.store.api import AuditEntry
from smdrd.testing import DaemonProcess, daemon_config, free_port, running_daemon, tcp_server_source
from tests.test_console_browser import at, shows
from tests.test_console_browser import sign_in as browser_sign_in
from tests.test_console_http import SERVICE_TOKEN, Site, page_csrf, sign_in, status
from tests.test_console_overview import add_users, avaya_line
from tests.test_reports_browser import MISSING, browser

TARIFF = {"source": "database", "currency": "PLN", "mode": "first-match"}
YEASTAR = ("Name,Match Prefix,Number Length,Rate,Billable Unit(s),Initial Time(s),Initial Cost\r\n"
           "PL mobile,486,11,0.2,60,0,0\r\n"
           "PL,48,,0.05,60,120,0.3\r\n")
TEST = "/rates/test?number=221234567&duration=125&time=2026-03-02T10:00"
TOKEN = re.compile(r"smdrd_pat_[A-Za-z0-9_-]+")


__all__ = ["browser"]  # the fixture, shared with the report page's test


class Rates(Site):
    pbx: int


def jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=30))


def running(folder: Path, tariff: Mapping[str, object], **database: object) -> Iterator[Rates]:
    add_users(folder / "smdrd.db", ("alice", "admin", ()), ("victor", "viewer", ()), ("maria", "manager", ("Sales",)))
    port, pbx = free_port(), free_port()
    config = daemon_config(folder, [tcp_server_source("pbx", pbx)], database=database, tariff=tariff,
                           http={"listen": f"127.0.0.1:{port}", "token": SERVICE_TOKEN, "max_upload_mb": 2})
    with DaemonProcess(folder, config).serving() as daemon:
        site = Rates(daemon, port)
        site.pbx = pbx
        yield site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rates]:
    # The pipeline worker parses and rates: the console's save must reach the worker's rater too.
    yield from running(tmp_path_factory.mktemp("rates"), TARIFF, parse_in_worker=True)


def audit(site: Site, action: str) -> list[AuditEntry]:
    accounts = open_store(site.daemon.db).accounts()
    try:
        return [e for e in accounts.entries(200) if e.action == action]
    finally:
        accounts.close()


async def text_of(browser: aiohttp.ClientSession, url: str) -> str:
    async with browser.get(url) as response:
        assert response.status == 200, url
        return await response.text()


async def post(browser: aiohttp.ClientSession, url: str, form: dict[str, str]) -> tuple[int, str]:
    async with browser.post(url, data=form, allow_redirects=False) as response:
        return response.status, await response.text()


async def sent(site: Rates, number: str, seconds: int, columns: str) -> tuple[Any, ...]:
    """Send a call over TCP as the PBX would; ``columns`` of the call once it is stored."""
    with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
        pbx.sendall(avaya_line("201", number, seconds))
    async with asyncio.timeout(20):
        while True:
            conn = sqlite3.connect(site.daemon.db)
            try:
                row = conn.execute(f"SELECT {columns} FROM calls WHERE number = ? AND duration = ?",
                                   (number, seconds)).fetchone()
            finally:
                conn.close()
            if row is not None:
                return tuple(row)
            await asyncio.sleep(0.1)


async def priced(site: Rates, number: str, seconds: int) -> tuple[str, int]:
    """The rule and cost (micro-units) a call sent now is stored with."""
    rule, cost = await sent(site, number, seconds, "rule, cost_micros")
    return str(rule), int(cost)


async def test_an_admin_edits_rules_and_the_next_call_and_the_tester_follow(site: Rates) -> None:
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        page = await text_of(admin, f"{site.base}/rates")
        assert "version 0" in page and "No rules" in page
        csrf = await page_csrf(site, admin, "/rates")
        rule = {"csrf": csrf, "version": "0", "name": "PL fixed", "prefixes": "48", "rate": "0.60",
                "billing_unit": "60", "initial_time": "0", "directions": "outbound"}
        # Mistakes are answered beside their field, and nothing is saved.
        code, text = await post(admin, f"{site.base}/rates", {**rule, "rate": "abc", "prefixes": "4X"})
        assert code == 400
        assert 'id="rule-rate-error"' in text and 'id="rule-prefixes-error"' in text and "expected an amount" in text
        code, text = await post(admin, f"{site.base}/rates", {**rule, "band": "peak"})
        assert code == 400 and 'id="rule-band-error"' in text
        assert "version 0" in await text_of(admin, f"{site.base}/rates")
        # Added: version 1, swapped into the running daemon at once.
        code, _ = await post(admin, f"{site.base}/rates", rule)
        assert code == 303
        assert await priced(site, "221234567", 125) == ("PL fixed", 1_800_000)  # 3 started minutes x 0.60
        tested = await text_of(admin, site.base + TEST)
        assert 'id="answer-rule">PL fixed (prefix 48)' in tested and "1.80 PLN" in tested
        assert "+48221234567" in tested and "0:02:05" in tested
        # A Warsaw rule after it: first-match keeps the first; moved up, the tester (and the next call) follow.
        code, _ = await post(admin, f"{site.base}/rates", {**rule, "version": "1", "name": "Warsaw",
                                                           "prefixes": "4822", "rate": "0.10"})
        assert code == 303
        assert 'id="answer-rule">PL fixed' in await text_of(admin, site.base + TEST)
        code, text = await post(admin, f"{site.base}/rates/2/move", {"csrf": csrf, "version": "1",
                                                                      "direction": "up"})
        assert code == 409 and "reload the page" in text  # made on version 1; the tariff is at version 2
        code, _ = await post(admin, f"{site.base}/rates/2/move", {"csrf": csrf, "version": "2", "direction": "up"})
        assert code == 303
        tested = await text_of(admin, site.base + TEST)
        assert 'id="answer-rule">Warsaw (prefix 4822)' in tested and "0.30 PLN" in tested
        assert await priced(site, "221234567", 126) == ("Warsaw", 300_000)
        # Edit, then delete.
        code, _ = await post(admin, f"{site.base}/rates/1", {**rule, "version": "3", "name": "Warsaw",
                                                            "prefixes": "4822", "rate": "0.20"})
        assert code == 303
        assert "0.60 PLN" in await text_of(admin, site.base + TEST)
        code, _ = await post(admin, f"{site.base}/rates/1/delete", {"csrf": csrf, "version": "4"})
        assert code == 303
        page = await text_of(admin, f"{site.base}/rates")
        assert "version 5" in page and "Warsaw" not in page.split('id="versions"')[0]
    added = audit(site, "tariff.rule.add")
    assert [e.after["rule"]["name"] for e in reversed(added) if e.after] == ["PL fixed", "Warsaw"]
    assert added[0].actor == "alice" and added[0].before is None
    moved = audit(site, "tariff.rule.move")[0]
    assert (moved.before, moved.after) == ({"position": 2}, {"position": 1, "version": 3})
    edited = audit(site, "tariff.rule.edit")[0]
    assert edited.before is not None and edited.after is not None
    assert (edited.before["rule"]["rate"], edited.after["rule"]["rate"]) == ("0.10", "0.20")
    deleted = audit(site, "tariff.rule.delete")[0]
    assert deleted.before is not None and deleted.before["rule"]["name"] == "Warsaw" and deleted.after == {"version": 5}
    # Which version priced the calls received when: the daemon notes each version it puts in force.
    in_force = [e.after for e in reversed(audit(site, "tariff.in_force")) if e.actor == "daemon"]
    assert [a["version"] for a in in_force if a] == [0, 1, 2, 3, 4, 5]
    assert all(a and len(a["digest"]) == 16 for a in in_force)


async def test_viewers_managers_and_the_service_token_read_but_never_change(site: Rates) -> None:
    for name in ("victor", "maria"):
        async with jar() as browser:
            assert (await sign_in(site, browser, name)).status == 303
            page = await text_of(browser, f"{site.base}/rates")
            assert 'id="read-only"' in page and 'id="add-rule"' not in page and 'id="import-deck"' not in page
            assert "answer-cost" in await text_of(browser, site.base + TEST)
            csrf = await page_csrf(site, browser, "/rates")
            for path in ("/rates", "/rates/1", "/rates/1/delete", "/rates/1/move", "/rates/mode", "/rates/import"):
                code, _ = await post(browser, site.base + path, {"csrf": csrf, "prefixes": "1", "rate": "1"})
                assert code == 403, (name, path)
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    async with jar() as script:
        async with script.get(f"{site.base}/api/tariff", headers=service) as r:
            assert r.status == 200 and (await r.json())["source"] == "database"
        async with script.post(f"{site.base}/api/tariff/rules", headers=service, json={"prefixes": ["1"]}) as r:
            assert r.status == 403
        async with script.delete(f"{site.base}/api/tariff/rules/1", headers=service) as r:
            assert r.status == 403
    async with jar() as admin:  # an admin's form without its CSRF token
        assert (await sign_in(site, admin, "alice")).status == 303
        code, _ = await post(admin, f"{site.base}/rates", {"prefixes": "1", "rate": "1"})
        assert code == 403


async def test_the_json_api_with_a_personal_token(site: Rates) -> None:
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        csrf = await page_csrf(site, admin, "/account/tokens")
        async with admin.post(f"{site.base}/account/tokens", data={"csrf": csrf, "name": "rates"}) as r:
            token = TOKEN.search(await r.text())
        assert token is not None
        site.secrets.add(token.group(0))
    auth = {"Authorization": f"Bearer {token.group(0)}"}
    async with jar() as api:
        async with api.get(f"{site.base}/api/tariff", headers=auth) as r:
            current = (await r.json())["version"]
        async with api.post(f"{site.base}/api/tariff/rules", headers=auth,
                            json={"prefixes": ["44"], "rate": 0.5, "bogus": 1}) as r:
            assert r.status == 400 and "bogus" in (await r.json())["errors"]
        async with api.post(f"{site.base}/api/tariff/rules", headers=auth, json={"prefixes": ["44"], "rate": 0.5}) as r:
            assert r.status == 400 and "quote" in (await r.json())["errors"]["rate"]
        async with api.post(f"{site.base}/api/tariff/rules", headers=auth,
                            json={"name": "UK", "prefixes": ["44"], "rate": "0.5", "version": current}) as r:
            assert r.status == 201
            made = await r.json()
        assert made["version"] == current + 1
        async with api.put(f"{site.base}/api/tariff/rules/{made['rules']}", headers=auth,
                           json={"prefixes": ["44"], "rate": "0.4", "version": current}) as r:
            assert r.status == 409 and "version" in (await r.json())["errors"]
        async with api.put(f"{site.base}/api/tariff/rules/99", headers=auth, json={"prefixes": ["44"]}) as r:
            assert r.status == 404
        async with api.get(f"{site.base}/api/tariff/test", headers=auth,
                           params={"number": "0044207946000", "duration": "0:01:01"}) as r:
            answer = await r.json()
        assert answer["rule"] == "UK" and answer["cost"] == "1.00" and answer["currency"] == "PLN"
        async with api.get(f"{site.base}/api/tariff/test", headers=auth, params={"number": "1", "duration": "x"}) as r:
            assert r.status == 400 and "duration" in (await r.json())["errors"]
        # A Yeastar deck replaces the rules; exported again, it is the same file.
        async with api.post(f"{site.base}/api/tariff/import", headers=auth, data=YEASTAR.encode(),
                            params={"name": "yeastar.csv"}) as r:
            assert r.status == 200, await r.text()
        async with api.get(f"{site.base}/api/tariff/export.csv", headers=auth, params={"format": "yeastar"}) as r:
            assert await r.text() == YEASTAR
        async with api.get(f"{site.base}/api/tariff", headers=auth) as r:
            tariff = await r.json()
        assert [(x["position"], x["name"]) for x in tariff["rules"]] == [(1, "PL"), (2, "PL mobile")]
        async with api.get(f"{site.base}/api/tariff", headers=auth, params={"offset": "1", "limit": "5"}) as r:
            page = await r.json()
        assert (page["total"], [x["position"] for x in page["rules"]]) == (2, [2])
        big = "name,prefix,rate\r\n" + "".join(f"r{i},{4900000 + i},0.01\r\n" for i in range(20_000))  # > 64 KiB
        async with api.post(f"{site.base}/api/tariff/import", headers=auth, data=big.encode(),
                            params={"append": "1"}) as r:
            assert r.status == 200 and (await r.json())["rules"] == 20_002
        async with api.post(f"{site.base}/api/tariff/import", headers=auth, data=b"#" * (2 * 1024 * 1024 + 1),
                            params={"append": "1"}) as r:  # past [http] max_upload_mb (2 MiB here)
            assert r.status == 413 and "larger than 2 MiB" in (await r.json())["errors"]["deck"]
        async with api.post(f"{site.base}/api/tariff/import", headers=auth,
                            data=b"Name,Match Prefix,Rate\r\nok,48,1\r\nbad,48,zero\r\n") as r:
            assert r.status == 400 and "deck.csv:3: Rate: expected an amount" in (await r.json())["errors"]["deck"]
        async with api.get(f"{site.base}/api/tariff/versions", headers=auth) as r:
            versions = (await r.json())["versions"]
        assert versions[0]["rules"] == 20_002 and versions[0]["actor"] == "alice"
        async with api.post(f"{site.base}/api/tariff/import", headers=auth, data=YEASTAR.encode()) as r:
            assert r.status == 200 and (await r.json())["rules"] == 2  # back to the two rules
        async with api.get(f"{site.base}/api/tariff/export.csv", headers=auth,
                           params={"version": str(versions[1]["version"]), "format": "yeastar"}) as r:
            assert await r.text() == YEASTAR  # an earlier version, as it was
        assert await status(api, f"{site.base}/api/tariff/export.csv?version=999", headers=auth) == 404
        for bad in ("version=abc", "version=-1", "version=1e3", "format=excel"):
            async with api.get(f"{site.base}/api/tariff/export.csv?{bad}", headers=auth) as r:
                assert r.status == 400 and bad.split("=")[0] in await r.text(), bad


def yeastar_deck(rules: int) -> str:
    """A Yeastar call-rate export of ``rules`` rules (as a real company's deck: a rule per destination)."""
    rows = "".join(f"Berlin {i:05d} mobile and fixed,4930{i:05d},,0.{i % 90 + 10},60,0,0\r\n"
                   for i in range(rules))
    return YEASTAR.splitlines(keepends=True)[0] + rows + "".join(YEASTAR.splitlines(keepends=True)[1:])


async def import_form(browser: aiohttp.ClientSession, site: Site, deck: bytes, csrf: str | None,
                      version: str) -> tuple[int, str]:
    form = aiohttp.FormData()  # the page's fields, in its order
    if csrf is not None:
        form.add_field("csrf", csrf)
    form.add_field("version", version)
    form.add_field("deck", deck, filename="yeastar-rates.csv", content_type="text/csv")
    async with browser.post(f"{site.base}/rates/import", data=form, allow_redirects=False) as response:
        return response.status, await response.text()


async def test_a_deck_larger_than_a_form_is_imported_through_the_page(site: Rates) -> None:
    """A Yeastar deck of 1 MiB and more (thousands of rules) goes through the page's form, up to
    [http] max_upload_mb (2 MiB here); without the form's CSRF token it is refused and nothing changes."""
    deck = yeastar_deck(24_000).encode()
    assert len(deck) > 1024 * 1024
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        page = await text_of(admin, f"{site.base}/rates")
        csrf = await page_csrf(site, admin, "/rates")
        version = re.search(r'name="version" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
        assert "up to 2 MiB" in page
        assert (await import_form(admin, site, deck, None, version))[0] == 403
        code, _ = await import_form(admin, site, deck, "not-the-token", version)
        assert code == 403
        async with admin.get(f"{site.base}/api/tariff", params={"limit": "1"}) as r:
            assert (await r.json())["version"] == int(version)
        code, text = await import_form(admin, site, deck, csrf, version)
        assert code == 303, text
        async with admin.get(f"{site.base}/api/tariff", params={"limit": "1"}) as r:
            tariff = await r.json()
        assert tariff["version"] == int(version) + 1 and tariff["total"] == 24_002
        tested = await text_of(admin, f"{site.base}/rates/test?number=00493023456123&duration=60")
        assert 'id="answer-rule">Berlin 23456 mobile and fixed' in tested
        code, text = await import_form(admin, site, YEASTAR.encode(), csrf, str(tariff["version"]))
        assert code == 303, text  # back to the two rules the next tests start from


async def test_a_tariff_from_the_files_is_shown_read_only(tmp_path: Path) -> None:
    add_users(tmp_path / "smdrd.db", ("alice", "admin", ()))
    port = free_port()
    deck = tmp_path / "deck.csv"
    deck.write_text("name,prefix,rate\nde-deck,49,0.30\n")
    config = daemon_config(tmp_path, http={"listen": f"127.0.0.1:{port}"},
                           tariff={"currency": "EUR", "rules": [{"name": "pl", "prefixes": ["48"], "rate": "0.60"}],
                                   "decks": [str(deck)]})
    settings = Settings.model_validate(config)
    site = Site(DaemonProcess(tmp_path, config), port)  # in this process: only its address is used
    async with running_daemon(settings), jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        page = await text_of(admin, f"{site.base}/rates")
        assert 'source = "files"' in page and 'id="add-rule"' not in page and ">pl<" in page
        assert ">de-deck<" in page  # a deck's rules too: every rule that prices calls
        assert "1.80 EUR" in await text_of(admin, site.base + TEST)
        csrf = await page_csrf(site, admin, "/rates")
        code, text = await post(admin, f"{site.base}/rates", {"csrf": csrf, "prefixes": "44", "rate": "1"})
        assert code == 409 and "comes from the files" in text
        assert await status(admin, f"{site.base}/rates/export.csv") == 200


async def stored_call(site: Rates, number: str, seconds: int) -> tuple[int, str | None]:
    """The id and the tariff version a call sent now is stored with."""
    call_id, version = await sent(site, number, seconds, "id, tariff_version")
    return int(call_id), version


def tariff_of(page: str) -> str:
    found = re.search(r'<dd id="tariff-version">(.*?)</dd>', page)
    assert found is not None
    return found.group(1)


async def test_each_call_names_the_tariff_version_that_priced_it_until_a_re_rate_moves_it(site: Rates) -> None:
    """A call priced by version v1, the tariff saved as v2 (swapped into the pipeline worker), a new call
    priced by v2: each call's page names its own version, linked to the rates history; the re-rate preview
    says the old call moves from v1 to v2, and after the re-rate its page says v2."""
    today = datetime.now(ZoneInfo("Europe/Warsaw")).date().isoformat()
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        csrf = await page_csrf(site, admin, "/rates")
        rule = {"csrf": csrf, "name": "Gdansk", "prefixes": "4858", "rate": "0.10", "position": "1",
                "billing_unit": "60", "initial_time": "0", "directions": "outbound"}
        assert (await post(admin, f"{site.base}/rates", rule))[0] == 303
        async with admin.get(f"{site.base}/api/tariff", params={"limit": "1"}) as r:
            v1 = (await r.json())["version"]
        old, version = await stored_call(site, "583456789", 71)
        assert version == str(v1)
        assert (await post(admin, f"{site.base}/rates/1", {**rule, "rate": "0.20", "version": str(v1)}))[0] == 303
        v2 = v1 + 1
        new, version = await stored_call(site, "583456789", 72)
        assert version == str(v2)
        old_page = await text_of(admin, f"{site.base}/calls/{old}")
        assert tariff_of(old_page) == f'<a href="/rates#version-{v1}">version {v1}</a>'
        assert tariff_of(await text_of(admin, f"{site.base}/calls/{new}")) == \
            f'<a href="/rates#version-{v2}">version {v2}</a>'
        assert f'id="version-{v1}"' in await text_of(admin, f"{site.base}/rates")  # where the link leads
        preview = await text_of(admin, f"{site.base}/rates/rerate?from={today}&to={today}")
        assert f"calls priced by version {v1} would be priced by version {v2}" in preview
        csrf = await page_csrf(site, admin, f"/rates/rerate?from={today}&to={today}")
        code, _ = await post(admin, f"{site.base}/rates/rerate", {"csrf": csrf, "from": today, "to": today})
        assert code == 303
        assert tariff_of(await text_of(admin, f"{site.base}/calls/{old}")) == \
            f'<a href="/rates#version-{v2}">version {v2}</a>'
        after = await text_of(admin, f"{site.base}/rates/rerate?from={today}&to={today}")
        assert 'id="rerate-versions"' not in after and 'id="apply-rerate"' not in after  # nothing left to move
    entry = audit(site, "tariff.rerate")[0]
    assert entry.after is not None and {"from": str(v1), "to": str(v2), "calls": 1} in entry.after["version_changes"]


async def test_a_period_is_re_rated_with_the_tariff_in_force_after_a_preview(site: Rates) -> None:
    today = datetime.now(ZoneInfo("Europe/Warsaw")).date().isoformat()
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        code, _ = await post(admin, f"{site.base}/rates", {"csrf": await page_csrf(site, admin, "/rates"),
                                                            "prefixes": "48", "rate": "2", "position": "1",
                                                            "directions": "outbound"})
        assert code == 303
        assert 'id="offer-rerate"' in await text_of(admin, f"{site.base}/rates?done=added")
        before = await priced(site, "221234567", 126)  # stored before: another price
        async with admin.get(f"{site.base}/rates/rerate", params={"from": today, "to": "2000-01-01"}) as r:
            assert r.status == 400 and 'id="r-to-error"' in await r.text()
        page = await text_of(admin, f"{site.base}/rates/rerate?from={today}&to={today}")
        changed = int(re.search(r'id="rerate-changed">(\d+)<', page).group(1))  # type: ignore[union-attr]
        assert changed >= 1 and 'id="apply-rerate"' in page and 'id="rerate-classes"' in page
        csrf = await page_csrf(site, admin, f"/rates/rerate?from={today}&to={today}")
        code, _ = await post(admin, f"{site.base}/rates/rerate", {"csrf": csrf, "from": today, "to": today})
        assert code == 303
        after = await text_of(admin, f"{site.base}/rates/rerate?from={today}&to={today}&done=rerated")
        assert 'id="rerate-changed">0<' in after and 'id="done"' in after
    conn = sqlite3.connect(site.daemon.db)
    try:
        row = conn.execute("SELECT rule, cost_micros FROM calls WHERE number = ? AND duration = 126",
                           ("221234567",)).fetchone()
    finally:
        conn.close()
    assert row == ("+48", 6_000_000) != before  # 3 started minutes x 2
    entry = audit(site, "tariff.rerate")[0]
    assert entry.actor == "alice" and entry.after is not None and entry.after["changed"] == changed
    async with jar() as viewer:
        assert (await sign_in(site, viewer, "victor")).status == 303
        assert await status(viewer, f"{site.base}/rates/rerate?from={today}&to={today}") == 403


# ---- the same in a real headless Chromium (skipped only when it is not installed and CI is unset) ----

in_chromium = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                 reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")
MARKUP_DECK = ("Name,Match Prefix,Number Length,Rate,Billable Unit(s),Initial Time(s),Initial Cost\r\n"
               "PL mobile,486,11,0.2,60,0,0\r\n"
               "PL <b>fixed</b>,48,,0.05,60,120,0.3\r\n")
BROWSER_TEST = "/rates/test?number=611234567&duration=0:02:05&time=2026-03-02T10:00"


def settled(driver: Any, read: Any) -> Any:
    """``read(driver)`` once the page has settled on a value that is not falsy (a click's navigation may still
    be replacing the page, and an element read meanwhile goes stale)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)) \
        .until(read)


def add_rule(driver: Any, site: Rates, name: str, prefix: str, rate: str, *, position: str) -> None:
    driver.get(f"{site.base}/rates")
    driver.find_element("id", "rule-name").send_keys(name)
    driver.find_element("id", "rule-prefixes").send_keys(prefix)
    driver.find_element("id", "rule-rate").send_keys(rate)
    driver.find_element("id", "rule-position").send_keys(position)
    driver.find_element("id", "add-rule").click()
    assert settled(driver, lambda d: "Rule added." in d.find_element("id", "done").text)


def answer(driver: Any, site: Rates) -> str:
    driver.get(site.base + BROWSER_TEST)
    return str(driver.find_element("id", "answer-rule").text)


@in_chromium
def test_in_chromium_add_a_rule_test_a_number_and_see_a_new_call_priced_by_it(site: Rates, browser: Any) -> None:
    browser_sign_in(browser, "alice", f"{site.base}/rates")
    assert at(browser, f"{site.base}/rates")
    # A mistake is shown beside its field.
    browser.find_element("id", "rule-prefixes").send_keys("4861")
    browser.find_element("id", "rule-rate").send_keys("abc")
    browser.find_element("id", "add-rule").click()
    assert shows(browser, "expected an amount")
    assert settled(browser, lambda d: d.find_element("id", "rule-rate").get_attribute("aria-invalid")) == "true"
    add_rule(browser, site, "Poznan", "4861", "0.60", position="1")
    assert answer(browser, site) == "Poznan (prefix 4861)"
    assert browser.find_element("id", "answer-cost").text == "1.80 PLN"
    assert "3 x 0.60 per 60 s" in browser.find_element("id", "answer-arithmetic").text
    with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
        pbx.sendall(avaya_line("201", "611234567", 125))
    for _ in range(100):
        browser.get(f"{site.base}/calls")
        rows = browser.find_elements("css selector", "#calls tbody tr")
        if any("611234567" in r.text and "1.80 PLN" in r.text for r in rows):
            break
    else:
        raise AssertionError("the call never showed, priced by the new rule")


@in_chromium
def test_in_chromium_moving_a_rule_up_changes_the_testers_answer(site: Rates, browser: Any) -> None:
    add_rule(browser, site, "Poznan centre", "486112", "0.10", position="2")
    assert answer(browser, site) == "Poznan (prefix 4861)"  # first match: the earlier rule
    browser.get(f"{site.base}/rates")
    browser.find_element("id", "up-2").click()
    assert settled(browser, lambda d: "Rule moved." in d.find_element("id", "done").text)
    assert answer(browser, site) == "Poznan centre (prefix 486112)"
    assert browser.find_element("id", "answer-cost").text == "0.30 PLN"


@in_chromium
def test_in_chromium_import_and_export_a_yeastar_deck(site: Rates, browser: Any, tmp_path: Path) -> None:
    big = tmp_path / "company-rates.csv"
    big.write_bytes(yeastar_deck(24_000).encode())  # 1 MiB and more: more than a plain form may carry
    browser.get(f"{site.base}/rates")
    browser.find_element("id", "deck").send_keys(str(big))
    browser.find_element("id", "import-deck").click()
    assert settled(browser, lambda d: "Deck imported." in d.find_element("id", "done").text)
    assert "24002 rules" in browser.page_source
    deck = tmp_path / "yeastar-rates.csv"
    deck.write_bytes(MARKUP_DECK.encode())
    browser.get(f"{site.base}/rates")
    browser.find_element("id", "deck").send_keys(str(deck))
    browser.find_element("id", "import-deck").click()
    assert settled(browser, lambda d: "Deck imported." in d.find_element("id", "done").text)
    names = settled(browser, lambda d: [e.text for e in d.find_elements("css selector", "#rate-rules .rule-name")])
    assert names == ["PL <b>fixed</b>", "PL mobile"]  # Yeastar's file lists its rules last first; markup as text
    assert answer(browser, site) == "PL <b>fixed</b> (prefix 48)"
    browser.get(f"{site.base}/rates")
    link = browser.find_element("id", "export-yeastar").get_attribute("href")
    cookie = browser.get_cookie("smdrd_session")
    request = urllib.request.Request(link, headers={"Cookie": f"smdrd_session={cookie['value']}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # the download the link gives
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.read().decode() == MARKUP_DECK
