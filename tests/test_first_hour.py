"""The first hour of a new user (issue 18, items 1, 2, 3, 5, 6 and 11), each run as a user runs it: ``smdrd`` in a
subprocess, in a folder of its own, with only the environment the test gives it.

Each test's docstring says what the user saw before.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from smdrd.defaults import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

def smdrd(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``smdrd ARGS`` as a user runs it: no ``SMDRD_`` variables but those in ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMDRD_")}
    return subprocess.run([sys.executable, "-m", "smdrd", *map(str, args)], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)

def write_config(folder: Path, text: str, name: str = "smdrd.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path

GOOD = """
[site]
name = "hq"
country = "GB"
timezone = "Europe/London"

[database]
path = "calls.db"
"""

# --- item 3: check-config says where each problem comes from, and misses none -------------------------------

def test_a_bad_country_in_the_file_is_blamed_on_the_file(tmp_path: Path) -> None:
    """It was blamed on `<environment>`."""
    path = write_config(tmp_path, GOOD.replace('"GB"', '"XX"'))
    result = smdrd("check-config", path, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (f"{path}: site.country: unknown country 'XX'; "
                                             "expected an ISO code such as GB")

def test_a_bad_country_is_reported_beside_the_other_problems(tmp_path: Path) -> None:
    """The README promises every problem; the country was only checked once everything else was right."""
    path = write_config(tmp_path, GOOD.replace('"GB"', '"XX"') + 'batch_rows = "lots"\n')
    result = smdrd("check-config", path, cwd=tmp_path)
    assert result.returncode == 1
    assert f"{path}: site.country: unknown country 'XX'" in result.stderr
    assert f"{path}: database.batch_rows:" in result.stderr
    assert "2 problems found" in result.stderr


def test_a_bad_country_is_reported_beside_another_problem_of_the_site_section(tmp_path: Path) -> None:
    """It was checked only once every other [site] key was right: a bad timezone hid it."""
    path = write_config(tmp_path, GOOD.replace('"GB"', '"XX"').replace('"Europe/London"', '"Not/AZone"'))
    result = smdrd("check-config", path, cwd=tmp_path)
    assert result.returncode == 1
    assert f"{path}: site.country: unknown country 'XX'; expected an ISO code such as GB\n" in result.stderr
    assert f"{path}: site.timezone: expected an IANA timezone name" in result.stderr
    assert "2 problems found" in result.stderr

def test_a_bad_environment_override_is_blamed_on_its_variable(tmp_path: Path) -> None:
    """A bad SMDRD_SITE__TIMEZONE was blamed on the file."""
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={"SMDRD_SITE__TIMEZONE": "Mars/Base"})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("environment: SMDRD_SITE__TIMEZONE: site.timezone: expected an IANA timezone")
    assert str(path) not in line

@pytest.mark.parametrize(("variable", "value", "blamed"), [
    ("SMDRD_HTTP__TLS_CERT", "/etc/ssl/x.pem", "http: tls_cert and tls_key"),  # a section's rule, one key set
    ("SMDRD_SITE____NAME", "x", "site."),  # a doubled delimiter: an empty key
    ("SMDRD_SOURCES", "[" * 5000 + "]" * 5000, "not valid JSON (nested too deeply)"),
])
def test_a_problem_a_variable_made_is_blamed_on_it_not_the_file(tmp_path: Path, variable: str, value: str,
                                                                blamed: str) -> None:
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={variable: value})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"environment: {variable}: ") and blamed in line and str(path) not in line


def test_a_list_from_the_environment_that_is_not_one_is_blamed_on_its_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={"SMDRD_SOURCES": '{"name": "pbx"}'})
    assert result.returncode == 1
    assert result.stderr.startswith("environment: SMDRD_SOURCES: sources: ")

def test_malformed_json_in_smdrd_sources_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={"SMDRD_SOURCES": '[{"name": '})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("environment: SMDRD_SOURCES: not valid JSON")

@pytest.mark.parametrize(("variable", "hint"), [
    ("SMDRD_DATABSE__PATH", "did you mean SMDRD_DATABASE__PATH?"),
    ("SMDRD_TARIF", "did you mean SMDRD_TARIFF?"),
    ("SMDRD_SITE__TIMEZOEN", "site.timezoen: unknown key"),
])
def test_a_misspelt_variable_is_reported_not_ignored(tmp_path: Path, variable: str, hint: str) -> None:
    """`SMDRD_DATABSE__PATH=/srv/c.db smdrd check-config` said OK, and the daemon wrote elsewhere."""
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={variable: "{}"})
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"environment: {variable}: ") and hint in line
    run = smdrd("run", "--config", path, cwd=tmp_path, env={variable: "{}"}, timeout=60)
    assert run.returncode == 2 and variable in run.stderr  # the daemon refuses it too, as an unknown key

def test_other_smdrd_variables_are_left_alone(tmp_path: Path) -> None:
    """Variables of the family that are not settings (SMDRD_CONFIG, a test suite's switches) are no error."""
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={"SMDRD_CONFIG": str(path), "SMDRD_FAULTS_SHORT": "1"})
    assert result.returncode == 0, result.stderr


# --- item 1: without a configuration, every command refuses or says it runs on the built-in defaults ------------

IPO_SAMPLE = ROOT / "tests" / "fixtures" / "avaya-ipo" / "ipo500-2017-07.smdr"


@pytest.mark.skipif(DEFAULT_CONFIG_PATH.exists(), reason="this machine has a default configuration")
def test_import_without_a_configuration_names_its_database_and_says_it_uses_defaults(tmp_path: Path) -> None:
    """`smdrd import` with no configuration wrote to /var/lib/smdrd/smdrd.db, UTC, no tariff, without a word."""
    refused = smdrd("import", "--format", "avaya-ipo", IPO_SAMPLE, cwd=tmp_path)
    assert refused.returncode == 2 and "pass --config FILE" in refused.stderr
    assert list(tmp_path.iterdir()) == []
    for how in (["--database", "calls.db"], []):
        env = {} if how else {"SMDRD_DATABASE__PATH": str(tmp_path / "calls.db")}
        result = smdrd("import", "--format", "avaya-ipo", *how, IPO_SAMPLE, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.startswith("smdrd import: no configuration file: built-in defaults (site timezone UTC, "
                                        "no tariff, no departments)")
        assert (tmp_path / "calls.db").is_file()


# --- item 2: the demo's settings are there for the other commands ---------------------------------------------

def test_the_demo_writes_its_configuration_for_the_other_commands(tmp_path: Path) -> None:
    """`report extensions --database var/demo.db` showed every extension Unassigned, said `(UTC)`, and
    `rerate --dry-run` said `cost 6.35 -> 0 USD`."""
    demo = smdrd("demo", "--database", tmp_path / "var" / "demo.db", "--count", "40", "--rate", "400",
                 cwd=tmp_path, timeout=120)
    assert demo.returncode == 0, demo.stderr
    config = tmp_path / "var" / "demo.toml"
    assert f"its configuration, for the other commands: {config}" in demo.stdout
    assert smdrd("check-config", config, cwd=tmp_path).returncode == 0
    report = smdrd("report", "extensions", "--config", config, "--from", "2025-01-01", "--to", "2030-12-31",
                   "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["timezone"] == "America/New_York"
    assert {row["department"] for row in data["rows"]} - {"Unassigned"}
    rerate = smdrd("rerate", "--dry-run", "--json", "--config", config, cwd=tmp_path)
    assert rerate.returncode == 0, rerate.stderr
    summary = json.loads(rerate.stdout)
    assert summary["changed"] == 0 and summary["cost_before"] == summary["cost_after"]
    # Without it, rerate refuses to rewrite costs by the built-in defaults, and says where the file is.
    bare = smdrd("rerate", "--database", tmp_path / "var" / "demo.db", cwd=tmp_path)
    assert bare.returncode == 2 and f"pass --config {config}" in bare.stderr


# --- item 6: smdrd rate --------------------------------------------------------------------------------------

GBP_DECK = "# currency: GBP\nname,prefix,call_class,rate,billing_unit\nUK London,4420,local,0.01,60\n"


def test_rate_reads_the_configuration_named_by_smdrd_config(tmp_path: Path) -> None:
    """run, report and import honour $SMDRD_CONFIG; rate asked for --config."""
    (tmp_path / "rates.csv").write_text(GBP_DECK, encoding="utf-8")
    path = write_config(tmp_path, GOOD + '\n[tariff]\ncurrency = "GBP"\ndecimals = 3\ndecks = ["rates.csv"]\n')
    result = smdrd("rate", "02079460000", "201", "--duration", "60", "--json", cwd=tmp_path,
                   env={"SMDRD_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    london, internal = (json.loads(line) for line in result.stdout.splitlines())
    assert london["rule"] == "UK London" and london["cost"] == "0.010" and london["currency"] == "GBP"
    assert internal["call_class"] == "internal" and internal["cost"] == "0.000"


def test_rate_with_a_deck_takes_the_currency_the_deck_declares(tmp_path: Path) -> None:
    """With --rules, a GBP deck was priced in USD unless --currency was given."""
    (tmp_path / "rates.csv").write_text(GBP_DECK, encoding="utf-8")
    result = smdrd("rate", "02079460000", "--duration", "60", "--rules", "rates.csv", "--country", "GB",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "= 0.01 GBP" in result.stdout
    told = smdrd("rate", "02079460000", "--duration", "60", "--rules", "rates.csv", "--country", "GB",
                 "--currency", "EUR", cwd=tmp_path)
    assert "= 0.01 EUR" in told.stdout  # the flag still wins


def test_rate_prints_a_free_call_with_the_tariffs_decimals(tmp_path: Path) -> None:
    """An internal number printed cost `0` where every other cost has the tariff's decimals."""
    result = smdrd("rate", "201", "--duration", "60", "--country", "GB", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cost   0.00 USD (internal call)" in result.stdout


# --- item 5: import says which lines failed; item 11: its progress bar -----------------------------------------

def _sample_with_bad_lines(folder: Path, bad: int) -> Path:
    """The IP Office sample with ``bad`` unparseable lines after its first 3 lines (lines 4 to 3 + bad)."""
    lines = IPO_SAMPLE.read_bytes().splitlines()
    path = folder / "calls.smdr"
    broken = [b"1,2,3 this is no SMDR record"] * bad
    path.write_bytes(b"\r\n".join(lines[:3] + broken + lines[3:20]) + b"\r\n")
    return path


@pytest.mark.parametrize("mode", [[], ["--in-process"]], ids=["worker", "in-process"])
def test_import_lists_the_lines_that_failed_and_how_to_see_them_all(tmp_path: Path, mode: list[str]) -> None:
    """`import` said "2 errors" without saying which."""
    path = _sample_with_bad_lines(tmp_path, 12)
    result = smdrd("import", "--format", "avaya-ipo", "--database", "calls.db", *mode, path, cwd=tmp_path)
    assert result.returncode == 1  # errors: as before
    err = result.stderr.splitlines()
    assert "12 lines not parsed (stored as errors in the journal, raw bytes kept):" in err
    listed = [line for line in err if line.startswith(f"  {path}:")]
    assert [int(line.split(":")[1]) for line in listed] == list(range(4, 14))  # the first ten, by line number
    assert all("expected at least 17 comma-separated fields" in line for line in listed)
    assert "  ... and 2 more" in err
    assert "all of them, with their bytes: smdrd errors --source import --database calls.db;" in err[-1]
    listing = smdrd("errors", "--source", "import", "--database", "calls.db", "--limit", "3", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    out = listing.stdout.splitlines()
    assert out[-1] == "12 lines not parsed; 9 more: --limit 0 shows all"
    assert out[2] == "  '1,2,3 this is no SMDR record'" and f"import  {path}" in out[0]
    every = smdrd("errors", "--database", "calls.db", "--limit", "0", "--json", cwd=tmp_path)
    assert [json.loads(line)["raw"] for line in every.stdout.splitlines()] == ["1,2,3 this is no SMDR record"] * 12


def _on_a_terminal(args: list[str | Path], cwd: Path) -> tuple[int, str]:
    """Run ``smdrd ARGS`` with stderr on a pseudo-terminal, as in a user's shell; its status and what it drew."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMDRD_")}
    env.update(COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "smdrd", *map(str, args)], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    drawn = b""
    with proc:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                drawn += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=120)
    os.close(master)
    return status, drawn.decode("utf-8", "replace")


@pytest.mark.parametrize("mode", [[], ["--in-process"]], ids=["worker", "in-process"])
def test_import_on_a_terminal_shows_lines_calls_errors_and_speed(tmp_path: Path, mode: list[str]) -> None:
    """The progress bar was hand-written and showed only a share of bytes: it is rich's now, with the counts."""
    path = _sample_with_bad_lines(tmp_path, 2)
    status, drawn = _on_a_terminal(["import", "--format", "avaya-ipo", "--database", "calls.db", *mode, path],
                                   tmp_path)
    assert status == 1, drawn
    assert "\x1b[" in drawn and "━" in drawn  # drawn by rich, in place
    bar = next(line for line in reversed(re.split(r"[\r\n]", drawn)) if "━" in line)
    assert re.search(r"100%\s+22 lines\s+\d+ calls\s+2 errors\s+[\d,]+ lines/s", _plain(bar)), bar


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_check_config_warns_when_a_deck_declares_another_currency(tmp_path: Path) -> None:
    """The daemon prices in [tariff] currency (USD by default): a GBP deck under it is a slip worth a warning."""
    (tmp_path / "rates.csv").write_text(GBP_DECK, encoding="utf-8")
    path = write_config(tmp_path, GOOD + '\n[tariff]\ndecks = ["rates.csv"]\n')
    result = smdrd("check-config", path, cwd=tmp_path)
    assert result.returncode == 0
    assert (f"{path}: WARNING: tariff.currency: rates.csv says its prices are in GBP (its '# currency:' line) but "
            "the tariff's currency is USD") in result.stderr
    agreed = write_config(tmp_path, GOOD + '\n[tariff]\ncurrency = "GBP"\ndecks = ["rates.csv"]\n', "gbp.toml")
    assert "WARNING" not in smdrd("check-config", agreed, cwd=tmp_path).stderr
