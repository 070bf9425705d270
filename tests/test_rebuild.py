"""`smdrd rerate` after a tariff change and `smdrd reparse` after a parser (or config) fix, on either store: the
calls change, the report rollups follow exactly, a dry run changes nothing, and a SQLite file and a PostgreSQL
database given the same lines report the same figures, to the cent, before and after."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from smdrd.cli import main
from smdrd.store.rollups import ROLLUPS

LINES = [  # Avaya IP Office, a site in Warsaw: two calls to a German number, one to a Polish mobile
    "2026/03/02 10:00:00,00:02:00,0,214,O,0049301234567,0049301234567,,0,1000001,0,E214,A,T9001,L,0,0",
    "2026/03/02 11:00:00,00:01:30,0,215,O,0049301234568,0049301234568,,0,1000002,0,E215,B,T9001,L,0,0",
    "2026/03/03 09:00:00,00:01:00,0,214,O,0600123456,0600123456,,0,1000003,0,E214,A,T9001,L,0,0",
]

CONFIG = """
[site]
timezone = "Europe/Warsaw"
country = "PL"
access_codes = ["0"]
[database]
{database}
[tariff]
currency = "PLN"
decks = ["rates.csv"]
{sources}
"""


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Each store in turn: a SQLite file's path (not made yet), or the emptied PostgreSQL database's URL."""
    return tmp_path / "calls.db" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def write_config(tmp: Path, rate_de: str, sources: str = "", database: Path | str | None = None,
                 name: str = "smdrd.toml") -> Path:
    (tmp / "rates.csv").write_text(f"name,prefix,rate\nGermany,49,{rate_de}\nPoland mobile,486,0.10\n")
    db = tmp / "calls.db" if database is None else database
    path = tmp / name
    path.write_text(CONFIG.format(database=f'url = "{db}"' if isinstance(db, str) else f'path = "{db}"',
                                  sources=sources))
    return path


def rows(db: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """What ``sql`` reads from either store, sums as ``int``."""
    conn: Any = psycopg.connect(db) if isinstance(db, str) else sqlite3.connect(db)
    try:
        return [tuple(int(v) if type(v).__name__ == "Decimal" else v for v in r) for r in conn.execute(sql)]
    finally:
        conn.close()


def rollups_match_calls(db: Path | str) -> None:
    """Every rollup figure equals the same figure summed from the call details."""
    rolled = rows(db, "SELECT day, extension, call_class, sum(calls), sum(duration), sum(cost_micros) "
                      "FROM rollup_daily GROUP BY 1, 2, 3 HAVING sum(calls) + sum(duration) > 0 ORDER BY 1, 2, 3")
    detail = rows(db, "SELECT substr(start, 1, 10), extension, coalesce(call_class, ''), "
                      "sum(CASE WHEN leg = 0 THEN 1 ELSE 0 END), sum(duration), sum(coalesce(cost_micros, 0)) "
                      "FROM calls GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    assert rolled == detail


def extension_costs(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["report", "extensions", "--config", str(config), "--from", "2026-03-01", "--to", "2026-03-31",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    out = out["rows"] if isinstance(out, dict) else out
    return {r["extension"]: r["cost"] for r in out if r.get("extension")}


def test_rerate_after_a_tariff_change_moves_costs_and_rollups(tmp_path: Path, database: Path | str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "0.05", database=database)
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(LINES) + "\r\n")
    assert main(["import", "-q", "--format", "avaya-ipo", "--config", str(config), str(log)]) == 0
    before = extension_costs(config, capsys)
    assert before == {"214": "0.20", "215": "0.10"}  # 2 min x 0.05 + 1 min x 0.10; 2 min x 0.05

    write_config(tmp_path, "0.07", database=database)
    assert main(["rerate", "--config", str(config), "--dry-run"]) == 0
    assert "2 would change" in capsys.readouterr().out
    assert extension_costs(config, capsys) == before  # a dry run stores nothing

    assert main(["rerate", "--config", str(config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checked"] == 3 and summary["changed"] == 2
    assert summary["cost_before"] == {"PLN": "0.3"} and summary["cost_after"] == {"PLN": "0.38"}
    assert extension_costs(config, capsys) == {"214": "0.24", "215": "0.14"}
    rollups_match_calls(database)


def test_rerate_limited_to_a_range_of_days(tmp_path: Path, database: Path | str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "0.05", database=database)
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(LINES) + "\r\n")
    assert main(["import", "-q", "--format", "avaya-ipo", "--config", str(config), str(log)]) == 0
    write_config(tmp_path, "0.07", database=database)
    assert main(["rerate", "--config", str(config), "--from", "2026-03-03", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checked"] == 1
    rollups_match_calls(database)


CUSTOM = """
[[sources]]
name = "branch"
kind = "file"
format = "custom"
path = "-"
[sources.format_options]
type = "csv"
columns = ["date", "time", "extension", "number", "duration"]
date_format = "{date_format}"
duration_format = "seconds"
direction = {{ internal_max_digits = 4 }}
"""


def test_reparse_after_a_config_fix_turns_errors_into_calls(tmp_path: Path, database: Path | str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong date format journals every line as an error; fixed, `reparse` rebuilds the calls from the
    journal, and the reports see them."""
    config = write_config(tmp_path, "0.05", CUSTOM.format(date_format="%m/%d/%Y"), database)
    log = tmp_path / "branch.csv"
    log.write_text("25/03/2026,10:00:00,301,0049301234567,120\r\n26/03/2026,10:00:00,302,0600123456,60\r\n"
                   "26/03/2026,11:00:00,301,302,30\r\n")
    assert main(["import", "-q", "--format", "custom", "--source", "branch", "--config", str(config),
                 str(log)]) == 1
    assert rows(database, "SELECT count(*) FROM lines WHERE status = 'error'") == [(3,)]

    write_config(tmp_path, "0.05", CUSTOM.format(date_format="%d/%m/%Y"), database)
    assert main(["reparse", "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status_before"] == {"error": 3} and out["status_after"] == {"parsed": 3}
    assert out["calls_after"] == 3
    assert extension_costs(config, capsys) == {"301": "0.10", "302": "0.10"}
    rollups_match_calls(database)

    # Reparsing again is idempotent: same calls, same rollups.
    assert main(["reparse", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calls_after"] == 3
    assert extension_costs(config, capsys) == {"301": "0.10", "302": "0.10"}
    rollups_match_calls(database)


MORE = [  # a second day of calls on another trunk, a line sent twice (a re-sent buffer) and one that is not a call
    "2026/03/04 08:30:00,00:10:00,0,216,O,0049891234567,0049891234567,,0,1000004,0,E216,C,T9002,L,0,0",
    "2026/03/04 08:45:00,00:00:41,0,214,O,0601987654,0601987654,,0,1000005,0,E214,A,T9002,L,0,0",
    "2026/03/31 23:50:00,00:03:07,0,215,O,0048221234567,0048221234567,,0,1000006,0,E215,B,T9001,L,0,0",
    LINES[0],
    "not a call record at all",
]


def reports(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for kind in ("extensions", "destinations", "trunks", "days", "calls"):
        assert main(["report", kind, "--config", str(config), "--from", "2026-03-01", "--to", "2026-03-31",
                     "--format", "json"]) == 0
        out[kind] = json.loads(capsys.readouterr().out)
    return out


def rollup_rows(db: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup's rows, without the site (one site here: PostgreSQL's keep it, SQLite's do not)."""
    return {r.table: sorted(rows(db, f"SELECT {', '.join(r.key)}, calls, duration, cost_micros FROM {r.table}"))
            for r in ROLLUPS}


def test_both_stores_report_the_same_to_the_cent_before_and_after_rerate_and_reparse(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    stores: dict[str, Path | str] = {"sqlite": tmp_path / "calls.db", "postgres": pg_url}
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(LINES + MORE) + "\r\n")

    def each(rate_de: str, *command: str) -> dict[str, Any]:
        """``command`` on each store with Germany at ``rate_de``; what it printed as JSON, and the reports."""
        seen: dict[str, dict[str, Any]] = {}
        for name, db in stores.items():
            config = write_config(tmp_path, rate_de, database=db, name=f"{name}.toml")
            printed: object = None
            if command:
                assert main([*command, "--config", str(config)]) in (0, 1)  # import: 1, a line was an error
                out = capsys.readouterr().out
                printed = json.loads(out) if "--json" in command else None
            rollups_match_calls(db)
            seen[name] = {"printed": printed, "reports": reports(config, capsys), "rollups": rollup_rows(db),
                          "lines": rows(db, "SELECT status, count(*) FROM lines GROUP BY status ORDER BY status")}
        assert seen["sqlite"] == seen["postgres"]
        return seen["sqlite"]

    imported = each("0.05", "import", "-q", "--format", "avaya-ipo", str(log))
    assert imported["lines"] == [("duplicate", 1), ("error", 1), ("parsed", 6)]
    extensions = imported["reports"]["extensions"]
    assert {r["extension"]: r["cost"] for r in extensions["rows"]} == {
        "214": "0.30", "215": "0.10", "216": "0.50"}

    moved = each("0.07", "rerate", "--json")["printed"]
    assert moved["checked"] == 6 and moved["changed"] == 3
    assert moved["cost_before"] == {"PLN": "0.9"} and moved["cost_after"] == {"PLN": "1.18"}
    after = each("0.07")
    assert {r["extension"]: r["cost"] for r in after["reports"]["extensions"]["rows"]} == {
        "214": "0.34", "215": "0.14", "216": "0.70"}

    again = each("0.07", "reparse", "--json")
    assert again["printed"] == {"lines": 8, "status_before": {"parsed": 6, "duplicate": 1, "error": 1},
                                "status_after": {"parsed": 6, "duplicate": 1, "error": 1},
                                "calls_before": 6, "calls_after": 6}
    assert again["reports"] == after["reports"] and again["rollups"] == after["rollups"]


def test_rerate_and_reparse_record_revisions_only_while_a_revision_feed_publishes_them(
        tmp_path: Path, database: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    """A site that publishes its journal to a central store sends again each entry a rerate or reparse changed:
    the store records a revision of each such line (only once someone publishes them: a box that publishes
    nothing keeps no record), the feed gives each line as it is now, and saving the cursor prunes them."""
    import asyncio

    from smdrd.store import open_store
    from smdrd.store.api import REVISION_FEED, FeedCall

    config = write_config(tmp_path, "0.05", database=database)
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(LINES) + "\r\n")
    assert main(["import", "-q", "--format", "avaya-ipo", "--config", str(config), str(log)]) == 0

    async def feed(work: str, position: int = 0) -> list[FeedCall]:
        f = open_store(database).call_feed()
        await f.open()
        try:
            if work == "start":
                await f.start_revisions(REVISION_FEED)
            elif work == "save":
                await f.save(REVISION_FEED, position)
            return await f.revisions(position, 100)
        finally:
            await f.close()

    write_config(tmp_path, "0.06", database=database)
    assert main(["rerate", "--config", str(config)]) == 0
    assert asyncio.run(feed("start")) == []  # nobody published revisions before: none kept

    write_config(tmp_path, "0.07", database=database)
    assert main(["rerate", "--config", str(config)]) == 0
    rerated = asyncio.run(feed("read"))
    assert [e.fields["id"] for e in rerated] == [1, 2]  # the German calls' lines; the Polish one did not move
    assert [c["cost"] for e in rerated for c in e.fields["calls"]] == ["0.14", "0.14"]  # 2 min each, at 0.07
    assert [e.fields["revision"] for e in rerated] == [e.position for e in rerated]
    assert rerated[0].fields["raw"] == LINES[0].encode() and rerated[0].fields["status"] == "parsed"

    assert main(["reparse", "--config", str(config)]) == 0  # nothing changes: nothing to send again
    assert asyncio.run(feed("read")) == rerated
    write_config(tmp_path, "0.08", database=database)
    assert main(["reparse", "--config", str(config)]) == 0  # rated anew: the German calls' lines change
    capsys.readouterr()
    everything = asyncio.run(feed("read"))
    assert [e.fields["id"] for e in everything] == [1, 2, 1, 2]
    assert [e.position for e in everything[:2]] == [e.position for e in rerated]
    assert everything[-1].position > everything[1].position
    # Each revision gives its line as it is now: the older two as the newer ones.
    assert [c["cost"] for e in everything for c in e.fields["calls"]] == ["0.16"] * 4

    assert asyncio.run(feed("save", everything[2].position)) == everything[3:]  # saved: those up to it go
    assert asyncio.run(feed("read")) == everything[3:]


def test_a_revision_whose_line_is_gone_is_passed_with_nothing_to_send() -> None:
    from smdrd.store.feed import LINE_COLUMNS, revisions_of

    line = (7, "pbx", "10.0.0.1", 1_770_000_000_000_000, "avaya-ipo", b"x", "error", "bad")
    out = revisions_of([(3, *line), (4, *([None] * len(LINE_COLUMNS)))], [])
    assert [(e.position, e.fields.get("id"), e.fields.get("revision")) for e in out] == [(3, 7, 3), (4, None, None)]
    assert out[1].fields == {}


@pytest.mark.parametrize("any_database", ["sqlite", "postgres"], indirect=True)
def test_a_database_from_before_revisions_migrates_and_records_them(any_database: Path | str) -> None:
    """A journal written before revisions existed migrates, and records a revision of a re-rated call's line."""
    import asyncio

    from smdrd.store import open_store
    from smdrd.store.api import REVISION_FEED, FeedCall, RatingUpdate
    from smdrd.store.postgres import schema as pg
    from smdrd.store.sqlite import schema as lite
    from tests.old_databases import database_before

    raw = "'x'" if "://" in str(any_database) else "X'78'"
    database_before(any_database, lite.ENTRY_REVISIONS_MIGRATION, pg.ENTRY_REVISIONS_MIGRATION,
                    "INSERT INTO lines (id, source, peer, received_at, format, raw, status) "
                    f"VALUES (1, 'pbx', 'p', 5, 'avaya-ipo', {raw}, 'parsed')",
                    "INSERT INTO calls (id, line_id, uid, source, format, call_key, leg, start, start_utc, duration, "
                    "direction, extension, number, trunk, account, auth_code, call_id, answered, transfer, extra, "
                    "cost_micros, currency) VALUES (1, 1, 'u', 'pbx', 'avaya-ipo', 'k', 0, "
                    "'2026-03-02T09:00:00+00:00', 1772442000, 60, 'outbound', '201', '0207', '', '', '', '', 1, '', "
                    "'{}', 10, 'GBP')")

    async def feed(start: bool) -> list[FeedCall]:
        f = open_store(any_database).call_feed()
        await f.open()
        try:
            if start:
                await f.start_revisions(REVISION_FEED)
            return await f.revisions(0, 10)
        finally:
            await f.close()

    assert asyncio.run(feed(True)) == []
    rebuild = open_store(any_database).rebuild()
    try:
        rebuild.update_ratings([RatingUpdate(1, ("+44207", "national", "uk", "020", 20, "GBP", "GB", "v2"))])
    finally:
        rebuild.close()
    out = asyncio.run(feed(False))
    assert [(e.fields["id"], [c["cost"] for c in e.fields["calls"]]) for e in out] == [(1, ["0.00002"])]


def test_a_daemon_publishing_its_journal_records_revisions_from_its_start_and_one_that_stops_keeps_none(
        tmp_path: Path) -> None:
    """The revision feed's cursor is placed when a daemon publishing its journal starts, before the broker
    answers (here it never does): a rerate run while the link is down is still sent once it is back. A daemon
    started without ``publish_journal`` drops the cursor and the revisions not sent: nothing is recorded."""
    from smdrd.store.api import REVISION_FEED
    from smdrd.testing import DaemonProcess, daemon_config, free_port

    def run(publish: bool) -> list[tuple[Any, ...]]:
        mqtt = ({"enabled": True, "host": "127.0.0.1", "port": free_port(), "publish_journal": True} if publish
                else {"enabled": False})
        config = daemon_config(tmp_path, site={"name": "north"}, mqtt=mqtt)
        daemon = DaemonProcess(tmp_path, config)
        try:
            daemon.start()
            daemon.terminate()
        finally:
            daemon.kill()
        return rows(tmp_path / "smdrd.db", f"SELECT name FROM feed_cursors WHERE name = '{REVISION_FEED}'")

    assert run(True) == [(REVISION_FEED,)]
    assert run(False) == []
