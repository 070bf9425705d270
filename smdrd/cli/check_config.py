"""``smdrd check-config [FILE]``: validate a configuration and say what is wrong, key by key. The file is found as
every command finds it (``FILE`` or ``--config``, else ``$SMDRD_CONFIG``, else the default path)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from smdrd.cli._common import add_config_argument, config_named, config_path, no_config_message
from smdrd.config import DEFAULT_CONFIG_PATH, Settings, config_warnings, load_config, redacted
from smdrd.errors import ConfigError, SmdrdError, TariffError
from smdrd.rating.rules import TariffSourceError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check-config", help="validate a configuration file (with environment overrides)",
                       description="Validate FILE and the SMDRD_* environment overrides. Prints each problem "
                       "with its key and what was expected, and exits 1 if there is any. Prints warnings (a "
                       "tcp-server source open to every host, a file others can write) and still exits 0, "
                       "unless --strict.")
    p.add_argument("file", type=Path, nargs="?", default=None,
                   help="the TOML configuration file (or --config; default: $SMDRD_CONFIG, else "
                        f"{DEFAULT_CONFIG_PATH})")
    add_config_argument(p)
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--show", action="store_true",
                   help="print the effective configuration as JSON (secrets masked)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.file is not None and args.config is not None and args.file != args.config:
        raise SmdrdError(f"two configuration files named: {args.file} and --config {args.config}; name one")
    if args.file is None:
        if not config_named(args):
            raise SmdrdError(no_config_message(args))
        args.file = config_path(args)
    try:
        settings = load_config(args.file)
        from smdrd.rating import Rater

        tariff = settings.tariff
        if tariff.source == "database" and settings.database.present:
            from smdrd.tariffs import resolve

            tariff = resolve(settings).tariff
        Rater.from_config(settings.site, tariff, base_dir=args.file.parent)
    except (ConfigError, TariffError) as exc:
        if isinstance(exc, TariffSourceError) and exc.source.startswith("tariff.") and exc.line is not None:
            exc = ConfigError(str(args.file), [(exc.where, exc.reason)])
        elif isinstance(exc, TariffError):
            exc = ConfigError(str(args.file), [("tariff", str(exc))])
        if [key for key, _ in exc.problems] == [""]:  # the file itself (missing, not TOML): one line
            print(f"smdrd check-config: {exc}", file=sys.stderr)
            return 1
        print(exc, file=sys.stderr)
        n = len(exc.problems)
        if n > 1:
            print(f"{n} problems found", file=sys.stderr)
        return 1
    warnings = config_warnings(args.file, settings)
    for key, msg in warnings:
        print(f"{args.file}: WARNING: {key}: {msg}" if key else f"{args.file}: WARNING: {msg}", file=sys.stderr)
    if args.show:
        print(json.dumps(redacted(settings), indent=2))
    sources = ", ".join(f"{s.name} ({s.kind}, {s.format})" for s in settings.sources) or "none"
    n = len(warnings)
    noted = f" with {n} warning{'s' if n != 1 else ''} (above)" if n else ""
    print(f"{args.file}: OK{noted}; database {settings.database.shown}; sources: {sources}")
    print(f"  {tariff_source(settings)}")
    from smdrd.directory import describe_source

    print(f"  {describe_source(settings)}")
    print(f"  {mail_summary(settings)}")
    for line in source_choices(settings):
        print(f"  {line}")
    return 1 if warnings and args.strict else 0


def tariff_source(settings: Settings) -> str:
    """Which source of the tariff is in force ([tariff] source), and what it holds."""
    t = settings.tariff
    if t.source == "files":
        decks = ", ".join(str(d) for d in t.decks) or "no decks"
        return f"tariff: from the files ([tariff] source = \"files\"): {len(t.rules)} inline rules, {decks}"
    from smdrd.tariffs import current

    latest = current(settings.database.target) if settings.database.present else None
    if latest is None:
        return ("tariff: from the database ([tariff] source = \"database\"): no version saved yet, every call "
                "costs 0 until one is (smdrd tariff import, or the console's Rates page)")
    v = latest.info
    when = datetime.fromtimestamp(v.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"tariff: from the database ([tariff] source = \"database\"): version {v.version}, {v.rules} rules, "
            f"saved by {v.actor} at {when}")


def source_choices(settings: Settings) -> list[str]:
    """What each source's parser will choose for the settings its PBX makes configurable and its lines cannot
    show (day/month order, start or end time), and why: never a silent guess (issue 13, item 3)."""
    from smdrd.parsing import ParserContext, get_parser_class

    out: list[str] = []
    for src in settings.sources:
        context = ParserContext(timezone=settings.site.tz, year=src.year, options=src.format_options,
                                country=settings.site.country)
        try:
            parser = get_parser_class(src.format)(context)
        except Exception:  # already reported above as a problem of its format or options
            continue
        out += [f"source {src.name!r} ({src.format}): {choice}" for choice in parser.choices()]
    return out


def mail_summary(settings: Settings) -> str:
    """One line on e-mail: the server, the scheduled reports and the alert digests."""
    smtp = settings.smtp
    server = (f"{smtp.host}:{smtp.port} ({smtp.security}{', login ' + repr(smtp.username) if smtp.username else ''})"
              if smtp.enabled else "no mail server ([smtp] enabled = false)")
    schedules = len(settings.reports.schedules)
    alerts = settings.alerts.email
    mailed = f"alerts to {len({*alerts.recipients, *(a for v in alerts.rules.values() for a in v)})} address(es)" \
        if alerts.enabled else "no e-mail alerts"
    return f"mail: {server}; {schedules} scheduled report(s) in the file; {mailed}"
