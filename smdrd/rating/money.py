"""Money for rating: `Decimal` parsed from text, never from binary floats, rounded once per call.

Pure: no I/O here. A price that went through a ``float`` (``0.1 + 0.2 != 0.3``) is wrong by a fraction of a
cent that adds up over a month of calls, so every amount enters as a string (a deck cell, a quoted TOML value)
or an integer, and leaves as a `Decimal` rounded half-up to the tariff's number of decimals.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = [
    "MAX_DECIMALS", "MAX_DIGITS", "ZERO", "MoneyError", "exact_sum", "intern", "parse_money", "round_cost",
]

ZERO = Decimal(0)

# Generous precision: the sums of a call (fee + units * rate) must be exact before the one rounding, and the
# default context's 28 digits would round silently on an absurd deck instead of failing.
_EXACT = Context(prec=60, rounding=ROUND_HALF_UP)
_QUANTA = tuple(Decimal(1).scaleb(-n) for n in range(13))
# Decks repeat the same few prices tens of thousands of times; sharing one `Decimal` per spelling saves both
# parse time and memory in a compiled tariff.
_INTERNED: dict[str, Decimal] = {}
_BY_VALUE: dict[Decimal, Decimal] = {}
#: limits on an amount, so that a call's ``fee + units * rate`` is exact in Decimal's default 28 digits.
MAX_DIGITS = 15
MAX_DECIMALS = 12
#: how an amount is written: ASCII digits with at most one decimal point. `Decimal` alone would also take
#: full-width or Arabic-Indic digits (``１２``), underscores (``1_000``) and exponents (``1e3``).
_AMOUNT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class MoneyError(ValueError):
    """A price that is not a finite, non-negative decimal (the message says what was found)."""


def parse_money(value: object) -> Decimal:
    """A non-negative amount from a string (``"0.03"``), an int or a `Decimal`.

    Args:
        value: the amount as written in a deck or the configuration.

    Raises:
        MoneyError: for floats (binary, inexact: quote the value), negative, non-finite or non-numeric values.
    """
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, bool):
        raise MoneyError(f"expected an amount such as \"0.03\", got {value!r}")
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        raise MoneyError(f"amounts must be quoted strings such as \"0.03\" (a TOML float is binary and "
                         f"inexact), got {value!r}")
    elif isinstance(value, str):
        text = value.strip()
        cached = _INTERNED.get(text)
        if cached is not None:
            return cached
        if not _AMOUNT.fullmatch(text):
            if text.startswith("-") and _AMOUNT.fullmatch(text[1:]):
                raise MoneyError(f"expected an amount of 0 or more, got {value!r}")
            raise MoneyError(f"expected an amount such as 0.03 (ASCII digits and one decimal point), "
                             f"got {value!r}")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"expected an amount such as 0.03, got {value!r}") from None
        if amount.is_finite() and amount >= 0 and _small(amount) and len(_INTERNED) < 100_000:
            _INTERNED[text] = amount
    else:
        raise MoneyError(f"expected an amount such as \"0.03\", got {value!r}")
    if not amount.is_finite():
        raise MoneyError(f"expected a finite amount, got {value!r}")
    if amount < 0:
        raise MoneyError(f"expected an amount of 0 or more, got {value!r}")
    if not _small(amount):
        raise MoneyError(f"expected at most {MAX_DIGITS} significant digits and {MAX_DECIMALS} decimals, "
                         f"got {value!r}")
    return amount


def _small(amount: Decimal) -> bool:
    _, digits, exponent = amount.as_tuple()
    return len(digits) <= MAX_DIGITS and isinstance(exponent, int) and -MAX_DECIMALS <= exponent <= MAX_DIGITS


def intern(amount: Decimal) -> Decimal:
    """One shared `Decimal` per value, so 100,000 rules with the same fee hold one object."""
    return _BY_VALUE.setdefault(amount, amount) if len(_BY_VALUE) < 100_000 else amount


def exact_sum(fixed: Decimal, units: int, rate: Decimal) -> Decimal:
    """``fixed + units * rate`` without the default context's silent rounding."""
    return _EXACT.add(fixed, _EXACT.multiply(Decimal(units), rate))


def round_cost(amount: Decimal, decimals: int) -> Decimal:
    """``amount`` rounded half-up to ``decimals`` places: the one rounding a call's cost gets."""
    return amount.quantize(_QUANTA[decimals], None, _EXACT)
