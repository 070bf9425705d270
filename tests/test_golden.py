"""Golden tests: every capture in tests/fixtures/<format>/<name>.smdr parses to <name>.expected.jsonl.

A fixture may carry <name>.options.json with ``{"year": ..., "timezone": ..., "options": {...}}`` for what
its format leaves out. A user sees this fail when a parser change alters what a real PBX line means. The runner
is the conformance kit's (`smdrd.testing.check_golden`), which a third-party plugin runs on its own fixtures.
The expectations were first written by the parsers; the lines reviewed by hand against the vendor documents,
and every disagreement found, are in test_golden_reviewed.py and fixtures/REVIEW.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from smdrd.testing import check_golden, golden_cases, parse_fixture

FIXTURES = Path(__file__).parent / "fixtures"
CASES = golden_cases(FIXTURES)
#: set to 1 to let `regenerate` rewrite the expectations (see its docstring).
REGENERATE_ENV = "SMDRD_REGENERATE_GOLDEN"


def test_every_format_has_a_golden_capture() -> None:
    """Issue 13: every one of the 11 formats smdrd ships runs on at least one public capture (``custom`` on a real
    layout given through its options.json)."""
    formats = {"3cx", "asterisk-csv", "avaya-cm", "avaya-ipo", "cisco-cucm", "custom", "mitel-5000", "mitel-mivb",
               "nec-sv", "panasonic", "siemens-hipath"}
    assert {p.parent.name for p in CASES} >= formats


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_parses_to_expected_records(path: Path) -> None:
    check_golden(path)


def test_regenerate_refuses_without_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stray ``python tests/test_golden.py`` must not overwrite the reviewed expectations."""
    monkeypatch.delenv(REGENERATE_ENV, raising=False)
    before = {p: p.with_suffix(".expected.jsonl").read_bytes() for p in CASES}
    with pytest.raises(SystemExit, match=REGENERATE_ENV):
        regenerate()
    assert {p: p.with_suffix(".expected.jsonl").read_bytes() for p in CASES} == before


def regenerate() -> None:  # pragma: no cover - run by hand after reviewing a parser change
    """``SMDRD_REGENERATE_GOLDEN=1 python tests/test_golden.py``: rewrite every .expected.jsonl from the parsers.

    This writes down whatever the parsers do today, bugs included, so it refuses to run unless the environment
    variable ``SMDRD_REGENERATE_GOLDEN`` is ``1``. A regenerated file is not evidence of anything by itself: review
    its diff line by line against tests/fixtures/REVIEW.md and tests/test_golden_reviewed.py, which were written
    by hand from the vendor documents and are independent of it (a change there is a change of meaning that needs
    the document that justifies it, and REVIEW.md updated).

    Raises:
        SystemExit: ``SMDRD_REGENERATE_GOLDEN`` is not set to ``1``; nothing is written.
    """
    if os.environ.get(REGENERATE_ENV) != "1":
        raise SystemExit(f"refusing to rewrite the golden .expected.jsonl files from the parsers: set "
                         f"{REGENERATE_ENV}=1, then review the diff against tests/fixtures/REVIEW.md and "
                         f"tests/test_golden_reviewed.py")
    for path in CASES:
        rows = parse_fixture(path)
        path.with_suffix(".expected.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                               for r in rows))


if __name__ == "__main__":  # pragma: no cover
    regenerate()
