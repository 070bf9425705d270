"""The directory in the console (issue 15, point 5), against real daemon processes over HTTP: an admin adds,
renames and deletes departments with mistakes shown beside their field, names an extension and moves it from a
date; the daemon's reports follow at once; a CSV upload with a mistake names its line and column; the JSON API
does the same; managers see only their departments, viewers and the service token only read; every change is
audited with its before and after; with ``source = "files"`` the pages are read-only and say so."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smdrd.store import open_store
from smdrd.store.api import Actor
from smdrd.testing import DaemonProcess, config_toml, daemon_config, free_port, tcp_server_source
from tests.test_console_http import SERVICE_TOKEN, Site, page_csrf, sign_in
from tests.test_console_overview import add_users, avaya_line
from tests.test_console_rates import audit, jar, post, text_of

IMPORT = ("extension,name,department,parent,budget,valid_from,valid_until\r\n"
          ",,Company,,1000,,\r\n"
          "201,Alice Smith,Sales,Company,250,,\r\n"
          "202,,Sales,,,,\r\n"
          "301,Bob Jones,Support,Company,,,\r\n")


def big_directory(extensions: int) -> str:
    """A directory CSV: a department per 100 extensions under one company, every extension named."""
    digits = "456789"

    def code(n: int, width: int) -> str:
        return "".join(digits[n // 6 ** k % 6] for k in reversed(range(width)))

    rows = [",,Company,,100000,,"]
    rows += [f",,Team {code(t, 2)},Company,{1000 + t},," for t in range(-(-extensions // 100))]
    for i in range(extensions):
        number = code(i, 5)[1:] if i < 6 ** 4 else code(i, 5)
        rows.append(f"{number},Person {number} of Team {code(i // 100, 2)} in the {number} wing,"
                    f"Team {code(i // 100, 2)},,,,")
    return "extension,name,department,parent,budget,valid_from,valid_until\r\n" + "\r\n".join(rows) + "\r\n"


class Dir(Site):
    pbx: int
    config: dict[str, Any]


def running(folder: Path, source: str) -> Iterator[Dir]:
    add_users(folder / "smdrd.db", ("alice", "admin", ()), ("victor", "viewer", ()), ("maria", "manager", ("Sales",)))
    port, pbx = free_port(), free_port()
    config = daemon_config(folder, [tcp_server_source("pbx", pbx)],
                           http={"listen": f"127.0.0.1:{port}", "token": SERVICE_TOKEN, "max_upload_mb": 1},
                           departments=[{"name": "Files dept", "extensions": ["201"]}], directory={"source": source})
    daemon = DaemonProcess(folder, config)
    try:
        site = Dir(daemon.start(), port)
        site.pbx, site.config = pbx, config
        yield site
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dir]:
    yield from running(tmp_path_factory.mktemp("directory"), "database")


async def departments_report(site: Dir, browser: aiohttp.ClientSession) -> dict[str, int]:
    async with browser.get(f"{site.base}/api/reports/departments", params={"direction": "outbound"}) as response:
        assert response.status == 200
        body = await response.json()
    return {row["department"]: row["calls"] for row in body["rows"]}


async def test_an_admin_builds_the_directory_and_the_reports_follow(site: Dir) -> None:
    async with jar() as browser:
        assert (await sign_in(site, browser, "alice")).status == 303
        csrf = await page_csrf(site, browser, "/directory/departments")
        # mistakes beside their field, nothing written
        status, page = await post(browser, f"{site.base}/directory/departments",
                                  {"csrf": csrf, "name": "Sales", "parent": "", "budget": "lots"})
        assert status == 400 and 'id="new-budget-error">expected an amount such as 250.00' in page
        status, page = await post(browser, f"{site.base}/directory/departments",
                                  {"csrf": csrf, "name": "Unassigned", "parent": "", "budget": ""})
        assert status == 400 and 'id="new-name-error">' in page
        for name, parent, budget in (("Company", "", "1000"), ("Sales", "Company", "250.50"), ("Support", "", "")):
            status, _ = await post(browser, f"{site.base}/directory/departments",
                                   {"csrf": csrf, "name": name, "parent": parent, "budget": budget})
            assert status == 303, name
        page = await text_of(browser, f"{site.base}/directory/departments")
        assert "250.50 USD" in page and "1000.00 USD" in page and 'id="dep-Sales"' in page
        # a cycle of parents is refused beside the parent field
        status, page = await post(browser, f"{site.base}/directory/departments/Company",
                                  {"csrf": csrf, "name": "Company", "parent": "Sales", "budget": "1000"})
        assert status == 400 and 'id="edit-Company-parent-error">parents form a cycle' in page
        status, page = await post(browser, f"{site.base}/directory/departments/Company/delete", {"csrf": csrf})
        assert status == 400 and "has sub-departments (Sales)" in page
        # a call from 201, then 201 moved into Sales from today: the report bills it to Sales at once
        with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
            pbx.sendall(avaya_line("201", "221234567", 65))
        async with asyncio.timeout(20):
            while (await departments_report(site, browser)).get("Unassigned") != 1:  # noqa: ASYNC110 (a poll)
                await asyncio.sleep(0.1)
        page = await text_of(browser, f"{site.base}/directory/extensions")
        today = page.split('name="valid_from" type="date" required value="', 1)[1][:10]
        status, _ = await post(browser, f"{site.base}/directory/extensions/201/move",
                               {"csrf": csrf, "department": "Sales", "valid_from": today})
        assert status == 303
        calls = await departments_report(site, browser)
        assert calls.get("Sales") == 1 and calls.get("Company") == 1 and "Unassigned" not in calls
        status, page = await post(browser, f"{site.base}/directory/extensions/201/move",
                                  {"csrf": csrf, "department": "Sales", "valid_from": "16/03/2026"})
        assert status == 400 and 'id="move-201-from-error">expected a date such as 2026-03-16' in page
        # a name, edited by hand
        status, _ = await post(browser, f"{site.base}/directory/extensions/201/name",
                               {"csrf": csrf, "name": "Alice <b>Smith</b>"})
        assert status == 303
        page = await text_of(browser, f"{site.base}/directory/extensions?q=alice")
        assert "Alice &lt;b&gt;Smith&lt;/b&gt;" in page and "<b>Smith" not in page and "(edited)" in page
        # a rename carries the memberships and the managers' assignments along
        status, _ = await post(browser, f"{site.base}/directory/departments/Sales",
                               {"csrf": csrf, "name": "Sales EU", "parent": "Company", "budget": "250.50"})
        assert status == 303
        assert (await departments_report(site, browser)).get("Sales EU") == 1
        maria = open_store(site.daemon.db).accounts()
        try:
            manager = maria.user("maria")
            assert manager is not None and manager.departments == ("Sales EU",)
        finally:
            maria.close()
    moves = audit(site, "extension.move")
    assert moves and moves[0].actor == "alice" and moves[0].before == {"memberships": []}
    assert moves[0].after == {"memberships": [{"department": "Sales", "extension": "201", "valid_from": today,
                                               "valid_until": None}]}
    (renamed,) = audit(site, "department.change")
    assert renamed.before == {"name": "Sales", "parent": "Company", "budget": "250.50"}
    assert renamed.after == {"name": "Sales EU", "parent": "Company", "budget": "250.50"}
    (named,) = audit(site, "extension.name")
    assert (named.target, named.after) == ("201", {"name": "Alice <b>Smith</b>"})


async def test_upload_and_api_with_errors_naming_line_and_column(site: Dir) -> None:
    async with jar() as browser:
        assert (await sign_in(site, browser, "alice")).status == 303
        csrf = await page_csrf(site, browser, "/directory/departments")

        async def upload(text: str) -> tuple[int, str]:
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("file", text.encode(), filename="dir.csv", content_type="text/csv")
            async with browser.post(f"{site.base}/directory/import", data=form, allow_redirects=False) as response:
                return response.status, await response.text()

        # A company's directory (3,000 extensions, about 200 KiB: more than a form carries) through the form;
        # numbers and names in digits 4 to 9 only, so no later search for 201, 202 or 301 finds them.
        big = big_directory(3_000)
        assert 150_000 < len(big) < 1024 * 1024
        status, page = await upload(big)
        assert status == 303, page
        async with browser.get(f"{site.base}/api/directory/extensions", params={"q": "4456"}) as r:
            found = (await r.json())["extensions"]
        assert {"number": "4456", "name": "Person 4456 of Team 44 in the 4456 wing", "name_source": "edited",
                "department": "Team 44"} in found
        async with browser.get(f"{site.base}/api/directory/extensions") as r:
            assert (await r.json())["total"] >= 3_000
        status, page = await upload(big + "#" * (1024 * 1024))  # past [http] max_upload_mb: beside the field
        assert status == 413 and 'id="import-error">the file is larger than 1 MiB ([http] max_upload_mb)' in page
        # The JSON API takes the same files, up to the same limit.
        async with browser.post(f"{site.base}/api/directory/import", headers={"X-CSRF-Token": csrf},
                                data=big.encode()) as r:
            assert r.status == 200, await r.text()
        async with browser.post(f"{site.base}/api/directory/import", headers={"X-CSRF-Token": csrf},
                                data=(big + "#" * (1024 * 1024)).encode()) as r:
            assert r.status == 413 and "larger than 1 MiB" in (await r.json())["errors"]["file"]
        form = aiohttp.FormData()
        form.add_field("file", IMPORT.encode(), filename="dir.csv", content_type="text/csv")
        async with browser.post(f"{site.base}/directory/import", data=form, allow_redirects=False) as response:
            assert response.status == 403  # no CSRF token: refused, nothing read or changed
        async with browser.get(f"{site.base}/api/directory/departments") as r:
            assert "Team 44" in [d["name"] for d in (await r.json())["departments"]]
        status, page = await upload(IMPORT.replace("250,,", "ten,,"))
        assert status == 400 and 'id="import-error">dir.csv, line 3, column 5 (budget): expected an amount' in page
        status, _ = await upload(IMPORT)
        assert status == 303
        async with browser.get(f"{site.base}/directory/export.csv") as response:
            assert response.status == 200 and "attachment" in response.headers["Content-Disposition"]
            exported = await response.text()
        assert "201,Alice Smith,Sales,,,," in exported.splitlines()
        assert exported.startswith("\ufeff")  # Excel reads it as UTF-8; the import skips it:
        status, _ = await upload(exported)
        assert status == 303
        # the JSON API, with the service token reading and a personal session's CSRF header writing
        headers = {"X-CSRF-Token": csrf}
        async with browser.put(f"{site.base}/api/directory/extensions/301", headers=headers,
                               json={"department": "Sales", "valid_from": "2026-01-01", "name": "Robert"}) as r:
            assert r.status == 200
            assert await r.json() == {"number": "301", "name": "Robert", "name_source": "edited",
                                      "department": "Sales"}
        for day in ("0001-01-01", "9999-12-31"):  # a day no call can have: named, never a 500
            async with browser.put(f"{site.base}/api/directory/extensions/301", headers=headers,
                                   json={"department": "Sales", "valid_from": day}) as r:
                assert r.status == 400 and "expected a date from 1980-01-01" in (await r.json())["errors"][
                    "valid_from"]
        async with browser.put(f"{site.base}/api/directory/departments/Ops", headers=headers,
                               json={"name": "O\u0000ps"}) as r:
            assert r.status in (400, 404)
        async with browser.put(f"{site.base}/api/directory/extensions/SIP%2Falice", headers=headers,
                               json={"name": "Alice (softphone)"}) as r:
            assert r.status == 200 and (await r.json())["number"] == "SIP/alice"
        # an over-long number was cut to 64 characters: the change went to another extension
        async with browser.put(f"{site.base}/api/directory/extensions/{'9' * 300}", headers=headers,
                               json={"name": "x"}) as r:
            assert r.status == 400 and "at most 64 characters" in (await r.json())["errors"]["extension"]
        async with browser.put(f"{site.base}/api/directory/extensions/{'9' * 64}", headers=headers,
                               json={"name": "x"}) as r:
            assert r.status == 200
        async with browser.post(f"{site.base}/api/directory/departments", headers=headers,
                                json={"name": "Ops", "parent": "Nowhere"}) as r:
            assert r.status == 400 and (await r.json())["errors"]["parent"] == "there is no department 'Nowhere'"
        async with browser.post(f"{site.base}/api/directory/departments", headers=headers,
                                json={"name": "Ops", "budget": "12.5"}) as r:
            assert r.status == 201
        async with browser.put(f"{site.base}/api/directory/departments/Ops", headers=headers,
                               json={"parent": "Company"}) as r:
            assert r.status == 200
        async with browser.delete(f"{site.base}/api/directory/departments/Ops", headers=headers) as r:
            assert r.status == 204
        async with browser.delete(f"{site.base}/api/directory/departments/Ops", headers=headers) as r:
            assert r.status == 404
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}) as service:
        async with service.get(f"{site.base}/api/directory/departments") as r:
            body = await r.json()
        assert body["source"] == "database" and [d["name"] for d in body["departments"]] == [
            "Company", "Sales", "Support"]
        assert body["departments"][1]["memberships"][0] == {"extension": "201", "valid_from": None,
                                                            "valid_until": None}
        async with service.post(f"{site.base}/api/directory/departments", json={"name": "X"}) as r:
            assert r.status == 403


async def test_a_manager_sees_their_departments_and_a_viewer_only_reads(site: Dir) -> None:
    accounts = open_store(site.daemon.db).accounts()
    try:  # an import replaced the departments: maria manages Sales again
        accounts.change_user("maria", role="manager", departments=["Sales"], at=0, actor=Actor("test"))
    finally:
        accounts.close()
    async with jar() as browser:
        assert (await sign_in(site, browser, "maria")).status == 303
        async with browser.get(f"{site.base}/api/directory/departments") as r:
            names = [d["name"] for d in (await r.json())["departments"]]
        async with browser.get(f"{site.base}/api/directory/extensions") as r:
            extensions = {e["number"]: e["department"] for e in (await r.json())["extensions"]}
        page = await text_of(browser, f"{site.base}/directory/departments")
        csrf = await page_csrf(site, browser, "/directory/departments")
        status, _ = await post(browser, f"{site.base}/directory/departments", {"csrf": csrf, "name": "Mine"})
        async with browser.get(f"{site.base}/directory/export.csv", allow_redirects=False) as r:
            export_status = r.status
    assert names == ["Sales"]
    assert extensions == {"201": "Sales", "202": "Sales", "301": "Sales"}
    assert "Support" not in page and status == 403 and export_status == 403
    async with jar() as browser:
        assert (await sign_in(site, browser, "victor")).status == 303
        page = await text_of(browser, f"{site.base}/directory/extensions")
        assert "Save name" not in page and "Move" not in page
        csrf = await page_csrf(site, browser, "/directory/extensions")
        status, _ = await post(browser, f"{site.base}/directory/extensions/201/name", {"csrf": csrf, "name": "x"})
        assert status == 403
        async with browser.put(f"{site.base}/api/directory/extensions/201", headers={"X-CSRF-Token": csrf},
                               json={"name": "x"}) as r:
            assert r.status == 403


async def test_with_files_the_pages_are_read_only_and_say_so(site: Dir) -> None:
    # the same daemon reloaded (SIGHUP) with [directory] source = "files"
    config = dict(site.config, directory={"source": "files"})
    site.daemon.config_path.write_text(config_toml(config))
    site.daemon.send_signal(signal.SIGHUP)
    await asyncio.to_thread(site.daemon.wait_event, "daemon.reloaded")
    async with jar() as browser:
        assert (await sign_in(site, browser, "alice")).status == 303
        page = await text_of(browser, f"{site.base}/directory/departments")
        assert 'id="files-notice"' in page and "Files dept" in page and 'id="add-department"' not in page
        csrf = await page_csrf(site, browser, "/directory/departments")
        status, page = await post(browser, f"{site.base}/directory/departments", {"csrf": csrf, "name": "New"})
        assert status == 409 and "[directory] source = &#34;files&#34;" in page
        # names are the database's either way
        status, _ = await post(browser, f"{site.base}/directory/extensions/202/name", {"csrf": csrf, "name": "Al"})
        assert status == 303
        async with browser.get(f"{site.base}/api/directory/extensions", params={"q": "202"}) as r:
            body = await r.json()
        assert body["source"] == "files"
        assert body["extensions"] == [{"number": "202", "name": "Al", "name_source": "edited",
                                       "department": "Unassigned"}]
        async with browser.get(f"{site.base}/api/directory/extensions", params={"q": "201"}) as r:
            assert [e["department"] for e in (await r.json())["extensions"]] == ["Files dept"]
