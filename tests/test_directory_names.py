"""Extension names: learnt from the PBX's own name fields when calls are stored, editable, an edited name never
overwritten by the PBX's (real SQLite files and a real PostgreSQL database, each store's real journal writer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parsers.avaya_ipo import AvayaIPOfficeParser
from parsers.threecx import ThreeCXParser
from smdrd.core import process_frame
from smdrd.store import journal_writer, open_store
from smdrd.store.api import Actor

ADMIN = Actor("alice", "127.0.0.1")


def ipo(ext: str, name: str, number: str = "01632960000", when: str = "2026/03/16 09:00:00") -> bytes:
    """An IP Office outbound call from ``ext`` whose user is called ``name`` (Party1Name)."""
    return (f"{when},00:01:00,5,{ext},O,{number},{number},,0,1000{ext},0,E{ext},{name},T9001,Line 1.1,0,0,,,,,,,,,,,"
            ",,").encode()


async def store_lines(path: Path | str, *lines: bytes) -> None:
    writer = journal_writer(path, commit_interval=0.01)
    await writer.open()
    task = asyncio.create_task(writer.run())
    parser = AvayaIPOfficeParser()
    for i, raw in enumerate(lines):
        writer.submit(process_frame(raw, parser, "utf-8", source="ipo", peer="p", received_at=i + 1))
    await writer.close()
    await task


def test_ip_office_party_names_are_learnt_and_follow_the_pbx(any_database: Path | str) -> None:
    db = any_database
    asyncio.run(store_lines(db, ipo("201", "Alice Smith"), ipo("202", "Extn202"), ipo("203", "Bob")))
    directory = open_store(db).directory()
    try:
        # IP Office's placeholder for a user without a name (Extn202) is no name
        assert directory.names() == {"201": "Alice Smith", "203": "Bob"}
        assert directory.names(["201", "999"]) == {"201": "Alice Smith"}
    finally:
        directory.close()
    # the PBX renames a user: the new name replaces the one it gave before
    asyncio.run(store_lines(db, ipo("203", "Robert Jones", when="2026/03/16 10:00:00")))
    directory = open_store(db).directory()
    try:
        assert directory.names()["203"] == "Robert Jones"
    finally:
        directory.close()


def test_an_edited_name_is_never_overwritten_by_the_pbx(any_database: Path | str) -> None:
    db = any_database
    asyncio.run(store_lines(db, ipo("201", "alice")))
    directory = open_store(db).directory()
    try:
        assert directory.set_name("201", "Alice Smith (Sales)", at=100, actor=ADMIN) == ("alice", "Alice Smith (Sales)")
    finally:
        directory.close()
    asyncio.run(store_lines(db, ipo("201", "alice", when="2026/03/17 09:00:00"),
                            ipo("201", "someone else", when="2026/03/17 10:00:00")))
    directory = open_store(db).directory()
    accounts = open_store(db).accounts()
    try:
        assert directory.names() == {"201": "Alice Smith (Sales)"}
        page, total = directory.extensions("sales")
        assert total == 1 and page[0].number == "201" and page[0].name_source == "edited"
        entry = accounts.entries(limit=1)[0]
        assert (entry.actor, entry.action, entry.target) == ("alice", "extension.name", "201")
        assert (entry.before, entry.after) == ({"name": "alice"}, {"name": "Alice Smith (Sales)"})
        # forgetting the edited name lets the PBX's be learnt again
        directory.set_name("201", "", at=101, actor=ADMIN)
        assert directory.names() == {}
        assert directory.learn_names([("201", "alice")], at=102) == 1
        assert directory.names() == {"201": "alice"}
    finally:
        directory.close()
        accounts.close()


def test_3cx_display_names_name_the_extension_side() -> None:
    header = ("historyid,callid,duration,time_start,time_answered,time_end,reason_terminated,from_no,to_no,from_dn,"
              "to_dn,dial_no,reason_changed,final_number,final_dn,bill_code,bill_rate,bill_cost,bill_name,chain,"
              "from_type,to_type,final_type,from_dispname,to_dispname,final_dispname,missed_queue_calls")
    fields = header.split(",")
    out = dict.fromkeys(fields, "")
    out.update(historyid="1", callid="9", duration="00:01:00", time_start="2026/03/16 09:00:00",
               time_answered="2026/03/16 09:00:05", time_end="2026/03/16 09:01:05", from_no="Ext.201",
               to_no="01632960000", from_dn="201", to_dn="10000", dial_no="01632960000", final_number="01632960000",
               final_dn="10000", from_type="Extension", to_type="Line", final_type="Line",
               from_dispname="Alice Smith", to_dispname="Provider")
    records = ThreeCXParser().parse(",".join(out[f] for f in fields) + ",")
    assert records is not None
    assert ThreeCXParser.extension_name(records[0]) == "Alice Smith"
    inbound = dict(out, from_no="01632960000", from_dn="10000", to_no="Ext.202", to_dn="202", final_number="Ext.202",
                   final_dn="202", from_type="Line", to_type="Extension", final_type="Extension",
                   from_dispname="Caller Outside", to_dispname="Bob", final_dispname="Bob Jones")
    records = ThreeCXParser().parse(",".join(inbound[f] for f in fields) + ",")
    assert records is not None and records[0].extension == "202"
    assert ThreeCXParser.extension_name(records[0]) == "Bob Jones"


def test_smdrd_import_learns_the_names_too(tmp_path: Path) -> None:
    from smdrd.cli import main

    log = tmp_path / "ipo.smdr"
    log.write_bytes(b"\r\n".join([ipo("201", "Alice Smith"), ipo("202", "Bob", when="2026/03/16 09:05:00")]) + b"\r\n")
    db = tmp_path / "smdrd.db"
    assert main(["import", "-q", "-f", "avaya-ipo", "--database", str(db), str(log)]) == 0
    directory = open_store(db).directory()
    try:
        assert directory.names() == {"201": "Alice Smith", "202": "Bob"}
    finally:
        directory.close()
