"""What a call's page and JSON never show (issue 15's privacy, a review's findings): the call's authorisation
code, to anyone (it is a credential: the store hides it in the raw line as it keeps it out of every call); and,
under ``[privacy] mask_digits``, a number's last digits anywhere in the call's free text (the raw line, the
vendor fields, the call key, the transfer), not only in its number columns. Real stores, a real daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smdrd.core import PARSED, Entry
from smdrd.journal import RatedCall
from smdrd.privacy import MASK, MIN_NUMBER_RUN, hide_codes, mask_text
from smdrd.rating import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.store.api import CallQuery
from smdrd.testing import write_entries
from tests.test_console_calls import api, serve, signed_in
from tests.test_console_http import Site
from tests.test_reports import TZ, target

__all__ = ["target"]  # the fixture: each store in turn

CODE = "987654"  # the caller's authorisation code
NUMBER = "0048600123456"  # dialled
CALLER_ID = "0048221112233"  # a vendor field naming another party
TRANSFER = "to 0048601999888"
RAW = f"2026/03/02 10:15:00,00:02:00,201,O,{NUMBER},{CODE},clid {CALLER_ID},{TRANSFER},T9001".encode()


def the_call() -> RatedCall:
    record = CallRecord(format="test", start=datetime(2026, 3, 2, 10, 15, tzinfo=TZ), duration=120,
                        direction=Direction.OUTBOUND, extension="201", number=NUMBER, trunk="T1", auth_code=CODE,
                        transfer=TRANSFER, extra={"callerid": CALLER_ID, "party": "E201"})
    rating = Rating("+48600123456", "mobile", "rule", "+48", Decimal("0.30"), "EUR", "PL")
    return RatedCall("test:private", record, rating)


async def store_the_call(db: Path | str) -> None:
    await write_entries(db, [Entry("pbx", "", 1_000_000, "test", RAW, PARSED, calls=[the_call()])])


async def test_the_store_hides_a_lines_authorisation_code(target: Path | str) -> None:
    """`CallReader.lines`, on SQLite and on PostgreSQL: the code is gone, every other byte is as received."""
    await store_the_call(target)
    reader = open_store(target).calls()
    try:
        (call,) = reader.search(CallQuery(lo=0, hi=2**40))
        (line,) = reader.lines([call.line_id])
    finally:
        reader.close()
    assert line.raw == RAW.replace(CODE.encode(), MASK.encode() * len(CODE))


@given(st.text(alphabet="0123456789,:/ ", max_size=40), st.text(alphabet="0123456789", min_size=1, max_size=8))
def test_hide_codes_masks_the_code_and_nothing_but_digits(around: str, code: str) -> None:
    raw = f"{around},{code},{around}".encode()
    out = hide_codes(raw, [code])
    assert len(out) == len(raw) and f",{MASK * len(code)},".encode() in out
    assert all(a == b or b == ord(MASK) for a, b in zip(raw, out, strict=True))


@given(st.text(alphabet="0123456789 ,/+", max_size=60), st.integers(1, 6))
def test_no_long_run_of_digits_survives_mask_text(text: str, digits: int) -> None:
    """Every run of `MIN_NUMBER_RUN` digits or more ends in ``digits`` masks: no number's last digits show."""
    out = mask_text(text, [], digits)
    assert len(out) == len(text)
    run = 0
    for ch in out + " ":
        if ch.isdigit():
            run += 1
            continue
        assert run < MIN_NUMBER_RUN or ch == MASK, (text, out)
        run = 0


@pytest.fixture(scope="module")
def private_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("privacy")
    asyncio.run(store_the_call(folder / "smdrd.db"))
    yield from serve(folder, tariff={"currency": "EUR"}, retention={"calls_days": 0, "lines_days": 0},
                     privacy={"mask_digits": 3})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def call_texts(site: Site, session: aiohttp.ClientSession) -> tuple[dict[str, object], str, str]:
    _, found = await api(session, f"{site.base}/api/calls", **{"from": "2026-03-01", "to": "2026-03-31"})
    (row,) = found["calls"]
    async with session.get(f"{site.base}/api/calls/{row['id']}") as response:
        assert response.status == 200
        body = await response.text()
    async with session.get(f"{site.base}/calls/{row['id']}") as page:
        assert page.status == 200
        html = await page.text()
    return await (await session.get(f"{site.base}/api/calls/{row['id']}")).json(), body, html


@pytest.mark.parametrize("name", ["victor", "maria", "alice"])
async def test_nobody_sees_an_authorisation_code(private_site: Site, session: aiohttp.ClientSession,
                                                 name: str) -> None:
    await signed_in(private_site, session, name)
    call, body, html = await call_texts(private_site, session)
    assert CODE not in body and CODE not in html
    assert MASK * len(CODE) in call["lines"][0]["raw"]  # type: ignore[index]


async def test_masked_digits_stay_hidden_in_every_text_of_a_call(private_site: Site,
                                                                 session: aiohttp.ClientSession) -> None:
    """A viewer (mask_digits = 3) finds none of the numbers whole: not the one dialled (raw line, call key),
    not the caller id among the vendor fields, not the transfer's; an admin sees them all but the code."""
    await signed_in(private_site, session, "victor")
    call, body, html = await call_texts(private_site, session)
    for whole in (NUMBER, CALLER_ID, "0048601999888", NUMBER[1:]):
        assert whole not in body and whole not in html, whole
    assert call["number"] == "0048600123***"
    assert call["extra"] == {"callerid": "0048221112***", "party": "E201"}
    assert call["transfer"] == "to 0048601999***" and "0048600123***" in str(call["call_key"])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        await signed_in(private_site, admin, "alice")
        whole_call, body, _ = await call_texts(private_site, admin)
    assert whole_call["extra"] == {"callerid": CALLER_ID, "party": "E201"} and NUMBER in body


async def test_the_journal_feed_publishes_no_authorisation_code(target: Path | str) -> None:
    """The entry feed (what a site publishes to its central store, `smdrd.store.api.CallFeed.entries`), on both
    stores: the line's raw bytes leave with the code hidden, the calls without the field."""
    await store_the_call(target)
    feed = open_store(target).call_feed()
    await feed.open()
    try:
        (entry,) = await feed.entries(0, 10)
    finally:
        await feed.close()
    assert entry.fields["raw"] == RAW.replace(CODE.encode(), MASK.encode() * len(CODE))
    assert CODE not in repr(entry.fields)


def test_a_revision_publishes_no_authorisation_code() -> None:
    """A re-rated line's revision is read as an entry is: `REVISION_CALLS` rows end with the code to hide."""
    from smdrd.store.feed import FEED_COLUMNS, LINE_COLUMNS, revisions_of

    line = (7, "pbx", "", 1, "test", RAW, "parsed", None)
    call = (7, *[None] * len(FEED_COLUMNS), CODE)  # line_id, the published columns (empty here), the code
    (revision,) = revisions_of([(3, *line)], [call])
    assert len(line) == len(LINE_COLUMNS) and revision.fields["revision"] == 3
    assert CODE.encode() not in revision.fields["raw"] and CODE not in repr(revision.fields["calls"])


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://smdrd:S3cret@db.lan/smdrd", "postgresql://smdrd:***@db.lan/smdrd"),
    ("postgresql://smdrd@db.lan:5433/smdrd?password=S3cret&sslmode=require",
     "postgresql://smdrd@db.lan:5433/smdrd?password=***&sslmode=require"),
    ("postgresql://smdrd@db.lan/smdrd?sslmode=verify-full&sslpassword=S3cret",
     "postgresql://smdrd@db.lan/smdrd?sslmode=verify-full&sslpassword=***"),
])
def test_a_database_url_is_shown_without_its_password_in_either_form(url: str, shown: str) -> None:
    """`smdrd check-config`, the start-up log and every store error show the URL as `redact_url` does: the
    ``user:password@`` form and libpq's ``?password=`` / ``sslpassword=`` parameters alike."""
    from smdrd.store.config import DatabaseConfig, redact_url

    assert redact_url(url) == shown and DatabaseConfig(url=url).shown == shown


def test_a_store_error_repeats_no_password() -> None:
    """libpq quotes a malformed password in its message: `failure` takes it out, as written and decoded."""
    from smdrd.store.postgres.connect import failure

    url = "postgresql://smdrd:Ab%zz9%21@127.0.0.1:1/smdrd?sslpassword=k3y"
    text = failure(url, ValueError('invalid percent-encoded token: "Ab%zz9%21"; also Ab%zz9! and k3y'))
    assert "Ab%zz9" not in text and "k3y" not in text and text.startswith("PostgreSQL at postgresql://smdrd:***@")
