"""`smdrd rerate` after a tariff change and `smdrd reparse` after a parser (or config) fix: the calls change,
the report rollups follow exactly, and a dry run changes nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from smdrd.cli import main

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
path = "{db}"
[tariff]
currency = "PLN"
decks = ["rates.csv"]
{sources}
"""


def write_config(tmp: Path, rate_de: str, sources: str = "") -> Path:
    (tmp / "rates.csv").write_text(f"name,prefix,rate\nGermany,49,{rate_de}\nPoland mobile,486,0.10\n")
    path = tmp / "smdrd.toml"
    path.write_text(CONFIG.format(db=tmp / "calls.db", sources=sources))
    return path


def rollups_match_calls(db: Path) -> None:
    """Every rollup figure equals the same figure summed from the call details."""
    conn = sqlite3.connect(db)
    rolled = conn.execute("SELECT day, extension, call_class, sum(calls), sum(duration), sum(cost_micros) "
                          "FROM rollup_daily GROUP BY 1, 2, 3 HAVING sum(calls) + sum(duration) > 0 "
                          "ORDER BY 1, 2, 3").fetchall()
    detail = conn.execute("SELECT substr(start, 1, 10), extension, coalesce(call_class, ''), sum(leg = 0), "
                          "sum(duration), sum(coalesce(cost_micros, 0)) FROM calls GROUP BY 1, 2, 3 "
                          "ORDER BY 1, 2, 3").fetchall()
    assert rolled == detail


def extension_costs(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["report", "extensions", "--config", str(config), "--from", "2026-03-01", "--to", "2026-03-31",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    return {r["extension"]: r["cost"] for r in rows if r.get("extension")}


def test_rerate_after_a_tariff_change_moves_costs_and_rollups(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "0.05")
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(LINES) + "\r\n")
    assert main(["import", "-q", "--format", "avaya-ipo", "--config", str(config), str(log)]) == 0
    before = extension_costs(config, capsys)
    assert before == {"214": "0.20", "215": "0.10"}  # 2 min x 0.05 + 1 min x 0.10; 2 min x 0.05

    write_config(tmp_path, "0.07")
    assert main(["rerate", "--config", str(config), "--dry-run"]) == 0
    assert "2 would change" in capsys.readouterr().out
    assert extension_costs(config, capsys) == before  # a dry run stores nothing

    assert main(["rerate", "--config", str(config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checked"] == 3 and summary["changed"] == 2
    assert summary["cost_before"] == {"PLN": "0.3"} and summary["cost_after"] == {"PLN": "0.38"}
    assert extension_costs(config, capsys) == {"214": "0.24", "215": "0.14"}
    rollups_match_calls(tmp_path / "calls.db")


def test_rerate_limited_to_a_range_of_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "0.05")
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(LINES) + "\r\n")
    assert main(["import", "-q", "--format", "avaya-ipo", "--config", str(config), str(log)]) == 0
    write_config(tmp_path, "0.07")
    assert main(["rerate", "--config", str(config), "--from", "2026-03-03", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checked"] == 1
    rollups_match_calls(tmp_path / "calls.db")


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


def test_reparse_after_a_config_fix_turns_errors_into_calls(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong date format journals every line as an error; fixed, `reparse` rebuilds the calls from the
    journal, and the reports see them."""
    config = write_config(tmp_path, "0.05", CUSTOM.format(date_format="%m/%d/%Y"))
    log = tmp_path / "branch.csv"
    log.write_text("25/03/2026,10:00:00,301,0049301234567,120\r\n26/03/2026,10:00:00,302,0600123456,60\r\n"
                   "26/03/2026,11:00:00,301,302,30\r\n")
    assert main(["import", "-q", "--format", "custom", "--source", "branch", "--config", str(config),
                 str(log)]) == 1
    conn = sqlite3.connect(tmp_path / "calls.db")
    assert conn.execute("SELECT count(*) FROM lines WHERE status = 'error'").fetchone()[0] == 3

    write_config(tmp_path, "0.05", CUSTOM.format(date_format="%d/%m/%Y"))
    assert main(["reparse", "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status_before"] == {"error": 3} and out["status_after"] == {"parsed": 3}
    assert out["calls_after"] == 3
    assert extension_costs(config, capsys) == {"301": "0.10", "302": "0.10"}
    rollups_match_calls(tmp_path / "calls.db")

    # Reparsing again is idempotent: same calls, same rollups.
    assert main(["reparse", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calls_after"] == 3
    assert extension_costs(config, capsys) == {"301": "0.10", "302": "0.10"}
    rollups_match_calls(tmp_path / "calls.db")
