"""What a new user reads agrees with what smdrd does (issue 18, item 10): the quick start's requirements, the
report kinds, the example configuration's sources, check-config's messages, the package metadata.

The defaults quoted in the documents are checked by `tests.test_doc_defaults`; install.sh's link and next
steps by `tests.test_install` (slow: it builds and installs a wheel)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from smdrd.reports.queries import KINDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLE = ROOT / "config" / "smdrd.example.toml"


def smdrd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smdrd", *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)


def test_quick_start_names_the_debian_packages_it_needs() -> None:
    """`make demo` creates a venv: on Debian and Ubuntu that needs python3-venv, which is not installed with
    python3."""
    quick = README.split("## Quick start", 1)[1].split("```", 1)[0]
    assert "python3-venv" in quick and "make" in quick


def test_readme_lists_every_report_kind() -> None:
    sentence = README[README.index("Report kinds"):].split("over a date range", 1)[0]
    assert sorted(re.findall(r"`([a-z-]+)`", sentence)) == sorted(KINDS)


def test_example_sources_use_the_format_they_describe() -> None:
    """The `cm-push` source is described as an Avaya CM pushing its CDR: its format is avaya-cm."""
    sources = {s["name"]: s for s in tomllib.loads(EXAMPLE.read_text())["sources"]}
    assert sources["cm-push"]["format"] == "avaya-cm"


def test_check_config_warns_that_the_example_still_points_at_a_placeholder(tmp_path: Path) -> None:
    """The example passes check-config unedited, but its PBX address is 192.0.2.10, a documentation address:
    a warning says so (exit 0), and --strict makes it an error."""
    example = tmp_path / "smdrd.toml"  # as install.sh writes it: 0644, whatever the checkout's umask gave
    example.write_text(EXAMPLE.read_text().replace('"rates.example.csv"', f'"{EXAMPLE.parent}/rates.example.csv"'))
    example.chmod(0o644)
    result = smdrd("check-config", str(example))
    assert result.returncode == 0, result.stderr
    assert "WARNING: sources[0].host: 192.0.2.10 is a documentation address" in result.stderr
    assert ": OK with 1 warning" in result.stdout
    assert smdrd("check-config", "--strict", str(example)).returncode == 1


def test_check_config_of_a_missing_file_does_not_suggest_a_flag_it_has_not() -> None:
    """check-config takes the file as its argument: no "or pass --config" (it has no such option)."""
    result = smdrd("check-config", "/nonexistent.toml")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "/nonexistent.toml" in result.stderr
    assert "--config" not in result.stderr


def test_the_package_license_is_an_spdx_expression() -> None:
    """A table (`license = { text = "MIT" }`) makes setuptools warn three times at every build."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    requires = pyproject["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires)
