"""The parser plugin contract and the registry of formats. No I/O here.

A parser is fed one decoded line at a time (`Parser.parse`) and returns the records it completes, ``None`` for
a line that is deliberately not a call (a header, a page header, a handshake echo), or raises `ParseError`.
It may keep state between lines (a page header's year, the legs of a transferred call); `Parser.flush`
returns what is still held at the end of a stream.

Formats are found through the entry-point group ``smdrd.parsers`` (name = format name, value = the
`Parser` subclass), so a third-party package can add a PBX without forking smdrd.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any, ClassVar

from smdrd.errors import ParseError, SmdrdError
from smdrd.record import CallRecord, Direction, check_record, new_record

ENTRY_POINT_GROUP = "smdrd.parsers"


@dataclass(frozen=True, slots=True)
class ParserContext:
    """What a parser may need to know beyond the line itself.

    Attributes:
        timezone: the PBX's timezone (the site's); ``None`` leaves times naive.
        year: the year for formats whose dates have none (``None``: the current year, or the page header's).
        options: format-specific options from the source's ``[sources.format_options]`` table.
        now: the reference time for formats without a year (tests pin it).
        country: the site's ISO 3166 country code (``[site] country``), for formats whose day/month order the
            PBX prints as its country does; ``None`` when unknown (``smdrd parse`` without ``--country``).
    """

    timezone: tzinfo | None = None
    year: int | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    now: datetime | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """How a parser reads something the PBX lets its installer configure (the day/month order of its dates,
    whether its time is the start or the end of the call), and why: never a silent guess.

    Attributes:
        option: the format option that sets it (``date_order``).
        value: what the parser reads (``"dmy"``), or ``""`` while nothing has decided it yet.
        reason: how it was decided, for a person (``"decided by the data: 13/11/11 has no month 13"``).
    """

    option: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.option} = {self.value or '(undecided)'}: {self.reason}"


class Undecided(ParseError):
    """A line of this format whose meaning depends on a setting that nothing has decided yet (no option, no
    deciding data, no site country): the reason names the option to set. Detection counts such a line as
    recognised; everywhere else it is a `ParseError` like any other."""


class Parser(abc.ABC):
    """One PBX family's record format.

    Subclasses set `name` (the format name used in config and on the command line), `description` (one
    line for ``smdrd formats``) and, when the PBX needs one over TCP, `handshake` (a handshake name known to
    the sources). They implement `parse`; `render` (the inverse, used by the simulator and the property
    tests) and `detect` (used by ``--format auto``) are optional.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    handshake: ClassVar[str] = "none"
    #: the encoding the PBX writes, unless the source's config says otherwise.
    encoding: ClassVar[str] = "utf-8"
    #: the resolution of the start times the format carries, in seconds (60 for formats without seconds).
    time_resolution: ClassVar[int] = 1
    #: the format options it reads (``[sources.format_options]``, shared with the source's handshake): with its
    #: handshake's, any other is refused as a misspelling (`unknown_option`), which would otherwise leave the
    #: option at its default without a word. ``None`` (a plugin that says nothing): not checked.
    option_names: ClassVar[frozenset[str] | None] = None

    def __init__(self, context: ParserContext | None = None) -> None:
        self.context = context or ParserContext()

    @abc.abstractmethod
    def parse(self, line: str) -> Sequence[CallRecord] | None:
        """Parse one line (without its line end).

        Returns:
            The records this line completes (often one; none while a multi-leg call is still open), or
            ``None`` when the line is not a call record (a header or page header) and is skipped on purpose.

        Raises:
            ParseError: the line is not valid in this format; says which field and why.
        """

    def flush(self) -> Sequence[CallRecord]:
        """End of stream: return whatever records are still held."""
        return ()

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """Write ``record`` as this PBX would (the lines `parse` reads back). Used by the simulator."""
        raise NotImplementedError(f"{cls.name} has no renderer")

    @classmethod
    def header_lines(cls, at: datetime | None = None) -> list[str]:
        """Lines a PBX (or a file of this format) starts with, before any record.

        Args:
            at: when the stream starts (the first record's start time); headers that carry a date use it.
        """
        return []

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        """How sure we are (0 to 1) that ``lines`` (a file's first lines) are in this format."""
        return 0.0

    @classmethod
    def extension_name(cls, record: CallRecord) -> str:
        """The display name the PBX gave ``record``'s extension (the directory learns it when the call is
        stored), ``""`` when the format carries none. Only a name of the *internal* party: a caller's name on
        an inbound call (NEC's caller name, Asterisk's CLID) names someone outside, never the extension."""
        return ""

    def choices(self) -> list[Choice]:
        """What this parser has chosen, so far, for the PBX settings its format cannot show for sure (day/month
        order, start or end time), each with the option that sets it and why; ``smdrd check-config`` and
        ``smdrd detect`` print them. Formats with nothing configurable return ``[]``."""
        return []

    def error(self, reason: str, field: str | None = None) -> ParseError:
        """A `ParseError` for this format (``raise self.error(...)``)."""
        return ParseError(self.name, reason, field)


def parse_line(parser: Parser, line: str) -> Sequence[CallRecord] | None:
    """``parser.parse(line)`` with every record checked against the bounds of a real call.

    What every caller (the daemon, ``import``, ``reparse``, ``smdrd parse``) uses instead of calling
    `Parser.parse` itself, so a third-party parser's bug or an out-of-range value is a `ParseError` too.

    Raises:
        ParseError: the line is invalid, a value is out of bounds (`smdrd.record.check_record`), or the parser
            failed with another exception (a bug: the reason names it).
    """
    try:
        records = parser.parse(line)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(parser.name, f"parser failed ({type(exc).__name__}: {exc})") from exc
    if records:
        for record in records:
            check_record(record)
    return records


def flush_records(parser: Parser) -> tuple[list[CallRecord], list[ParseError]]:
    """``parser.flush()``: the held records that pass `check_record`, and the errors of those that do not."""
    try:
        held = list(parser.flush())
    except Exception as exc:
        return [], [ParseError(parser.name, f"parser failed at the end of the stream ({type(exc).__name__}: "
                                            f"{exc})")]
    good: list[CallRecord] = []
    bad: list[ParseError] = []
    for record in held:
        try:
            check_record(record)
        except ParseError as exc:
            bad.append(exc)
        else:
            good.append(record)
    return good, bad


class UnknownFormat(SmdrdError):
    """No parser is registered under that name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown format {name!r}; known formats: {', '.join(self.known)}")


@functools.cache
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points  # here: ~40 ms that `smdrd --help` need not pay

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def unknown_option(cls: type[Parser], options: Mapping[str, Any], handshake: frozenset[str] | None) -> str | None:
    """What is wrong with ``options`` for the format ``cls`` behind a handshake that reads ``handshake``: an option
    neither reads (a misspelt ``date_ordr`` left ``date_order`` at its default), or ``None``. Not checked when
    either does not say what it reads (``None``)."""
    if cls.option_names is None or handshake is None:
        return None
    known = cls.option_names | handshake
    unknown = sorted(set(options) - known)
    if not unknown:
        return None
    expected = f"expected one of {', '.join(sorted(known))}" if known else f"{cls.name} takes none"
    return f"unknown format option {unknown[0]!r}; {expected}"


def format_names() -> list[str]:
    """Every registered format name, sorted."""
    return sorted(_entry_points())


@functools.cache
def get_parser_class(name: str) -> type[Parser]:
    """The parser class registered as ``name``.

    Raises:
        UnknownFormat: no such format.
    """
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownFormat(name, _entry_points())
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Parser)):
        raise SmdrdError(f"entry point {name!r} ({ep.value}) is not a smdrd Parser subclass")
    return cls


#: each format's `Parser.extension_name`, or None for a format that names no extension (or is unknown).
_NAMERS: dict[str, Callable[[CallRecord], str] | None] = {}


def _namer(fmt: str) -> Callable[[CallRecord], str] | None:
    try:
        cls = get_parser_class(fmt)
    except SmdrdError:
        namer = None
    else:
        overridden = cls.extension_name.__func__ is not Parser.extension_name.__func__  # type: ignore[attr-defined]
        namer = cls.extension_name if overridden else None
    _NAMERS[fmt] = namer
    return namer


def extension_names(records: Iterable[CallRecord]) -> Iterator[tuple[str, str]]:
    """``(extension, name)`` for each record whose format gave its extension a name (`Parser.extension_name`);
    a record of an unknown format names nothing. Cheap per record (the writer asks it of every call): one
    lookup for a format that names no extension."""
    namers = _NAMERS
    for record in records:
        fmt = record.format
        namer = namers[fmt] if fmt in namers else _namer(fmt)
        if namer is None or not record.extension:
            continue
        name = namer(record)
        if name:
            yield record.extension, name


def published_names(calls: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """`extension_names` of calls as a site publishes them (`smdrd.store.api.FeedCall` fields: ``format``,
    ``extension``, ``direction``, ``extra``), for the central writer to learn each site's names as the site's own
    writer does. A call of a format that names no extension costs one lookup."""
    namers = _NAMERS
    for call in calls:
        fmt, extension = call.get("format") or "", call.get("extension") or ""
        namer = namers[fmt] if fmt in namers else _namer(fmt)
        if namer is None or not extension:
            continue
        direction = _DIRECTIONS.get(call.get("direction"))
        if direction is None:
            continue
        extra = call.get("extra")
        record = new_record(fmt, _NO_START, 0, direction, extension, "", None, "", "", "", "", 0, False, True, "",
                            "", extra if isinstance(extra, Mapping) else {})
        name = namer(record)
        if name:
            yield extension, name


#: the start of a record made only to be named (`published_names`): no format's namer reads it.
_NO_START = datetime(2000, 1, 1)
_DIRECTIONS: dict[object, Direction] = {d.value: d for d in Direction}


def make_parser(name: str, context: ParserContext | None = None) -> Parser:
    """A fresh parser (with its own state) for format ``name``."""
    return get_parser_class(name)(context)


#: the most a format may score when its parser rejects some of the sampled lines (`detect`).
REJECTED_CEILING = 0.5


@dataclass(frozen=True, slots=True)
class Detection:
    """One format's verdict on a file's first lines.

    Attributes:
        format: the format name.
        score: the confidence used to rank formats: the format's own `Parser.detect` score, kept only when its
            parser also reads every sampled line; otherwise at most `REJECTED_CEILING`, scaled by the share
            of lines it read.
        claimed: what `Parser.detect` said from the lines' shape alone.
        lines: the sampled lines that were not blank.
        rejected: how many of them the parser refused (`ParseError`).
        records: how many records the parser made of them.
        choices: what the parser chose for its configurable settings while reading them (`Parser.choices`).
        first_error: the first refusal, for a person.
    """

    format: str
    score: float
    claimed: float
    lines: int = 0
    rejected: int = 0
    records: int = 0
    choices: tuple[Choice, ...] = ()
    first_error: str = ""


def verify(cls: type[Parser], lines: Sequence[str], claimed: float,
           context: ParserContext | None = None) -> Detection:
    """`Detection` of ``lines`` by ``cls``: its ``claimed`` `Parser.detect` score, checked by parsing the lines
    with a fresh parser (``context``, default an empty one) so that a format is never scored high on lines its
    parser refuses. A line that is in the format but needs a setting decided (`Undecided`) counts as read."""
    parser = cls(context or ParserContext())
    counted = rejected = records = 0
    first_error = ""
    for line in lines:
        if not line.strip():
            continue
        counted += 1
        try:
            made = parse_line(parser, line)
        except Undecided:
            continue
        except ParseError as exc:
            rejected += 1
            first_error = first_error or str(exc)
            continue
        records += len(made or ())
    held, errors = flush_records(parser)
    records += len(held)
    rejected += len(errors)
    score = claimed
    if counted == 0 or rejected:
        score = min(claimed, REJECTED_CEILING * (counted - min(rejected, counted)) / counted) if counted else 0.0
    return Detection(cls.name, score, claimed, counted, rejected, records, tuple(parser.choices()), first_error)


def detect_formats(lines: Sequence[str], context: ParserContext | None = None) -> list[Detection]:
    """Every known format's `Detection` of a file's first lines, best first. Formats whose `Parser.detect`
    gives 0 are not parsed (they make no claim)."""
    found = []
    for name in format_names():
        try:
            cls = get_parser_class(name)
            claimed = cls.detect(lines)
            found.append(verify(cls, lines, claimed, context) if claimed > 0 else Detection(name, 0.0, 0.0))
        except Exception:  # a broken third-party plugin must not break detection of the others
            continue
    found.sort(key=lambda d: -d.score)
    return found


def detect_format(lines: Sequence[str]) -> list[tuple[str, float]]:
    """Score every known format against a file's first lines; best first (see `detect_formats`)."""
    return [(d.format, d.score) for d in detect_formats(lines)]
