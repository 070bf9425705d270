"""``smdrd parse``, ``smdrd formats`` and ``smdrd detect``: the parsers by hand, without a database."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smdrd.errors import ParseError, SmdrdError
from smdrd.framing import Framer, Oversized
from smdrd.parsing import ParserContext, detect_format, flush_records, format_names, get_parser_class, parse_line

DETECT_LINES = 30
CHUNK = 1 << 16


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("parse", help="parse PBX output and print one JSON object per call record",
                       description="Parse FILEs (standard input when none) and print one JSON object per "
                       "record. Lines that fail go to stderr as JSON with their line number and the reason; "
                       "the exit status is then 1.")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("-f", "--format", required=True, help="a format name (see `smdrd formats`), or auto")
    p.add_argument("--year", type=int, help="the year, for formats whose dates have none")
    p.add_argument("--timezone", help="the PBX's IANA timezone (e.g. Europe/Warsaw); times get its offset")
    p.add_argument("--encoding", help="the input's encoding (default: the format's)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="a format option (as in [sources.format_options]); repeatable")
    p.set_defaults(func=run_parse)

    f = sub.add_parser("formats", help="list the PBX formats this smdrd understands")
    f.set_defaults(func=run_formats)

    d = sub.add_parser("detect", help="recognise the format of a file from its first lines")
    d.add_argument("file", metavar="FILE", help="the file; - reads standard input")
    d.set_defaults(func=run_detect)


def _frames(files: list[str]) -> Iterator[tuple[str, int, bytes | Oversized]]:
    for name in files or ["-"]:
        fh = sys.stdin.buffer if name == "-" else Path(name).open("rb")  # noqa: SIM115
        framer = Framer(1 << 20)
        n = 0
        try:
            while chunk := fh.read(CHUNK):
                for frame in framer.feed(chunk):
                    n += 1
                    yield name, n, frame
            for frame in framer.close():
                n += 1
                yield name, n, frame
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()


def _first_lines(name: str) -> list[str]:
    fh = sys.stdin.buffer if name == "-" else Path(name).open("rb")  # noqa: SIM115
    try:
        data = fh.read(CHUNK)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    framer = Framer(1 << 20)
    frames = framer.feed(data)
    return [f.decode("utf-8", errors="replace") for f in frames[:DETECT_LINES] if isinstance(f, bytes)]


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


def run_parse(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt == "auto":
        if not args.files or args.files == ["-"]:
            raise SmdrdError("--format auto needs a FILE (it reads the first lines twice)")
        name, score = detect_format(_first_lines(args.files[0]))[0]
        if score <= 0:
            raise SmdrdError(f"could not recognise the format of {args.files[0]}; name it with --format")
        print(json.dumps({"detected": name, "confidence": round(score, 2)}), file=sys.stderr)
        fmt = name
    try:
        tz = ZoneInfo(args.timezone) if args.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        raise SmdrdError(f"unknown timezone {args.timezone!r}") from None
    cls = get_parser_class(fmt)
    try:
        parser = cls(ParserContext(timezone=tz, year=args.year, options=_options(args.option),
                                   now=datetime.now(tz)))
    except ValueError as exc:
        raise SmdrdError(f"{fmt}: {exc}") from None
    encoding = args.encoding or cls.encoding
    failed = 0
    out = sys.stdout
    for name, lineno, frame in _frames(args.files):
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
    scores = detect_format(_first_lines(args.file))
    best, score = scores[0]
    if score <= 0:
        print(f"{args.file}: format not recognised", file=sys.stderr)
        return 1
    print(f"{best} (confidence {score:.2f})")
    for name, other in scores[1:4]:
        if other > 0:
            print(f"  also possible: {name} ({other:.2f})")
    return 0
