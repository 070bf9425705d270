"""Issue 15's cross-cutting acceptance, on one real daemon process fed real PBX lines over TCP, walking every route
the built daemon has (so pages added later are covered without touching this file):

* (a) in Chromium: the first sign-in of an admin made by ``smdrd user add``; the admin adds a manager in the
  console; the manager signs in and sees only their departments;
* (b) a manager gets no other department's figures from any page or API route: every URL an admin reaches by
  following links, and every route asked for ``department=Support``;
* (c) a PBX line whose name and number fields hold ``<script>alert(1)</script>`` and ``<img src=x
  onerror=alert(1)>`` shows as text on every page: never as markup in any HTML the server sends, and in Chromium
  no alert opens and no such element exists on any page;
* numbers masked for everyone but admins (``[privacy] mask_digits = 3``) are masked on every route;
* (d) a change sent without its CSRF token (or with a wrong one) is refused 403 by every route that is not GET,
  and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import html
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from smdrd.accounts import hash_password
from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.store import open_store
from smdrd.store.api import Actor
from smdrd.testing import DaemonProcess, daemon_config, free_port, tcp_server_source
from tests.test_console_http import PASSWORDS, Site, add_user, sign_in
from tests.test_reports import Call, write_calls
from tests.test_reports_browser import MISSING, browser, wait_loaded

__all__ = ["browser"]

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ZONE = ZoneInfo("Europe/Warsaw")
DEPARTMENTS = [{"name": "Sales", "extensions": ["201"]},
               {"name": "Sales North", "parent": "Sales", "extensions": ["202"]},
               {"name": "Support", "extensions": ["391"]}]
#: what only Support's figures hold: its extension's name (from the PBX) and the number it called (the part that
#: numbers masked for a manager still show).
SUPPORT_MARKERS = ("Zyxwvut", "22999")
#: the numbers called, whole: an admin sees them, nobody else does ([privacy] mask_digits = 3).
WHOLE_NUMBERS = ("229990391", "221110201", "221110202", "600123456")
NEW = {"mona": "mona's long passphrase"}
#: pages are read up to this many bytes (the exports are the largest).
MAX_READ = 4 * 1024 * 1024


def now_local(minutes_ago: int) -> datetime:
    return datetime.fromtimestamp(time.time() - minutes_ago * 60, ZONE).replace(microsecond=0)


def avaya_line(extension: str, number: str, name: str, other: str, minutes_ago: int) -> bytes:
    """An Avaya IP Office SMDR line of an outbound call from ``extension`` (Party1Name ``name``, Party2Name
    ``other``)."""
    start = now_local(minutes_ago).strftime("%Y/%m/%d %H:%M:%S")
    return (f"{start},00:01:05,3,{extension},O,{number},{number},,0,10{minutes_ago:05d},0,E{extension},{name},T9005,"
            f"{other},0,0,,,,,,,,,,,,,").encode() + b"\r\n"


@dataclass
class Walk:
    """What a signed-in admin reached by following links: each URL's status, type and body."""

    pages: dict[str, tuple[int, str, str]] = field(default_factory=dict)


class Acceptance(Site):
    walk: Walk


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acceptance]:
    PASSWORDS.update(NEW)
    folder = tmp_path_factory.mktemp("acceptance")
    db = folder / "smdrd.db"
    day = now_local(90).strftime("%Y-%m-%dT%H:%M:%S")
    asyncio.run(write_calls(db, [
        Call(day, "201", "outbound", "national", 125, "1.20", e164="+48221110201", number="0221110201"),
        Call(day, "202", "outbound", "mobile", 61, "0.70", e164="+48600123456", number="0600123456"),
        Call(day, "391", "outbound", "national", 95, "0.90", e164="+48229990391", number="0229990391"),
        Call(day, "201", "outbound", "national", 10, "0.10", number=SCRIPT, e164=""),
        Call(day, "202", "outbound", "national", 10, "0.10", number=IMG, e164=""),
    ]))
    add_user(db, "alice", "admin")  # the first admin, made from the shell
    accounts = open_store(db).accounts()
    try:
        for name, role, departments in (("victor", "viewer", ()), ("maria", "manager", ("Sales",))):
            accounts.add_user(name, role, hash_password(PASSWORDS[name]), departments, at=int(time.time()),
                              actor=Actor("test"))
    finally:
        accounts.close()
    port, pbx = free_port(), free_port()
    config = daemon_config(folder, [tcp_server_source("pbx", pbx)], departments=DEPARTMENTS,
                           http={"listen": f"127.0.0.1:{port}", "max_connections": 80},
                           privacy={"mask_digits": 3})
    daemon = DaemonProcess(folder, config)
    try:
        running = Acceptance(daemon.start(), port)
        daemon.wait_port(pbx)
        with socket.create_connection(("127.0.0.1", pbx), timeout=10) as conn:
            conn.sendall(avaya_line("201", "0221110201", SCRIPT, IMG, 30) + avaya_line("202", "0221110202", IMG,
                                                                                       SCRIPT, 29)
                         + avaya_line("391", "0229990391", "Zyxwvut", "Line 5.0", 28)
                         + avaya_line("201", SCRIPT, SCRIPT, IMG, 27) + avaya_line("202", IMG, IMG, IMG, 26))
        wait_for_calls(db, 8)
        running.walk = asyncio.run(walk_as_admin(running))
        yield running
        daemon.terminate()
    finally:
        daemon.kill()
        for name in NEW:
            PASSWORDS.pop(name, None)


def wait_for_calls(db: Path, at_least: int) -> None:
    """Until the daemon has stored the lines it was sent (their journal rows)."""
    deadline = time.monotonic() + 20
    while True:
        store = open_store(db)
        reader = store.reports()
        try:
            legs = reader.call_totals(_all_filters(), ZONE, selected=False)[0]
        finally:
            reader.close()
        if legs >= at_least or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _all_filters() -> Any:
    from datetime import date

    from smdrd.store.api import Filters

    return Filters(date(2000, 1, 1), date(2099, 12, 31), (), (), ("outbound", "inbound", "internal"), ())


@functools.cache
def routes(folder: Path) -> list[tuple[str, str]]:
    """(method, path) of every route of the daemon as `smdrd run` builds it (paths with ``{name}`` holes)."""
    folder.mkdir(exist_ok=True)
    daemon = Daemon(Settings.model_validate(daemon_config(folder, [], departments=DEPARTMENTS)))
    daemon.build()
    assert daemon.http is not None
    out = []
    for route in daemon.http.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        out.append((route.method, str(info.get("path") or info.get("formatter") or "")))
    return out


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    """Status, content type and (text) body of a GET; an event stream is read for a moment only."""
    async with session.get(url, allow_redirects=False) as response:
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        if kind == "text/event-stream":
            try:
                body = await asyncio.wait_for(response.content.read(4096), 3)
            except TimeoutError:
                body = b""
        else:
            body = await response.content.read(MAX_READ)
        text = body.decode("utf-8", "replace") if kind.startswith(("text/", "application/json")) else ""
        return response.status, kind, text


LINK = re.compile(r'(?:href|src|action)="([^"#]*)')


async def walk_as_admin(site: Site, limit: int = 500) -> Walk:
    """Every page an admin reaches from every route without holes, by following links on this server."""
    seeds = sorted({path for method, path in routes(site.daemon.folder / "walk") if method == "GET"
                    and "{" not in path})
    walk = Walk()
    per_path: dict[str, int] = {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=60)) as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        queue, filled = list(seeds), False
        while len(walk.pages) < limit:
            if not queue:
                if filled:
                    break
                # pages with a hole that no link led to (nothing of their kind exists yet): a made-up name or id
                filled, reached = True, {urlsplit(u).path for u in walk.pages}
                queue = [_fill(path) for method, path in routes(site.daemon.folder / "walk")
                         if method == "GET" and "{" in path and not path.startswith("/api/")
                         and not any(re.fullmatch(_pattern(path), r) for r in reached)]
                continue
            url = queue.pop(0)
            if url in walk.pages:
                continue
            walk.pages[url] = page = await fetch(admin, site.base + url)
            if page[1] != "text/html":
                continue
            for link in LINK.findall(html.unescape(page[2])):
                target = urljoin(url, link)
                parts = urlsplit(target)
                if parts.netloc or not parts.path.startswith("/") or parts.path in ("/logout", "/login"):
                    continue
                if per_path.get(parts.path, 0) >= 2:  # a couple of each page's variants (filters, pages)
                    continue
                if target not in walk.pages and target not in queue:
                    per_path[parts.path] = per_path.get(parts.path, 0) + 1
                    queue.append(target)
    return walk


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60))


# ---- (c) markup from the PBX is text everywhere ----

def _pattern(path: str) -> str:
    """A route's path as a regular expression (``/calls/{id}`` matches ``/calls/17``)."""
    return re.sub(r"\\\{\w+(?::[^}]*)?\\\}", "[^/]+", re.escape(path))


def test_markup_from_the_pbx_is_never_markup_in_any_page_the_server_sends(site: Acceptance) -> None:
    pages = site.walk.pages
    html_pages = {url: body for url, (status, kind, body) in pages.items() if kind == "text/html"}
    seeds = {path for method, path in routes(site.daemon.folder / "walk") if method == "GET" and "{" not in path}
    assert seeds <= set(pages), f"not reached: {sorted(seeds - set(pages))}"
    holes = {path for method, path in routes(site.daemon.folder / "walk") if method == "GET" and "{" in path
             and not path.startswith("/api/")}  # pages with a name or id in their path: reached through links
    unreached = [path for path in holes if not any(re.fullmatch(_pattern(path), urlsplit(url).path)
                                                   for url in pages)]
    # A page no link leads to (nothing of its kind exists yet, such as a schedule) is asked for by a made-up id.
    assert all(_fill(path) in pages for path in unreached), (unreached, len(pages))
    assert not [url for url, (status, _, _) in pages.items() if status >= 500], "no page fails"
    leaking = [url for url, body in html_pages.items() if SCRIPT in body or IMG in body]
    assert not leaking, f"markup from the PBX sent as markup by {leaking}"
    escaped = {p: [url for url, body in html_pages.items() if html.escape(p, quote=False) in body
                   or html.escape(p) in body] for p in (SCRIPT, IMG)}
    assert escaped[SCRIPT] and escaped[IMG], "the hostile names and numbers are shown (escaped) somewhere"
    for url, (_, kind, body) in pages.items():  # JSON is JSON, never HTML a browser would render
        if SCRIPT in body or IMG in body:
            assert kind != "text/html", url


@pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                    reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")
def test_no_script_from_the_pbx_runs_on_any_page(site: Acceptance, browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException, UnexpectedAlertPresentException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.get(f"{site.base}/login")
    sign_in_browser(browser, "alice")
    WebDriverWait(browser, 15).until(lambda d: not d.current_url.startswith(f"{site.base}/login"))
    # Each page once (its first variant), and up to three variants of it that hold a hostile value.
    visit: dict[str, str] = {}
    hostile_of: dict[str, int] = {}
    for url, (status, kind, body) in sorted(site.walk.pages.items()):
        if kind != "text/html" or status != 200:
            continue
        route = re.sub(r"/\d+$", "/{id}", urlsplit(url).path)
        if any(html.escape(p, quote=False) in body or html.escape(p) in body for p in (SCRIPT, IMG)):
            if hostile_of.get(route, 0) < 3:
                hostile_of[route] = hostile_of.get(route, 0) + 1
                visit[url] = url
        elif route not in visit:
            visit[route] = url
    shown_as_text = []
    for url in sorted(set(visit.values())):
        try:  # a script that ran while the page loaded has opened its alert by the time the load ends
            browser.get(site.base + url)
            browser.switch_to.alert.dismiss()
            pytest.fail(f"an alert opened on {url}")
        except UnexpectedAlertPresentException:
            pytest.fail(f"an alert opened on {url}")
        except NoAlertPresentException:
            pass
        injected = browser.execute_script(
            "return document.querySelectorAll('img[src=\"x\"], img[onerror]').length"
            " + [...document.scripts].filter(s => s.text.includes('alert(1)')).length")
        assert injected == 0, f"markup from the PBX became elements on {url}"
        text = browser.find_element("tag name", "body").text
        if SCRIPT in text or IMG in text:
            shown_as_text.append(url)
    assert shown_as_text, "the hostile values appear as text on the pages that list them"
    assert len(visit) >= 10, sorted(visit)


def sign_in_browser(driver: Any, name: str) -> None:
    driver.find_element("id", "name").send_keys(name)
    driver.find_element("id", "password").send_keys(PASSWORDS[name])
    driver.find_element("id", "signin").click()


# ---- (b) a manager sees only their departments, on every route ----

async def test_a_manager_gets_no_other_departments_figures_from_any_route(site: Acceptance) -> None:
    pages = site.walk.pages
    with_support = [url for url, (status, _, body) in pages.items()
                    if status == 200 and any(m in body for m in SUPPORT_MARKERS)]
    assert len(with_support) >= 3, "the admin sees Support's figures (the check below is not vacuous)"
    gets = sorted({path for method, path in routes(site.daemon.folder / "walk") if method == "GET"
                   and "{" not in path})
    leaks = []
    async with session() as manager:
        assert (await sign_in(site, manager, "maria")).status == 303
        for url in [*sorted(pages), *(f"{path}?department=Support" for path in gets)]:
            status, _, body = await fetch(manager, site.base + url)
            assert status < 500, url
            # (a marker the URL itself holds, such as the number tester's ?number=, is an echo, not a leak)
            if status == 200 and any(m in body for m in SUPPORT_MARKERS if m not in url):
                leaks.append(url)
        status, _, body = await fetch(manager, f"{site.base}/api/reports/departments?department=Support")
        assert status == 403
        status, _, body = await fetch(manager, f"{site.base}/api/reports/extensions")
        assert status == 200 and "201" in body, "their own figures, by default"
    assert not leaks, f"a manager of Sales read Support's figures at {leaks}"


# ---- numbers masked on every route ----

async def test_with_numbers_masked_a_viewer_sees_no_whole_number_on_any_route(site: Acceptance) -> None:
    pages = site.walk.pages
    assert [url for url, (status, _, body) in pages.items() if status == 200
            and any(n in body for n in WHOLE_NUMBERS)], "an admin sees numbers whole"
    leaks, masked = [], []
    async with session() as viewer:
        assert (await sign_in(site, viewer, "victor")).status == 303
        for url in sorted(pages):
            status, _, body = await fetch(viewer, site.base + url)
            if status != 200:
                continue
            # (a number the URL itself holds, such as the number tester's ?number=, is an echo, not a leak)
            if any(n in body for n in WHOLE_NUMBERS if n not in url):
                leaks.append(url)
            if "229990***" in body:
                masked.append(url)
    assert not leaks, f"whole numbers shown to a viewer at {leaks}"
    assert masked, "the masked numbers are shown"


# ---- (d) no change without the CSRF token ----

def multipart(fields: dict[str, str]) -> aiohttp.FormData:
    """A form as a browser sends one with a file in it (every form route reads it; an upload reads only it)."""
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", b"2026/03/02 10:15:00,00:01:05\r\n", filename="smdr.txt", content_type="text/plain")
    return form


def _fill(path: str) -> str:
    holes = {"name": "victor", "id": "1", "position": "1", "number": "201"}
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: holes.get(m.group(1), "x"), path)


async def test_every_route_that_changes_something_refuses_a_request_without_its_csrf_token(
        site: Acceptance) -> None:
    changing = sorted({(method, _fill(path)) for method, path in routes(site.daemon.folder / "walk")
                       if method not in ("GET", "HEAD", "OPTIONS")})
    assert ("POST", "/users") in changing and ("DELETE", "/api/users/victor") in changing

    def state() -> tuple[int, list[tuple[str, str, tuple[str, ...]]]]:
        accounts = open_store(site.daemon.db).accounts()
        try:
            return accounts.entries(1)[0].id, [(u.name, u.role, u.departments) for u in accounts.users()]
        finally:
            accounts.close()

    async with session() as admin:
        assert (await sign_in(site, admin, "alice")).status == 303
        before = state()
        refused = []
        for method, path in changing:
            for token in ({}, {"csrf": "not-the-token"}):
                form = {**token, "name": "x", "role": "viewer", "password": "a long passphrase",
                        "confirm": "a long passphrase", "departments": "Sales"}
                headers = {"X-CSRF-Token": token["csrf"]} if token and method != "POST" else {}
                data: dict[str, Any] = {"data": multipart(form)} if method == "POST" else {"json": form}
                async with admin.request(method, site.base + path, allow_redirects=False, headers=headers,
                                         **data) as response:
                    text = await response.text()
                    if response.status != 403 or "CSRF" not in text:
                        refused.append((method, path, response.status))
        assert not refused, f"accepted, or refused for another reason, without the right CSRF token: {refused}"
        assert state() == before, "nothing changed"
        status, _, _ = await fetch(admin, f"{site.base}/users")
        assert status == 200, "still signed in: the refused sign-out did nothing"


# ---- (a) the first admin, a manager made in the console, in Chromium ----

@pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                    reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")
def test_first_sign_in_then_an_admin_makes_a_manager_who_sees_only_their_departments(
        site: Acceptance, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.test_console_browser import at, shows

    browser.delete_all_cookies()
    browser.get(f"{site.base}/")
    assert browser.current_url.startswith(f"{site.base}/login?next=")
    sign_in_browser(browser, "alice")  # made by `smdrd user add`, signing in for the first time
    assert at(browser, f"{site.base}/"), browser.current_url
    browser.find_element("link text", "Users").click()
    assert at(browser, f"{site.base}/users"), browser.current_url
    browser.find_element("id", "new-name").send_keys("mona")
    Select(browser.find_element("id", "new-role")).select_by_value("manager")
    browser.find_element("css selector", '#add-user input[name="departments"][value="Sales"]').click()
    browser.find_element("id", "new-password").send_keys(NEW["mona"])
    browser.find_element("id", "new-confirm").send_keys(NEW["mona"])
    browser.find_element("id", "add").click()
    assert shows(browser, "User added."), browser.page_source[:3000]
    row = browser.find_element("id", "user-mona").text
    assert "manager" in row and "Sales" in row
    browser.find_element("id", "signout").click()
    assert at(browser, f"{site.base}/login"), browser.current_url

    sign_in_browser(browser, "mona")
    assert at(browser, f"{site.base}/"), browser.current_url
    nav = browser.find_element("css selector", "nav").text
    assert "Users" not in nav and "Audit" not in nav
    browser.get(f"{site.base}/reports")
    wait_loaded(browser, 1)
    options = [o.get_attribute("value") for o in Select(browser.find_element("id", "department")).options]
    assert "Support" not in options and "Sales" in options, options
    WebDriverWait(browser, 15).until(lambda d: d.find_elements("css selector", "#report tbody tr"))
    body = browser.find_element("tag name", "body").text
    assert not any(marker in body for marker in SUPPORT_MARKERS), "only Sales' figures"
    browser.get(f"{site.base}/api/reports/departments?department=Support")
    assert "forbidden" in browser.find_element("tag name", "body").text
    accounts = open_store(site.daemon.db).accounts()
    try:
        added = [e for e in accounts.entries(50) if e.action == "user.add" and e.target == "mona"]
    finally:
        accounts.close()
    assert added and added[0].actor == "alice" and added[0].after == {"name": "mona", "role": "manager",
                                                                       "departments": ["Sales"]}
