"""``smdrd parse``, ``smdrd formats`` and ``smdrd detect``: the parsers by hand, without a database."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smdrd.cli._common import add_config_argument, config_named, config_path, no_config_message
from smdrd.config import load_config
from smdrd.errors import ConfigError, ParseError, SmdrdError
from smdrd.framing import Framer, Oversized
from smdrd.parsing import (
    Detection,
    ParserContext,
    detect_formats,
    flush_records,
    format_names,
    get_parser_class,
    parse_line,
    unknown_option,
)

DETECT_LINES = 30
CHUNK = 1 << 16


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("parse", help="parse PBX output and print one JSON object per call record",
                       description="Parse FILEs (standard input when none) and print one JSON object per "
                       "record. Lines that fail go to stderr as JSON with their line number and the reason; "
                       "the exit status is then 1. With a configuration (--config, $SMDRD_CONFIG or the "
                       "default file), its [site] timezone and country apply, and --source NAME reads as that "
                       "source does (its format, year, encoding and format options); flags given override.")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("-f", "--format", help="a format name (see `smdrd formats`), or auto; default: --source's")
    add_config_argument(p)
    p.add_argument("--source", metavar="NAME", help="read as this [[sources]] entry of the configuration does")
    p.add_argument("--year", type=int, help="the year, for formats whose dates have none")
    p.add_argument("--timezone", help="the PBX's IANA timezone (e.g. Europe/Warsaw); times get its offset")
    p.add_argument("--encoding", help="the input's encoding (default: the format's)")
    p.add_argument("--country", help="the site's ISO country code (as [site] country): decides the day/month "
                   "order of formats whose PBX prints its country's order (Panasonic)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="a format option (as in [sources.format_options]); repeatable")
    p.set_defaults(func=run_parse)

    f = sub.add_parser("formats", help="list the PBX formats this smdrd understands")
    f.set_defaults(func=run_formats)

    d = sub.add_parser("detect", help="recognise the format of a file from its first lines",
                       description="Score every format against FILE's first lines: a format counts only if its "
                       "parser reads them. Prints the best, what its parser chose for settings the PBX makes "
                       "configurable (day/month order, start or end time), and close runners-up.")
    d.add_argument("file", metavar="FILE", help="the file; - reads standard input")
    d.add_argument("--country", help="the site's ISO country code (as [site] country), for the day/month order")
    d.set_defaults(func=run_detect)


def _open(name: str) -> BinaryIO:
    """FILE opened for reading (``-``: standard input).

    Raises:
        SmdrdError: it cannot be read; one line saying which file and why.
    """
    if name == "-":
        return sys.stdin.buffer
    try:
        return Path(name).open("rb")
    except FileNotFoundError:
        raise SmdrdError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise SmdrdError(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise SmdrdError(f"{name}: cannot be read ({exc.strerror or exc})") from None


def _frames(files: list[str], head: bytes = b"") -> Iterator[tuple[str, int, bytes | Oversized]]:
    """Every frame of every FILE (standard input when none); ``head`` is what was already read from the first
    one (to detect its format) and comes first."""
    for name in files or ["-"]:
        fh = _open(name)
        framer = Framer(1 << 20)
        n = 0
        try:
            chunk, head = head, b""
            while chunk or (chunk := fh.read(CHUNK)):
                for frame in framer.feed(chunk):
                    n += 1
                    yield name, n, frame
                chunk = b""
            for frame in framer.close():
                n += 1
                yield name, n, frame
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()


def _head(name: str) -> bytes:
    """The first bytes of FILE, for detection (from standard input they are kept by the caller)."""
    fh = _open(name)
    try:
        return fh.read(CHUNK)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _lines(data: bytes) -> list[str]:
    frames = Framer(1 << 20).feed(data)
    return [f.decode("utf-8", errors="replace") for f in frames[:DETECT_LINES] if isinstance(f, bytes)]


def _first_lines(name: str) -> list[str]:
    return _lines(_head(name))


def _country(value: str | None) -> str | None:
    if value is None:
        return None
    if not (len(value) == 2 and value.isascii() and value.isalpha()):
        raise SmdrdError(f"--country expects a two-letter ISO code such as GB, got {value!r}")
    return value.upper()


def _options(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SmdrdError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _configured(args: argparse.Namespace) -> None:
    """Fill what the command line leaves out from the configuration, when there is one: the site's timezone
    and country, and with ``--source`` that source's format, year, encoding and format options (``--option``
    adds to them)."""
    if not config_named(args):
        if args.source is not None:
            raise SmdrdError(f"--source {args.source}: " + no_config_message(args))
        return
    try:
        settings = load_config(config_path(args))
    except ConfigError:
        if args.config is not None or args.source is not None:
            raise  # asked for: its mistakes are the answer
        # Only found ($SMDRD_CONFIG, the default file): a broken one must not take the diagnostic tool down.
        print(f"smdrd parse: not using the configuration {config_path(args)}: it has mistakes (smdrd check-config "
              "names them); the site's timezone and country are the flags' or the defaults", file=sys.stderr)
        return
    if args.timezone is None:
        args.timezone = settings.site.timezone
    if args.country is None:
        args.country = settings.site.country
    if args.source is None:
        return
    source = next((s for s in settings.sources if s.name == args.source), None)
    if source is None:
        names = ", ".join(s.name for s in settings.sources) or "none"
        raise SmdrdError(f"--source: no source named {args.source!r} in {config_path(args)} (its sources: {names})")
    args.format = args.format or source.format
    args.year = args.year if args.year is not None else source.year
    args.encoding = args.encoding or source.encoding
    args.option_values = {**source.format_options, **_options(args.option)}


def run_parse(args: argparse.Namespace) -> int:
    args.option_values = None
    _configured(args)
    if args.format is None:
        raise SmdrdError("name the format: --format NAME (see `smdrd formats`), or --source NAME of a configuration")
    fmt = args.format
    country = _country(args.country)
    head = b""
    if fmt == "auto":
        first = args.files[0] if args.files else "-"
        head = _head(first)
        best = detect_formats(_lines(head), ParserContext(country=country))[0]
        if best.score <= 0:
            raise SmdrdError(f"could not recognise the format of {'standard input' if first == '-' else first}; "
                             "name it with --format")
        print(json.dumps({"detected": best.format, "confidence": round(best.score, 2),
                          "choices": [str(choice) for choice in best.choices]}), file=sys.stderr)
        fmt = best.format
        if first != "-":
            head = b""  # a file is read again from its start
    try:
        tz = ZoneInfo(args.timezone) if args.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        raise SmdrdError(f"unknown timezone {args.timezone!r}") from None
    cls = get_parser_class(fmt)
    try:
        options = args.option_values if args.option_values is not None else _options(args.option)
        parser = cls(ParserContext(timezone=tz, year=args.year, options=options,
                                   now=datetime.now(tz), country=country))
    except ValueError as exc:
        raise SmdrdError(f"{fmt}: {exc}") from None
    from smdrd.sources.handshakes import get_handshake

    if (unknown := unknown_option(cls, parser.context.options, get_handshake(cls.handshake).option_names)) is not None:
        raise SmdrdError(f"{fmt}: {unknown}")
    encoding = args.encoding or cls.encoding
    failed = 0
    out = sys.stdout
    for name, lineno, frame in _frames(args.files, head):
        if isinstance(frame, Oversized):
            failed += 1
            print(json.dumps({"file": name, "line": lineno, "error": f"line longer than {frame.limit} bytes"}),
                  file=sys.stderr)
            continue
        text = frame.decode(encoding, errors="replace")
        try:
            records = parse_line(parser, text)
        except ParseError as exc:
            failed += 1
            print(json.dumps({"file": name, "line": lineno, "error": str(exc), "field": exc.field,
                              "text": text}, ensure_ascii=False), file=sys.stderr)
            continue
        for record in records or ():
            out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    held, errors = flush_records(parser)
    for record in held:
        out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    for problem in errors:
        failed += 1
        print(json.dumps({"file": None, "line": None, "error": str(problem), "field": problem.field},
                         ensure_ascii=False), file=sys.stderr)
    return 1 if failed else 0


def run_formats(args: argparse.Namespace) -> int:
    for name in format_names():
        try:
            description = get_parser_class(name).description
        except Exception as exc:  # a broken plugin is listed with its problem, not hidden
            description = f"(cannot be loaded: {exc})"
        print(f"{name:<16} {description}")
    return 0


def run_detect(args: argparse.Namespace) -> int:
    found = detect_formats(_first_lines(args.file), ParserContext(country=_country(args.country)))
    best = found[0]
    if best.score <= 0:
        print(f"{'standard input' if args.file == '-' else args.file}: format not recognised", file=sys.stderr)
        return 1
    print(f"{best.format} (confidence {best.score:.2f})")
    _explain(best)
    for other in found[1:4]:
        if other.score > 0:
            print(f"  also possible: {other.format} ({other.score:.2f})")
    return 0


def _explain(found: Detection) -> None:
    """What a person needs to trust a detection: lines its parser refused, and what it chose for settings the
    PBX makes configurable (never a silent guess)."""
    if found.rejected:
        print(f"  its parser refused {found.rejected} of {found.lines} lines, first: {found.first_error}")
    for choice in found.choices:
        print(f"  {choice}")
