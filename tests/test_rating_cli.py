"""``smdrd rate``: the command's output, with a deck and country or with a config file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from smdrd.cli import rate
from smdrd.defaults import DEFAULT_CONFIG_PATH
from smdrd.errors import SmdrdError, TariffError

DECK = Path(__file__).parent / "fixtures" / "rating" / "uk.csv"
UK = ["--rules", str(DECK), "--country", "GB", "--area-code", "020", "--currency", "GBP"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smdrd")
    rate.register(parser.add_subparsers())
    args = parser.parse_args(["rate", *argv])
    status: int = args.func(args)
    return status


def test_json_output_one_object_per_number(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the documented keys, the cost as a decimal string."""
    assert run(["902079460000", "201", "--duration", "125", "--at", "2026-03-02T10:00", "--json", *UK]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"number": "902079460000", "e164": "+442079460000", "call_class": "local", "rule": "UK London",
         "prefix": "4420", "cost": "0.06", "currency": "GBP", "region": "GB"},
        {"number": "201", "e164": "", "call_class": "internal", "rule": "", "prefix": "", "cost": "0.00",
         "currency": "GBP", "region": ""},
    ]


def test_carrier_increments_with_three_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    """0.03 a minute billed 6/6 costs 0.003 for a 4 s call, shown with 3 decimals."""
    deck_args = ["--rules", str(DECK.with_name("carrier.csv")), "--country", "GB", "--decimals", "3"]
    run(["900491701234567", "--duration", "4", "--json", *deck_args])
    assert json.loads(capsys.readouterr().out)["cost"] == "0.003"


def test_human_output_shows_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    """The text output names the rule and prefix and how the cost adds up."""
    run(["09098790000", "--duration", "125", *UK])
    out = capsys.readouterr().out
    assert "UK premium (prefix 4490)" in out
    assert "connection 0.25 + 3 x 1.50 per 60 s = 4.75 GBP" in out


def test_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config takes the site and tariff from the configuration file."""
    cfg = tmp_path / "smdrd.toml"
    cfg.write_text(f'[site]\ncountry = "GB"\n[tariff]\ncurrency = "GBP"\ndecks = ["{DECK}"]\n')
    run(["907911123456", "--duration", "60", "--json", "--config", str(cfg)])
    assert json.loads(capsys.readouterr().out)["rule"] == "UK mobile"


def test_bad_deck_is_an_error(tmp_path: Path) -> None:
    """A broken deck stops the command with the file and line (main prints it, exit status 2)."""
    bad = tmp_path / "bad.csv"
    bad.write_text("prefix,rate\n44,x\n")
    with pytest.raises(TariffError, match=f"{bad}:2"):
        run(["902079460000", "--duration", "60", "--rules", str(bad), "--country", "GB"])


def test_needs_config_or_country(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config, $SMDRD_CONFIG, the default file or --country the command says what it needs."""
    monkeypatch.delenv("SMDRD_CONFIG", raising=False)
    if DEFAULT_CONFIG_PATH.exists():
        pytest.skip(f"this machine has {DEFAULT_CONFIG_PATH}")
    with pytest.raises(SmdrdError, match=r"--config FILE.*--country CC"):
        run(["902079460000", "--duration", "60"])
