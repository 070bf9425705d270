"""The command line as a user meets it: formats, detect, parse, simulate, demo, and the missing-config message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smdrd.cli import main
from smdrd.parsing import ParserContext, format_names, get_parser_class
from smdrd.simulator import Traffic, render_calls

FIXTURES = Path(__file__).parent / "fixtures"
ALL_FORMATS = ["3cx", "asterisk-csv", "avaya-cm", "avaya-ipo", "cisco-cucm", "custom", "mitel-5000",
               "mitel-mivb", "nec-sv", "panasonic", "siemens-hipath"]
PARSE_KEYS = {"format", "start", "duration", "ring", "direction", "extension", "number", "trunk", "account",
              "call_id", "answered"}


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "smdrd", *args], input=stdin, capture_output=True,
                          timeout=120, check=False)


def test_formats_lists_every_vendor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    assert format_names() == ALL_FORMATS
    for name in ALL_FORMATS:
        assert f"\n{name} " in "\n" + out
    assert "cannot be loaded" not in out


@pytest.mark.parametrize("path", sorted(p for p in FIXTURES.glob("*/*.smdr") if p.parent.name != "custom"),
                         ids=lambda p: p.name)
def test_detect_recognises_every_real_capture(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`smdrd detect FILE` names the right format for each real sample (CMR files are Cisco's too)."""
    assert main(["detect", str(path)]) == 0
    assert capsys.readouterr().out.split()[0] == path.parent.name


def test_parse_prints_json_records_with_the_documented_keys() -> None:
    sample = FIXTURES / "avaya-ipo" / "ipo500-2017-07.smdr"
    result = run("parse", "--format", "avaya-ipo", "--timezone", "Europe/Warsaw", str(sample))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 1442
    assert set(records[0]) >= PARSE_KEYS
    assert records[0]["start"] == "2017-07-01T08:13:24+02:00"


def test_parse_reports_bad_lines_on_stderr_with_line_numbers_and_exits_1() -> None:
    data = (FIXTURES / "avaya-ipo" / "ipo500-2017-07.smdr").read_bytes().splitlines()[:3]
    data.insert(2, b"this is not SMDR")
    result = run("parse", "-f", "avaya-ipo", stdin=b"\r\n".join(data) + b"\r\n")
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 2
    (err,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert err["line"] == 3 and "17" in err["error"]


def test_parse_reads_as_a_configured_source_does(tmp_path: Path) -> None:
    """`smdrd parse` never read the configuration: a Panasonic capture whose days are all 1 to 12 failed on
    every line until the site's country was given again by hand (and config/examples/custom.toml suggested
    a `parse -c` that did not exist)."""
    sample = FIXTURES / "panasonic" / "tde-2011.smdr"
    config = tmp_path / "smdrd.toml"
    config.write_text('[site]\ntimezone = "Asia/Tehran"\ncountry = "IR"\n\n[database]\npath = "x.db"\n\n'
                      '[[sources]]\nname = "tde"\nkind = "serial"\nformat = "panasonic"\n'
                      'device = "/dev/ttyUSB0"\n')
    bare = run("parse", "-f", "panasonic", str(sample))
    assert bare.returncode == 1 and "date_order" in bare.stderr.decode()
    result = run("parse", "-c", str(config), "--source", "tde", str(sample))
    assert result.returncode == 0, result.stderr
    expected = (FIXTURES / "panasonic" / "tde-2011.expected.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in result.stdout.splitlines()] == [json.loads(line) for line in expected]
    missing = run("parse", "-c", str(config), "--source", "tda", str(sample))
    assert missing.returncode == 2 and b"no source named 'tda'" in missing.stderr and b"(its sources: tde)" \
        in missing.stderr
    assert run("parse", str(sample)).stderr.decode().strip().endswith("--source NAME of a configuration")
    # A broken configuration found by $SMDRD_CONFIG does not stop a parse that names everything itself.
    config.write_text("[site\n")
    found = subprocess.run([sys.executable, "-m", "smdrd", "parse", "-f", "panasonic", "--country", "IR",
                            "--timezone", "Asia/Tehran", str(sample)], capture_output=True, timeout=120, check=False,
                           env={**os.environ, "SMDRD_CONFIG": str(config)})
    assert found.returncode == 0 and b"not using the configuration" in found.stderr, found.stderr
    assert run("parse", "-c", str(config), "-f", "panasonic", str(sample)).returncode == 2, "named: refused"


def test_parse_auto_detects_the_format() -> None:
    result = run("parse", "--format", "auto", str(FIXTURES / "cisco-cucm" / "cdr.smdr"))
    assert result.returncode == 0
    assert json.loads(result.stderr.splitlines()[0])["detected"] == "cisco-cucm"
    assert all(json.loads(line)["format"] == "cisco-cucm" for line in result.stdout.splitlines())


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_simulated_traffic_parses_back_for_every_format(fmt: str) -> None:
    """`smdrd simulate --format F` writes what the F parser reads back: the same calls, field for field
    (as far as the format carries them)."""
    cls = get_parser_class(fmt)
    tz = ZoneInfo("America/New_York")
    traffic = Traffic(seed=3, tz=tz)
    expected = [leg for _ in range(60) for leg in traffic.next_call()]
    lines = list(render_calls(cls, Traffic(seed=3, tz=tz), 60))
    # the simulator dials and dates as a US PBX does (Panasonic prints month/day there)
    parser = cls(ParserContext(timezone=tz, year=2026, now=expected[-1].start + timedelta(hours=1), country="US"))
    parsed = [r for line in lines for r in (parser.parse(line) or ())] + list(parser.flush())
    if fmt == "siemens-hipath":  # HiPath reports trunk calls only
        expected = [r for r in expected if r.direction.value != "internal"]
    assert len(parsed) == len(expected)
    res = cls.time_resolution
    for want, got in zip(expected, parsed, strict=True):
        assert got.direction == want.direction
        assert got.duration == want.duration
        unanswered_in = want.direction.value == "inbound" and not want.answered
        # Mitel 5000 writes ***** for a ring-in nobody answered: the format has no extension to give.
        assert got.extension == ("" if fmt == "mitel-5000" and unanswered_in else want.extension)
        assert got.number.lstrip("+") == want.number
        start = got.start.astimezone(tz) if got.start.tzinfo else got.start.replace(tzinfo=tz)
        assert abs((start - want.start).total_seconds()) < res, (start, want.start)


def test_simulator_is_reproducible_with_a_seed() -> None:
    a = run("simulate", "-f", "avaya-ipo", "-n", "50", "--seed", "9").stdout
    b = run("simulate", "-f", "avaya-ipo", "-n", "50", "--seed", "9").stdout
    assert a == b and len(a.splitlines()) >= 50


def test_run_without_a_config_says_so_clearly(tmp_path: Path) -> None:
    result = run("run", "--config", str(tmp_path / "nowhere.toml"))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "nowhere.toml" in err and "example" in err
    assert err.startswith("smdrd run: ") and err.count("\n") == 1  # one line


def test_version_and_help() -> None:
    assert run("--version").stdout.decode().strip() == "smdrd 0.1.0"
    help_text = run("--help").stdout.decode()
    for command in ("run", "demo", "check-config", "import", "parse", "formats", "detect", "simulate", "rate"):
        assert command in help_text


#: each simulated country with the area code its demo site would have, and the class each kind of number the
#: simulator dials must be rated as (NANP cannot tell a mobile from a fixed line: both are national there).
SIMULATED_SITES = {"US": "212", "GB": "20", "PL": "52"}
KIND_CLASS = {"local": "local", "national": "national", "mobile": "mobile", "international": "international",
              "toll_free": "toll-free", "premium": "premium"}


@pytest.mark.parametrize("country", sorted(SIMULATED_SITES))
def test_simulated_numbers_rate_as_what_they_are(country: str) -> None:
    """Every number the simulator dials, in each of its countries, is a valid number of its kind: the demo
    never shows a call as "unknown" (an invalid number: a digit short, a trunk prefix the country dropped)."""
    from smdrd.rating.normalise import Dialplan, normalise_uncached
    from smdrd.simulator import DIALPLANS

    assert sorted(DIALPLANS) == sorted(SIMULATED_SITES)
    plan = Dialplan(country, area_code=SIMULATED_SITES[country], access_codes=())
    traffic = Traffic(seed=11, country=country)
    for kind, named in KIND_CLASS.items():
        want = "national" if country == "US" and kind == "mobile" else named
        for _ in range(400):
            number = traffic.number(kind)
            got = normalise_uncached(number, plan)
            assert (got.call_class, bool(got.e164)) == (want, True), (country, kind, number, got)


def test_simulated_calls_are_all_rated_and_nobody_calls_themselves() -> None:
    """The calls themselves: outbound and inbound numbers all rate (inbound US numbers arrive without the 1),
    an internal call or a transfer goes to another extension."""
    from smdrd.rating.normalise import Dialplan, normalise_uncached

    plan = Dialplan("US", area_code="212", access_codes=())
    traffic = Traffic(seed=5)
    classes: set[str] = set()
    for _ in range(3000):
        legs = traffic.next_call()
        for leg in legs:
            if leg.direction.value == "internal":
                assert leg.number != leg.extension
            else:
                classes.add(cls := normalise_uncached(leg.number, plan).call_class)
                assert cls != "unknown", leg
        if len(legs) == 2:
            assert legs[0].extension != legs[1].extension
    assert classes == {"local", "national", "international", "toll-free", "premium"}
