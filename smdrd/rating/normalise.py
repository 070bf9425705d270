"""Number normalisation: what a PBX wrote (``9 020 7946 0000``) to E.164 (``+442079460000``) and a class.

Pure: no I/O here, and nothing that depends on the time or on a tariff, so that one cache serves every
tariff and survives a reload. phonenumbers costs tens of microseconds a parse; `normalise` caches the
result per ``(number, dialplan)``, and `normalise_uncached` is the same function without the cache (for the
benchmark and for tests that compare the two).

How a number is read, in order:

1. Separators, spaces and ``#`` are dropped; a number with letters (``ANONYMOUS``) is ``unknown``, one with
   ``*`` (a feature code) is ``special``.
2. An emergency number (``112``, ``911``, ``999``...), with or without an access code, is ``emergency``.
3. A number of at most ``internal_max_digits`` digits is ``internal``.
4. Otherwise each reading is tried: without the outside-line access code (``9``, ``0``), then as written.
   A reading that starts with the international prefix (``00``, ``011``) or the national prefix (``0``,
   ``1``) is parsed as such; any other reading is first tried as a local number (the site's area code in
   front), then as a national one. The first valid number wins.
5. A short code valid in the site's country (``118118``) is ``special`` (and, like emergency calls, not
   priced: it has no E.164 form); a number that phonenumbers can read but not validate keeps its E.164
   form and is ``unknown``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import PhoneNumberType, shortnumberinfo

from smdrd.rating import classes as cc
from smdrd.rating.fastphone import could_be_short_code, is_possible, parse_digits, region_and_type

if TYPE_CHECKING:
    from smdrd.rating.config import SiteConfig

__all__ = ["CACHE_SIZE", "Dialplan", "Number", "normalise", "normalise_uncached", "region_of"]

#: numbers kept by the normalisation cache (an office dials a few thousand distinct numbers a month).
CACHE_SIZE = 1 << 16

_SEPARATORS = re.compile(r"[\s\-.()/#]")
_TYPE_CLASS = {
    PhoneNumberType.TOLL_FREE: cc.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: cc.PREMIUM,
    PhoneNumberType.MOBILE: cc.MOBILE,
    PhoneNumberType.SHARED_COST: cc.SPECIAL,
    PhoneNumberType.VOIP: cc.SPECIAL,
    PhoneNumberType.PERSONAL_NUMBER: cc.SPECIAL,
    PhoneNumberType.PAGER: cc.SPECIAL,
    PhoneNumberType.UAN: cc.SPECIAL,
    PhoneNumberType.VOICEMAIL: cc.SPECIAL,
}
# NANP countries share country code 1, yet a US office pays international rates to Jamaica (+1 876): within
# +1 the region decides. Everywhere else the country code does (+44 7911 reports region GG, and is still a UK
# mobile for a UK office).
_NANP_DOMESTIC = {
    "US": frozenset({"US", "PR", "VI", "GU", "AS", "MP", "CA"}),
    "CA": frozenset({"CA", "US", "PR", "VI", "GU", "AS", "MP"}),  # docs/rating.md: the US and its territories
}


@dataclass(frozen=True, slots=True)
class Dialplan:
    """The site's dialling parameters, the part of `SiteConfig` normalisation depends on.

    Attributes:
        country: ISO 3166 two-letter code (``GB``).
        area_code: the site's area code without the national prefix (``20`` for London, ``212`` for
            Manhattan); ``""`` when numbers are never dialled locally.
        access_codes: outside-line codes a PBX may have written in front of the number (``9``, ``0``).
        internal_max_digits: numbers this short are extensions.
    """

    country: str
    area_code: str = ""
    access_codes: tuple[str, ...] = ("9",)
    internal_max_digits: int = 5
    # Metadata looked up once, so a cache miss does not look it up again; hash precomputed because the cache
    # hashes its key on every call and a dataclass hashes all its fields each time.
    country_code: int = field(init=False, compare=False, repr=False)
    national_prefix: str = field(init=False, compare=False, repr=False)
    _idd: re.Pattern[str] | None = field(init=False, compare=False, repr=False)
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        country = self.country.upper()
        meta = phonenumbers.PhoneMetadata.metadata_for_region(country)
        if meta is None:
            raise ValueError(f"unknown country {self.country!r}; expected an ISO code such as GB")
        national_prefix = meta.national_prefix or ""
        area = "".join(ch for ch in self.area_code if ch.isdigit())
        if national_prefix and area.startswith(national_prefix) and country not in _NANP_DOMESTIC:
            area = area[len(national_prefix):]  # "020" and "20" both mean London
        # Longest first: with codes "9" and "90", "90..." must lose the longer code.
        access = tuple(sorted({a for a in self.access_codes if a}, key=len, reverse=True))
        idd = re.compile(meta.international_prefix) if meta.international_prefix else None
        setter = object.__setattr__
        setter(self, "country", country)
        setter(self, "area_code", area)
        setter(self, "access_codes", access)
        setter(self, "country_code", meta.country_code)
        setter(self, "national_prefix", national_prefix)
        setter(self, "_idd", idd)
        setter(self, "_hash", hash((country, area, access, self.internal_max_digits)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def from_site(cls, site: SiteConfig) -> Dialplan:
        """The dial plan of a configured site."""
        return cls(site.country, site.area_code, tuple(site.access_codes), site.internal_max_digits)

    def starts_with_idd(self, digits: str) -> bool:
        """True when ``digits`` begin with the country's international prefix (``00``, ``011``)."""
        return self._idd is not None and self._idd.match(digits) is not None


@dataclass(frozen=True, slots=True)
class Number:
    """A normalised number.

    Attributes:
        e164: ``+442079460000``; ``""`` for extensions, short codes and what is not a phone number.
        key: the digits rules are matched against: the E.164 digits without ``+``; ``""`` (no rule, no
            cost) for extensions, emergency numbers and short codes.
        call_class: what phonenumbers and the site's country say the call is.
        region: the ISO 3166 region of the number (``DO`` for +1 809, ``GG`` for +44 7781, ``KZ`` for +7 7):
            phonenumbers' `region_code_for_number`, so a shared calling code names the right country;
            ``""`` without an E.164 form, for a non-geographic number (+800) or one no region claims.
    """

    e164: str
    key: str
    call_class: str
    region: str = ""


_INTERNAL = Number("", "", cc.INTERNAL)
_UNKNOWN = Number("", "", cc.UNKNOWN)
# Short codes get no rating key: "44" + "118118" would read as Reading's 0118 118..., and emergency calls must
# never be priced by a country-wide rule.
_EMERGENCY = Number("", "", cc.EMERGENCY)
_SPECIAL = Number("", "", cc.SPECIAL)


def _readings(digits: str, plan: Dialplan) -> list[str]:
    out = [digits[len(code):] for code in plan.access_codes if digits.startswith(code) and digits != code]
    out.append(digits)
    return out


def _parse_once(parsed: dict[str, phonenumbers.PhoneNumber | None], text: str, region: str
                ) -> phonenumbers.PhoneNumber | None:
    """`parse_digits`, remembered in ``parsed`` for the rest of one normalisation."""
    if text not in parsed:
        parsed[text] = parse_digits(text, region)
    return parsed[text]


def _candidates(reading: str, plan: Dialplan) -> list[str]:
    explicit = plan.starts_with_idd(reading) or (
        bool(plan.national_prefix) and reading.startswith(plan.national_prefix)
    )
    if explicit or not plan.area_code:
        return [reading]
    # Local first: "3012345" dialled in Munich is Munich 301 2345, though it also reads as Berlin 30 12345.
    return [plan.national_prefix + plan.area_code + reading, reading]


def _max_emergency_length() -> int:
    """The longest emergency number in any region's metadata (6 today), so longer numbers skip the check."""
    longest = 3
    for region in shortnumberinfo.SUPPORTED_SHORT_REGIONS:
        meta = phonenumbers.PhoneMetadata.short_metadata_for_region(region)
        if meta is not None and meta.emergency is not None and meta.emergency.possible_length:
            longest = max(longest, *meta.emergency.possible_length)
    return longest


_MAX_EMERGENCY = _max_emergency_length()


def _classify(num: phonenumbers.PhoneNumber, plan: Dialplan, region: str | None, kind: int) -> str:
    """The class of a valid number of ``region`` whose `phonenumbers.number_type` is ``kind``."""
    if num.country_code != plan.country_code:
        return cc.INTERNATIONAL
    if plan.country in _NANP_DOMESTIC and region not in _NANP_DOMESTIC[plan.country]:
        return cc.INTERNATIONAL
    if kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        nsn = phonenumbers.national_significant_number(num)
        if plan.area_code and nsn.startswith(plan.area_code):
            return cc.LOCAL
        return cc.NATIONAL
    return _TYPE_CLASS.get(kind, cc.UNKNOWN)


def _e164(num: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def region_of(num: phonenumbers.PhoneNumber) -> str:
    """The ISO 3166 region of ``num`` (see `Number.region`); ``""`` when phonenumbers names none, or names the
    non-geographic ``001``."""
    return _region_name(region_and_type(num)[0])


def _region_name(region: str | None) -> str:
    return region if region and len(region) == 2 and region.isalpha() and region != "ZZ" else ""


def normalise_uncached(number: str, plan: Dialplan) -> Number:
    """Normalise ``number`` as dialled at a site with dial plan ``plan`` (see the module docstring).

    Args:
        number: the number as the PBX wrote it (dialled digits or a caller's number).
        plan: the site's dial plan.

    Returns:
        The E.164 number, the digits rules match against, and the call class.
    """
    text = _SEPARATORS.sub("", number)
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits:
        return _UNKNOWN
    if not digits.isdigit() or not digits.isascii():
        if "*" in digits and digits.replace("*", "").isdigit():
            return _SPECIAL
        return _UNKNOWN
    region = plan.country
    if plus:
        num = parse_digits("+" + digits, region)
        if num is None:
            return _UNKNOWN
        e164 = _e164(num)
        # number_type() is UNKNOWN exactly when is_valid_number() is false: one look-up instead of two.
        where, kind = region_and_type(num)
        call_class = cc.UNKNOWN if kind == PhoneNumberType.UNKNOWN else _classify(num, plan, where, kind)
        return Number(e164, e164[1:], call_class, _region_name(where))
    readings = _readings(digits, plan)
    for reading in readings:
        if len(reading) <= _MAX_EMERGENCY and phonenumbers.is_emergency_number(reading, region):
            return _EMERGENCY
    if len(digits) <= plan.internal_max_digits:
        return _INTERNAL
    fallback: phonenumbers.PhoneNumber | None = None
    # phonenumbers' parse is most of a new number's cost, and the short-code pass below reads the same texts
    # again when a reading is its only candidate (no area code; an explicit prefix): each text is parsed once.
    # Nothing below changes a parsed number, so sharing it changes no answer.
    parsed: dict[str, phonenumbers.PhoneNumber | None] = {}
    for reading in readings:
        for text in _candidates(reading, plan):
            num = _parse_once(parsed, text, region)
            if num is None:
                continue
            where, kind = region_and_type(num)  # where the number is; ``region`` is where it was dialled
            if kind != PhoneNumberType.UNKNOWN:
                e164 = _e164(num)
                return Number(e164, e164[1:], _classify(num, plan, where, kind), _region_name(where))
            if fallback is None and is_possible(num):
                fallback = num
    for reading in readings:
        short = _parse_once(parsed, reading, region)
        if (short is not None and could_be_short_code(short, region)
                and shortnumberinfo.is_valid_short_number_for_region(short, region)):
            return _SPECIAL
    if fallback is not None:
        e164 = _e164(fallback)
        return Number(e164, e164[1:], cc.UNKNOWN, region_of(fallback))
    return _UNKNOWN


#: `normalise_uncached` behind an LRU cache: about half a microsecond on a hit instead of tens on a miss.
normalise = functools.lru_cache(maxsize=CACHE_SIZE)(normalise_uncached)
