"""The ``[alerts]`` section: every alert rule's settings, and the fraud data they use by default (the NANP
look-alike and premium prefixes, satellite networks, high-risk countries).

`smdrd.config` composes it into `~smdrd.config.Settings`; `smdrd.alerts.rules` builds the rules from it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from smdrd.rating.config import Money, WeeklyHours
from smdrd.section import Section, ascii_digits

__all__ = [
    "HIGH_RISK_COUNTRIES",
    "NANP_LOOKALIKE_PREFIXES",
    "NETWORK_PREFIXES",
    "AfterHoursAlertConfig",
    "AlertSeverity",
    "AlertsConfig",
    "BudgetAlertConfig",
    "BudgetForecastAlertConfig",
    "BusinessHoursConfig",
    "CallClassName",
    "DepartmentBudgetConfig",
    "EmailAlertConfig",
    "ExpensiveCallAlertConfig",
    "HighRiskAlertConfig",
    "LongCallAlertConfig",
    "ParseErrorsAlertConfig",
    "ShortCallsAlertConfig",
    "SourceDownAlertConfig",
    "VelocityAlertConfig",
    "WangiriAlertConfig",
]


AlertSeverity = Literal["warning", "critical"]
CallClassName = Literal[
    "internal", "local", "national", "mobile", "international", "toll-free", "premium", "emergency", "special",
    "unknown",
]

#: NANP codes that look like a domestic US/Canadian area code but ring abroad at international rates (the
#: Caribbean "809 scam" and its relatives), and the US 900/976 premium numbers.
NANP_LOOKALIKE_PREFIXES = (
    "+1242", "+1246", "+1264", "+1268", "+1284", "+1345", "+1441", "+1473", "+1649", "+1658", "+1664",
    "+1721", "+1758", "+1767", "+1784", "+1809", "+1829", "+1849", "+1868", "+1869", "+1876",
    "+1900", "+1976",
)
#: satellite and international networks (Inmarsat, Iridium, Thuraya...): favourite targets of toll fraud.
NETWORK_PREFIXES = ("+870", "+881", "+882", "+883")
#: countries that top the carriers' fraud lists (International Revenue Share Fraud), ISO 3166 codes.
HIGH_RISK_COUNTRIES = ("CU", "ER", "GN", "KP", "LR", "NR", "SL", "SO", "TV", "CK", "IO", "SH")
#: ``unknown``: a number that fails validation is no less suspicious at 02:13 than one abroad.
_AFTER_HOURS_CLASSES: tuple[CallClassName, ...] = ("international", "premium", "unknown")
_HIGH_RISK_CLASSES: tuple[CallClassName, ...] = ("premium",)
_LONG_CALL_DIRECTIONS: tuple[Literal["outbound", "inbound"], ...] = ("outbound",)


def _check_prefixes(items: list[str]) -> list[str]:
    for item in items:
        digits = item[1:] if item.startswith("+") else item
        if not ascii_digits(digits):
            raise ValueError(f"expected a number prefix such as +1809 (E.164) or 900 (as dialled), got {item!r}")
    return items


class _AlertBase(Section):
    """What every alert rule has: a switch, exclusions and a snooze (one incident is one alert)."""

    enabled: bool = True
    #: extensions whose calls this rule ignores (a fax line, the reception desk that calls abroad all day).
    exclude_extensions: list[str] = Field(default_factory=list)
    #: destinations this rule ignores: ``+44`` (E.164 prefix) or ``0800`` (prefix of the digits as dialled).
    exclude_numbers: list[str] = Field(default_factory=list)
    #: after an alert, the same rule stays quiet this long for the same extension (or number, or source).
    snooze_minutes: float = Field(default=60.0, ge=0)

    @field_validator("exclude_numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        return _check_prefixes(v)


class _AlertRule(_AlertBase):
    severity: AlertSeverity = "warning"


class BusinessHoursConfig(WeeklyHours):
    """The site's opening hours, in the site's timezone; tariff holidays count as closed days too."""

    days: list[str] = Field(default_factory=lambda: ["mon-fri"], min_length=1)
    hours: str = "07:00-19:00"
    holidays: list[date] = Field(default_factory=list)



class AfterHoursAlertConfig(_AlertRule):
    """An outbound call of these classes outside business hours (attempts count: fraud dials at night)."""

    classes: list[CallClassName] = Field(default_factory=lambda: list(_AFTER_HOURS_CLASSES), min_length=1)
    #: ignore calls shorter than this many talk seconds (0: every attempt counts).
    min_seconds: int = Field(default=0, ge=0)


class HighRiskAlertConfig(_AlertRule):
    """An outbound call to a blocked or high-risk destination: prefixes, countries and call classes."""

    severity: AlertSeverity = "critical"
    #: the built-in lists (NANP look-alikes, 900/976, satellite networks); ``false`` to use only your own.
    builtin_prefixes: bool = True
    prefixes: list[str] = Field(default_factory=list)
    #: ISO 3166 country codes; ``default`` stands for the built-in list. The site's own country never matches.
    countries: list[str] = Field(default_factory=lambda: ["default"])
    classes: list[CallClassName] = Field(default_factory=lambda: list(_HIGH_RISK_CLASSES))

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        return _check_prefixes(v)

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            if item.lower() == "default":
                out.append("default")
            elif len(item) == 2 and item.isalpha():
                out.append(item.upper())
            else:
                raise ValueError(f"expected two-letter ISO country codes such as CU (or \"default\"), got {item!r}")
        return out


class LongCallAlertConfig(_AlertRule):
    """A call that lasts longer than ``minutes``."""

    minutes: float = Field(default=60.0, gt=0)
    directions: list[Literal["outbound", "inbound"]] = Field(default_factory=lambda: list(_LONG_CALL_DIRECTIONS),
                                                           min_length=1)


class ExpensiveCallAlertConfig(_AlertRule):
    """A call that costs more than ``cost`` (in the tariff's currency)."""

    cost: Money = Decimal(50)


class VelocityAlertConfig(_AlertRule):
    """Too many external calls, or international minutes, in a sliding window (per extension, and site-wide).

    A limit set to 0 is off.
    """

    severity: AlertSeverity = "critical"
    window_minutes: float = Field(default=60.0, gt=0)
    extension_calls: int = Field(default=40, ge=0)
    extension_international_minutes: float = Field(default=120.0, ge=0)
    site_calls: int = Field(default=0, ge=0)
    site_international_minutes: float = Field(default=600.0, ge=0)


class ShortCallsAlertConfig(_AlertRule):
    """``count`` calls in a row to the same number, each at most ``max_seconds`` long, within the window."""

    count: int = Field(default=5, ge=2)
    max_seconds: int = Field(default=10, ge=0)
    within_minutes: float = Field(default=30.0, gt=0)


class WangiriAlertConfig(_AlertRule):
    """A missed, short-ringing inbound call from abroad, then an outbound call back to that number."""

    severity: AlertSeverity = "critical"
    max_ring_seconds: int = Field(default=10, ge=0)
    callback_hours: float = Field(default=72.0, gt=0)


class DepartmentBudgetConfig(Section):
    """A department's spending limits (in the tariff's currency)."""

    daily: Money | None = None
    monthly: Money | None = None


class BudgetAlertConfig(_AlertBase):
    """A department's spend passes its daily or monthly budget: a warning at ``warn_percent``, critical at 100 %,
    each once per period. Budgets come from here, or from ``budget_daily`` / ``budget_monthly`` in
    ``[[departments]]``."""

    warn_percent: float = Field(default=80.0, gt=0, lt=100)
    departments: dict[str, DepartmentBudgetConfig] = Field(default_factory=dict)


class BudgetForecastAlertConfig(_AlertBase):
    """A department's month-end forecast (its spend so far, projected over the working days left: the business
    days of ``[alerts.business_hours]`` less holidays) crosses its monthly budget while the spend is still under
    it: one alert per month and department, resolved when the month ends. Monthly budgets as for ``budget``."""

    severity: AlertSeverity = "warning"
    #: working days of the month that must have passed before forecasting (a morning's spend is no rate yet).
    min_working_days: float = Field(default=2.0, ge=0, le=31)


class SourceDownAlertConfig(_AlertRule):
    """A source disconnected (no PBX connected, serial port gone) for longer than ``minutes``."""

    severity: AlertSeverity = "critical"
    minutes: float = Field(default=10.0, gt=0)


class ParseErrorsAlertConfig(_AlertRule):
    """More than ``percent`` of a source's lines failed to parse within the window (and at least ``min_lines``
    lines arrived)."""

    percent: float = Field(default=5.0, gt=0, le=100)
    min_lines: int = Field(default=20, ge=1)
    window_minutes: float = Field(default=15.0, gt=0)


class EmailAlertConfig(Section):
    """Alerts by e-mail (``[alerts.email]``, sent through ``[smtp]``): digests that group a burst into one mail,
    resolved notices, per-rule recipients; budget alerts also go to their department's managers."""

    enabled: bool = False
    #: who receives every rule's alerts.
    recipients: list[str] = Field(default_factory=list, max_length=50)
    #: who receives a rule's alerts, by rule name (``velocity = ["security@example.com"]``), besides ``recipients``.
    rules: dict[str, list[str]] = Field(default_factory=dict)
    #: budget alerts also go to the managers of the department (console users with an e-mail address).
    managers: bool = True
    #: alerts raised within this many seconds of the first one unsent go out together, in one mail.
    digest_seconds: float = Field(default=60.0, ge=0, le=86400)
    #: mail resolved notices (a source back, a budget period over) too.
    resolved: bool = True

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        from smdrd.mail_config import check_addresses

        return check_addresses(v)

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from smdrd.mail_config import check_addresses

        return {rule: check_addresses(addresses) for rule, addresses in v.items()}


class AlertsConfig(Section):
    """Alert rules (see docs/alerts.md). With no ``[alerts]`` section the defaults protect the site: after-hours
    international calls, high-risk destinations, long, expensive and fast-repeating calls, Wangiri call-backs
    and disconnected sources all raise alerts."""

    enabled: bool = True
    business_hours: BusinessHoursConfig = Field(default_factory=BusinessHoursConfig)
    #: extensions and destinations every rule ignores (prefixes as for a rule's ``exclude_numbers``).
    exclude_extensions: list[str] = Field(default_factory=list)
    exclude_numbers: list[str] = Field(default_factory=list)
    #: how often source health (disconnection, parse failures) is checked, in seconds.
    check_interval: float = Field(default=5.0, gt=0, le=3600)
    #: delivered alerts are kept in the outbox this many days (an alert history); 0 keeps them for ever.
    retention_days: int = Field(default=90, ge=0)
    after_hours: AfterHoursAlertConfig = Field(default_factory=AfterHoursAlertConfig)
    high_risk: HighRiskAlertConfig = Field(default_factory=HighRiskAlertConfig)
    long_call: LongCallAlertConfig = Field(default_factory=LongCallAlertConfig)
    expensive_call: ExpensiveCallAlertConfig = Field(default_factory=ExpensiveCallAlertConfig)
    velocity: VelocityAlertConfig = Field(default_factory=VelocityAlertConfig)
    short_calls: ShortCallsAlertConfig = Field(default_factory=ShortCallsAlertConfig)
    wangiri: WangiriAlertConfig = Field(default_factory=WangiriAlertConfig)
    budget: BudgetAlertConfig = Field(default_factory=BudgetAlertConfig)
    budget_forecast: BudgetForecastAlertConfig = Field(default_factory=BudgetForecastAlertConfig)
    source_down: SourceDownAlertConfig = Field(default_factory=SourceDownAlertConfig)
    parse_errors: ParseErrorsAlertConfig = Field(default_factory=ParseErrorsAlertConfig)
    email: EmailAlertConfig = Field(default_factory=EmailAlertConfig)

    @field_validator("exclude_numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        return _check_prefixes(v)

    @model_validator(mode="after")
    def _email_rules(self) -> AlertsConfig:
        rules = sorted(name for name, value in self if isinstance(value, _AlertBase))
        unknown = [name for name in self.email.rules if name not in rules]
        if unknown:
            raise ValueError(f"email.rules: unknown rule {unknown[0]!r}; expected some of {', '.join(rules)}")
        return self
