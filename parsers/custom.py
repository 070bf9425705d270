"""The ``custom`` format: a PBX no plugin knows, described in the config file. No I/O here.

The layout is data from ``[sources.format_options]``, checked once when the parser is made: a bad option
raises `ValueError` naming the option (the config loader reports it with the file and source). At parse time
only a bad *line* raises `ParseError`.

A complete example (a CSV PBX; every key shown with what it accepts)::

    [[sources]]
    name = "branch-office"
    format = "custom"

    [sources.format_options]
    type = "csv"                       # "csv" or "fixed"
    # csv: one canonical field name per column, "" to ignore a column; any other name is kept in extra
    columns = ["date", "time", "extension", "trunk", "number", "duration", "ring", "dir", "", "account"]
    delimiter = ","                    # csv only, one character (default ",")
    quotechar = '"'                    # csv only, one character (default '"')
    # fixed: a table of field -> [start, end], 0-based, end excluded (like Python slices)
    # slices = { start = [0, 14], extension = [15, 20], number = [21, 41], duration = [42, 50] }
    date_format = "%d/%m/%Y"           # strptime format of "date", or of "start" (date and time in one field)
    time_format = "%H:%M:%S"           # strptime format of "time" (default "%H:%M:%S"); unused with "start"
    duration_format = "hh:mm:ss"       # "seconds", "minutes", "hh:mm:ss", "hhmmss", "mm:ss", "hh:mm'ss" or "hh:mm"
    ring_format = "seconds"            # same choices (default "seconds")
    skip = ['^Date', '^-+$']           # regexes (re.search) of lines to skip, such as headers
    # direction: a field and what its values mean ...
    direction = { field = "dir", map = { I = "inbound", O = "outbound", X = "internal" } }
    # ... or by number length: a number of up to N digits is another extension
    # direction = { internal_max_digits = 4, inbound_field = "dir", inbound_values = ["I"] }

Canonical fields: ``start`` (date and time in one field) or ``date`` + ``time``, ``duration``, ``ring``,
``extension``, ``number``, ``trunk``, ``account``, ``auth_code``, ``call_id``. ``start`` (or ``date``) and
``extension`` are required. A date format without a year takes the context's ``year`` (else the current year,
a date in the future meaning last year).

Direction rules: with ``field`` and ``map``, the field's value (stripped) is looked up in ``map`` (an unmapped
value is a `ParseError`). With ``internal_max_digits = N``, a ``number`` of 1 to N digits is internal; any
other number is outbound, unless ``inbound_field`` holds one of ``inbound_values``, or, without those, the
number is empty. Answered means a talk time above zero. Records are not joined: every line is one call (a
``call_id`` column, when mapped, keys the record).

The options become a toolkit `smdrd.parsers.toolkit.Layout` (`Column`\\ s or `Slice`\\ s, every value stripped,
``duration`` and ``ring`` converted), so reading and writing a line is the toolkit's; what is left here is
checking the options, the date formats and the direction rule.

`render` writes lines in the configured layout for a parser made with those options; the class itself (as the
simulator uses it) renders `DEFAULT_OPTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from smdrd.errors import ParseError
from smdrd.parsing import Parser, ParserContext
from smdrd.record import EARLIEST_YEAR, LATEST_YEAR, CallRecord, Direction

from .toolkit import MAX_CALL_SECONDS, Column, Converter, Layout, Slice, call_seconds, hms_seconds, seconds, uint

CANONICAL = frozenset({"start", "date", "time", "duration", "ring", "extension", "number", "trunk", "account",
                       "auth_code", "call_id"})
DURATION_FORMATS = ("seconds", "minutes", "hh:mm:ss", "hhmmss", "mm:ss", "hh:mm'ss", "hh:mm")
#: what the class renders and parses when made without options (`smdrd simulate --format custom`).
DEFAULT_OPTIONS: dict[str, Any] = {
    "type": "csv",
    "columns": ["start", "duration", "ring", "extension", "number", "trunk", "dir", "account"],
    "date_format": "%Y-%m-%d %H:%M:%S",
    "duration_format": "seconds",
    "direction": {"field": "dir", "map": {"I": "inbound", "O": "outbound", "X": "internal"}},
}
_OPTION_KEYS = frozenset({"type", "columns", "delimiter", "quotechar", "slices", "date_format", "time_format",
                          "duration_format", "ring_format", "skip", "direction"})


def _bad(key: str, message: str) -> ValueError:
    return ValueError(f"custom format option {key!r}: {message}")


def _duration(text: str, fmt: str) -> int:
    t = text.strip()
    if fmt == "seconds":
        return seconds(t)
    if fmt == "minutes":
        return call_seconds(uint(t, MAX_CALL_SECONDS) * 60, text)
    if fmt == "hh:mm'ss":
        t = t.replace("'", ":")
    elif fmt == "hhmmss":  # six digits, no separators (ESI's CSV SMDR)
        if len(t) < 6:
            raise ValueError(f"expected HHMMSS, got {text!r}")
        t = f"{t[:-4]}:{t[-4:-2]}:{t[-2:]}"
    elif fmt == "mm:ss":
        t = "0:" + t
    elif fmt == "hh:mm":
        t = t + ":00"
    return hms_seconds(t)


def _format_duration(seconds: int, fmt: str) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if fmt == "seconds":
        return str(seconds)
    if fmt == "minutes":
        return str(seconds // 60)
    if fmt == "mm:ss":
        return f"{seconds // 60:02d}:{s:02d}"
    if fmt == "hh:mm":
        return f"{h:02d}:{m:02d}"
    if fmt == "hhmmss":
        return f"{h:02d}{m:02d}{s:02d}"
    sep = "'" if fmt == "hh:mm'ss" else ":"
    return f"{h:02d}:{m:02d}{sep}{s:02d}"


def _converter(fmt: str) -> Converter:
    return lambda text: _duration(text, fmt)


#: the converted fields: (name, the option holding its format, value when blank).
_CONVERTED = (("duration", "duration_format", 0), ("ring", "ring_format", None))


@dataclass(frozen=True)
class Options:
    """The validated options, and the toolkit layouts they describe."""

    kind: str
    columns: tuple[str, ...]
    slices: tuple[tuple[str, int, int], ...]
    delimiter: str
    quotechar: str
    date_format: str
    time_format: str
    duration_format: str
    ring_format: str
    skip: tuple[re.Pattern[str], ...]
    dir_field: str
    dir_map: Mapping[str, Direction]
    internal_max_digits: int
    inbound_field: str
    inbound_values: frozenset[str]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.columns if self.kind == "csv" else tuple(name for name, _, _ in self.slices)

    @cached_property
    def layout(self) -> Layout:
        """Every named field, stripped, with ``duration`` and ``ring`` converted (blank: 0 and ``None``)."""
        converted = {name: (_converter(getattr(self, key)), blank) for name, key, blank in _CONVERTED}
        return self._layout(converted)

    @cached_property
    def texts(self) -> Layout:
        """Every named field as stripped text."""
        return self._layout({})

    def _layout(self, converted: Mapping[str, tuple[Converter, Any]]) -> Layout:
        def kw(name: str) -> dict[str, Any]:
            if name not in converted:
                return {}
            convert, blank = converted[name]
            return {"convert": convert, "optional": True, "default": blank}

        if self.kind == "csv":
            # rstrip off: a tab-separated line keeps its blank last column
            return Layout("custom", [Column(c, i, strip=True, **kw(c)) for i, c in enumerate(self.columns) if c],
                          separator=self.delimiter, quoted=True, quotechar=self.quotechar, rstrip=False,
                          min_fields=len(self.columns))
        return Layout("custom", [Slice(name, a, b, **kw(name)) for name, a, b in self.slices])

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Options:
        """Check ``options``; raises `ValueError` naming the first bad option."""
        unknown = sorted(set(options) - _OPTION_KEYS)
        if unknown:
            raise _bad(unknown[0], f"unknown option; known: {', '.join(sorted(_OPTION_KEYS))}")
        kind = options.get("type")
        if kind not in ("csv", "fixed"):
            raise _bad("type", f'must be "csv" or "fixed", got {kind!r}')
        columns: tuple[str, ...] = ()
        slices: tuple[tuple[str, int, int], ...] = ()
        if kind == "csv":
            cols = options.get("columns")
            if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
                raise _bad("columns", "must be a non-empty list of field names (\"\" to ignore a column)")
            named = [c for c in cols if c]
            if len(set(named)) != len(named):
                raise _bad("columns", "names a field twice")
            columns = tuple(cols)
        else:
            table = options.get("slices")
            if not isinstance(table, Mapping) or not table:
                raise _bad("slices", "must be a table of field = [start, end]")
            items = []
            for name, span in table.items():
                if not (isinstance(span, list | tuple) and len(span) == 2
                        and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
                        and 0 <= span[0] < span[1]):
                    raise _bad("slices", f"{name} must be [start, end] with 0 <= start < end, got {span!r}")
                items.append((str(name), int(span[0]), int(span[1])))
            slices = tuple(items)
        names = set(columns) | {name for name, _, _ in slices}
        if "start" not in names and "date" not in names:
            raise _bad("columns" if kind == "csv" else "slices", 'needs a "start" or a "date" field')
        if "extension" not in names:
            raise _bad("columns" if kind == "csv" else "slices", 'needs an "extension" field')

        def char(key: str, default: str) -> str:
            value = options.get(key, default)
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise _bad(key, f"must be one character, got {value!r}")
            return value

        def text(key: str, default: str) -> str:
            value = options.get(key, default)
            if not isinstance(value, str) or not value:
                raise _bad(key, f"must be a non-empty string, got {value!r}")
            return value

        date_format = text("date_format", "")
        time_format = text("time_format", "%H:%M:%S")
        for key, fmt in (("date_format", date_format), ("time_format", time_format)):
            try:
                datetime(2024, 2, 29, 23, 59, 58).strftime(fmt)
            except ValueError as exc:
                raise _bad(key, f"is not a strptime format: {exc}") from None
        formats = {}
        for key in ("duration_format", "ring_format"):
            value = options.get(key, "seconds")
            if value not in DURATION_FORMATS:
                raise _bad(key, f"must be one of {', '.join(DURATION_FORMATS)}, got {value!r}")
            formats[key] = value
        skip_list = options.get("skip", [])
        if not isinstance(skip_list, list) or not all(isinstance(s, str) for s in skip_list):
            raise _bad("skip", "must be a list of regular expressions")
        try:
            skip = tuple(re.compile(s) for s in skip_list)
        except re.error as exc:
            raise _bad("skip", f"is not a valid regular expression: {exc}") from None

        rule = options.get("direction")
        if not isinstance(rule, Mapping):
            raise _bad("direction", "must be a table: {field, map} or {internal_max_digits}")
        dir_field, dir_map = "", {}
        max_digits, inbound_field, inbound_values = 0, "", frozenset[str]()
        if "field" in rule:
            dir_field = rule["field"]
            mapping = rule.get("map")
            if dir_field not in names:
                raise _bad("direction", f"field {dir_field!r} is not one of the columns")
            if not isinstance(mapping, Mapping) or not mapping:
                raise _bad("direction", "map must be a table of value = inbound / outbound / internal")
            try:
                dir_map = {str(k): Direction(v) for k, v in mapping.items()}
            except ValueError as exc:
                raise _bad("direction", f"map: {exc}") from None
        elif "internal_max_digits" in rule:
            max_digits = rule["internal_max_digits"]
            if not isinstance(max_digits, int) or isinstance(max_digits, bool) or max_digits < 1:
                raise _bad("direction", f"internal_max_digits must be a whole number > 0, got {max_digits!r}")
            if "number" not in names:
                raise _bad("direction", 'internal_max_digits needs a "number" field')
            inbound_field = rule.get("inbound_field", "")
            if inbound_field and inbound_field not in names:
                raise _bad("direction", f"inbound_field {inbound_field!r} is not one of the columns")
            values = rule.get("inbound_values", [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _bad("direction", "inbound_values must be a list of strings")
            inbound_values = frozenset(values)
        else:
            raise _bad("direction", 'needs "field" and "map", or "internal_max_digits"')
        delimiter, quotechar = char("delimiter", ","), char("quotechar", '"')
        if delimiter == quotechar:
            raise _bad("quotechar", "must differ from the delimiter")
        return cls(
            kind=kind, columns=columns, slices=slices, delimiter=delimiter, quotechar=quotechar,
            date_format=date_format, time_format=time_format,
            duration_format=formats["duration_format"], ring_format=formats["ring_format"], skip=skip,
            dir_field=dir_field, dir_map=dir_map, internal_max_digits=max_digits, inbound_field=inbound_field,
            inbound_values=inbound_values,
        )

    def render(self, record: CallRecord) -> list[str]:
        """One line in this layout (`Layout.render` of the `texts` layout)."""
        values = {
            "start": record.start.strftime(self.date_format), "date": record.start.strftime(self.date_format),
            "time": record.start.strftime(self.time_format),
            "duration": _format_duration(record.duration, self.duration_format),
            "ring": _format_duration(record.ring or 0, self.ring_format), "extension": record.extension,
            "number": record.number, "trunk": record.trunk, "account": record.account,
            "auth_code": record.auth_code, "call_id": record.call_id,
        }
        if self.dir_field:
            code = next((k for k, v in self.dir_map.items() if v is record.direction), "")
            values[self.dir_field] = code
        elif self.inbound_field and record.direction is Direction.INBOUND and self.inbound_values:
            values[self.inbound_field] = sorted(self.inbound_values)[0]
        for name in self.fields:
            if name not in values:
                values[name] = record.extra.get(name, "")
        return [self.texts.render(values, width=len(self.columns) if self.kind == "csv" else None)]


class _Render:
    """`CustomParser.render`: the instance's layout on an instance, `DEFAULT_OPTIONS` on the class."""

    def __get__(self, obj: CustomParser | None,
                owner: type[CustomParser]) -> Callable[[CallRecord], list[str]]:
        return obj.options.render if obj is not None else _DEFAULT.render


class CustomParser(Parser):
    """A PBX described in the config file (CSV columns or fixed-width slices)."""

    name = "custom"
    description = "Any PBX described in the config (CSV columns or fixed-width slices, a direction rule)"

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        self.options = Options.from_options(self.context.options or DEFAULT_OPTIONS)
        #: the toolkit layout the options describe (`Options.layout`), and the same without converters.
        self.layout = self.options.layout
        self._texts = self.options.texts
        fmt = self.options.date_format
        self._no_year = "%Y" not in fmt and "%y" not in fmt
        self._csv = self.options.kind == "csv"
        #: the fewest characters a fixed-width line has: one past the start of its last field.
        self._need = 1 + max((a for _, a, _ in self.options.slices), default=-1)

    def _split(self, text: str) -> dict[str, Any]:
        """The layout's values: stripped text, ``duration`` and ``ring`` converted."""
        if self._csv:
            row = self.layout.split(text)
            n = len(self.options.columns)
            if len(row) < n:
                raise self.error(f"expected {n} columns, got {len(row)}")
            f = self.layout.extract(row)
            # columns beyond the configured ones are kept, not dropped
            f.update({f"column{i + 1}": v for i, v in enumerate(row[n:], n) if v})
            return f
        if len(text) < self._need:
            raise self.error(f"expected at least {self._need} characters, got {len(text)}")
        return self.layout.extract(text)

    def _time(self, f: Mapping[str, Any]) -> datetime:
        lay = self.options
        if "start" in f:
            text, fmt, field = f["start"], lay.date_format, "start"
        else:
            text, field = f"{f['date']} {f.get('time', '')}", "date"
            fmt = f"{lay.date_format} {lay.time_format}"
        try:
            if self._no_year:
                year = self.context.year or (self.context.now or datetime.now(self.context.timezone)).year
                when = datetime.strptime(f"{text} {year}", f"{fmt} %Y")
                now = self.context.now or datetime.now(self.context.timezone)
                if self.context.year is None and when > now.replace(tzinfo=None) + timedelta(days=1):
                    when = when.replace(year=when.year - 1)
            else:
                when = datetime.strptime(text, fmt)
        except ValueError as exc:
            raise self.error(f"does not match {fmt!r}: {exc}", field) from None
        if not EARLIEST_YEAR <= when.year <= LATEST_YEAR:  # %Y reads "24" as the year 24
            raise self.error(f"year {when.year} is outside {EARLIEST_YEAR} to {LATEST_YEAR}", field)
        return when.replace(tzinfo=self.context.timezone)

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        lay = self.options
        text = line.rstrip("\r\n")
        if not text.strip() or any(p.search(text) for p in lay.skip):
            return None
        try:
            f = self._split(text)
        except ParseError as exc:
            if exc.field in ("duration", "ring"):
                # the date is read before the durations: a bad one is the error to report
                self._time(self._texts.extract(self.layout.split(text) if self._csv else text))
            raise
        start = self._time(f)
        duration: int = f.get("duration", 0)
        ring: int | None = f.get("ring")
        number = f.get("number", "")
        if lay.dir_field:
            value = f.get(lay.dir_field, "")
            direction = lay.dir_map.get(value)
            if direction is None:
                raise self.error(f"{value!r} is not in the direction map", lay.dir_field)
        elif number.isdigit() and number.isascii() and len(number) <= lay.internal_max_digits:
            direction = Direction.INTERNAL
        elif (lay.inbound_field and f.get(lay.inbound_field, "") in lay.inbound_values) \
                or (not lay.inbound_field and not number):
            direction = Direction.INBOUND
        else:
            direction = Direction.OUTBOUND
        extra = {k: v for k, v in f.items() if k not in CANONICAL and v}
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=f["extension"],
            number=number,
            trunk=f.get("trunk", ""),
            account=f.get("account", ""),
            auth_code=f.get("auth_code", ""),
            call_id=f.get("call_id", ""),
            answered=duration > 0,
            extra=extra,
        ),)

    render = _Render()  # type: ignore[assignment]


_DEFAULT = Options.from_options(DEFAULT_OPTIONS)
