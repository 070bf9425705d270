"""Users in the console (issue 15, point 2), against a real daemon process over HTTP: an admin adds a manager,
changes their role and departments, resets their password, unlocks and removes them, from the pages and from
the JSON API; mistakes are shown beside their field; the last admin can be neither removed nor demoted; every
change is in the audit log with its before and after, and no password reaches it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smdrd.console import LOCK_AFTER
from smdrd.store import open_store
from smdrd.store.api import AuditEntry
from tests.test_console_http import PASSWORDS, SERVICE_TOKEN, Site, page_csrf, sign_in, start, status

NEW = {"mona": "mona's long passphrase", "mona2": "mona's second passphrase", "ada": "ada's long passphrase",
       "paula": "paula's long passphrase", "paula2": "paula's second passphrase",
       "paula3": "paula's third passphrase", "wrong": "not paula's passphrase"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    PASSWORDS.update(NEW)
    daemon, port = start(tmp_path_factory.mktemp("users"), ("alice", "admin", ()), ("victor", "viewer", ()))
    running = Site(daemon, port)
    running.secrets |= set(NEW.values())
    try:
        yield running
        text = daemon.log_text()
        assert not [s for s in running.secrets if s in text], "a password or session id reached the log"
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()
        for name in NEW:
            PASSWORDS.pop(name, None)


def audit(site: Site, limit: int = 50) -> list[AuditEntry]:
    accounts = open_store(site.daemon.db).accounts()
    try:
        return accounts.entries(limit)
    finally:
        accounts.close()


def jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=30))


async def test_an_admin_manages_a_user_from_the_pages(site: Site) -> None:
    async with jar() as admin, jar() as mona:
        assert (await sign_in(site, admin, "alice")).status == 303
        csrf = await page_csrf(site, admin, "/users")
        form = {"csrf": csrf, "name": "mona", "role": "manager", "password": NEW["mona"], "confirm": NEW["mona"]}
        # Mistakes, each beside its field, and nothing added.
        async with admin.post(f"{site.base}/users", data={**form, "name": "<b>x</b>"}) as r:
            text = await r.text()
            assert r.status == 400 and 'id="name-error"' in text and "<b>x" not in text and "&lt;b&gt;" in text
        async with admin.post(f"{site.base}/users", data=form) as r:
            assert r.status == 400 and "a manager needs at least one department" in await r.text()
        async with admin.post(f"{site.base}/users", data=[*form.items(), ("departments", "Nowhere")]) as r:
            assert r.status == 400 and "no such department: Nowhere" in await r.text()
        async with admin.post(f"{site.base}/users", data={**form, "departments": "Sales", "confirm": "x" * 12}) as r:
            assert r.status == 400 and "the two passwords differ" in await r.text()
        async with admin.post(f"{site.base}/users", data={**form, "departments": "Sales", "password": "short",
                                                          "confirm": "short"}) as r:
            assert r.status == 400 and 'id="password-error"' in await r.text()
        async with admin.post(f"{site.base}/users", data={**form, "departments": "Sales"},
                              allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/users?done=added")
        async with admin.post(f"{site.base}/users", data={**form, "name": "MONA", "departments": "Sales"}) as r:
            assert r.status == 409 and "exists already" in await r.text()
        async with admin.get(f"{site.base}/users/mona") as r:
            assert r.status == 200 and 'value="Sales" id="edit-dep-1" checked' in await r.text()

        # The manager signs in and sees only Sales (and what is under it).
        assert (await sign_in(site, mona, "mona")).status == 303
        async with mona.get(f"{site.base}/api/reports") as r:
            assert [d["name"] for d in (await r.json())["departments"]] == ["Sales", "Sales North"]
        support = f"{site.base}/api/reports/departments?department=Support"
        assert await status(mona, support) == 403
        assert await status(mona, f"{site.base}/users") == 403

        # Her departments change, and then her role: at once, in her open session.
        async with admin.post(f"{site.base}/users/mona", data=[("csrf", csrf), ("role", "manager"),
                                                                ("departments", "Support")],
                              allow_redirects=False) as r:
            assert r.status == 303
        assert await status(mona, support) == 200
        async with admin.post(f"{site.base}/users/mona", data={"csrf": csrf, "role": "viewer"},
                              allow_redirects=False) as r:
            assert r.status == 303
        async with admin.get(f"{site.base}/users/mona?done=changed") as r:
            assert "Role and departments saved." in await r.text()
        async with mona.get(f"{site.base}/api/reports") as r:
            assert len((await r.json())["departments"]) == 4, "a viewer reads every department"

        # A reset ends her sessions and revokes her API tokens (a leaked password could have made them).
        own = await page_csrf(site, mona, "/account/tokens")
        async with mona.post(f"{site.base}/account/tokens", data={"csrf": own, "name": "nightly"}) as r:
            found = re.search(r'id="new-token">([^<]+)<', await r.text())
        assert found is not None
        site.secrets.add(found.group(1))
        bearer = {"Authorization": f"Bearer {found.group(1)}"}
        assert await status(mona, f"{site.base}/api/reports", headers=bearer) == 200
        reset = f"{site.base}/users/mona/password"
        async with admin.post(reset, data={"csrf": csrf, "password": "short", "confirm": "short"}) as r:
            assert r.status == 400 and "too short" in await r.text()
        async with admin.post(reset, data={"csrf": csrf, "password": NEW["mona2"], "confirm": NEW["mona2"]},
                              allow_redirects=False) as r:
            assert r.status == 303
        assert await status(mona, f"{site.base}/api/reports") == 401, "her session ended"
        async with aiohttp.ClientSession() as script:
            assert await status(script, f"{site.base}/api/reports", headers=bearer) == 401, "her token was revoked"
        async with admin.get(f"{site.base}/users/mona?done=password") as r:
            assert "their API tokens are revoked" in await r.text()
        assert (await sign_in(site, mona, "mona", NEW["mona"])).status == 401
        assert (await sign_in(site, mona, "mona", NEW["mona2"])).status == 303

        # Locked by wrong passwords, unlocked by the admin.
        async with jar() as guesser:
            for _ in range(LOCK_AFTER):
                assert (await sign_in(site, guesser, "mona", "a wrong passphrase")).status == 401
            assert (await sign_in(site, guesser, "mona", NEW["mona2"])).status == 401, "locked"
            async with admin.get(f"{site.base}/users/mona") as r:
                assert "Locked" in await r.text()
            async with admin.post(f"{site.base}/users/mona/unlock", data={"csrf": csrf}, allow_redirects=False) as r:
                assert r.status == 303
            assert (await sign_in(site, guesser, "mona", NEW["mona2"])).status == 303

        # Removed: her sessions end with her.
        async with admin.post(f"{site.base}/users/mona/remove", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        assert await status(mona, f"{site.base}/api/reports") == 401
        assert await status(admin, f"{site.base}/users/mona") == 404

    entries = [e for e in audit(site) if e.target == "mona" and e.action.startswith("user.")]
    by_action = {e.action: e for e in entries}
    assert {"user.add", "user.change", "user.password", "user.unlock", "user.remove"} <= set(by_action)
    assert all(e.actor == "alice" and e.address == "127.0.0.1" for e in entries)
    changes = [(e.before, e.after) for e in entries if e.action == "user.change"]
    assert ({"name": "mona", "role": "manager", "departments": ["Sales"]},
            {"name": "mona", "role": "manager", "departments": ["Support"]}) in changes
    assert ({"name": "mona", "role": "manager", "departments": ["Support"]},
            {"name": "mona", "role": "viewer", "departments": []}) in changes
    assert by_action["user.remove"].before == {"name": "mona", "role": "viewer", "departments": []}
    assert by_action["user.password"].after == {"sessions_ended": 1, "tokens_revoked": 1}
    dumped = json.dumps([(e.before, e.after) for e in audit(site, 500)])
    assert not any(p in dumped for p in NEW.values()) and "argon2" not in dumped


async def test_the_json_api_and_the_last_admin(site: Site) -> None:
    async with jar() as admin, jar() as viewer:
        assert (await sign_in(site, admin, "alice")).status == 303
        csrf = await page_csrf(site, admin, "/users")
        api = f"{site.base}/api/users"
        body = {"name": "ada", "role": "viewer", "password": NEW["ada"]}
        async with admin.post(api, json=body) as r:
            assert r.status == 403, "a session's change needs its CSRF token, in the header for JSON"
        headers = {"X-CSRF-Token": csrf}
        async with admin.post(api, json={**body, "role": "boss"}, headers=headers) as r:
            assert r.status == 400 and set((await r.json())["errors"]) == {"role"}
        async with admin.post(api, json={**body, "departments": "Sales"}, headers=headers) as r:
            assert r.status == 400 and (await r.json())["errors"] == {"departments": "expected a list of department "
                                                                                     "names"}
        async with admin.post(api, data=b"not json", headers={**headers, "Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["errors"] == {"body": "expected a JSON object"}
        deep = b"[" * 50_000 + b"]" * 50_000  # under the 64 KiB cap, too deep for the parser: a 400, never a 500
        async with admin.post(api, data=deep[:60_000], headers={**headers, "Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["errors"] == {"body": "expected a JSON object"}
        # A misspelt field is named, not dropped; a bad address makes no user.
        async with admin.post(api, json={**body, "emial": "ada@example.com"}, headers=headers) as r:
            assert r.status == 400 and "emial" in (await r.json())["errors"]
        async with admin.post(api, json={**body, "email": "not an address"}, headers=headers) as r:
            assert r.status == 400 and set((await r.json())["errors"]) == {"email"}
        async with admin.post(api, json={**body, "email": "ada@example.com"}, headers=headers) as r:
            assert r.status == 201
            made = await r.json()
            assert made["name"] == "ada" and made["role"] == "viewer" and made["locked"] is False
            assert "password" not in made
        async with admin.get(f"{api}/ada") as r:
            assert (await r.json())["email"] == "ada@example.com"
        async with admin.get(api) as r:
            assert {u["name"] for u in (await r.json())["users"]} >= {"alice", "ada", "victor"}

        # The last admin can be neither demoted nor removed, from the pages or the API.
        async with admin.put(f"{api}/alice", json={"role": "viewer"}, headers=headers) as r:
            assert r.status == 409 and "last admin" in (await r.json())["errors"]["role"]
        async with admin.delete(f"{api}/alice", headers=headers) as r:
            assert r.status == 409
        async with admin.post(f"{site.base}/users/alice", data={"csrf": csrf, "role": "viewer"}) as r:
            assert r.status == 409 and "last admin" in await r.text()
        async with admin.post(f"{site.base}/users/alice/remove", data={"csrf": csrf}) as r:
            assert r.status == 409 and 'id="remove-error"' in await r.text()

        # Once ada is an admin, alice may step down; ada's token then removes ada's account, as an API call.
        async with admin.put(f"{api}/ada", json={"role": "admin", "unknown": 1}, headers=headers) as r:
            assert r.status == 400 and "unknown" in (await r.json())["errors"]
        async with admin.put(f"{api}/ada", json={"role": "admin"}, headers=headers) as r:
            assert r.status == 200 and (await r.json())["role"] == "admin"
        async with admin.put(f"{api}/alice", json={"role": "manager", "departments": ["Sales"]},
                             headers=headers) as r:
            assert r.status == 200 and (await r.json())["departments"] == ["Sales"]
        assert await status(admin, api) == 403, "alice is a manager now, at once"
        async with jar() as ada:
            assert (await sign_in(site, ada, "ada")).status == 303
            ada_csrf = await page_csrf(site, ada, "/users")
            async with ada.put(f"{api}/alice", json={"role": "admin"}, headers={"X-CSRF-Token": ada_csrf}) as r:
                assert r.status == 200 and (await r.json())["departments"] == []
            async with ada.delete(f"{api}/nobody", headers={"X-CSRF-Token": ada_csrf}) as r:
                assert r.status == 404
            async with ada.delete(f"{api}/ada", headers={"X-CSRF-Token": ada_csrf}) as r:
                assert r.status == 204
        assert await status(admin, f"{api}/ada") == 404

        # Nobody else may use the API.
        assert (await sign_in(site, viewer, "victor")).status == 303
        assert await status(viewer, api) == 403
        async with viewer.post(api, json=body, headers={"X-CSRF-Token": await page_csrf(site, viewer)}) as r:
            assert r.status == 403
        assert await status(viewer, api, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}) == 403


async def test_an_e_mail_address_is_set_by_an_admin_or_its_owner(site: Site) -> None:
    """An admin sets victor's address on his page, a wrong one named beside the field; victor changes his own on
    his account page; each change is in the audit log with its before and after; a form without its CSRF token
    and a viewer on someone's user page change nothing."""
    def emails() -> list[tuple[str, str, Any, Any]]:
        return [(e.actor, e.target, e.before, e.after) for e in audit(site)
                if e.action == "user.email" and e.target == "victor"]  # others' (the API test's ada) aside

    async with jar() as admin, jar() as victor:
        assert (await sign_in(site, admin, "alice")).status == 303
        csrf = await page_csrf(site, admin, "/users/victor")
        async with admin.post(f"{site.base}/users/victor/email", data={"email": "victor@example.com"}) as r:
            assert r.status == 403, "no CSRF token, no change"
        async with admin.post(f"{site.base}/users/victor/email", data={"csrf": csrf, "email": "not<an>address"}) as r:
            text = await r.text()
            assert r.status == 400 and 'id="email-error"' in text and "expected one e-mail address" in text
            assert 'aria-describedby="email-error"' in text and 'value="not&lt;an&gt;address"' in text
        assert emails() == []
        async with admin.post(f"{site.base}/users/victor/email", data={"csrf": csrf, "email": " victor@example.com "},
                              allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/users/victor?done=email"
        async with admin.get(f"{site.base}/users") as r:
            assert "victor@example.com" in await r.text()
        async with admin.get(f"{site.base}/users/victor?done=email") as r:
            text = await r.text()
            assert 'action="/users/victor/email"' in text and 'value="victor@example.com"' in text
        assert emails() == [("alice", "victor", {"email": ""}, {"email": "victor@example.com"})]

        assert (await sign_in(site, victor, "victor")).status == 303
        own = await page_csrf(site, victor, "/account")
        async with victor.post(f"{site.base}/users/victor/email", data={"csrf": own, "email": "x@example.com"}) as r:
            assert r.status == 403, "a viewer edits no user's page"
        async with victor.post(f"{site.base}/account/email", data={"csrf": own, "email": "victor@"}) as r:
            assert r.status == 400 and 'id="email-error"' in await r.text()
        async with victor.post(f"{site.base}/account/email", data={"csrf": own, "email": "v.new@example.com"},
                               allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/account?done=email"
        async with victor.get(f"{site.base}/account?done=email") as r:
            text = await r.text()
            assert 'value="v.new@example.com"' in text and "E-mail address saved." in text
            assert 'action="/account/email"' in text
        assert emails()[0] == ("victor", "victor", {"email": "victor@example.com"}, {"email": "v.new@example.com"})
        async with admin.get(f"{site.base}/audit") as r:  # each change as a person reads it, not as JSON
            page = await r.text()
            assert '<span class="key">email</span>: victor@example.com → v.new@example.com' in page
            assert "{&#34;email&#34;" not in page and '{"email"' not in page

        headers = {"X-CSRF-Token": csrf}
        async with admin.put(f"{site.base}/api/users/victor", json={"email": "nope"}, headers=headers) as r:
            assert r.status == 400 and set((await r.json())["errors"]) == {"email"}
        async with admin.put(f"{site.base}/api/users/victor", json={"email": ""}, headers=headers) as r:
            assert r.status == 200 and (await r.json())["email"] == ""
        assert emails()[0] == ("alice", "victor", {"email": "v.new@example.com"}, {"email": ""})


async def test_a_person_changes_their_own_password(site: Site) -> None:
    """Paula changes her password on her account page: her current one first (a wrong one counts as a failed
    sign-in, and enough of them lock the account), the new one twice and as strong as an admin's reset wants;
    her other session ends, this one stays; her API token stays unless she asks for it to go. Never from a
    token, never without the form's CSRF token, and no password in a page, the audit log or the daemon's log."""
    def user_entries() -> list[AuditEntry]:
        return [e for e in audit(site, 200) if e.target == "paula"]

    async with jar() as admin, jar() as here, jar() as there:
        assert (await sign_in(site, admin, "alice")).status == 303
        headers = {"X-CSRF-Token": await page_csrf(site, admin, "/users")}
        async with admin.post(f"{site.base}/api/users", json={"name": "paula", "role": "viewer",
                                                              "password": NEW["paula"]}, headers=headers) as r:
            assert r.status == 201
        assert (await sign_in(site, here, "paula")).status == 303
        assert (await sign_in(site, there, "paula")).status == 303
        csrf = await page_csrf(site, here, "/account")
        async with here.get(f"{site.base}/account") as r:
            page = await r.text()
            assert 'action="/account/password"' in page and 'autocomplete="current-password"' in page
        async with here.post(f"{site.base}/account/tokens", data={"csrf": csrf, "name": "nightly"}) as r:
            found = re.search(r'id="new-token">([^<]+)<', await r.text())
        assert found is not None
        site.secrets.add(found.group(1))
        bearer = {"Authorization": f"Bearer {found.group(1)}"}
        url = f"{site.base}/account/password"
        form = {"csrf": csrf, "current": NEW["paula"], "password": NEW["paula2"], "confirm": NEW["paula2"]}

        # Refused without the form's CSRF token, and from a token (a leaked one must not take the account).
        async with here.post(url, data={k: v for k, v in form.items() if k != "csrf"}) as r:
            assert r.status == 403
        async with aiohttp.ClientSession() as script, script.post(url, data=form, headers=bearer) as r:
            assert r.status == 403 and "signed-in session" in await r.text()
        # Mistakes in the new password are named beside their field and count against nobody.
        async with here.post(url, data={**form, "confirm": NEW["paula3"]}) as r:
            text = await r.text()
            assert r.status == 400 and 'id="confirm-error"' in text and "the two passwords differ" in text
            assert not [p for p in NEW.values() if p in text], "a password typed is never sent back"
        async with here.post(url, data={**form, "password": "short", "confirm": "short"}) as r:
            assert r.status == 400 and 'id="password-error"' in (text := await r.text()) and "too short" in text
        async with here.post(url, data={**form, "current": NEW["wrong"], "password": NEW["paula"],
                                        "confirm": NEW["paula"]}) as r:
            assert r.status == 400 and "wrong password" in await r.text(), "the new one checked after the current"
        async with here.post(url, data={**form, "password": NEW["paula"], "confirm": NEW["paula"]}) as r:
            assert r.status == 400 and "that is your current password" in await r.text()

        # A wrong current password is a failed sign-in: enough of them in a row lock the account.
        for _ in range(LOCK_AFTER - 1):
            async with here.post(url, data={**form, "current": NEW["wrong"]}) as r:
                text = await r.text()
                assert r.status == 400 and 'id="current-error"' in text and NEW["wrong"] not in text
        async with here.post(url, data=form) as r:
            assert r.status == 429 and "too many wrong passwords" in await r.text(), "locked: even the right one"
        async with jar() as fresh:
            assert (await sign_in(site, fresh, "paula")).status == 401, "and so is signing in"
        failed = [e for e in user_entries() if e.action in ("password.failed", "login.locked")]
        assert [e.action for e in failed][:2] == ["login.locked", "password.failed"]
        assert len([e for e in failed if e.action == "password.failed"]) == LOCK_AFTER
        assert all(e.actor == "paula" and e.address == "127.0.0.1" for e in failed)
        async with admin.put(f"{site.base}/api/users/paula", json={"unlock": True}, headers=headers) as r:
            assert r.status == 200

        # The change: this session stays, the other one ends, the token stays; the old password is gone.
        async with here.post(url, data=form, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/account?done=own-password"
        async with here.get(f"{site.base}/account?done=own-password") as r:
            assert r.status == 200 and "Password changed; your other sessions have ended." in await r.text()
        assert await status(there, f"{site.base}/api/reports") == 401, "her other session ended"
        async with aiohttp.ClientSession() as script:
            assert await status(script, f"{site.base}/api/reports", headers=bearer) == 200, "her token stays"
        async with jar() as other:
            assert (await sign_in(site, other, "paula")).status == 401, "the old password"
            assert (await sign_in(site, other, "paula", NEW["paula2"])).status == 303
        changed = next(e for e in user_entries() if e.action == "user.password")
        assert (changed.actor, changed.before, changed.after) == ("paula", None, {"sessions_ended": 1,
                                                                                  "tokens_revoked": 0})

        # Asked to, it revokes her API tokens too.
        again = {**form, "current": NEW["paula2"], "password": NEW["paula3"], "confirm": NEW["paula3"],
                 "revoke_tokens": "yes"}
        async with here.post(url, data=again, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/account?done=own-password-tokens"
        async with aiohttp.ClientSession() as script:
            assert await status(script, f"{site.base}/api/reports", headers=bearer) == 401, "revoked"
        assert await status(here, f"{site.base}/account") == 200
        assert next(e for e in user_entries() if e.action == "user.password").after == {"sessions_ended": 1,
                                                                                        "tokens_revoked": 1}
    dumped = json.dumps([(e.before, e.after) for e in audit(site, 500)])
    assert not any(p in dumped for p in NEW.values()) and "argon2" not in dumped


def test_the_store_keeps_an_admin_even_when_two_step_down_at_once(tmp_path: Path) -> None:
    from smdrd.store.api import Actor, LastAdmin

    accounts = open_store(tmp_path / "db.sqlite").accounts()
    try:
        for name in ("a1", "a2"):
            accounts.add_user(name, "admin", "hash", (), at=1, actor=Actor("test"))
        assert accounts.change_user("a1", role="viewer", departments=(), at=2, actor=Actor("a2")) is not None
        with pytest.raises(LastAdmin):
            accounts.change_user("a2", role="viewer", departments=(), at=3, actor=Actor("a2"))
        with pytest.raises(LastAdmin):
            accounts.remove_user("a2", at=3, actor=Actor("a2"), keep_an_admin=True)
        assert [(u.name, u.role) for u in accounts.users()] == [("a1", "viewer"), ("a2", "admin")]
        assert accounts.change_user("ghost", role="viewer", departments=(), at=3, actor=Actor("a2")) is None
        assert accounts.unlock_user("ghost", at=3, actor=Actor("a2")) is None
    finally:
        accounts.close()


def test_an_audit_entry_is_shown_as_what_changed_key_by_key() -> None:
    from smdrd.console import changes

    assert changes({"role": "viewer", "departments": []}, {"role": "manager", "departments": ["Sales", "Support"]}) == [
        ("role", "viewer", "manager"), ("departments", "none", "Sales, Support")]
    assert changes(None, {"name": "bob", "role": "admin"}) == [("name", "", "bob"), ("role", "", "admin")]
    assert changes({"name": "bob"}, None) == [("name", "bob", "")]
    assert changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == [("b", "2", "3")]  # what stayed is left out
    assert changes(None, {"rules": [{"prefix": "44"}]}) == [("rules", "", '[{"prefix": "44"}]')]
    assert changes(None, {"note": "x" * 500})[0][2].endswith("…")
    assert changes(None, None) == [] and changes(None, 5) == [("", "", "5")]
    directory = {"count": 2, "items": [{"name": "Sales", "budget": "8000"}, {"extension": "201", "name": ""}]}
    assert changes({"departments": {"count": 0, "items": []}}, {"departments": directory}) == [
        ("departments", "0", "2 (Sales, 201)")]
