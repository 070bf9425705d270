"""The ``[site]`` and ``[tariff]`` sections: where the PBX is (timezone, dialplan) and how calls are rated.

Validators use the rating engine's own parsers (money, prefixes, days and hours), so a file that loads is one the
engine compiles. `smdrd.config` composes these into `~smdrd.config.Settings` (and re-exports them).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator, model_validator

from smdrd.rating.deck import parse_prefix
from smdrd.rating.money import parse_money
from smdrd.rating.rules import parse_days, parse_hours
from smdrd.section import Section

__all__ = ["Money", "SiteConfig", "TariffBandConfig", "TariffConfig", "TariffRuleConfig", "WeeklyHours"]


class SiteConfig(Section):
    """Where the PBX is: decides timezones, number normalisation and the call classes."""

    name: str = "smdrd"
    timezone: str = "UTC"
    country: str = Field(default="US", min_length=2, max_length=2)
    area_code: str = ""
    access_codes: list[str] = Field(default_factory=lambda: ["9"])
    internal_max_digits: int = Field(default=5, ge=1, le=10)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA timezone name such as Europe/Warsaw, got {v!r}") from None
        return v

    @field_validator("country")
    @classmethod
    def _upper_country(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError(f"expected a two-letter ISO country code such as GB, got {v!r}")
        # Checked here, beside the other fields, so that a bad country is reported with every other problem of
        # [site]; imported here so that reading a configuration does not load the numbering metadata.
        import phonenumbers

        if phonenumbers.PhoneMetadata.metadata_for_region(v.upper()) is None:
            raise ValueError(f"unknown country {v!r}; expected an ISO code such as GB")
        return v.upper()

    @field_validator("area_code")
    @classmethod
    def _area_digits(cls, v: str) -> str:
        # a letter O for a zero ("O2O") made every local number wrong, rated as something else
        if v and not (v.isascii() and v.isdigit()):
            raise ValueError(f"expected ASCII digits such as 20, got {v!r}")
        return v

    @field_validator("access_codes")
    @classmethod
    def _access_digits(cls, v: list[str]) -> list[str]:
        for code in v:
            if code and (not code.isascii() or not code.strip("*#").isdigit()):
                raise ValueError(f"expected access codes in ASCII digits such as \"9\" (* and # allowed), "
                                 f"got {code!r}")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _money(value: Any) -> Any:
    return parse_money(value)


def plain_decimal(value: Decimal) -> str:
    """``value`` written out in digits: ``str(Decimal)`` writes 0.0000005 as ``5E-7``, which no deck or
    configuration reads back (`parse_money` takes digits only)."""
    return format(value, "f")


#: an amount of money: a quoted decimal (``"0.03"``) or an integer; TOML floats are refused as inexact. In
#: JSON (a saved tariff version's document) it is written in digits (`plain_decimal`).
Money = Annotated[Decimal, BeforeValidator(_money), PlainSerializer(plain_decimal, return_type=str, when_used="json")]


class WeeklyHours(Section):
    """Days of the week and hours of the day, checked with the rating engine's own parsers."""

    days: list[str]
    hours: str

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        parse_days(v)
        return v

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        parse_hours(v)
        return v


class TariffBandConfig(WeeklyHours):
    """A named time band (``[tariff.bands.peak]``), in the site's local time."""

    days: list[str] = Field(default_factory=lambda: ["mon-sun"], min_length=1)
    hours: str = "00:00-24:00"
    holidays: Literal["any", "exclude", "only"] = "any"



class TariffRuleConfig(Section):
    """One inline rating rule (``[[tariff.rules]]``); the same fields as a rate deck's columns."""

    name: str = ""
    prefixes: list[str] = Field(min_length=1)
    call_class: Literal[
        "internal", "local", "national", "mobile", "international", "toll-free", "premium", "emergency",
        "special", "unknown",
    ] | None = None
    rate: Money = Decimal(0)
    billing_unit: int = Field(default=60, ge=1)
    initial_time: int = Field(default=0, ge=0)
    initial_cost: Money = Decimal(0)
    connection_fee: Money = Decimal(0)
    minimum_charge: Money = Decimal(0)
    #: a call with no talk time (unanswered, or answered for 0 s) costs the connection fee instead of 0.
    charge_unanswered: bool = False
    band: str | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    trunks: list[str] = Field(default_factory=list)
    directions: list[Literal["outbound", "inbound"]] = Field(default=["outbound"], min_length=1)
    #: only numbers of exactly this many E.164 digits (country code included); 0 for any length.
    number_length: int = Field(default=0, ge=0, le=15)

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        return [parse_prefix(p) for p in v]


class TariffConfig(Section):
    """Call rating: rate decks and inline rules, combined into one compiled tariff (see docs/rating.md).

    With no decks and no rules every call costs 0, and calls still get their classes from phonenumbers.
    """

    #: where the rules, bands and mode come from: ``files`` (this section and its decks) or ``database`` (the
    #: latest version saved in the console or by ``smdrd tariff import``; see docs/rating.md).
    source: Literal["files", "database"] = "files"
    currency: str = Field(default="USD", min_length=3, max_length=3)
    decimals: int = Field(default=2, ge=0, le=6)
    mode: Literal["longest-prefix", "first-match"] = "longest-prefix"
    split: bool = False
    decks: list[Path] = Field(default_factory=list)
    rules: list[TariffRuleConfig] = Field(default_factory=list)
    bands: dict[str, TariffBandConfig] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)
    #: an outbound call to a number that fails validation and matches no rule: priced as the most expensive
    #: international rule (its rule name says so), or "free".
    unknown_numbers: Literal["most-expensive-international", "free"] = "most-expensive-international"

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError(f"expected a three-letter ISO 4217 currency code such as EUR, got {v!r}")
        return v.upper()

    @model_validator(mode="after")
    def _known_bands(self) -> TariffConfig:
        for i, rule in enumerate(self.rules):
            if rule.band is not None and rule.band not in self.bands:
                known = ", ".join(sorted(self.bands)) or "none defined in [tariff.bands]"
                raise ValueError(f"rules[{i}].band: unknown band {rule.band!r} (known: {known})")
        return self
