"""Golden tests: every capture in tests/fixtures/<format>/<name>.smdr parses to <name>.expected.jsonl.

A fixture may carry <name>.options.json with ``{"year": ..., "timezone": ..., "options": {...}}`` for what
its format leaves out. A user sees this fail when a parser change alters what a real PBX line means.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.framing import Framer, Oversized
from smdrd.parsing import ParserContext, get_parser_class

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(FIXTURES.glob("*/*.smdr"))


def parse_fixture(path: Path) -> list[dict[str, Any]]:
    """Parse a fixture file the way the daemon would (framer, the format's encoding, the parser)."""
    fmt = path.parent.name
    opts_path = path.with_suffix(".options.json")
    opts = json.loads(opts_path.read_text()) if opts_path.exists() else {}
    tz = ZoneInfo(opts["timezone"]) if opts.get("timezone") else None
    cls = get_parser_class(fmt)
    parser = cls(ParserContext(timezone=tz, year=opts.get("year"), options=opts.get("options", {})))
    framer = Framer(1 << 20)
    frames = framer.feed(path.read_bytes()) + framer.close()
    out: list[dict[str, Any]] = []
    for frame in frames:
        assert not isinstance(frame, Oversized)
        records = parser.parse(frame.decode(opts.get("encoding", cls.encoding), errors="replace"))
        out.extend(r.to_json() for r in records or ())
    out.extend(r.to_json() for r in parser.flush())
    return out


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_parses_to_expected_records(path: Path) -> None:
    expected_path = path.with_suffix(".expected.jsonl")
    expected = [json.loads(line) for line in expected_path.read_text().splitlines() if line.strip()]
    assert parse_fixture(path) == expected


def regenerate() -> None:  # pragma: no cover - run by hand after reviewing a parser change
    """``python tests/test_golden.py``: rewrite every .expected.jsonl from the current parsers."""
    for path in CASES:
        rows = parse_fixture(path)
        path.with_suffix(".expected.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                               for r in rows))


if __name__ == "__main__":  # pragma: no cover
    regenerate()
