"""Rate decks: CSV files the way carriers publish them, one prefix per line, read into `Rule`s.

`parse_deck` is pure (lines in, rules out); `read_deck` is the only function in `smdrd.rating` that opens a
file. Every problem raises `TariffSourceError` naming the file and the line, so a reload can keep the old
tariff and say exactly what to fix.

The header names the columns, in any order; only ``prefix`` and ``rate`` are required::

    name,prefix,call_class,rate,billing_unit,initial_time,initial_cost,connection_fee,minimum_charge

and ``charge_unanswered`` (``yes`` or ``no``), ``band``, ``valid_from``, ``valid_until``, ``trunks`` and
``directions`` (several values separated by ``;``) may be added. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

from smdrd.rating.classes import CALL_CLASSES
from smdrd.rating.money import MoneyError, parse_money
from smdrd.rating.rules import DIRECTIONS, Band, Rule, TariffSourceError

__all__ = [
    "COLUMNS", "MAX_RULES", "REQUIRED", "YEASTAR_COLUMNS", "YEASTAR_HEADER", "is_yeastar", "parse_deck", "parse_prefix",
    "read_deck",
]

COLUMNS = (
    "name", "prefix", "call_class", "rate", "billing_unit", "initial_time", "initial_cost", "connection_fee",
    "minimum_charge", "charge_unanswered", "band", "valid_from", "valid_until", "trunks", "directions",
    "number_length",
)
#: Yeastar P-Series' call-rate CSV columns (Settings > Call Rate > Rate > Export) and smdrd's names for them.
#: Yeastar writes its rules in the reverse of their order on the PBX (the first line is the last rule), so a
#: deck with these columns is read bottom-up and written that way.
YEASTAR_COLUMNS = {
    "name": "name", "match prefix": "prefix", "number length": "number_length", "rate": "rate",
    "billable unit(s)": "billing_unit", "initial time(s)": "initial_time", "initial cost": "initial_cost",
}
#: the columns as Yeastar's export spells them, in its order.
YEASTAR_HEADER = ("Name", "Match Prefix", "Number Length", "Rate", "Billable Unit(s)", "Initial Time(s)",
                  "Initial Cost")
_YEASTAR_LABELS = {YEASTAR_COLUMNS[label.lower()]: label for label in YEASTAR_HEADER}
REQUIRED = ("prefix", "rate")
_MONEY = ("rate", "initial_cost", "connection_fee", "minimum_charge")
_OUTBOUND = frozenset({"outbound"})
_ALL_TRUNKS: frozenset[str] = frozenset()
_YES = frozenset({"yes", "true", "1", "y"})
_NO = frozenset({"", "no", "false", "0", "n"})


def parse_prefix(text: str) -> str:
    """A rule prefix: E.164 digits, country code first; a leading ``+`` and spaces are allowed.

    Raises:
        ValueError: when what is left is not 1 to 15 digits.
    """
    digits = text.strip().removeprefix("+").replace(" ", "")
    if not (digits.isdigit() and digits.isascii() and len(digits) <= 15):
        raise ValueError(f"expected a prefix of 1 to 15 digits, country code first (such as 4420), "
                         f"got {text!r}")
    return digits


def _seconds(text: str, column: str, default: int, minimum: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise ValueError(f"{column}: expected a whole number of seconds, {minimum} or more, got {text!r}")
    return int(text)


def _length(text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or int(text) > 15:
        raise ValueError(f"number_length: expected a whole number of digits, 1 to 15 (blank for any), got {text!r}")
    return int(text)


def is_yeastar(header: Iterable[str]) -> bool:
    """True when a deck's header names Yeastar's columns (``Match Prefix``...) rather than smdrd's."""
    cells = {cell.strip().lower() for cell in header}
    return "match prefix" in cells or "billable unit(s)" in cells


def _yeastar_reason(reason: str) -> str:
    """An error about a Yeastar deck names the column as Yeastar spells it."""
    column, sep, rest = reason.partition(":")
    label = _YEASTAR_LABELS.get(column)
    return f"{label}:{rest}" if sep and label else reason


def _flag(text: str, column: str) -> bool:
    word = text.lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise ValueError(f"{column}: expected yes or no, got {text!r}")


def _date(text: str, column: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{column}: expected a date such as 2026-01-31, got {text!r}") from None


def _rows(reader: Iterator[list[str]], line_num: Callable[[], int], source: str) -> Iterator[list[str]]:
    """``reader``'s rows; a CSV error (a cell over the csv module's 128 KiB field limit, a NUL byte) is a
    `TariffSourceError` naming the file and the line, never a traceback."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "field larger than field limit" in reason:
                reason = (f"a cell longer than {csv.field_size_limit():,} characters; a deck's cells are short "
                          f"(is this the rate deck?)")
            else:
                reason = f"not valid CSV: {reason}"
            raise TariffSourceError(source, line_num(), reason) from None
        yield row


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", ";").split(";") if part.strip()]


#: the most rules one deck may hold: a world-wide carrier deck has tens of thousands of prefixes; a deck past
#: this is a mistake (the wrong file), and each rule costs memory in the daemon, which must not run out.
MAX_RULES = 100_000


def parse_deck(
    lines: Iterable[str], source: str, *, bands: Mapping[str, Band] | None = None, first_order: int = 0
) -> list[Rule]:
    """The rules of one deck.

    Args:
        lines: the deck's text lines (as from a file opened with ``newline=""``).
        source: the deck's name in error messages and in `Rule.source` (its path).
        bands: the tariff's named time bands, for the ``band`` column.
        first_order: `Rule.order` of the deck's first rule (decks follow each other in the tariff).

    Raises:
        TariffSourceError: naming ``source`` and the line of the first bad entry.
    """
    bands = bands or {}
    reader = csv.reader(lines)
    rows = _rows(reader, lambda: reader.line_num, source)
    header: list[str] | None = None
    for row in rows:
        if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#"):
            header = [cell.strip().lower() for cell in row]
            break
    if header is None:
        raise TariffSourceError(source, None, "empty deck; expected a header line such as \"prefix,rate\"")
    header_line = reader.line_num
    yeastar = is_yeastar(header)
    if yeastar:
        unknown = [c for c in header if c not in YEASTAR_COLUMNS]
        if unknown:
            raise TariffSourceError(source, header_line, f"unknown column {unknown[0]!r}; a Yeastar deck has "
                                                         f"the columns {', '.join(YEASTAR_COLUMNS)}")
        header = [YEASTAR_COLUMNS[c] for c in header]
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise TariffSourceError(source, header_line, f"unknown column {unknown[0]!r}; expected columns among "
                                                     f"{', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise TariffSourceError(source, header_line, f"missing column {missing[0]!r} (required: prefix, "
                                                     f"rate)")
    if len(set(header)) != len(header):
        raise TariffSourceError(source, header_line, "a column is named twice")
    # Column positions: a deck has 100,000 lines, so no dict per line. An absent column points one past the
    # last, at an empty cell padded onto every row.
    width = len(header)
    col = {name: (header.index(name) if name in header else width) for name in COLUMNS}
    money_cols = [(name, col[name]) for name in _MONEY]
    i_name, i_prefix, i_class, i_rate = col["name"], col["prefix"], col["call_class"], col["rate"]
    i_unit, i_init, i_band = col["billing_unit"], col["initial_time"], col["band"]
    i_from, i_until = col["valid_from"], col["valid_until"]
    i_trunks, i_dirs, i_attempt = col["trunks"], col["directions"], col["charge_unanswered"]
    i_length = col["number_length"]
    # The same few prices and units repeat on every line: parse each spelling once.
    amounts: dict[str, Decimal] = {}
    rules: list[Rule] = []
    order = first_order
    for row in rows:
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        line = reader.line_num
        if len(rules) >= MAX_RULES:
            raise TariffSourceError(source, line, f"more than {MAX_RULES:,} rules: split the deck, or check that "
                                                  "this is the rate deck")
        if len(row) > width:
            raise TariffSourceError(source, line, f"{len(row)} cells for {width} columns (quote a cell "
                                                  f"that holds a comma)")
        cells = [c.strip() for c in row]
        cells.extend([""] * (width + 1 - len(cells)))
        try:
            try:
                prefix = parse_prefix(cells[i_prefix])
            except ValueError as exc:
                raise ValueError(f"prefix: {exc}") from None
            if not cells[i_rate]:
                raise ValueError("rate: expected an amount such as 0.03 (write 0 for free calls)")
            money: list[Decimal] = []
            for column, index in money_cols:
                text = cells[index] or "0"
                amount = amounts.get(text)
                if amount is None:
                    try:
                        amount = amounts[text] = parse_money(text)
                    except MoneyError as exc:
                        raise ValueError(f"{column}: {exc}") from None
                money.append(amount)
            call_class = cells[i_class].lower() or None
            if call_class is not None and call_class not in CALL_CLASSES:
                raise ValueError(f"call_class: expected one of {', '.join(CALL_CLASSES)}, got {call_class!r}")
            band = None
            band_name = cells[i_band]
            if band_name:
                band = bands.get(band_name)
                if band is None:
                    known = ", ".join(sorted(bands)) or "none defined in [tariff.bands]"
                    raise ValueError(f"band: unknown band {band_name!r} (known: {known})")
            directions = _OUTBOUND
            dirs = cells[i_dirs]
            if dirs:
                directions = frozenset(d.lower() for d in _split(dirs))
                if not directions or not directions <= DIRECTIONS:
                    raise ValueError(f"directions: expected outbound and/or inbound, got {dirs!r}")
            trunks = cells[i_trunks]
            rule = Rule(
                name=cells[i_name] or f"+{prefix}",
                prefixes=(prefix,),
                rate=money[0],
                billing_unit=_seconds(cells[i_unit], "billing_unit", 60, 1),
                initial_time=_seconds(cells[i_init], "initial_time", 0, 0),
                initial_cost=money[1],
                connection_fee=money[2],
                minimum_charge=money[3],
                charge_unanswered=_flag(cells[i_attempt], "charge_unanswered"),
                call_class=call_class,
                band=band,
                valid_from=_date(cells[i_from], "valid_from"),
                valid_until=_date(cells[i_until], "valid_until"),
                trunks=frozenset(_split(trunks)) if trunks else _ALL_TRUNKS,
                directions=directions,
                number_length=_length(cells[i_length]),
                order=order,
                source=source,
                line=line,
            )
            if rule.valid_from and rule.valid_until and rule.valid_until < rule.valid_from:
                # as the console's rule form refuses it: such a rule would never price a call
                raise ValueError(f"valid_until: {rule.valid_until} is before valid_from ({rule.valid_from})")
        except ValueError as exc:
            raise TariffSourceError(source, line, _yeastar_reason(str(exc)) if yeastar else str(exc)) from None
        rules.append(rule)
        order += 1
    if yeastar:  # the file lists the PBX's rules last first
        rules = [replace(rule, order=first_order + i) for i, rule in enumerate(reversed(rules))]
    return rules


def read_deck(
    path: Path | str, *, bands: Mapping[str, Band] | None = None, first_order: int = 0
) -> tuple[list[Rule], bytes]:
    """Read and parse the deck at ``path``.

    Returns:
        The rules, and the file's bytes (for the tariff's digest).

    Raises:
        TariffSourceError: the file cannot be read, is not UTF-8, or has a bad line (named).
    """
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TariffSourceError(shown, None, f"cannot read the deck: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TariffSourceError(shown, line, "not UTF-8 text (save the deck as UTF-8 CSV)") from None
    return parse_deck(text.splitlines(keepends=True), shown, bands=bands, first_order=first_order), data
