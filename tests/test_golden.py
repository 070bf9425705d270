"""Golden tests: every capture in tests/fixtures/<format>/<name>.smdr parses to <name>.expected.jsonl.

A fixture may carry <name>.options.json with ``{"year": ..., "timezone": ..., "options": {...}}`` for what
its format leaves out. A user sees this fail when a parser change alters what a real PBX line means. The runner
is the conformance kit's (`smdrd.testing.check_golden`), which a third-party plugin runs on its own fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smdrd.testing import check_golden, golden_cases, parse_fixture

FIXTURES = Path(__file__).parent / "fixtures"
CASES = golden_cases(FIXTURES)


def test_every_format_folder_with_captures_is_found() -> None:
    assert {p.parent.name for p in CASES} >= {"3cx", "asterisk-csv", "avaya-cm", "avaya-ipo", "cisco-cucm",
                                              "mitel-mivb"}


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_parses_to_expected_records(path: Path) -> None:
    check_golden(path)


def regenerate() -> None:  # pragma: no cover - run by hand after reviewing a parser change
    """``python tests/test_golden.py``: rewrite every .expected.jsonl from the current parsers."""
    for path in CASES:
        rows = parse_fixture(path)
        path.with_suffix(".expected.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                               for r in rows))


if __name__ == "__main__":  # pragma: no cover
    regenerate()
