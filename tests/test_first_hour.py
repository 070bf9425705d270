"""The first hour of a new user (issue 18, items 1, 2, 3, 5, 6 and 11), each run as a user runs it: ``smdrd`` in a
subprocess, in a folder of its own, with only the environment the test gives it.

Each test's docstring says what the user saw before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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

def test_a_bad_environment_override_is_blamed_on_its_variable(tmp_path: Path) -> None:
    """A bad SMDRD_SITE__TIMEZONE was blamed on the file."""
    path = write_config(tmp_path, GOOD)
    result = smdrd("check-config", path, cwd=tmp_path, env={"SMDRD_SITE__TIMEZONE": "Mars/Base"})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("environment: SMDRD_SITE__TIMEZONE: site.timezone: expected an IANA timezone")
    assert str(path) not in line

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
