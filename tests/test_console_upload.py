"""The console's upload over HTTP, against a real daemon process: an admin uploads a saved PBX log (its format
detected), follows the import on its job page and sees the lines that failed by number; uploading it again adds
no call; a file over the size cap, a wrong format, a missing CSRF token and a viewer are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smdrd.accounts import digest, new_token
from smdrd.store import open_store
from smdrd.store.api import Actor
from smdrd.testing import free_port
from tests.test_console_calls import session
from tests.test_console_http import CSRF, Site, sign_in

__all__ = ["session"]  # the fixture

SAMPLE = Path(__file__).parent / "fixtures" / "avaya-ipo" / "ipo500-2017-07.smdr"
#: where the bad lines go (1-based line numbers of the uploaded file; line 1 is the header).
BAD_AT = (4, 9, 15)
GOOD = 20


def log_file() -> bytes:
    """The sample's header and first `GOOD` calls, with a bad line at each of `BAD_AT`."""
    lines = SAMPLE.read_bytes().splitlines()[:GOOD + 1]
    for n in BAD_AT:
        lines.insert(n - 1, f"2017/07/01 09:00:00,not a duration {n},0,214,O".encode())
    return b"\r\n".join(lines) + b"\r\n"


@pytest.fixture
def site(console_site: Site) -> Site:
    return console_site


async def upload(session: aiohttp.ClientSession, site: Site, body: bytes, *, fmt: str = "",
                 csrf: str | None = None) -> aiohttp.ClientResponse:
    if csrf is None:
        async with session.get(f"{site.base}/upload") as page:
            assert page.status == 200
            found = CSRF.search(await page.text())
        assert found is not None
        csrf = found.group(1)
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("format", fmt)
    form.add_field("file", body, filename="pbx-log.smdr", content_type="application/octet-stream")
    response = await session.post(f"{site.base}/upload", data=form, allow_redirects=False)
    await response.read()
    return response


async def finished(session: aiohttp.ClientSession, site: Site, location: str) -> dict[str, Any]:
    job_id = location.rsplit("/", 1)[-1]
    for _ in range(600):
        async with session.get(f"{site.base}/api/upload/jobs/{job_id}") as r:
            job: dict[str, Any] = await r.json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError("the import did not end")


async def test_an_upload_is_imported_and_its_bad_lines_are_listed_by_number(
        site: Site, session: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, session, "alice")).status == 303
    response = await upload(session, site, log_file())
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    async with session.get(site.base + location) as page:
        assert page.status == 200 and "pbx-log.smdr" in await page.text()
    job = await finished(session, site, location)
    assert job["state"] == "done", job
    assert job["format"] == "avaya-ipo" and job["detected"]
    stored = job["calls"] + job["duplicates"]  # the browser test may have uploaded the same lines before
    assert stored >= GOOD - 2 and job["errors"] == len(BAD_AT), job
    assert [e["line"] for e in job["failed_lines"]] == list(BAD_AT)
    assert all("not a duration" in e["raw"] for e in job["failed_lines"])
    async with session.get(site.base + location) as page:
        text = await page.text()
    assert '<td class="num">9</td>' in text and "not a duration 9" in text
    assert 'http-equiv="refresh"' not in text, "a finished job's page stops refreshing"
    # The same file again adds nothing: every call is recognised as stored.
    again = await finished(session, site, (await upload(session, site, log_file())).headers["Location"])
    assert again["state"] == "done" and again["calls"] == 0, again
    assert again["duplicates"] == stored, again
    async with session.get(f"{site.base}/api/calls", params={"from": "2017-07-01", "to": "2017-07-31",
                                                             "page_size": "200"}) as r:
        assert len((await r.json())["calls"]) == stored


async def test_bad_uploads_are_refused_beside_their_field(site: Site, session: aiohttp.ClientSession) -> None:
    assert (await sign_in(site, session, "alice")).status == 303
    too_big = await upload(session, site, b"x" * (1024 * 1024 + 10) + b"\n")
    assert too_big.status == 413 and 'id="e-file"' in await too_big.text()
    unknown = await upload(session, site, log_file(), fmt="no-such-pbx")
    assert unknown.status == 400 and 'id="e-format"' in await unknown.text()
    garbage = await upload(session, site, b"\x00\x01 nothing a PBX writes\n" * 5)
    assert garbage.status == 400 and "could not be recognised" in await garbage.text()
    forged = await upload(session, site, log_file(), csrf="not-the-token")
    assert forged.status == 403
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
        assert (await sign_in(site, viewer, "victor")).status == 303
        async with viewer.get(f"{site.base}/upload") as page:
            assert page.status == 403
        form = aiohttp.FormData()
        form.add_field("file", b"x", filename="x.log")
        async with viewer.post(f"{site.base}/upload", data=form) as r:
            assert r.status == 403


async def test_a_script_uploads_with_a_personal_token(site: Site) -> None:
    """``POST /api/upload`` with an admin's personal API token (no CSRF token: a browser never sends one)."""
    token = new_token()
    accounts = open_store(site.daemon.db).accounts()
    try:
        alice = accounts.user("alice")
        assert alice is not None
        accounts.create_token(alice.id, "upload script", digest(token), at=int(time.time()), actor=Actor("test"))
    finally:
        accounts.close()
    site.secrets.add(token)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as script:
        form = aiohttp.FormData()
        form.add_field("format", "avaya-ipo")
        form.add_field("file", log_file(), filename="nightly.smdr")
        async with script.post(f"{site.base}/api/upload", data=form) as r:
            assert r.status == 202, await r.text()
            started = await r.json()
        job = await finished(script, site, started["url"])
    assert job["state"] == "done" and not job["detected"] and job["errors"] == len(BAD_AT)


async def test_one_upload_at_a_time_from_its_first_byte(site: Site, session: aiohttp.ClientSession) -> None:
    """While a file is still arriving, a second upload is refused (409): two at once would each fill the disk
    up to the size cap and start an import of their own. The slow file is not a PBX log (so nothing is
    imported): it is refused for that once it has arrived, and the next upload is taken again."""
    assert (await sign_in(site, session, "alice")).status == 303
    async with session.get(f"{site.base}/upload") as page:
        found = CSRF.search(await page.text())
    assert found is not None
    filler = b"not a PBX line\r\n" * 20_000  # 300 KB: the server reads the first of it while the rest waits
    release = asyncio.Event()

    async def slowly() -> Any:
        yield (f'--B0undary\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{found.group(1)}\r\n'
               '--B0undary\r\nContent-Disposition: form-data; name="file"; filename="slow.smdr"\r\n'
               'Content-Type: application/octet-stream\r\n\r\n').encode() + filler
        await release.wait()
        yield filler + b"\r\n--B0undary--\r\n"

    first = asyncio.create_task(session.post(
        f"{site.base}/upload", data=slowly(), allow_redirects=False,
        headers={"Content-Type": "multipart/form-data; boundary=B0undary"}))
    try:
        for _ in range(200):  # until the console says it is receiving the file
            async with session.get(f"{site.base}/upload") as page:
                if 'id="receiving"' in await page.text():
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the first upload never started")
        second = await upload(session, site, log_file())
        assert second.status == 409
    finally:
        release.set()
        response = await first
        text = await response.text()
    assert response.status == 400 and "could not be recognised" in text
    async with session.get(f"{site.base}/upload") as page:
        assert 'id="receiving"' not in await page.text()


@pytest.fixture(scope="module")
def pbx_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, int]]:
    """A daemon with one live source (``pbx``, Avaya IP Office pushing to a TCP port), the PBX's port beside."""
    from tests.test_console_calls import serve

    folder = tmp_path_factory.mktemp("upload-pbx")
    port = free_port()
    source = {"name": "pbx", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}"}
    for site in serve(folder, sources=[source], tariff={"currency": "PLN"},
                      retention={"calls_days": 0, "lines_days": 0}):
        yield site, port


async def test_a_saved_log_of_what_the_pbx_sent_live_adds_only_what_was_missed(
        pbx_site: tuple[Site, int], session: aiohttp.ClientSession) -> None:
    """The office's PBX sent two calls live; its saved log holds those and two more (the daemon was down for
    them). Uploaded as that PBX's source, the default where the site has one, the two known calls are
    recognised and only the two missed ones are added: no cost counted twice."""
    site, port = pbx_site
    lines = SAMPLE.read_bytes().splitlines()[:5]  # the header, four calls
    for _ in range(300):  # the source listens once the daemon has started it
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("the source never listened")
    writer.write(b"\r\n".join(lines[1:3]) + b"\r\n")
    await writer.drain()
    assert (await sign_in(site, session, "alice")).status == 303
    july = {"from": "2017-07-01", "to": "2017-07-31", "page_size": "200"}
    for _ in range(300):
        async with session.get(f"{site.base}/api/calls", params=july) as r:
            if len((await r.json())["calls"]) == 2:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the live calls never arrived")
    writer.close()
    async with session.get(f"{site.base}/upload") as page:
        form = await page.text()
    assert '<option value="pbx" selected>pbx</option>' in form
    job = await finished(session, site, (await upload(session, site, b"\r\n".join(lines) + b"\r\n"))
                         .headers["Location"])
    assert job["state"] == "done" and job["source"] == "pbx", job
    assert (job["calls"], job["duplicates"]) == (2, 2), job
    async with session.get(f"{site.base}/api/calls", params=july) as r:
        assert len((await r.json())["calls"]) == 4
