"""The installer's guide and its ready configurations (issue 13, point 5): `docs/formats.md` has a section for
every format, and `config/examples/<format>.toml` exists for every format and passes `smdrd check-config`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from smdrd.cli import main
from smdrd.parsing import format_names

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "config" / "examples"
GUIDE = ROOT / "docs" / "formats.md"


def test_every_format_has_an_example_and_a_section() -> None:
    """An installer looking up their PBX finds a section and a config to copy, for every format smdrd lists."""
    formats = set(format_names())
    assert {p.stem for p in EXAMPLES.glob("*.toml")} == formats
    headings = {line[3:].strip() for line in GUIDE.read_text().splitlines() if line.startswith("## ")}
    assert formats <= headings


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_example_config_passes_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copied example must load as it is: `smdrd check-config` exits 0 and names no problem."""
    assert main(["check-config", str(path)]) == 0, capsys.readouterr()
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_example_sources_use_their_own_format(path: Path) -> None:
    """`avaya-cm.toml` configures avaya-cm sources, and the guide links to it."""
    sources = tomllib.loads(path.read_text())["sources"]
    assert sources and {s["format"] for s in sources} == {path.stem}
    assert f"({path.stem})" in GUIDE.read_text() or f"#{path.stem}" in GUIDE.read_text()
