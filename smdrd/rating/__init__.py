"""Call rating: number normalisation, call classes, rules and rate decks compiled into an immutable tariff.

Pure apart from reading rate decks when a tariff is compiled: no sockets, no database, no clock (a call is
rated by its own start time). The daemon builds a `Rater` at start and on reload and calls `Rater.rate` for
each call::

    rater = Rater.from_config(settings.site, settings.tariff, base_dir=config_path.parent)
    rating = rater.rate(record)   # Rating(e164, call_class, rule, prefix, cost, currency, region)

See ``docs/rating.md`` for how rules and decks work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdrd.lazy import lazy_attributes

if TYPE_CHECKING:
    from smdrd.rating.classes import CALL_CLASSES, CallClass
    from smdrd.rating.deck import parse_deck, read_deck
    from smdrd.rating.explain import Explanation, explain
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

#: where each public name lives: imported on first use (PEP 562), so that a configuration schema that needs
#: one small module of the package (``smdrd.rating.config``) does not load phonenumbers and the tariff compiler.
_HOMES = {
    "CALL_CLASSES": "smdrd.rating.classes",
    "CallClass": "smdrd.rating.classes",
    "parse_deck": "smdrd.rating.deck",
    "read_deck": "smdrd.rating.deck",
    "parse_money": "smdrd.rating.money",
    "round_cost": "smdrd.rating.money",
    "Dialplan": "smdrd.rating.normalise",
    "Number": "smdrd.rating.normalise",
    "normalise": "smdrd.rating.normalise",
    "normalise_uncached": "smdrd.rating.normalise",
    "Explanation": "smdrd.rating.explain",
    "explain": "smdrd.rating.explain",
    "Band": "smdrd.rating.rules",
    "Rule": "smdrd.rating.rules",
    "TariffSourceError": "smdrd.rating.rules",
    "price": "smdrd.rating.rules",
    "FIRST_MATCH": "smdrd.rating.tariff",
    "LONGEST_PREFIX": "smdrd.rating.tariff",
    "Breakdown": "smdrd.rating.tariff",
    "Piece": "smdrd.rating.tariff",
    "Rater": "smdrd.rating.tariff",
    "Rating": "smdrd.rating.tariff",
    "Tariff": "smdrd.rating.tariff",
    "build_tariff": "smdrd.rating.tariff",
    "compile_tariff": "smdrd.rating.tariff",
    "empty_tariff": "smdrd.rating.tariff",
    "PrefixTable": "smdrd.rating.trie",
}

__all__ = [
    "CALL_CLASSES",
    "FIRST_MATCH",
    "LONGEST_PREFIX",
    "Band",
    "Breakdown",
    "CallClass",
    "Dialplan",
    "Explanation",
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
    "explain",
    "normalise",
    "normalise_uncached",
    "parse_deck",
    "parse_money",
    "price",
    "read_deck",
    "round_cost",
]


__getattr__ = lazy_attributes(__name__, _HOMES)
