"""People and rights over HTTP, against a real daemon process on a real port: sign-in and sign-out, session
cookies, CSRF on every form, each route's roles, personal API tokens, the shared token as a service token,
lockout and throttling with their audit entries; and no secret in the log or on an error page."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from smdrd.accounts import digest
from smdrd.console import ADDRESS_FAILURES, LOCK_AFTER, MAX_ADDRESSES, AddressThrottle, safe_next
from smdrd.store import open_store
from smdrd.testing import DaemonProcess, config_toml, daemon_config, free_port

SERVICE_TOKEN = "service-token-0123456789abcdef"
PASSWORDS = {"alice": "alice's long passphrase", "victor": "victor's long passphrase",
             "maria": "maria's long passphrase", "lenny": "lenny's long passphrase"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_user(db: Path, name: str, role: str, *extra: str) -> None:
    done = subprocess.run([sys.executable, "-m", "smdrd", "user", "add", name, "--role", role, *extra,
                           "--password-stdin", "--database", str(db)], input=PASSWORDS[name] + "\n",
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


class Site:
    def __init__(self, daemon: DaemonProcess, port: int) -> None:
        self.daemon = daemon
        self.base = f"http://127.0.0.1:{port}"
        #: every secret the tests handle, to look for in the log at the end.
        self.secrets: set[str] = {SERVICE_TOKEN, *PASSWORDS.values()}


DEPARTMENTS = [{"name": "Sales", "extensions": ["201"]}, {"name": "Sales North", "parent": "Sales",
                                                           "extensions": ["202"]},
               {"name": "Support", "extensions": ["301"]}]


def start(folder: Path, *users: tuple[str, str, tuple[str, ...]]) -> tuple[DaemonProcess, int]:
    db = folder / "smdrd.db"
    departments = folder / "departments.toml"  # a manager's departments must be configured ones
    departments.write_text(config_toml({"departments": DEPARTMENTS}))
    for name, role, extra in users:
        add_user(db, name, role, *extra, "--config", str(departments))
    port = free_port()
    daemon = DaemonProcess(folder, daemon_config(folder, http={"listen": f"127.0.0.1:{port}",
                                                               "token": SERVICE_TOKEN}, departments=DEPARTMENTS))
    return daemon.start(), port


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("console")
    db = folder / "smdrd.db"
    add_user(db, "alice", "admin")
    accounts = open_store(db).accounts()
    try:
        alice = accounts.user("alice")
        assert alice is not None
        accounts.create_session(alice.id, digest("an expired session"), "csrf", at=0, expires_at=1)
    finally:
        accounts.close()
    daemon, port = start(folder, ("victor", "viewer", ()), ("maria", "manager", ("--department", "Sales")),
                         ("lenny", "viewer", ()))
    running = Site(daemon, port)
    try:
        yield running
        text = daemon.log_text()
        leaked = [s for s in running.secrets if s in text]
        assert not leaked, "a password, token or session id reached the log"
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def sign_in(site: Site, browser: aiohttp.ClientSession, name: str, password: str | None = None,
                  target: str = "/") -> aiohttp.ClientResponse:
    async with browser.get(f"{site.base}/login", params={"next": target}) as page:
        assert page.status == 200
        token = CSRF.search(await page.text())
    assert token is not None
    form = {"csrf": token.group(1), "next": target, "name": name,
            "password": PASSWORDS[name] if password is None else password}
    async with browser.post(f"{site.base}/login", data=form, allow_redirects=False) as response:
        await response.read()
        cookie = browser.cookie_jar.filter_cookies(URL(site.base)).get("smdrd_session")
        if cookie is not None:
            site.secrets.add(cookie.value)
        return response


async def page_csrf(site: Site, browser: aiohttp.ClientSession, path: str = "/") -> str:
    async with browser.get(site.base + path) as page:
        assert page.status == 200, path
        found = CSRF.search(await page.text())
    assert found is not None
    return found.group(1)


async def status(browser: aiohttp.ClientSession, url: str, **kwargs: object) -> int:
    async with browser.get(url, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        await response.read()
        return response.status


async def test_signed_out_a_browser_is_sent_to_sign_in_and_a_script_gets_401(
        site: Site, browser: aiohttp.ClientSession) -> None:
    async with browser.get(f"{site.base}/reports", headers={"Accept": "text/html"}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] in ("/login?next=/reports", "/login?next=%2Freports")
    assert await status(browser, f"{site.base}/api/reports") == 401
    assert await status(browser, f"{site.base}/users") == 401
    assert await status(browser, f"{site.base}/healthz") == 200
    assert await status(browser, f"{site.base}/console/static/console.css") == 200


async def test_the_shared_token_still_reads_metrics_and_reports(site: Site, browser: aiohttp.ClientSession) -> None:
    bearer = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    assert await status(browser, f"{site.base}/metrics", headers=bearer) == 200
    assert await status(browser, f"{site.base}/api/reports/extensions", headers=bearer) == 200
    assert await status(browser, f"{site.base}/reports?token={SERVICE_TOKEN}") == 200
    assert await status(browser, f"{site.base}/users", headers=bearer) == 403, "a service, not an admin"
    assert await status(browser, f"{site.base}/metrics", headers={"Authorization": "Bearer wrong-token"}) == 401


async def test_sign_in_sets_a_strict_http_only_session_and_sign_out_ends_it(
        site: Site, browser: aiohttp.ClientSession) -> None:
    response = await sign_in(site, browser, "alice", target="/reports?kind=calls")
    assert response.status == 303 and response.headers["Location"] == "/reports?kind=calls"
    cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("smdrd_session="))
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes and "secure" not in attributes
    assert "SameSite=Strict" in cookie
    assert await status(browser, f"{site.base}/reports") == 200
    assert await status(browser, f"{site.base}/api/reports/extensions") == 200
    async with browser.get(f"{site.base}/") as home:
        text = await home.text()
        assert "alice" in text and "Sign out" in text
        assert "default-src 'none'" in home.headers["Content-Security-Policy"]
    old = browser.cookie_jar.filter_cookies(URL(site.base))["smdrd_session"].value
    token = await page_csrf(site, browser)
    async with browser.post(f"{site.base}/logout", data={"csrf": token}, allow_redirects=False) as out:
        assert out.status == 303 and out.headers["Location"] == "/login"
    assert await status(browser, f"{site.base}/api/reports") == 401
    async with aiohttp.ClientSession(cookies={"smdrd_session": old}) as replay:
        assert await status(replay, f"{site.base}/api/reports") == 401, "the ended session is gone server-side"


async def test_a_form_without_its_csrf_token_is_refused(site: Site, browser: aiohttp.ClientSession) -> None:
    async with browser.post(f"{site.base}/login", data={"name": "alice", "password": PASSWORDS["alice"]},
                            allow_redirects=False) as r:
        assert r.status == 403
    assert (await sign_in(site, browser, "alice")).status == 303
    for form in ({}, {"csrf": "not-the-token"}):
        async with browser.post(f"{site.base}/logout", data=form, allow_redirects=False) as r:
            assert r.status == 403
        async with browser.post(f"{site.base}/account/tokens", data={**form, "name": "x"}) as r:
            assert r.status == 403
    assert await status(browser, f"{site.base}/") == 200, "still signed in: the refused sign-out did nothing"


async def test_each_role_reaches_only_its_routes(site: Site, browser: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, browser, "victor")).status == 303
    assert await status(browser, f"{site.base}/reports") == 200
    assert await status(browser, f"{site.base}/metrics") == 200
    assert await status(browser, f"{site.base}/users") == 403
    assert await status(browser, f"{site.base}/audit") == 403
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as manager:
        assert (await sign_in(site, manager, "maria")).status == 303
        assert await status(manager, f"{site.base}/") == 200
        async with manager.get(f"{site.base}/api/reports/extensions") as report:
            assert report.status == 200
            assert (await report.json())["filters"]["department"] == ["Sales"], "theirs by default"
        async with manager.get(f"{site.base}/api/reports") as index:
            assert [d["name"] for d in (await index.json())["departments"]] == ["Sales", "Sales North"]
        url = f"{site.base}/api/reports/departments"
        assert await status(manager, url, params={"department": "Sales North"}) == 200, "under theirs"
        assert await status(manager, url, params={"department": "Support"}) == 403
        assert await status(manager, url, params={"department": "Unassigned"}) == 403
        assert await status(manager, f"{site.base}/api/reports/calls?format=csv&department=Support") == 403
        assert await status(manager, f"{site.base}/metrics") == 403, "metrics cover every department"
        assert await status(manager, f"{site.base}/users") == 403
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        async with admin.get(f"{site.base}/users") as users:
            text = await users.text()
            assert users.status == 200 and "maria" in text and "Sales" in text and "argon2" not in text
        url = f"{site.base}/api/reports/departments"
        assert await status(admin, url, params={"department": "Support"}) == 200


async def test_personal_api_tokens_act_as_their_user_until_revoked(
        site: Site, browser: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, browser, "victor")).status == 303
    token = await page_csrf(site, browser, "/account/tokens")
    async with browser.post(f"{site.base}/account/tokens", data={"csrf": token, "name": "<b>nightly</b>"}) as r:
        text = await r.text()
        assert r.status == 200 and "&lt;b&gt;nightly&lt;/b&gt;" in text and "<b>nightly" not in text
        found = re.search(r'id="new-token">([^<]+)<', text)
    assert found is not None
    secret = found.group(1)
    site.secrets.add(secret)
    async with aiohttp.ClientSession() as script:
        bearer = {"Authorization": f"Bearer {secret}"}
        assert await status(script, f"{site.base}/api/reports/extensions", headers=bearer) == 200
        assert await status(script, f"{site.base}/users", headers=bearer) == 403, "a viewer's token"
        async with script.post(f"{site.base}/account/tokens", data={"name": "another"}, headers=bearer) as r:
            assert r.status == 403, "a token cannot mint tokens"
        async with browser.get(f"{site.base}/account/tokens") as page:
            listing = await page.text()
            assert secret not in listing, "a token is shown once, at creation"
            token_id = re.search(r'name="id" value="(\d+)"', listing)
        assert token_id is not None
        async with browser.post(f"{site.base}/account/tokens/revoke", data={"csrf": token, "id": token_id.group(1)},
                                allow_redirects=False) as r:
            assert r.status == 303
        assert await status(script, f"{site.base}/api/reports/extensions", headers=bearer) == 401


async def test_wrong_passwords_lock_the_account_with_audit_entries(
        site: Site, browser: aiohttp.ClientSession) -> None:
    for _ in range(LOCK_AFTER):
        response = await sign_in(site, browser, "lenny", "a wrong passphrase!")
        assert response.status == 401
    locked = await sign_in(site, browser, "lenny")
    assert locked.status == 401, "locked: even the right password is refused for a while"
    assert await status(browser, f"{site.base}/") == 401
    accounts = open_store(site.daemon.db).accounts()
    try:
        actions = [(e.action, e.target) for e in accounts.entries(20)]
    finally:
        accounts.close()
    assert ("login.locked", "lenny") in actions
    assert actions.count(("login.failed", "lenny")) == LOCK_AFTER + 1
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        async with admin.get(f"{site.base}/audit") as audit:
            text = await audit.text()
        async with admin.get(f"{site.base}/users") as users:
            assert "locked until" in await users.text()
    assert "login.locked" in text and "a wrong passphrase" not in text


async def test_many_failures_from_one_address_are_throttled(tmp_path: Path) -> None:
    daemon, port = start(tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            site = Site(daemon, port)
            codes = []
            for i in range(ADDRESS_FAILURES + 1):
                PASSWORDS[f"nobody{i}"] = "whatever it is"
                codes.append((await sign_in(site, browser, f"nobody{i}")).status)
                del PASSWORDS[f"nobody{i}"]
            assert codes == [401] * ADDRESS_FAILURES + [429]
            async with browser.get(f"{base}/login") as page:
                assert page.status == 200
        accounts = open_store(daemon.db).accounts()
        try:
            entries = accounts.entries(5)
        finally:
            accounts.close()
        assert any(e.action == "login.throttled" and e.target == "127.0.0.1" for e in entries)
        assert all("nobody" not in e.target for e in entries), "names that are no user's are not recorded"
        daemon.terminate()
    finally:
        daemon.kill()


@pytest.mark.parametrize(("target", "expected"), [
    ("/reports?kind=calls", "/reports?kind=calls"), ("/", "/"), ("", "/"), ("//evil.example/x", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("reports", "/"), ("/a\r\nSet-Cookie: x", "/")])
def test_after_signing_in_the_browser_goes_only_to_a_path_on_this_server(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_address_throttle_counts_per_window_and_remembers_a_bounded_number_of_addresses() -> None:
    throttle = AddressThrottle(limit=3, window=100)
    assert [throttle.failed("10.0.0.1", 0) for _ in range(3)] == [False, False, True]
    assert throttle.blocked("10.0.0.1", 99) and not throttle.blocked("10.0.0.2", 99)
    assert not throttle.blocked("10.0.0.1", 100), "a new window"
    for i in range(MAX_ADDRESSES + 10):
        throttle.failed(f"10.1.{i // 256}.{i % 256}", 200)
    assert len(throttle._failures) == MAX_ADDRESSES


async def test_expired_sessions_leave_the_database(site: Site) -> None:
    accounts = open_store(site.daemon.db).accounts()
    try:
        for _ in range(200):
            if accounts.session(digest("an expired session"), at=0) is None:
                break
            await asyncio.sleep(0.05)
        assert accounts.session(digest("an expired session"), at=0) is None, "pruned when the daemon started"
    finally:
        accounts.close()


async def test_a_person_who_asks_for_a_missing_or_forbidden_page_gets_the_consoles_page(
        site: Site, browser: aiohttp.ClientSession) -> None:
    """A browser (Accept: text/html) gets the console's own page, with its menu and a way on, under the status a
    script gets in plain text: 404 for no such page, 403 for a page not of the role; /directory leads to the
    directory's extensions."""
    html = {"Accept": "text/html,application/xhtml+xml"}
    async with browser.get(f"{site.base}/no-such-page", headers=html) as r:
        page = await r.text()
        assert r.status == 404 and r.content_type == "text/html"
        assert "There is no such page." in page and 'href="/login"' in page and 'href="/users"' not in page
    async with browser.get(f"{site.base}/no-such-page") as r:  # a script
        assert r.status == 404 and r.content_type == "text/plain"
    assert (await sign_in(site, browser, "victor")).status == 303
    async with browser.get(f"{site.base}/users", headers=html) as r:
        page = await r.text()
        assert r.status == 403 and "Your role (viewer) may not use this page." in page
        assert 'href="/reports"' in page and 'href="/users"' not in page  # the viewer's own menu
    async with browser.get(f"{site.base}/users") as r:
        assert r.status == 403 and r.content_type == "text/plain"
    async with browser.get(f"{site.base}/nothing/<script>alert(1)</script>", headers=html) as r:
        page = await r.text()
        assert r.status == 404 and "<script>alert" not in page and 'href="/"' in page
    async with browser.get(f"{site.base}/directory", headers=html, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/directory/extensions"
