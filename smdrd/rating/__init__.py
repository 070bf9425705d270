"""Call rating: number normalisation, call classes, rules and rate decks compiled into an immutable tariff.

Pure apart from reading rate decks when a tariff is compiled: no sockets, no database, no clock (a call is
rated by its own start time). The daemon builds a `Rater` at start and on reload and calls `Rater.rate` for
each call::

    rater = Rater.from_config(settings.site, settings.tariff, base_dir=config_path.parent)
    rating = rater.rate(record)   # Rating(e164, call_class, rule, prefix, cost, currency)

See ``docs/rating.md`` for how rules and decks work.
"""

from __future__ import annotations

from smdrd.rating.classes import CALL_CLASSES, CallClass
from smdrd.rating.deck import parse_deck, read_deck
from smdrd.rating.money import parse_money, round_cost
from smdrd.rating.normalise import Dialplan, Number, normalise, normalise_uncached
from smdrd.rating.rules import Band, Rule, TariffSourceError, price
from smdrd.rating.tariff import (
    FIRST_MATCH,
    LONGEST_PREFIX,
    Breakdown,
    Piece,
    Rater,
    Rating,
    Tariff,
    build_tariff,
    compile_tariff,
    empty_tariff,
)
from smdrd.rating.trie import PrefixTable

__all__ = [
    "CALL_CLASSES",
    "FIRST_MATCH",
    "LONGEST_PREFIX",
    "Band",
    "Breakdown",
    "CallClass",
    "Dialplan",
    "Number",
    "Piece",
    "PrefixTable",
    "Rater",
    "Rating",
    "Rule",
    "Tariff",
    "TariffSourceError",
    "build_tariff",
    "compile_tariff",
    "empty_tariff",
    "normalise",
    "normalise_uncached",
    "parse_deck",
    "parse_money",
    "price",
    "read_deck",
    "round_cost",
]
