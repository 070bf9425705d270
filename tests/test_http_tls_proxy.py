"""HTTPS and reverse proxies (issue 15): ``[http] tls_cert``/``tls_key`` serve the console over TLS with a
certificate the test makes (openssl), checked by a real HTTPS client, and its cookies are ``Secure``;
``[http] trusted_proxies`` makes ``X-Forwarded-For``/``X-Forwarded-Proto`` count, from those proxies only, so that
sign-in throttling and the audit log see the real client."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from smdrd.config import HttpConfig, Settings, load_config
from smdrd.errors import ConfigError
from smdrd.http import HttpServer, public
from smdrd.http_config import tls_context
from smdrd.store import open_store
from smdrd.testing import DaemonProcess, config_toml, daemon_config, free_port
from tests.test_console_http import PASSWORDS, Site, add_user, sign_in, status

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None and not os.environ.get("CI"),
                                reason="openssl is not installed (under CI=true this fails)")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=smdrd test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder)
    add_user(folder / "smdrd.db", "alice", "admin")
    port = free_port()
    daemon = DaemonProcess(folder, daemon_config(folder, http={
        "listen": f"127.0.0.1:{port}", "tls_cert": str(cert), "tls_key": str(key),
        "trusted_proxies": ["127.0.0.0/8"]}))
    try:
        site = Site(daemon.start(), port)
        site.base = f"https://127.0.0.1:{port}"
        yield site, cert
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()


def client(cert: Path) -> aiohttp.ClientSession:
    """An HTTPS client that trusts the test's certificate only (and checks the host name)."""
    context = ssl.create_default_context(cafile=str(cert))
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 connector=aiohttp.TCPConnector(ssl=context),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def test_the_console_over_https_sets_secure_cookies(tls_site: tuple[Site, Path]) -> None:
    site, cert = tls_site
    async with client(cert) as browser:
        assert await status(browser, f"{site.base}/healthz") == 200
        response = await sign_in(site, browser, "alice")
        assert response.status == 303
        cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("smdrd_session="))
        assert "Secure" in cookie.split(";")[-1] or "; Secure" in cookie
        assert await status(browser, f"{site.base}/users") == 200
    async with aiohttp.ClientSession() as plain:  # plain HTTP on the TLS port gets no page
        with pytest.raises(aiohttp.ClientError):
            await status(plain, f"http://127.0.0.1:{site.base.rsplit(':', 1)[1]}/healthz")
    async with aiohttp.ClientSession() as untrusting:  # a client that does not trust the certificate stops
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await status(untrusting, f"{site.base}/healthz")


async def test_behind_a_trusted_proxy_sign_ins_are_counted_and_audited_by_the_real_client(
        tls_site: tuple[Site, Path]) -> None:
    site, cert = tls_site
    accounts = open_store(site.daemon.db).accounts()
    try:
        first = accounts.entries(1)[0].id + 1
    finally:
        accounts.close()
    PASSWORDS["nobody"] = "not anyone's passphrase"
    try:
        async with client(cert) as browser:
            # The client, then a proxy of ours: throttling and the audit log count 203.0.113.7 (the one key both
            # use, `Console._address`; the throttle's own counting is tested in test_console_http).
            browser.headers["X-Forwarded-For"] = "203.0.113.7, 127.0.0.2"
            assert (await sign_in(site, browser, "nobody")).status == 401
            browser.headers["X-Forwarded-For"] = "198.51.100.10"  # another client behind the same proxy
            assert (await sign_in(site, browser, "alice")).status == 303
    finally:
        del PASSWORDS["nobody"]
    accounts = open_store(site.daemon.db).accounts()
    try:
        entries = [e for e in accounts.entries(50) if e.id >= first]
    finally:
        accounts.close()
    assert any(e.action == "login.failed" and e.address == "203.0.113.7" for e in entries)
    assert any(e.action == "login" and e.address == "198.51.100.10" for e in entries)
    assert not any(e.address.startswith("127.") for e in entries if e.action.startswith("login"))


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, str]]:
    """Two in-process servers that answer each request with the client address and scheme they see: one that
    trusts 127.0.0.1 as a proxy, one that trusts nothing."""
    @public
    async def who(request: web.Request) -> web.StreamResponse:
        return web.json_response({"remote": request.remote, "secure": request.secure})

    servers = []
    for proxies in (["127.0.0.1", "10.0.0.0/8"], []):
        server = HttpServer("127.0.0.1:0", config=HttpConfig(trusted_proxies=proxies))
        server.app.router.add_get("/who", who)
        await server.start()
        servers.append(server)
    try:
        yield tuple(f"http://127.0.0.1:{s.bound_port}/who" for s in servers)  # type: ignore[misc]
    finally:
        for server in servers:
            await server.close()


@pytest.mark.parametrize(("headers", "remote", "secure"), [
    ({}, "127.0.0.1", False),
    ({"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7", False),
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, "203.0.113.7", True),
    # A client's own X-Forwarded-For is kept left of the proxies' hops: the first untrusted hop from the right wins.
    ({"X-Forwarded-For": "1.2.3.4, 203.0.113.7, 10.1.2.3"}, "203.0.113.7", False),
    ({"X-Forwarded-For": "2001:db8::1"}, "2001:db8::1", False),
    ({"X-Forwarded-For": "not-an-address"}, "127.0.0.1", False),
    ({"X-Forwarded-Proto": "gopher"}, "127.0.0.1", False),
])
async def test_forwarded_headers_count_only_from_trusted_proxies(
        echo: tuple[str, str], headers: dict[str, str], remote: str, secure: bool) -> None:
    trusting, untrusting = echo
    async with aiohttp.ClientSession() as session:
        async with session.get(trusting, headers=headers) as r:
            assert await r.json() == {"remote": remote, "secure": secure}
        async with session.get(untrusting, headers=headers) as r:
            assert await r.json() == {"remote": "127.0.0.1", "secure": False}, "nobody's headers count"


def test_tls_settings_are_checked_with_the_key_they_belong_to(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key: set both"):
        HttpConfig(tls_cert=tmp_path / "cert.pem")
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings.model_validate({"http": {"trusted_proxies": ["10.0.0.0/33"]}})
    missing = HttpConfig(tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem")
    with pytest.raises(ConfigError, match=r"cannot read .*cert\.pem.*no such file"):
        tls_context(missing)
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nsecret-looking\n-----END PRIVATE KEY-----\n")
    config = tmp_path / "smdrd.toml"
    config.write_text(config_toml(daemon_config(tmp_path, http={"tls_cert": str(tmp_path / "cert.pem"),
                                                                "tls_key": str(tmp_path / "key.pem")})))
    with pytest.raises(ConfigError) as refused:  # what check-config and the daemon's start say
        load_config(config, use_env=False)
    assert [key for key, _ in refused.value.problems] == ["http.tls_cert"]
    assert "not a PEM certificate" in str(refused.value) and "secret-looking" not in str(refused.value)
    cert, key = make_certificate(tmp_path)
    assert tls_context(HttpConfig(tls_cert=cert, tls_key=key)) is not None
