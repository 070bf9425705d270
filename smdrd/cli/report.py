"""``smdrd report KIND``: call-accounting reports from the database, as a table, CSV, JSON, HTML, XLSX or PDF.

The same reports, filters and validation as the daemon's ``/api/reports/<kind>`` (both go through
`smdrd.reports.parse_query` and `smdrd.reports.run_report`). Reads the database only; never writes to it.
CSV goes through `smdrd.csvsafe` (no cell a spreadsheet formula); ``--output`` is created mode 0600 whatever
the umask and renamed into place when complete (`smdrd.cli.export.private_output`). XLSX and PDF are written
by `smdrd.reports.export`, to ``--output`` or to a redirected standard output, never to a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from smdrd.cli._common import add_config_argument, settings_from, store_of
from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports.export import FORMATS as EXPORT_FORMATS
from smdrd.reports.export import PAPERS
from smdrd.reports.queries import DIRECTIONS, KINDS
from smdrd.reports.render import FORMATS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` command to the ``smdrd`` parser."""
    p = sub.add_parser(
        "report", help="call-accounting reports (extensions, departments, calls, destinations, trunks, days, "
        "extension-details, department-details)",
        description="Report calls, duration and cost per extension, department, destination, trunk or day, "
        "list the calls, or list them per extension with subtotals (extension-details, department-details), "
        "over site-local days. By default only outbound calls count (as on Yeastar); "
        "--direction all widens that. A transferred call counts once; its duration and cost include every leg.",
    )
    p.add_argument("kind", choices=KINDS, help="what to report")
    p.add_argument("--from", dest="date_from", metavar="DATE",
                   help="first day, site-local (2026-03-01, or a month: 2026-03); default: this month's first")
    p.add_argument("--to", dest="date_to", metavar="DATE",
                   help="last day, included (2026-03-31, or a month: 2026-03); default: today")
    p.add_argument("--department", action="append", default=[], metavar="NAME",
                   help="only this department and its sub-departments (repeatable; 'Unassigned' works too)")
    p.add_argument("--extension", action="append", default=[], metavar="EXT", help="only this extension (repeatable)")
    p.add_argument("--trunk", action="append", default=[], metavar="TRUNK", help="only this trunk (repeatable)")
    p.add_argument("--direction", action="append", default=[], metavar="DIR",
                   help=f"{', '.join(DIRECTIONS)} or all (repeatable; default outbound)")
    p.add_argument("--class", dest="call_class", action="append", default=[], metavar="CLASS",
                   help=f"only this call class (repeatable): {', '.join(CALL_CLASSES)}")
    p.add_argument("--site", action="append", default=[], metavar="NAME",
                   help="only this site (repeatable): a central store's sites by [site] name; a site's own "
                   "database holds its own site only")
    p.add_argument("--by-class", action="store_true", help="break extensions and departments down by call class")
    p.add_argument("--top", type=int, default=20, metavar="N", help="destinations: how many (0 for all; default 20)")
    p.add_argument("--by", choices=("cost", "count"), default="cost", help="destinations: rank by (default cost)")
    p.add_argument("--page", type=int, default=1, metavar="N",
                   help="calls and details: the page to show (default 1)")
    p.add_argument("--page-size", type=int, default=0, metavar="N",
                   help="calls and details: rows per page (default 0: all, streamed for csv, xlsx and pdf)")
    p.add_argument("--format", choices=(*FORMATS, *EXPORT_FORMATS), default="table",
                   help="output format (default table); xlsx and pdf need --output or a redirection")
    p.add_argument("--paper", choices=PAPERS, default="a4", help="pdf: the paper size (default a4)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of standard output")
    add_config_argument(p)
    p.add_argument("--database", type=Path, metavar="PATH", help="the SQLite file (overrides the configuration's)")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Build the report and write it."""
    from smdrd.cli.export import private_output
    from smdrd.directory import resolve
    from smdrd.reports.export import names_of
    from smdrd.reports.queries import LISTING_KINDS, context_from, parse_query, run_report
    from smdrd.reports.render import render
    from smdrd.store import open_store

    settings, path = settings_from(args, existing_database=True)
    settings = resolve(settings, store_of(args, settings))  # [directory] source = "database": its departments
    ctx = context_from(settings, path=str(path) if path else None)
    params: dict[str, list[str]] = {
        "kind": [args.kind], "department": args.department, "extension": args.extension, "trunk": args.trunk,
        "direction": args.direction, "class": args.call_class, "site": args.site,
        "by_class": ["1" if args.by_class else ""],
        "top": [str(args.top)], "by": [args.by], "page": [str(args.page)], "page_size": [str(args.page_size)],
    }
    if args.date_from:
        params["from"] = [args.date_from]
    if args.date_to:
        params["to"] = [args.date_to]
    try:
        query = parse_query(params, ctx)
    except ValueError as exc:
        args.parser.error(str(exc).replace("page_size", "--page-size").replace("by_class", "--by-class"))
    if args.format in EXPORT_FORMATS and args.output is None and sys.stdout.isatty():
        args.parser.error(f"--format {args.format} is a binary file: give --output FILE or redirect the output")
    store = open_store(store_of(args, settings))  # the SQLite file, or PostgreSQL's [database] url
    names = names_of(store)
    reader = store.reports()
    streamed = args.format == "csv" and query.kind in LISTING_KINDS and query.page_size == 0
    if args.format in EXPORT_FORMATS or streamed:
        from smdrd.cli.export import private_binary_output
        from smdrd.reports.export import write_export

        try:  # the calls of the whole range (--page-size 0, the default) stream from the database
            with (private_binary_output(args.output) if args.output is not None
                  else contextlib.nullcontext(sys.stdout.buffer)) as out:
                write_export(reader, query, ctx, args.format, out, every=query.page_size == 0, paper=args.paper,
                             names=names)
        finally:
            reader.close()
        return 0
    try:
        report = run_report(reader, query, ctx, names)
    finally:
        reader.close()
    text = render(report, args.format)
    if args.output is not None:
        with private_output(args.output) as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
