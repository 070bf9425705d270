"""CSV that a spreadsheet opens as data, never as formulas: the one place every smdrd CSV writer goes through.

Anything in a call may come from a PBX line, and a caller ID on a SIP trunk can carry ``=HYPERLINK(...)``,
``+cmd|' /C calc'!A0`` or ``@SUM(...)``. A spreadsheet that opens a CSV evaluates a cell that starts with a
formula character, so every cell smdrd writes passes through `safe_cell` first (OWASP, "CSV Injection"):

* **Triggers.** A cell is neutralised when it starts with ``=``, ``+``, ``-`` or ``@``, or with their
  full-width and small forms (``＝＋－＠``, ``﹦﹢﹣﹫``) or the minus sign ``−`` (U+2212), also after leading
  whitespace (any Unicode space, tab, CR, LF, and the invisible U+200B-U+200D, U+2060, U+FEFF); and when it
  starts with a tab, CR or LF whatever follows.
* **Neutralised** means a single quote ``'`` is put in front of the cell: ``=1+2`` becomes ``'=1+2``. Nothing
  is removed, so the original is the cell without its first character.
* **Plain numbers stay as they are**, because a spreadsheet reads them as numbers, not formulas: exactly an
  optional ``+`` or ``-``, ASCII digits, and optionally a ``.`` and more ASCII digits, with nothing else
  (``+442071234567``, ``-12.50``, ``-3``). An E.164 number therefore stays ``+442071234567``, a number a
  person can dial. Anything else that starts with a trigger is prefixed, including numbers written with
  spaces, brackets or hyphens (``+44 20 7123 4567``, ``+1 (555) 123-4567``): a spreadsheet parses those as a
  formula (a space is its intersection operator) and shows ``#NULL!`` or a wrong sum, while ``'+44 20 7123
  4567`` shows the text as sent. Also prefixed: ``-``, ``+.5``, ``-1e5``, ``1,234``-style and non-ASCII digits.
* **Numbers that are numbers** (Python ``int``, ``float`` and ``Decimal``, finite) are written as they are;
  ``None`` is an empty cell; anything else is ``str(value)`` under the rules above.
* **Separators inside a cell.** A spreadsheet in a locale whose list separator is ``;`` (most of Europe)
  splits lines on ``;`` and ignores our quoting, and pasting splits on tabs and line breaks; the text after
  such a character would start a cell of its own. So a trigger after ``;``, tab, CR or LF inside a cell
  (after any whitespace or ``"``) gets the same quote, put right after that character: ``a;=1+2`` becomes
  ``a;'=1+2``. SIP parameters (``;user=phone``) start with a name and are left alone.

The file itself is RFC 4180: fields quoted only when they must be (``,``, ``"``, CR, LF), CRLF line ends.
Use `SafeCsvWriter` (or `csv_text`) for any CSV a person may open; ``tests/test_csvsafe.py`` fails when a
``csv.writer`` appears anywhere else in ``smdrd/``. Pure: no I/O beyond the stream it is given.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

__all__ = ["BOM", "SafeCsvWriter", "csv_text", "is_plain_number", "safe_cell", "safe_row"]

#: what a CSV meant for a spreadsheet starts with (the reports, the directory's download): Excel reads a CSV
#: without it in the machine's ANSI code page, so UTF-8 ``Łódź`` shows as ``ÅÃ³dÅº``. smdrd's own CSV readers
#: (decks, the directory) skip it. Not on CSVs for other programs: ``smdrd export``, and the tariff deck, which
#: a Yeastar PBX imports too.
BOM = "\ufeff"

#: Characters a spreadsheet starts a formula with (ASCII, full-width, small forms, the minus sign).
TRIGGERS = frozenset("=+-@" "\uff1d\uff0b\uff0d\uff20" "\ufe66\ufe62\ufe63\ufe6b" "\u2212")
#: Starting a cell with one of these is neutralised whatever follows (OWASP lists tab and CR).
CONTROL_STARTS = frozenset("\t\r\n")
#: Characters after which a spreadsheet may start a new cell inside ours (``;`` locales, pasting).
SPLITTERS = frozenset(";\t\r\n")
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def is_plain_number(text: str) -> bool:
    """Whether ``text`` is a number a spreadsheet reads as a number: ``[+-]digits[.digits]``, ASCII only."""
    return _PLAIN_NUMBER.fullmatch(text) is not None


def _skip_blank(text: str, i: int, quotes: bool = False) -> int:
    """The index of the first character at or after ``i`` that is not whitespace (nor ``"`` if ``quotes``)."""
    n = len(text)
    while i < n and (text[i].isspace() or text[i] in _INVISIBLE or (quotes and text[i] == '"')):
        i += 1
    return i


def _guard_splits(text: str) -> str:
    """``text`` with ``'`` after every `SPLITTERS` character that is followed (after blanks) by a trigger."""
    if not any(c in SPLITTERS for c in text):
        return text
    out: list[str] = []
    for i, c in enumerate(text):
        out.append(c)
        if c in SPLITTERS:
            j = _skip_blank(text, i + 1, quotes=True)
            if j < len(text) and text[j] in TRIGGERS:
                out.append("'")
    return "".join(out)


#: what makes a first character worth a closer look (a trigger, a control start, a blank or an invisible one).
_FIRST_LOOK = TRIGGERS | CONTROL_STARTS | _INVISIBLE
_ANY_SPLITTER = re.compile("[" + re.escape("".join(sorted(SPLITTERS))) + "]")


def safe_text(text: str) -> str:
    """``text`` as a cell no spreadsheet evaluates (the rules are in the module docstring)."""
    if not text:
        return text
    first = text[0]
    if first not in _FIRST_LOOK and not first.isspace() and _ANY_SPLITTER.search(text) is None:
        return text  # nothing to lead with and nothing to split on: most cells, at the cost of one search
    if is_plain_number(text):
        return text
    start = _skip_blank(text, 0)
    lead = text[0] in CONTROL_STARTS or (start < len(text) and text[start] in TRIGGERS)
    guarded = _guard_splits(text)
    return "'" + guarded if lead else guarded


def safe_cell(value: object) -> str:
    """One value as a CSV cell: ``None`` empty, finite numbers as they are, text neutralised by `safe_text`."""
    if type(value) is str:  # the most common cell first
        return safe_text(value)
    if value is None:
        return ""
    if isinstance(value, int):  # bool included: True/False
        return str(value)
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return safe_text(str(value))


def safe_row(values: Iterable[object]) -> list[str]:
    """Every value of a row through `safe_cell`."""
    return [safe_cell(v) for v in values]


class _Writable(Protocol):
    def write(self, text: str, /) -> object: ...


class SafeCsvWriter:
    """``csv.writer`` (RFC 4180, CRLF) whose every cell has gone through `safe_cell`.

    Open a file for it with ``newline=""`` (as for any ``csv.writer``).
    """

    def __init__(self, out: _Writable) -> None:
        self._writer = csv.writer(out, lineterminator="\r\n")

    def writerow(self, values: Iterable[object]) -> None:
        self._writer.writerow(safe_row(values))

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    """``rows`` as one CSV text, through `SafeCsvWriter`."""
    out = io.StringIO()
    SafeCsvWriter(out).writerows(rows)
    return out.getvalue()
