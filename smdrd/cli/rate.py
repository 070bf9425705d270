"""``smdrd rate``: rate numbers by hand with the configured tariff, or with a deck and a country.

Shows what the daemon would store for a call (normalised number, class, rule, prefix, cost) and how the cost
was reached, so a tariff can be checked against a carrier's bill before it goes live.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


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
    p.add_argument("--config", metavar="FILE", help="the smdrd configuration ([site] and [tariff])")
    without = p.add_argument_group("without --config")
    without.add_argument("--rules", action="append", default=[], metavar="DECK.csv",
                         help="a rate deck (may be repeated)")
    without.add_argument("--country", metavar="CC", help="the site's country (ISO code such as GB)")
    without.add_argument("--area-code", default="", metavar="A", help="the site's area code")
    without.add_argument("--access-code", action="append", default=None, metavar="9",
                         help="an outside-line access code (may be repeated; default 9)")
    without.add_argument("--currency", default="USD", metavar="X", help="ISO 4217 currency (default USD)")
    without.add_argument("--decimals", type=int, default=2, metavar="N", help="decimals (default 2)")
    without.add_argument("--timezone", default="UTC", metavar="TZ", help="the site's timezone (default UTC)")
    without.add_argument("--first-match", action="store_true", help="first-match instead of longest prefix")
    p.set_defaults(func=run, parser=p)


def _rater(args: argparse.Namespace) -> Any:
    from smdrd.config import SiteConfig, TariffConfig, load_config
    from smdrd.errors import ConfigError
    from smdrd.rating import Rater

    if args.config:
        settings = load_config(args.config)
        return Rater.from_config(settings.site, settings.tariff, base_dir=Path(args.config).parent)
    if not args.country:
        args.parser.error("give --config FILE, or --country CC (with --rules DECK.csv to price calls)")
    try:
        site = SiteConfig(
            country=args.country, area_code=args.area_code, timezone=args.timezone,
            access_codes=args.access_code if args.access_code is not None else ["9"],
        )
        tariff = TariffConfig(
            currency=args.currency, decimals=args.decimals, decks=[Path(r) for r in args.rules],
            mode="first-match" if args.first_match else "longest-prefix",
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(None, [("", str(exc).splitlines()[-1].strip())]) from None
    return Rater.from_config(site, tariff)


def run(args: argparse.Namespace) -> int:
    """Rate each number and print the result."""
    from smdrd.rating import Rater

    rater: Rater = _rater(args)
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
                              "rule": rating.rule, "prefix": rating.prefix, "cost": str(rating.cost),
                              "currency": rating.currency}))
            continue
        rule = f"{rating.rule} (prefix {rating.prefix})" if rating.rule else "(none)"
        print(f"{number}\n"
              f"  e164   {rating.e164 or '-'}\n"
              f"  class  {rating.call_class}\n"
              f"  rule   {rule}\n"
              f"  cost   {breakdown.describe(rating.currency)}")
    return 0
