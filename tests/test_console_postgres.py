"""The console on PostgreSQL (issue 17, point 1): a real daemon whose ``[database] url`` names a real PostgreSQL
database, its tariff and directory kept there, walked over HTTP as a browser would (session cookie, the CSRF
token of each form): sign in as a user made by ``smdrd user add --database-url``, add a rate rule and test a
number, add and edit a department, a call sent by the PBX found by the call search and shown on its page,
acknowledge an alert, and read each change in the audit log; a PBX log uploaded is imported into PostgreSQL; a
period re-rated after a tariff change, previewed first. Every page an admin opens answers 200."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import psycopg
import pytest

from smdrd.accounts import hash_password
from smdrd.journal import Alert
from smdrd.store import open_store
from smdrd.store.api import Actor
from smdrd.testing import DaemonProcess, PostgresServer, daemon_config, free_port, tcp_server_source
from tests.test_console_http import PASSWORDS, SERVICE_TOKEN, Site, page_csrf, sign_in
from tests.test_console_overview import avaya_line
from tests.test_console_rates import jar, post, text_of
from tests.test_console_upload import finished, upload
from tests.test_rebuild_postgres import rollups_equal_the_calls

#: a line's number and duration that no other test of the module sends.
NUMBER, SECONDS = "221234567", 125


class PgSite(Site):
    url: str
    pbx: int


def add_user_from_the_shell(url: str, name: str, role: str) -> None:
    done = subprocess.run([sys.executable, "-m", "smdrd", "user", "add", name, "--role", role, "--password-stdin",
                           "--database-url", url], input=PASSWORDS[name] + "\n", capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


async def raise_alert(url: str) -> None:
    payload = {"id": "high_risk:pg:1", "rule": "high_risk", "state": "raised", "severity": "critical",
               "reason": "a call to a high-risk destination", "department": "Sales", "extension": "201"}
    outbox = open_store(url).outbox()
    await outbox.open()
    try:
        await outbox.insert([Alert("high_risk:pg:1", "high_risk", "critical", int(time.time() * 1_000_000),
                                   json.dumps(payload))])
    finally:
        await outbox.close()


@pytest.fixture(scope="module")
def site(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgSite]:
    folder = tmp_path_factory.mktemp("console-pg")
    url = postgres.create_database("smdrd_console")
    add_user_from_the_shell(url, "alice", "admin")
    accounts = open_store(url).accounts()
    try:
        for name, role, departments in (("victor", "viewer", []), ("maria", "manager", ["Sales"])):
            accounts.add_user(name, role, hash_password(PASSWORDS[name]), departments, at=int(time.time()),
                              actor=Actor("test"))
    finally:
        accounts.close()
    asyncio.run(raise_alert(url))
    port, pbx = free_port(), free_port()
    config = daemon_config(folder, [tcp_server_source("pbx", pbx)], database={"url": url},
                           tariff={"source": "database", "currency": "PLN", "mode": "first-match"},
                           directory={"source": "database"},
                           http={"listen": f"127.0.0.1:{port}", "token": SERVICE_TOKEN})
    daemon = DaemonProcess(folder, config)
    try:
        daemon.start(within=60)  # its first start migrates a new database, on a shared machine
        running = PgSite(daemon, port)
        running.url, running.pbx = url, pbx
        yield running
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()
    assert not (folder / "smdrd.db").exists(), "nothing was written to a SQLite file"


async def found_call(site: PgSite, browser: aiohttp.ClientSession) -> dict[str, Any]:
    """The call the PBX sent, once the call search finds it."""
    async with asyncio.timeout(30):
        while True:
            async with browser.get(f"{site.base}/api/calls", params={"number": NUMBER}) as response:
                assert response.status == 200
                calls = (await response.json())["calls"]
            if calls:
                return dict(calls[0])
            await asyncio.sleep(0.1)


async def test_rates_directory_calls_alerts_and_the_audit_log(site: PgSite) -> None:
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        csrf = await page_csrf(site, admin, "/rates")
        # A rate rule: saved as version 1 in PostgreSQL and swapped in; the tester prices by it.
        rule = {"csrf": csrf, "version": "0", "name": "PL fixed", "prefixes": "48", "rate": "0.60",
                "billing_unit": "60", "initial_time": "0", "directions": "outbound"}
        code, text = await post(admin, f"{site.base}/rates", {**rule, "rate": "abc"})
        assert code == 400 and 'id="rule-rate-error"' in text
        code, _ = await post(admin, f"{site.base}/rates", rule)
        assert code == 303
        tested = await text_of(admin, f"{site.base}/rates/test?number={NUMBER}&duration={SECONDS}"
                                      "&time=2026-03-02T10:00")
        assert 'id="answer-rule">PL fixed (prefix 48)' in tested and "1.80 PLN" in tested
        # A department added, then edited (its budget).
        code, _ = await post(admin, f"{site.base}/directory/departments",
                             {"csrf": csrf, "name": "Sales", "parent": "", "budget": "250"})
        assert code == 303
        code, _ = await post(admin, f"{site.base}/directory/departments/Sales",
                             {"csrf": csrf, "name": "Sales", "parent": "", "budget": "300.50"})
        assert code == 303
        assert "300.50 PLN" in await text_of(admin, f"{site.base}/directory/departments")
        # A call from the PBX, priced by the new rule: in the call search, and on its own page with its line.
        with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
            pbx.sendall(avaya_line("201", NUMBER, SECONDS))
        call = await found_call(site, admin)
        assert call["cost"] == "1.80" and call["extension"] == "201"
        page = await text_of(admin, f"{site.base}/calls/{call['id']}")
        assert "PL fixed" in page and f",{NUMBER}," in page, "the rule that priced it and its raw line"
        # The alert acknowledged from the inbox's form.
        inbox = await text_of(admin, f"{site.base}/alerts")
        assert "high_risk:pg:1" in inbox
        code, _ = await post(admin, f"{site.base}/alerts/acknowledge",
                             {"csrf": csrf, "id": "high_risk:pg:1", "next": "/alerts?state=any"})
        assert code == 303
        async with admin.get(f"{site.base}/api/alerts", params={"state": "acknowledged"}) as response:
            acked = (await response.json())["alerts"]
        assert [(a["id"], a["acked_by"]) for a in acked] == [("high_risk:pg:1", "alice")]
        # Every change in the audit log, newest first, with who made it.
        audit = await text_of(admin, f"{site.base}/audit")
        for action in ("alert.acknowledge", "department.change", "department.add", "tariff.rule.add", "user.add"):
            assert action in audit, action
        assert audit.index("alert.acknowledge") < audit.index("department.add") < audit.index("user.add")
    accounts = open_store(site.url).accounts()
    try:
        changes = [(e.action, e.actor) for e in accounts.entries(50)]
    finally:
        accounts.close()
    assert ("department.change", "alice") in changes and ("alert.acknowledge", "alice") in changes
    assert any(action == "user.add" and actor.startswith("cli:") for action, actor in changes)


async def test_an_uploaded_log_is_imported_into_postgresql(site: PgSite) -> None:
    lines = b"".join(avaya_line("202", f"22765432{i}", 60 + i) for i in range(3))
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        response = await upload(admin, site, lines, fmt="avaya-ipo")
        assert response.status == 303, await response.text()
        job = await finished(admin, site, response.headers["Location"])
    assert job["state"] == "done" and job["calls"] == 3, job
    with psycopg.connect(site.url) as conn:
        # journalled as the site's only source (pbx), as a saved log of its PBX is
        row = conn.execute("SELECT count(*) FROM calls WHERE extension = '202' AND source = 'pbx'").fetchone()
    assert row is not None and row[0] == 3


async def test_a_period_is_re_rated_in_postgresql_after_its_preview(site: PgSite) -> None:
    """A call priced by the tariff in force, a rule saved before it (a new version): the re-rate page previews
    the move from one version to the next, re-rates on the form's post, and PostgreSQL's calls and rollups
    follow."""
    today = datetime.now(ZoneInfo("Europe/Warsaw")).date().isoformat()
    number, seconds = "229876543", 95
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
            pbx.sendall(avaya_line("205", number, seconds))
        async with asyncio.timeout(30):
            while True:
                if await calls_of(site, admin, number):
                    break
                await asyncio.sleep(0.1)
        async with admin.get(f"{site.base}/api/tariff", params={"limit": "1"}) as r:
            old = (await r.json())["version"]
        csrf = await page_csrf(site, admin, "/rates")
        code, _ = await post(admin, f"{site.base}/rates", {
            "csrf": csrf, "version": str(old), "name": "Warsaw", "prefixes": "4822", "rate": "2", "position": "1",
            "billing_unit": "60", "initial_time": "0", "directions": "outbound"})
        assert code == 303
        preview = await text_of(admin, f"{site.base}/rates/rerate?from={today}&to={today}")
        assert f"calls priced by version {old} would be priced by version {old + 1}" in preview
        assert int(re.search(r'id="rerate-changed">(\d+)<', preview).group(1)) >= 1  # type: ignore[union-attr]
        csrf = await page_csrf(site, admin, f"/rates/rerate?from={today}&to={today}")
        code, _ = await post(admin, f"{site.base}/rates/rerate", {"csrf": csrf, "from": today, "to": today})
        assert code == 303
        after = await text_of(admin, f"{site.base}/rates/rerate?from={today}&to={today}&done=rerated")
        assert 'id="rerate-changed">0<' in after and 'id="rerate-versions"' not in after
    with psycopg.connect(site.url) as conn:
        rows = conn.execute("SELECT rule, cost_micros, tariff_version FROM calls WHERE number = %s",
                            (number,)).fetchall()
    assert rows == [("Warsaw", 4_000_000, str(old + 1))]  # 2 started minutes x 2
    rollups_equal_the_calls(site.url)


async def calls_of(site: PgSite, browser: aiohttp.ClientSession, number: str) -> list[dict[str, Any]]:
    async with browser.get(f"{site.base}/api/calls", params={"number": number}) as response:
        assert response.status == 200
        return list((await response.json())["calls"])


@pytest.mark.parametrize("path", ["/", "/reports", "/calls", "/alerts?state=any", "/rates", "/rates/rerate",
                                  "/directory/departments", "/directory/extensions", "/users", "/users/victor",
                                  "/audit", "/schedules", "/upload", "/account/tokens", "/api/tariff/versions",
                                  "/api/directory/departments", "/api/users"])
async def test_every_page_opens_for_an_admin(site: PgSite, path: str) -> None:
    async with jar() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        async with admin.get(site.base + path) as response:
            body = await response.text()  # read whole: a page left unread is a client gone mid-answer
        assert response.status == 200, (path, body[:2000])


async def test_a_manager_searches_only_their_departments_calls(site: PgSite) -> None:
    async with jar() as manager:
        assert (await sign_in(site, manager, "maria")).status == 303
        async with manager.get(f"{site.base}/api/calls", params={"number": "2"}) as response:
            assert response.status == 200, await response.text()
            calls = (await response.json())["calls"]
    assert calls == [], "no extension is in Sales: a manager of Sales sees no call"


async def test_a_viewer_reads_but_cannot_change(site: PgSite) -> None:
    async with jar() as viewer:
        assert (await sign_in(site, viewer, "victor")).status == 303
        csrf = await page_csrf(site, viewer, "/calls")
        code, _ = await post(viewer, f"{site.base}/directory/departments",
                             {"csrf": csrf, "name": "Viewers", "parent": "", "budget": ""})
        assert code == 403
        assert "Viewers" not in await text_of(viewer, f"{site.base}/directory/departments")


def test_the_user_commands_work_on_postgresql(site: PgSite, capsys: pytest.CaptureFixture[str]) -> None:
    from smdrd.cli import main

    assert main(["user", "list", "--database-url", site.url]) == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and "victor" in listed
    assert main(["user", "list", "--database-url", str(Path("not-a-url"))]) != 0
    assert "--database-url" in capsys.readouterr().err
