"""The parser toolkit: layouts as data, bounded converters, and `detect`/`render` derived from a layout.

Public and stable (``smdrd.parsers.toolkit``): smdrd's own vendor parsers use it, and so can a third-party plugin.
Pure: no I/O here.

A record layout is a tuple of fields, each with a converter (a function from the field's text to a value that
raises `ValueError` with a short reason when the text is wrong):

* `Column` ``(name, index, convert)``: the ``index``-th field of a separated line (CSV, ``|``...);
* `Slice` ``(name, start, end, convert)``: the 0-based columns ``[start, end)`` of a fixed-width line.

`Layout.extract` returns a dict of converted values, in the layout's order, and turns the first converter's
`ValueError` into ``ParseError(format, reason, field=name)``, so every error names the field. What is vendor
logic (headers, direction rules, continuation records) stays in the parser::

    from smdrd.parsers.toolkit import Column, Layout, hms_seconds, one_of, seconds, ymd_hms

    LAYOUT = Layout("acme", (
        Column("start", 0, lambda t: ymd_hms(t, None)),
        Column("duration", 1, hms_seconds),
        Column("ring", 2, seconds, optional=True, default=0),
        Column("direction", 3, one_of("I", "O")),
        Column("extension", 4),
        Column("number", 5),
    ))

    class AcmeParser(Parser):
        name = "acme"
        description = "ACME PBX (CSV)"

        def parse(self, line):
            v = LAYOUT.extract(line)
            ...
            return (CallRecord(format=self.name, start=v["start"], ...),)

        @classmethod
        def detect(cls, lines):
            return detect_from_layout(LAYOUT, lines)

Converters (re-exported from the bounded ones the built-in parsers share): `seconds`, `hms_seconds`, `uint`,
`ymd_hms`, `digits`, `check_year`, `call_seconds`, `seconds_text`; and the factories `one_of` and
`digit_text`. Each bounds what it returns to what a real call can have (`smdrd.record`), and every record a
parser returns is checked again by `smdrd.record.check_record` in `smdrd.parsing.parse_line`.

Check a plugin with the conformance kit in `smdrd.testing` (`check_parser`, `run_golden`).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from smdrd.errors import ParseError

from ._fields import (
    MAX_CALL_SECONDS,
    MAX_INT,
    call_seconds,
    check_year,
    digits,
    hms_seconds,
    seconds,
    seconds_text,
    shifted,
    uint,
    ymd_hms,
)

__all__ = [
    "MAX_CALL_SECONDS", "MAX_INT", "Column", "Converter", "Layout", "Slice", "call_seconds", "check_call_seconds",
    "check_year",
    "detect_from_layout", "digit_text", "digits", "hms_seconds", "one_of", "seconds", "seconds_text", "shifted", "uint",
    "ymd_hms",
]

#: a field converter: the field's text to a value, or `ValueError` with a short reason.
Converter = Callable[[str], Any]

_SEPARATOR_NAMES = {",": "comma-separated", "|": "|-separated", "\t": "tab-separated", ";": "semicolon-separated"}


def one_of(*values: str, expected: str | None = None) -> Callable[[str], str]:
    """A converter accepting only ``values`` (after stripping spaces); returns the stripped text.

    Args:
        values: the accepted texts (include ``""`` to accept a blank field).
        expected: how the error names what was expected (default: the non-blank values joined with "or").
    """
    allowed = frozenset(values)
    what = expected or " or ".join(v for v in values if v)

    def convert(text: str) -> str:
        t = text.strip()
        if t not in allowed:
            raise ValueError(f"expected {what}, got {text!r}")
        return t

    return convert


def digit_text(max_len: int = 19, expected: str = "a number") -> Callable[[str], str]:
    """A converter for identifiers made of ASCII digits (call ids): up to ``max_len`` of them, kept as text."""

    def convert(text: str) -> str:
        t = text.strip()
        if not (digits(t) and len(t) <= max_len):
            raise ValueError(f"expected {expected}, got {text!r}")
        return t

    return convert


@dataclass(frozen=True, slots=True)
class Column:
    """The ``index``-th field (0-based) of a separated line.

    Attributes:
        name: the field's name (the key in `Layout.extract`'s result and the ``field`` of its `ParseError`).
        index: its position in the row.
        convert: text to value (raises `ValueError`); ``None`` keeps the text as it is.
        optional: a blank field (only spaces) or one the row does not reach is ``default``, not converted.
        default: the value of an optional field that is blank or missing.
        strip: strip spaces before converting (off by default: most vendors' columns hold no padding, and a
            converter that allows it strips itself; a layout described in a config file turns it on).
    """

    name: str
    index: int
    convert: Converter | None = None
    optional: bool = False
    default: Any = ""
    strip: bool = False


@dataclass(frozen=True, slots=True)
class Slice:
    """The columns ``[start, end)`` (0-based, end excluded, as Python slices) of a fixed-width line.

    Attributes:
        name: the field's name.
        start, end: where it is; a line too short for it gives the part it has (maybe ``""``).
        convert: text to value (raises `ValueError`); ``None`` keeps the text.
        optional: a blank field is ``default``, not converted.
        default: the value of a blank optional field.
        strip: strip spaces before converting (the default; off for fields whose blanks mean something).
        align: ``"<"`` (left, the default) or ``">"`` (right): how `Layout.render` pads the value.
    """

    name: str
    start: int
    end: int
    convert: Converter | None = None
    optional: bool = False
    default: Any = ""
    strip: bool = True
    align: str = "<"


class Layout:
    """A record layout: separated `Column`\\ s or fixed-width `Slice`\\ s (not both), for one format.

    Args:
        format: the format name that `ParseError`\\ s carry.
        fields: the fields, in the order they are checked (the first bad one is the one reported).
        separator: what separates the columns of a line (separated layouts).
        quoted: read separated lines with `csv` quoting (``"a,b"`` is one field) instead of a plain split.
        quotechar: the quote character of a quoted layout.
        rstrip: drop trailing spaces before splitting (the default); off, only line ends are dropped, so a blank
            last field still counts where the separator is itself a blank (a tab).
        min_fields: the fewest fields a separated row must have, when more than the columns named need
            (default: one more than the last required column's index).
    """

    def __init__(self, format: str, fields: Iterable[Column | Slice], *, separator: str = ",",
                 quoted: bool = False, quotechar: str = '"', rstrip: bool = True,
                 min_fields: int | None = None) -> None:
        self.format = format
        self.fields: tuple[Column | Slice, ...] = tuple(fields)
        if not self.fields:
            raise ValueError("a layout needs at least one field")
        kinds = {type(f) for f in self.fields}
        if len(kinds) != 1:
            raise ValueError("a layout holds either Columns or Slices, not both")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"a layout names a field twice: {names}")
        self.fixed = kinds == {Slice}
        for f in self.fields:
            if isinstance(f, Slice) and not 0 <= f.start < f.end:
                raise ValueError(f"slice {f.name!r} must have 0 <= start < end, got [{f.start}, {f.end})")
            if isinstance(f, Column) and f.index < 0:
                raise ValueError(f"column {f.name!r} has a negative index")
        self.separator = separator
        self.quoted = quoted
        self.quotechar = quotechar
        self.rstrip = rstrip
        # built once: csv.reader makes a new dialect from keyword arguments on every call (about 1 µs a line)
        self._dialect = csv.reader((), delimiter=separator, quotechar=quotechar).dialect if quoted else None
        self.names: tuple[str, ...] = tuple(names)
        #: the fewest fields a separated row must have (one more than the last required column's index).
        self.min_fields = max((f.index + 1 for f in self.fields if isinstance(f, Column) and not f.optional),
                              default=0)
        if min_fields is not None:
            self.min_fields = max(self.min_fields, min_fields)
        #: the width of a fixed-width line (the end of the last slice).
        self.width = max((f.end for f in self.fields if isinstance(f, Slice)), default=0)
        self._what = _SEPARATOR_NAMES.get(separator, f"{separator!r}-separated")
        self._extract = _compile(self)

    def with_converters(self, **converters: Converter) -> Layout:
        """This layout with some fields' converters replaced (by name): a converter that depends on the parser's
        context, such as a timezone, is bound once when the parser is made."""
        unknown = sorted(set(converters) - set(self.names))
        if unknown:
            raise ValueError(f"the layout has no field {unknown[0]!r}")
        fields = tuple(replace(f, convert=converters[f.name]) if f.name in converters else f for f in self.fields)
        return Layout(self.format, fields, separator=self.separator, quoted=self.quoted,
                      quotechar=self.quotechar, rstrip=self.rstrip, min_fields=self.min_fields)

    def error(self, reason: str, field: str | None = None) -> ParseError:
        """A `ParseError` of this layout's format."""
        return ParseError(self.format, reason, field)

    def split(self, line: str) -> list[str]:
        """A separated line's fields (trailing spaces, or only line ends without `rstrip`, dropped first).

        Raises:
            ParseError: a quoted layout's line is not valid CSV.
        """
        text = line.rstrip() if self.rstrip else line.rstrip("\r\n")
        if not self.quoted:
            return text.split(self.separator)
        try:
            assert self._dialect is not None  # made for every quoted layout
            rows = list(csv.reader([text], self._dialect))
        except csv.Error as exc:
            raise self.error(f"not a CSV line: {exc}") from None
        return rows[0] if rows else []

    def extract(self, line: str | Sequence[str]) -> dict[str, Any]:
        """The converted value of every field, by name.

        Args:
            line: a line (split with `split` for a separated layout), or a separated row already split.

        Raises:
            ParseError: a separated row has fewer than `min_fields` fields (no field named), or a converter
                refused its field (``field`` is its name, ``reason`` the converter's).
        """
        return self._extract(line)

    def matches(self, line: str) -> bool:
        """``line`` extracts cleanly (every field converts)."""
        try:
            self.extract(line)
        except ParseError:
            return False
        return True

    def render(self, values: Mapping[str, str], width: int | None = None) -> str:
        """A line holding ``values`` (texts by field name; fields not given are blank).

        Separated layouts join the fields by position (``width`` fields, default the highest index + 1; a
        quoted layout quotes with `csv`). Fixed-width layouts pad each value to its slice (cutting what does
        not fit, aligned as the slice says) on a line of ``width`` characters (default `width`), then drop
        trailing spaces.
        """
        if self.fixed:
            chars = [" "] * max(width or self.width, self.width)
            for f in self.fields:
                assert isinstance(f, Slice)
                size = f.end - f.start
                value = values.get(f.name, "")[:size]
                chars[f.start:f.end] = value.rjust(size) if f.align == ">" else value.ljust(size)
            return "".join(chars).rstrip()
        count = width or max(f.index for f in self.fields if isinstance(f, Column)) + 1
        row = [""] * count
        for f in self.fields:
            assert isinstance(f, Column)
            if f.index < count:
                row[f.index] = values.get(f.name, "")
        if self.quoted:
            import io

            buf = io.StringIO()
            csv.writer(buf, delimiter=self.separator, quotechar=self.quotechar, lineterminator="").writerow(row)
            return buf.getvalue()
        return self.separator.join(row)


@functools.cache
def _template(shape: tuple[tuple[Any, ...], ...], fixed: bool) -> Callable[..., Callable[[Any], dict[str, Any]]]:
    """A factory of `Layout.extract` as straight-line code for fields of this shape (the way `dataclasses`
    writes ``__init__``): it runs once per line on the hot path, where a loop over the fields costs a fifth
    more. Converters and defaults are the factory's arguments, so layouts that differ only in them (a parser
    binding its timezone) share the compiled code."""
    args = ["layout", "split", "min_fields"]
    lines = ["    def extract(line):", "        name = None"]
    if fixed:
        lines += ["        if line.__class__ is not str:",
                  "            raise TypeError('a fixed-width layout extracts from a line, not a row')",
                  "        row = line"]
    else:
        lines += ["        row = split(line) if line.__class__ is str else line", "        n = len(row)",
                  "        if n < min_fields:",
                  "            raise layout.error(f'expected at least {min_fields} {layout._what} fields, got {n}')"]
    lines.append("        try:")
    values = []
    for i, (name, where, has_convert, optional, strip) in enumerate(shape):
        args += [f"c{i}", f"d{i}"]
        lines.append(f"            name = {name!r}")
        if fixed:
            lines.append(f"            t = row[{where[0]}:{where[1]}]" + (".strip()" if strip else ""))
            absent = "not t.strip()" if optional else ""
        else:
            lines.append(f"            t = row[{where}]" + (".strip()" if strip else "") + f" if {where} < n else None")
            absent = "t is None or not t.strip()" if optional else "t is None"
        value = f"c{i}(t)" if has_convert else "t"
        lines.append(f"            v{i} = d{i} if {absent} else {value}" if absent else f"            v{i} = {value}")
        values.append(f"{name!r}: v{i}")
    lines += ["        except ValueError as exc:", "            raise layout.error(str(exc), name) from None",
              f"        return {{{', '.join(values)}}}", "    return extract"]
    source = f"def make({', '.join(args)}):\n" + "\n".join(lines)
    env: dict[str, Any] = {}
    exec(source, env)  # built from this function's templates and the field names' reprs only
    make: Callable[..., Callable[[Any], dict[str, Any]]] = env["make"]
    return make


def _compile(layout: Layout) -> Callable[[Any], dict[str, Any]]:
    shape = tuple(
        (f.name, f.index if isinstance(f, Column) else (f.start, f.end), f.convert is not None, f.optional,
         f.strip)
        for f in layout.fields)
    converters = [x for f in layout.fields for x in (f.convert, f.default)]
    return _template(shape, layout.fixed)(layout, layout.split, layout.min_fields, *converters)


def check_call_seconds(format: str, **seconds: int | None) -> None:
    """Refuse talk or ring times (by field name) that no real call has, with the words and the field
    `smdrd.record.check_record` would use: for times a parser computes (end minus start) rather than converts.

    Raises:
        ParseError: naming the first field outside 0 to `MAX_CALL_SECONDS`.
    """
    for name, value in seconds.items():
        if value is not None and not 0 <= value <= MAX_CALL_SECONDS:
            raise ParseError(format, f"{value} s is no real call (0 to {MAX_CALL_SECONDS} s, 31 days)", name)


def detect_from_layout(layout: Layout, lines: Sequence[str], *, confidence: float = 0.95, sample: int = 20,
                       skip: Callable[[str], bool] | None = None) -> float:
    """A `smdrd.parsing.Parser.detect` score from a layout: ``confidence`` times the fraction of the first
    ``sample`` lines that extract cleanly.

    Blank lines and lines for which ``skip`` is true (headers the parser skips on purpose) are not counted;
    with nothing left to count the score is 0.
    """
    counted = hits = 0
    for line in lines[:sample]:
        if not line.strip() or (skip is not None and skip(line)):
            continue
        counted += 1
        hits += layout.matches(line)
    return confidence * hits / counted if counted else 0.0
