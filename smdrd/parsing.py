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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any, ClassVar

from smdrd.errors import ParseError, SmdrdError
from smdrd.record import CallRecord, check_record

ENTRY_POINT_GROUP = "smdrd.parsers"


@dataclass(frozen=True, slots=True)
class ParserContext:
    """What a parser may need to know beyond the line itself.

    Attributes:
        timezone: the PBX's timezone (the site's); ``None`` leaves times naive.
        year: the year for formats whose dates have none (``None``: the current year, or the page header's).
        options: format-specific options from the source's ``[sources.format_options]`` table.
        now: the reference time for formats without a year (tests pin it).
    """

    timezone: tzinfo | None = None
    year: int | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    now: datetime | None = None


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


def make_parser(name: str, context: ParserContext | None = None) -> Parser:
    """A fresh parser (with its own state) for format ``name``."""
    return get_parser_class(name)(context)


def detect_format(lines: Sequence[str]) -> list[tuple[str, float]]:
    """Score every known format against a file's first lines; best first."""
    scores = []
    for name in format_names():
        try:
            cls = get_parser_class(name)
        except Exception:  # a broken third-party plugin must not break detection of the others
            continue
        scores.append((name, cls.detect(lines)))
    scores.sort(key=lambda s: -s[1])
    return scores
