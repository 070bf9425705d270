"""The console's sign-in in a real headless Chromium against a real daemon process: an admin made with
``smdrd user add`` signs in, sees the report page and signs out; a form sent without its CSRF token is refused;
a viewer cannot open an admin page; a person changes their own password; the session cookie is out of
JavaScript's reach, and no password or session id reaches the log.

Skipped only when Chromium, chromedriver or selenium is missing AND the ``CI`` environment variable is unset
(as `tests.test_reports_browser`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from smdrd.testing import DaemonProcess, daemon_config, free_port
from tests.test_console_http import PASSWORDS, add_user
from tests.test_reports_browser import MISSING, browser, wait_loaded

__all__ = ["browser"]  # the fixture, shared with the report page's test

pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DaemonProcess]]:
    folder = tmp_path_factory.mktemp("console-browser")
    add_user(folder / "smdrd.db", "alice", "admin")
    add_user(folder / "smdrd.db", "victor", "viewer")
    PASSWORDS["petra"] = "petra's long passphrase"  # she changes it (tests/test_console_users.py: the rest)
    add_user(folder / "smdrd.db", "petra", "viewer")
    port = free_port()
    daemon = DaemonProcess(folder, daemon_config(folder, http={"listen": f"127.0.0.1:{port}"}))
    try:
        yield f"http://127.0.0.1:{port}", daemon.start()
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()
        PASSWORDS.pop("petra", None)


def at(driver: Any, url: str) -> bool:
    """Whether the browser has arrived at ``url`` (a click's navigation may still be under way: wait for it)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 15).until(lambda d: d.current_url == url)
    except TimeoutException:
        return False
    return True


def submit(driver: Any, button: Any) -> None:
    """Click ``button`` and wait until its page has been replaced by the next one. A form posted back to the page's
    own address (post, redirect, get) leaves the URL as it was, so `at` cannot tell that the navigation is done;
    the next step would act on the old page or cut the post short."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element("tag name", "html")
    button.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def shows(driver: Any, text: str) -> bool:
    """Whether the page (once a click's navigation is done) shows ``text``. A body found just before the
    navigation replaced it is stale when read: look again rather than fail."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: text in d.find_element("tag name", "body").text)
    except TimeoutException:
        return False
    return True


def sign_in(driver: Any, name: str, url: str | None = None) -> None:
    """Sign in on the page open now, or first (``url`` given) open ``url`` with no cookies left."""
    if url is not None:
        driver.delete_all_cookies()
        driver.get(url)
    driver.find_element("id", "name").send_keys(name)
    driver.find_element("id", "password").send_keys(PASSWORDS[name])
    driver.find_element("id", "signin").click()


def test_an_admin_signs_in_sees_the_reports_and_signs_out(base: tuple[str, DaemonProcess], browser: Any) -> None:
    url, daemon = base
    browser.delete_all_cookies()
    browser.get(f"{url}/reports")
    assert browser.current_url.startswith(f"{url}/login?next=")
    assert browser.title.startswith("Sign in")
    sign_in(browser, "alice")
    assert at(browser, f"{url}/reports"), browser.current_url
    wait_loaded(browser, 1)  # the page's own script read /api/reports with the session cookie
    session = browser.get_cookie("smdrd_session")
    assert session is not None and session["httpOnly"] and session["sameSite"] == "Strict"
    assert "smdrd_session" not in browser.execute_script("return document.cookie")
    browser.get(f"{url}/")
    assert "alice (admin)" in browser.find_element("css selector", "header").text
    browser.find_element("id", "signout").click()
    assert at(browser, f"{url}/login"), browser.current_url
    assert browser.get_cookie("smdrd_session") is None
    browser.get(f"{url}/reports")
    assert browser.current_url.startswith(f"{url}/login?next="), "signed out: the reports ask to sign in again"
    log = daemon.log_text()
    assert "console.login" in log
    assert session["value"] not in log and PASSWORDS["alice"] not in log


def test_a_form_without_its_csrf_token_is_refused(base: tuple[str, DaemonProcess], browser: Any) -> None:
    url, _ = base
    sign_in(browser, "alice", f"{url}/login?next=/account/tokens")
    assert at(browser, f"{url}/account/tokens"), browser.current_url
    browser.find_element("id", "token-name").send_keys("nightly export")
    browser.execute_script("document.querySelectorAll('form input[name=csrf]').forEach(e => e.remove())")
    browser.find_element("id", "create-token").click()
    assert shows(browser, "CSRF token is missing or wrong"), browser.page_source[:2000]
    browser.get(f"{url}/account/tokens")
    assert "nightly export" not in browser.find_element("tag name", "body").text, "nothing was created"


def test_a_viewer_cannot_open_an_admin_page(base: tuple[str, DaemonProcess], browser: Any) -> None:
    url, _ = base
    sign_in(browser, "victor", f"{url}/login")
    assert at(browser, f"{url}/"), browser.current_url
    nav = browser.find_element("css selector", "nav").text
    assert "Reports" in nav and "Users" not in nav and "Audit" not in nav
    browser.get(f"{url}/users")
    body = browser.find_element("tag name", "body").text
    assert "Your role (viewer) may not use this page." in body and browser.title.startswith("Not for your role")
    assert "Users" not in browser.find_element("css selector", "nav").text  # the viewer's own menu, a way on
    assert "alice" not in browser.page_source


def test_a_person_changes_their_own_password(base: tuple[str, DaemonProcess], browser: Any) -> None:
    """Petra, signed in, changes her password on her account page: a wrong current one is named beside its field
    and never shown back; the right one changes it, she stays signed in, and the new one signs in."""
    url, daemon = base
    new, wrong = "petra's brand-new passphrase", "not petra's passphrase <b>"
    sign_in(browser, "petra", f"{url}/login?next=/account")
    assert at(browser, f"{url}/account"), browser.current_url

    def change(current: str) -> None:
        browser.find_element("id", "current-password").send_keys(current)
        browser.find_element("id", "new-password").send_keys(new)
        browser.find_element("id", "new-confirm").send_keys(new)
        submit(browser, browser.find_element("id", "change-password-button"))

    change(wrong)
    assert shows(browser, "wrong password"), browser.page_source[:2000]
    assert wrong not in browser.page_source and new not in browser.page_source
    assert browser.find_element("id", "current-password").get_attribute("aria-invalid") == "true"
    change(PASSWORDS["petra"])
    assert shows(browser, "Password changed; your other sessions have ended."), browser.page_source[:2000]
    assert browser.current_url == f"{url}/account?done=own-password"
    browser.get(f"{url}/account")
    assert "petra" in browser.find_element("css selector", "header").text, "still signed in"
    browser.find_element("id", "signout").click()
    assert at(browser, f"{url}/login"), browser.current_url
    browser.find_element("id", "name").send_keys("petra")
    browser.find_element("id", "password").send_keys(new)
    browser.find_element("id", "signin").click()
    assert at(browser, f"{url}/"), browser.current_url
    log = daemon.log_text()
    assert "console.password_failed" in log
    assert not [p for p in (new, wrong, PASSWORDS["petra"]) if p in log]


def test_wrong_password_shows_one_message_and_never_the_password(base: tuple[str, DaemonProcess],
                                                                 browser: Any) -> None:
    url, daemon = base
    browser.delete_all_cookies()
    browser.get(f"{url}/login")
    browser.find_element("id", "name").send_keys("victor")
    browser.find_element("id", "password").send_keys("not victor's passphrase <b>")
    browser.find_element("id", "signin").click()
    assert shows(browser, "Wrong name or password"), browser.page_source[:2000]
    assert "not victor's passphrase" not in browser.page_source
    assert browser.find_element("id", "password").get_attribute("value") == ""
    assert "not victor's passphrase" not in daemon.log_text()
