"""The console's directory pages with sites (issue 17): an admin moves extension 201 of one site, the site
beside its field when it is wrong; the extensions page shows each site's department, the departments page each
membership's site, the API takes and gives the site, and the audit names it."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.test_console_directory import Dir, running
from tests.test_console_http import SERVICE_TOKEN, page_csrf, sign_in
from tests.test_console_rates import audit, jar, post, text_of


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dir]:
    yield from running(tmp_path_factory.mktemp("directory-sites"), "database")


async def test_an_admin_moves_one_sites_extension_and_sees_each_sites_department(site: Dir) -> None:
    async with jar() as browser:
        assert (await sign_in(site, browser, "alice")).status == 303
        csrf = await page_csrf(site, browser, "/directory/departments")
        for name in ("Sales", "Support"):
            status, _ = await post(browser, f"{site.base}/directory/departments",
                                   {"csrf": csrf, "name": name, "parent": "", "budget": ""})
            assert status == 303, name
        status, _ = await post(browser, f"{site.base}/directory/extensions/201/move",
                               {"csrf": csrf, "department": "Support", "valid_from": "2026-03-01", "site": ""})
        assert status == 303
        page = await text_of(browser, f"{site.base}/directory/extensions?q=201")
        # one box, no membership naming a site: the Move form asks for no site
        assert 'id="move-201"' in page and 'id="move-201-site"' not in page
        status, page = await post(browser, f"{site.base}/directory/extensions/201/move",
                                  {"csrf": csrf, "department": "Sales", "valid_from": "2026-03-01",
                                   "site": "n" * 101})
        assert status == 400 and 'id="move-201-site-error">at most 100 characters' in page
        assert 'aria-describedby="move-201-site-error"' in page
        status, _ = await post(browser, f"{site.base}/directory/extensions/201/move",
                               {"csrf": csrf, "department": "Sales", "valid_from": "2026-03-01", "site": " north "})
        assert status == 303
        page = await text_of(browser, f"{site.base}/directory/extensions?q=201")
        assert "at north: Sales" in page
        assert 'id="move-201-site"' in page  # a membership names a site: the form asks for one
        page = await text_of(browser, f"{site.base}/directory/departments")
        assert '201 <span class="member-site">at north</span>' in page
        async with browser.put(f"{site.base}/api/directory/extensions/201",
                               json={"department": "Sales", "valid_from": "2026-03-01", "site": "west"},
                               headers={"X-CSRF-Token": csrf}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["department"] == "Support" and body["sites"] == {"north": "Sales", "west": "Sales"}
        async with browser.get(f"{site.base}/api/directory/departments") as response:
            departments = {d["name"]: d for d in (await response.json())["departments"]}
        assert [(m["extension"], m["site"]) for m in departments["Sales"]["memberships"]] == [
            ("201", "north"), ("201", "west")]
        async with browser.get(f"{site.base}/directory/export.csv") as response:
            lines = (await response.text()).splitlines()
        assert lines[0].endswith(",valid_until,site") and "201,,Sales,,,2026-03-01,,north" in lines
    moves = audit(site, "extension.move")
    assert {m.target for m in moves} == {"201", "north/201", "west/201"}


async def test_a_reader_sees_the_sites_but_no_form(site: Dir) -> None:
    async with aiohttp.ClientSession() as browser, browser.get(f"{site.base}/api/directory/extensions",
                           headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}) as response:
        assert response.status == 200
        rows = (await response.json())["extensions"]
    assert [r["sites"] for r in rows if r["number"] == "201"] == [{"north": "Sales", "west": "Sales"}]



async def test_an_admin_names_one_sites_extension_beside_its_site_less_name(site: Dir) -> None:
    async with jar() as browser:
        assert (await sign_in(site, browser, "alice")).status == 303
        csrf = await page_csrf(site, browser, "/directory/extensions")
        for body in ({"name": "Nora North", "site": "north"}, {"name": "Anna Everywhere"}):
            async with browser.put(f"{site.base}/api/directory/extensions/205", json=body,
                                   headers={"X-CSRF-Token": csrf}) as response:
                assert response.status == 200, await response.text()
                got = await response.json()
            assert (got["name"], got.get("name_site", "")) == (body["name"], body.get("site", ""))
        page = await text_of(browser, f"{site.base}/directory/extensions?q=205")
        # A row per name: the site-less one first, then north's, each with its own form.
        assert page.index('id="ext-205"') < page.index('id="ext-205@north"')
        assert '<span class="ext-name">Nora North</span> <span class="ext-name-site">at north</span>' in page
        assert page.count('id="move-205"') == 1
        # The site-less row's form names the number at a site too (a first name there); a site's row keeps its site.
        assert 'id="name-205-site" name="name_site"' in page and 'id="name-205@north-site"' not in page
        status, _ = await post(browser, f"{site.base}/directory/extensions/206/name",
                               {"csrf": csrf, "name": "Sam South", "name_site": "south"})
        assert status == 303
        page = await text_of(browser, f"{site.base}/directory/extensions?q=206")
        assert '<span class="ext-name">Sam South</span> <span class="ext-name-site">at south</span>' in page
        status, _ = await post(browser, f"{site.base}/directory/extensions/205/name",
                               {"csrf": csrf, "name": "Nora N.", "name_site": "north"})
        assert status == 303
        status, page = await post(browser, f"{site.base}/directory/extensions/205/name",
                                  {"csrf": csrf, "name": "X", "name_site": "n" * 101})
        assert status == 400 and 'id="name-205-site-error">at most 100 characters' in page
        async with browser.get(f"{site.base}/api/directory/extensions?q=205") as response:
            rows = [(r["name"], r.get("name_site", "")) for r in (await response.json())["extensions"]
                    if r["number"] == "205"]
        assert rows == [("Anna Everywhere", ""), ("Nora N.", "north")]
    named = audit(site, "extension.name")
    assert {(e.target, (e.after or {}).get("site", "")) for e in named} >= {("205", "north"), ("205", "")}
