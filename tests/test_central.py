"""Sites publish their journals, a central collector stores them: real Mosquitto brokers, real PostgreSQL.

A site's publisher (``[mqtt] publish_journal``) sends every journal entry at least once, in order, from a cursor
saved after the broker's acknowledgement; ``smdrd central`` stores what arrives in PostgreSQL idempotently, with
each call's site in its identity. One broker pair and one PostgreSQL serve the whole module.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from smdrd.journal import ERROR, PARSED, JournalEntry, RatedCall
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.testing import write_entries

TZ = ZoneInfo("Europe/London")
DAY = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)


def site_entries(site: int, n: int, *, first: int = 0) -> list[JournalEntry]:
    """``n`` journal entries of site ``site``: every fifth line an error, the others one rated call from
    extensions 201 to 204 (the same numbers at every site). The even lines are the same bytes (and so the same
    uid and start) at every site; the odd ones differ in cost from site to site."""
    out = []
    for i in range(first, first + n):
        raw = f"line {i} of {'any' if i % 2 == 0 else site}".encode()
        if i % 5 == 4:
            out.append(JournalEntry("pbx", "10.0.0.9", 1_770_000_000_000_000 + i, "avaya-ipo", raw, ERROR,
                                    "no such field"))
            continue
        record = CallRecord(format="avaya-ipo", start=DAY + timedelta(minutes=i), duration=60 + i,
                            direction=Direction.OUTBOUND, extension=str(201 + i % 4), number=f"0207946{i:04d}",
                            auth_code="4321", answered=True)
        cost = Decimal("0.10") * (i + 1) + (Decimal(0) if i % 2 == 0 else Decimal("0.01") * site)
        rating = Rating(f"+44207946{i:04d}", "national", "uk", "020", cost, "GBP", "GB")
        out.append(JournalEntry("pbx", "10.0.0.9", 1_770_000_000_000_000 + i, "avaya-ipo", raw, PARSED, None,
                                (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


def report(database: Path | str, kind: str, **filters: tuple[str, ...]) -> dict[str, object]:
    """The ``kind`` report of March 2026 (every direction), rows and totals as plain data."""
    from smdrd.config import Settings
    from smdrd.reports.queries import DIRECTIONS, Query, context_from, run_report

    ctx = context_from(Settings.model_validate({"site": {"timezone": "Europe/London", "country": "GB"},
                                                "tariff": {"currency": "GBP", "decimals": 2}}))
    reader = open_store(database).reports()
    try:
        r = run_report(reader, Query(kind, DAY.date().replace(day=1), DAY.date().replace(day=31),
                                     directions=DIRECTIONS, page_size=0, **filters), ctx)  # type: ignore[arg-type]
    finally:
        reader.close()
    return {"rows": r.rows, "totals": r.totals}


async def test_a_site_filter_on_a_sites_own_journal_is_its_name_or_nothing(tmp_path: Path) -> None:
    """A site's SQLite journal holds its own site: ``--site`` with its name changes nothing, another name
    leaves nothing (the same filter picks one site out of a central store)."""
    db = tmp_path / "a.db"
    await write_entries(db, site_entries(1, 12), site="hq")
    for kind in ("extensions", "calls", "trunks"):
        everything = report(db, kind)
        assert everything["rows"]
        assert report(db, kind, sites=("hq",)) == everything
        assert not report(db, kind, sites=("branch",))["rows"]
