"""The daemon on PostgreSQL, end to end: a PBX pushes lines over TCP to a real ``smdrd run`` whose ``[database]
url`` names a real PostgreSQL database; the lines are journalled, their calls stored and rolled up there, and
the reports over HTTP and ``smdrd report`` read the figures back from it."""

from __future__ import annotations

import json
import socket
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from smdrd.cli import main
from smdrd.config import load_config
from smdrd.parsing import get_parser_class
from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.reports.render import to_json
from smdrd.simulator import Traffic, render_calls
from smdrd.store import open_store
from smdrd.testing import DaemonProcess, config_toml, daemon_config, free_port, tcp_server_source

TZ = ZoneInfo("Europe/Warsaw")


def test_tcp_lines_reach_postgres_and_its_reports(tmp_path: Path, pg_url: str, daemons: list[DaemonProcess],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    parser = get_parser_class("avaya-ipo")
    traffic = Traffic(seed=17, country="PL", tz=TZ, start=datetime(2026, 3, 2, 8, 0), format="avaya-ipo")
    lines = list(render_calls(parser, traffic, 300))
    port = free_port()
    config = daemon_config(tmp_path, [tcp_server_source("pbx", port)], database={"url": pg_url})
    daemon = DaemonProcess(tmp_path, config)
    daemons.append(daemon)
    daemon.start(within=60)
    daemon.wait_port(port)
    with socket.create_connection(("127.0.0.1", port)) as pbx:
        pbx.sendall("".join(f"{line}\r\n" for line in lines).encode())
    with psycopg.connect(pg_url) as conn:
        for _ in range(600):
            row = conn.execute("SELECT count(*) FROM lines").fetchone()
            if row is not None and row[0] >= len(lines):
                break
            daemon.wait_event("daemon.started")  # still alive
            conn.execute("SELECT pg_sleep(0.05)")
        http = daemon.wait_event("http.listening")[-1]["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/reports/extensions?from=2026-03-01"
                                    "&to=2026-03-31&direction=all", timeout=30) as answer:
            over_http = json.loads(answer.read())
        daemon.terminate()
        daemon.assert_clean_log()
        assert not daemon.events("daemon.task_failed")
        statuses: dict[str, int] = dict(conn.execute("SELECT status, count(*) FROM lines GROUP BY status").fetchall())
        calls = conn.execute("SELECT count(*), count(DISTINCT site_id) FROM calls").fetchone()
        rolled = conn.execute("SELECT sum(calls) FROM rollup_daily").fetchone()
    assert sum(statuses.values()) == len(lines) and statuses.get("error", 0) == 0
    assert calls is not None and calls[0] >= 300 and calls[1] == 1
    assert rolled is not None and rolled[0] == 300  # a transfer's second leg is the same call
    capsys.readouterr()
    assert main(["report", "extensions", "--config", str(daemon.config_path), "--from", "2026-03-01", "--to",
                 "2026-03-31", "--direction", "all", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["calls"] == 300
    assert over_http["totals"]["calls"] == 300
    # A command that works on a SQLite file only refuses, rather than work on a file the daemon does not use.
    assert main(["backup", "--config", str(daemon.config_path), str(tmp_path / "copy.db")]) != 0
    assert "SQLite database only" in capsys.readouterr().err
    assert main(["prune", "--config", str(daemon.config_path), "--dry-run"]) == 0  # retention is there


def test_import_into_postgres_gives_the_sqlite_import_s_reports(tmp_path: Path, pg_url: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``smdrd import`` with ``[database] url``: every line journalled in PostgreSQL, and every report the same as
    the same file imported into SQLite (``--database``)."""
    parser = get_parser_class("avaya-ipo")
    traffic = Traffic(seed=5, country="PL", tz=TZ, start=datetime(2026, 3, 20, 8, 0), format="avaya-ipo")
    data = tmp_path / "calls.txt"
    data.write_text("".join(f"{line}\r\n" for line in render_calls(parser, traffic, 200)))
    config = tmp_path / "smdrd.toml"
    config.write_text(config_toml(daemon_config(tmp_path, database={"url": pg_url})))
    config.chmod(0o600)
    sqlite = tmp_path / "copy.db"

    def run(*args: str) -> str:
        assert main(["import", "--config", str(config), "--format", "avaya-ipo", *args, str(data)]) == 0
        return capsys.readouterr().err

    summary = run()
    assert "imported 2" in summary and " 0 errors" in summary and "postgresql://" in summary
    run("--quiet", "--in-process", "--database", str(sqlite))
    settings = load_config(config, use_env=False)
    ctx = context_from(settings)
    for kind in ("extensions", "destinations", "trunks", "days", "calls"):
        got = []
        for target in (pg_url, sqlite):
            reader = open_store(target).reports()
            try:
                got.append(to_json(run_report(reader, parse_query(
                    {"kind": [kind], "from": ["2026-03-01"], "to": ["2026-04-30"], "direction": ["all"]}, ctx), ctx)))
            finally:
                reader.close()
        assert got[0] == got[1], kind
