"""``smdrd rate``: rate numbers by hand with the configured tariff, or with a deck and a country.

Shows what the daemon would store for a call (normalised number, class, rule, prefix, cost) and how the cost
was reached, so a tariff can be checked against a carrier's bill before it goes live.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from smdrd.cli._common import add_config_argument, config_named, config_path, no_config_message
from smdrd.errors import SmdrdError


def register(subparsers: Any) -> None:
    """Add the ``rate`` command to the ``smdrd`` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "rate",
        help="rate numbers with the configured tariff (or a rate deck)",
        description="Rate numbers as the daemon would: normalised number, call class, the rule and prefix "
        "that matched, and the cost with its breakdown. The tariff and site come from --config, or from "
        "--rules and --country.",
    )
    p.add_argument("numbers", nargs="+", metavar="NUMBER", help="numbers as the PBX writes them")
    p.add_argument("--duration", type=int, required=True, metavar="SECONDS", help="talk time in seconds")
    p.add_argument("--at", metavar="ISO_TIME",
                   help="call start (e.g. 2026-03-02T17:58); without an offset, the site's time; default now")
    p.add_argument("--trunk", default="", metavar="T", help="the trunk the call used")
    p.add_argument("--inbound", action="store_true", help="rate as an inbound call")
    p.add_argument("--unanswered", action="store_true", help="rate as an unanswered call")
    p.add_argument("--json", action="store_true", help="print one JSON object per number")
    add_config_argument(p)
    without = p.add_argument_group(
        "with a deck instead of the configuration ([site] and [tariff]); --country chooses this way")
    without.add_argument("--rules", action="append", default=[], metavar="DECK.csv",
                         help="a rate deck (may be repeated)")
    without.add_argument("--country", metavar="CC", help="the site's country (ISO code such as GB)")
    without.add_argument("--area-code", default="", metavar="A", help="the site's area code")
    without.add_argument("--access-code", action="append", default=None, metavar="9",
                         help="an outside-line access code (may be repeated; default 9)")
    without.add_argument("--currency", metavar="X",
                         help="ISO 4217 currency (default: what the deck says on a `# currency: GBP` line; "
                         "without a deck, USD)")
    without.add_argument("--decimals", type=int, default=2, metavar="N", help="decimals (default 2)")
    without.add_argument("--timezone", default="UTC", metavar="TZ", help="the site's timezone (default UTC)")
    without.add_argument("--first-match", action="store_true", help="first-match instead of longest prefix")
    p.set_defaults(func=run, parser=p)


#: the flag that gives each key of the site and tariff `_rater` builds (its problems are named by the flag).
_FLAGS = {"country": "--country", "area_code": "--area-code", "timezone": "--timezone", "access_codes": "--access-code",
          "currency": "--currency", "decimals": "--decimals", "decks": "--rules"}


def _rater(args: argparse.Namespace) -> Any:
    """The configured rater (``--config``, ``$SMDRD_CONFIG`` or the default file), or, with ``--country``, one
    built from the flags and decks."""
    from pydantic import ValidationError

    from smdrd.config import SiteConfig, TariffConfig, load_config, validation_problems
    from smdrd.errors import ConfigError
    from smdrd.rating import Rater

    if args.config is not None or (not args.country and config_named(args)):
        path = config_path(args)
        from smdrd.tariffs import resolve

        settings = resolve(load_config(path))  # [tariff] source = "database": the latest saved version
        return Rater.from_config(settings.site, settings.tariff, base_dir=path.parent)
    if not args.country:
        raise SmdrdError(f"{no_config_message(args)}, or --country CC (with --rules DECK.csv to price calls)")
    decks = [Path(r) for r in args.rules]
    try:
        site = SiteConfig(
            country=args.country, area_code=args.area_code, timezone=args.timezone,
            access_codes=args.access_code if args.access_code is not None else ["9"],
        )
        tariff = TariffConfig(
            currency=args.currency or _decks_currency(decks) or "USD", decimals=args.decimals, decks=decks,
            mode="first-match" if args.first_match else "longest-prefix",
        )
    except ValidationError as exc:  # named by the flag that gave the value
        key, problem = validation_problems(exc)[0]
        raise SmdrdError(f"{_FLAGS.get(key.split('[')[0], key)}: {problem}") from None
    try:
        return Rater.from_config(site, tariff)
    except ConfigError as exc:  # the only site key a flag gives that the rater checks: the country
        raise SmdrdError(f"--country: {exc.problems[0][1]}") from None


def _decks_currency(decks: list[Path]) -> str | None:
    """The currency the decks declare (`smdrd.config.declared_currencies`), ``None`` if none does.

    Raises:
        SmdrdError: two decks declare different currencies.
    """
    from smdrd.config import declared_currencies

    for deck in decks:
        deck.open("rb").close()  # a missing deck is said here, as the file it is (not as a tariff error)
    found = declared_currencies(decks)
    if len(set(found.values())) > 1:
        raise SmdrdError("--rules: the decks declare different currencies ("
                         + ", ".join(f"{deck}: {code}" for deck, code in found.items()) + "); give --currency")
    return next(iter(found.values()), None)


def run(args: argparse.Namespace) -> int:
    """Rate each number and print the result."""
    from smdrd.rating import Rater

    rater: Rater = _rater(args)
    decimals = rater.tariff.decimals
    tz = ZoneInfo(str(rater.tz))
    if args.at:
        try:
            start = datetime.fromisoformat(args.at)
        except ValueError:
            args.parser.error(f"--at: expected an ISO time such as 2026-03-02T17:58, got {args.at!r}")
        if start.tzinfo is None:
            start = start.replace(tzinfo=tz)
    else:
        start = datetime.now(tz)
    if args.duration < 0:
        args.parser.error("--duration: expected 0 or more seconds")
    direction = "inbound" if args.inbound else "outbound"
    for number in args.numbers:
        rating, breakdown = rater.explain(number, start, args.duration, direction=direction, trunk=args.trunk,
                                          answered=not args.unanswered)
        if args.json:
            print(json.dumps({"number": number, "e164": rating.e164, "call_class": rating.call_class,
                              "rule": rating.rule, "prefix": rating.prefix, "cost": _money(rating.cost, decimals),
                              "currency": rating.currency, "region": rating.region}))
            continue
        rule = (f"{rating.rule} (prefix {rating.prefix})" if rating.prefix else rating.rule) or "(none)"
        print(f"{number}\n"
              f"  e164   {rating.e164 or '-'}\n"
              f"  region {rating.region or '-'}\n"
              f"  class  {rating.call_class}\n"
              f"  rule   {rule}\n"
              f"  cost   {_describe(breakdown, rating.currency, decimals)}")
    return 0


def _money(amount: Decimal, decimals: int) -> str:
    """``amount`` with the tariff's decimals, as every stored cost is shown (``0.00``, not ``0``)."""
    return f"{amount:.{decimals}f}"


def _describe(breakdown: Any, currency: str, decimals: int) -> str:
    """How the cost was reached; a call that no rule prices (internal, free) shows its 0 with the decimals."""
    if breakdown.note:
        return f"{_money(breakdown.cost, decimals)} {currency} ({breakdown.note})"
    text: str = breakdown.describe(currency)
    return text
