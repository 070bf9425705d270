"""Scheduled reports in the console, over HTTP on a real daemon: an admin adds, changes and deletes schedules; a
manager only their own, covering only their departments; a viewer has none; mistakes are shown beside their
field; each delivery's state and error are listed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from smdrd.accounts import hash_password
from smdrd.config import Settings
from smdrd.store import open_store
from smdrd.store.api import Actor, NewMail
from smdrd.testing import daemon_config, running_daemon
from tests.test_console_http import CSRF, DEPARTMENTS, PASSWORDS

CONFIGURED = {"name": "board pack", "kind": "departments", "period": "last_month", "recipients": ["cfo@example.com"],
              "when": "monthly", "day": 1, "at": "07:00"}


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    db = tmp_path / "smdrd.db"
    accounts = open_store(db).accounts()
    try:
        for name, role, departments in (("alice", "admin", ()), ("maria", "manager", ("Sales",)),
                                        ("victor", "viewer", ())):
            accounts.add_user(name, role, hash_password(PASSWORDS[name]), departments, at=1, actor=Actor("test"))
    finally:
        accounts.close()
    settings = Settings.model_validate(daemon_config(tmp_path, departments=DEPARTMENTS,
                                                     reports={"schedules": [CONFIGURED]}))
    async with running_daemon(settings, features=("console",)) as daemon:
        assert daemon.http is not None
        yield f"http://127.0.0.1:{daemon.http.bound_port}"


async def signed_in(base: str, name: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                    timeout=aiohttp.ClientTimeout(total=30))
    async with session.get(f"{base}/login") as page:
        token = CSRF.search(await page.text())
    assert token is not None
    async with session.post(f"{base}/login", data={"csrf": token.group(1), "next": "/", "name": name,
                                                   "password": PASSWORDS[name]}, allow_redirects=False) as r:
        assert r.status == 303
    return session


async def page(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as r:
        text = await r.text()
    found = CSRF.search(text)
    return r.status, text, found.group(1) if found else ""


async def post(session: aiohttp.ClientSession, url: str, csrf: str, **fields: str | list[str]) -> tuple[int, str]:
    data = aiohttp.FormData()
    data.add_field("csrf", csrf)
    for key, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            data.add_field(key, one)
    async with session.post(url, data=data, allow_redirects=False) as r:
        return r.status, await r.text()


FORM: dict[str, str | list[str]] = {
        "name": "weekly sales", "kind": "extensions", "period": "last_week", "formats": ["xlsx", "pdf"],
        "recipients": "sales@example.com, boss@example.com", "when": "weekly", "weekday": "mon", "day": "1",
        "at": "06:30", "departments": ["Sales"], "direction": "outbound"}


async def test_an_admin_adds_changes_and_deletes_a_schedule_and_sees_deliveries(base: str, tmp_path: Path) -> None:
    alice = await signed_in(base, "alice")
    async with alice:
        status, text, csrf = await page(alice, f"{base}/schedules")
        assert status == 200 and "board pack" in text and "monthly on day 1 at 07:00" in text
        assert 'href="/schedules"' in text  # the nav link
        status, text = await post(alice, f"{base}/schedules", csrf, **{**FORM, "at": "25:00",
                                                                      "recipients": "sales at example"})
        assert status == 400
        assert 'id="at-error"' in text and "expected a time such as 07:30" in text
        assert 'id="recipients-error"' in text and "e-mail address" in text
        assert 'value="weekly sales"' in text  # what was typed is kept
        status, _ = await post(alice, f"{base}/schedules", csrf, **{**FORM, "name": "Board Pack"})
        assert status == 400  # the configuration's name
        assert (await post(alice, f"{base}/schedules", csrf, **FORM))[0] == 303
        status, text, csrf = await page(alice, f"{base}/schedules?done=added")
        assert "Schedule added." in text and "weekly on Mon at 06:30" in text and "boss@example.com" in text
        edit = re.search(r'href="/schedules/(\d+)" id="edit-\d+"', text)
        assert edit is not None
        schedule_id = edit.group(1)

        mail = open_store(tmp_path / "smdrd.db").mail()
        try:
            mail.plan([NewMail("report:db:x", "report", f"db:{schedule_id}", "<m@x>", ("a@example.com",),
                               "weekly sales, 2026-03-02 to 2026-03-08", "{}", 100)], {})
            [item] = mail.due(200)
            mail.mark_failed(item.id, "550 5.1.1 <a@example.com>: mailbox unavailable")
        finally:
            mail.close()
        status, text, csrf = await page(alice, f"{base}/schedules/{schedule_id}")
        assert status == 200 and "failed" in text and "mailbox unavailable" in text
        assert (await post(alice, f"{base}/schedules/{schedule_id}", csrf, **{**FORM, "when": "daily"}))[0] == 303
        _, text, csrf = await page(alice, f"{base}/schedules")
        assert "daily at 06:30" in text
        assert (await post(alice, f"{base}/schedules/{schedule_id}/delete", csrf))[0] == 303
        _, text, _ = await page(alice, f"{base}/schedules")
        assert "weekly sales" not in text.split("<h2>Deliveries")[0]
        _, audit, _ = await page(alice, f"{base}/audit")
        assert all(action in audit for action in ("schedule.add", "schedule.change", "schedule.remove"))


async def test_a_manager_schedules_only_their_departments_and_a_viewer_none(base: str) -> None:
    alice, maria, victor = [await signed_in(base, n) for n in ("alice", "maria", "victor")]
    async with alice, maria, victor:
        _, _, csrf = await page(alice, f"{base}/schedules")
        assert (await post(alice, f"{base}/schedules", csrf, **{**FORM, "name": "site wide",
                                                               "departments": []}))[0] == 303
        status, text, csrf = await page(maria, f"{base}/schedules")
        assert status == 200
        assert "board pack" not in text and "site wide" not in text  # not hers
        assert 'value="Support"' not in text  # not offered
        status, text = await post(maria, f"{base}/schedules", csrf, **{**FORM, "departments": ["Support"]})
        assert status == 400 and "only these departments can be chosen: Sales" in text
        status, text = await post(maria, f"{base}/schedules", csrf, **{**FORM, "departments": []})
        assert status == 400 and "choose at least one of your departments" in text
        assert (await post(maria, f"{base}/schedules", csrf, **FORM))[0] == 303
        _, text, _ = await page(alice, f"{base}/schedules")
        assert "weekly sales" in text and "(maria)" in text
        site_wide = re.search(r'site wide.*?href="/schedules/(\d+)"', text, re.S)
        assert site_wide is not None
        async with maria.get(f"{base}/schedules/{site_wide.group(1)}") as r:
            assert r.status == 404  # another's schedule does not exist for her
        async with victor.get(f"{base}/schedules") as r:
            assert r.status == 403
        _, _, victor_csrf = await page(victor, f"{base}/")
        assert (await post(victor, f"{base}/schedules", victor_csrf, **FORM))[0] == 403


async def test_a_removed_managers_schedules_are_not_handed_to_a_new_user_of_that_name(base: str) -> None:
    """Maria's schedule outlives her (its recipients still expect it, an admin sees and deletes it), but it is no
    longer hers: a new user given the name maria later neither sees nor edits it, and it is mailed as a removed
    owner's (masked, not in the newcomer's scope). Removing her says so in the audit log."""
    alice, maria = [await signed_in(base, n) for n in ("alice", "maria")]
    async with alice, maria:
        _, _, csrf = await page(maria, f"{base}/schedules")
        assert (await post(maria, f"{base}/schedules", csrf, **FORM))[0] == 303
        _, text, admin_csrf = await page(alice, f"{base}/schedules")
        found = re.search(r'weekly sales.*?href="/schedules/(\d+)"', text, re.S)
        assert found is not None
        schedule = f"{base}/schedules/{found.group(1)}"
        assert (await post(alice, f"{base}/users/maria/remove", admin_csrf))[0] == 303
        _, text, _ = await page(alice, f"{base}/schedules")
        assert "weekly sales" in text and "(removed user maria)" in text, "an admin still sees and manages it"
        body = {"name": "maria", "role": "admin", "password": PASSWORDS["maria"]}
        async with alice.post(f"{base}/api/users", json=body, headers={"X-CSRF-Token": admin_csrf}) as r:
            assert r.status == 201
    newcomer = await signed_in(base, "maria")
    async with newcomer:
        status, text, csrf = await page(newcomer, f"{base}/schedules")
        assert status == 200 and "(removed user maria)" in text, "an admin sees it as the removed user's"
        assert "(maria)" not in text
    # a manager of that name (the owner check is by name) neither sees nor edits it
    async with await signed_in(base, "alice") as alice:
        _, _, admin_csrf = await page(alice, f"{base}/users")
        async with alice.put(f"{base}/api/users/maria", json={"role": "manager", "departments": ["Sales"]},
                             headers={"X-CSRF-Token": admin_csrf}) as r:
            assert r.status == 200
    async with await signed_in(base, "maria") as newcomer:
        status, text, csrf = await page(newcomer, f"{base}/schedules")
        assert status == 200 and "weekly sales" not in text
        async with newcomer.get(schedule) as r:
            assert r.status == 404
        assert (await post(newcomer, f"{schedule}/delete", csrf))[0] == 404
