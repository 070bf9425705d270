"""The tariff's one source of truth (``[tariff] source``): the configuration's files, or versions in the database.

With ``source = "files"`` (the default) the rules, bands and mode are ``[tariff]``'s and its decks', as always.
With ``source = "database"`` they are the latest version saved in the console or by ``smdrd tariff import``
(`smdrd.store.api.TariffStore`); the rest of ``[tariff]`` (currency, decimals, split, holidays,
unknown_numbers) still comes from the file. `resolve` gives every command and the daemon the settings with the
tariff in force, so the same `~smdrd.rating.Rater` is compiled from it everywhere, in the pipeline worker too.

A version is a document ``{"mode": ..., "bands": {...}, "rules": [...]}``, each rule written as
``[[tariff.rules]]`` is (`TariffRuleConfig`), so it validates with the configuration's own schema.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smdrd.rating.config import TariffBandConfig, TariffConfig, TariffRuleConfig, plain_decimal
from smdrd.rating.deck import COLUMNS, YEASTAR_HEADER, parse_deck
from smdrd.rating.rules import Band, Rule
from smdrd.store.api import TariffVersion

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.rating.tariff import Rater
    from smdrd.store.api import Rebuild

__all__ = [
    "DATABASE",
    "FILES",
    "RerateSummary",
    "band_of",
    "document",
    "note_in_force",
    "read_csv",
    "rerate",
    "resolve",
    "resolved",
    "rule_json",
    "tariff_config",
    "write_csv",
]

FILES = "files"
DATABASE = "database"


def rule_json(rule: TariffRuleConfig) -> dict[str, Any]:
    """A rule as a version's document keeps it: JSON-safe, defaults left out (amounts as decimal strings)."""
    data: dict[str, Any] = rule.model_dump(mode="json", exclude_defaults=True)
    data["prefixes"] = list(rule.prefixes)
    return data


def document(mode: str, bands: dict[str, TariffBandConfig], rules: Iterable[TariffRuleConfig]) -> dict[str, Any]:
    """A version's document."""
    return {"mode": mode, "bands": {name: b.model_dump(mode="json") for name, b in bands.items()},
            "rules": [rule_json(r) for r in rules]}


def tariff_config(base: TariffConfig, doc: dict[str, Any] | None) -> TariffConfig:
    """``base`` (the file's ``[tariff]``) with the rules, bands and mode of a version's document (no decks).
    ``None`` (nothing saved yet): no rules, so every call costs 0.

    Raises:
        pydantic.ValidationError: the document does not validate (never for one this module saved).
    """
    data = base.model_dump(mode="json")
    doc = doc or {"mode": base.mode, "bands": {}, "rules": []}
    data.update(decks=[], rules=doc.get("rules", []), bands=doc.get("bands", {}), mode=doc.get("mode", base.mode))
    return TariffConfig.model_validate(data)


def current(database: str | Any) -> TariffVersion | None:
    """The latest saved version in the database at ``database`` (a SQLite path or a PostgreSQL URL)."""
    from smdrd.store import open_store

    tariffs = open_store(database).tariffs()
    try:
        return tariffs.current()
    finally:
        tariffs.close()


def resolve(settings: Settings) -> Settings:
    """``settings`` with the tariff in force: unchanged for ``source = "files"``; for ``"database"``, the latest
    saved version's rules, bands and mode (no rules before the first save)."""
    return resolved(settings)[0]


def resolved(settings: Settings) -> tuple[Settings, int | None]:
    """`resolve`, and the number of the version in force (0: none saved yet; None: the files)."""
    if settings.tariff.source != DATABASE:
        return settings, None
    latest = current(settings.database.target)
    return with_version(settings, latest), (latest.info.version if latest else 0)


def note_in_force(database: str | Any, version: int, digest: str, *, at: int) -> None:
    """Say in the audit log that the daemon now rates with ``version`` (`smdrd.rating.Tariff.digest` ``digest``),
    from ``at`` (UTC seconds): a call received after it and before the next such entry was priced by it."""
    from smdrd.store import open_store
    from smdrd.store.api import Actor

    accounts = open_store(database).accounts()
    try:
        accounts.record("tariff.in_force", f"version {version}", at=at, actor=Actor("daemon"),
                        after={"version": version, "digest": digest})
    finally:
        accounts.close()


def with_version(settings: Settings, version: TariffVersion | None) -> Settings:
    """``settings`` whose tariff is ``version``'s (see `tariff_config`)."""
    return settings.model_copy(update={"tariff": tariff_config(settings.tariff, version.document if version else None)})


def band_of(band: Band | None) -> str | None:
    return band.name if band is not None else None


def _rule_config(rule: Rule) -> TariffRuleConfig:
    # Built without validating again: `parse_deck` has checked every cell (half the time of an import).
    return TariffRuleConfig.model_construct(
        name=rule.name, prefixes=list(rule.prefixes), call_class=rule.call_class,
        rate=rule.rate, billing_unit=rule.billing_unit, initial_time=rule.initial_time,
        initial_cost=rule.initial_cost, connection_fee=rule.connection_fee, minimum_charge=rule.minimum_charge,
        charge_unanswered=rule.charge_unanswered, band=band_of(rule.band), valid_from=rule.valid_from,
        valid_until=rule.valid_until, trunks=sorted(rule.trunks), directions=sorted(rule.directions),
        number_length=rule.number_length)


def read_csv(text: str, source: str, bands: dict[str, TariffBandConfig]) -> list[TariffRuleConfig]:
    """The rules of a CSV deck, smdrd's columns or Yeastar's (detected from the header), in tariff order.

    Raises:
        TariffSourceError: naming ``source``, the line and the column of the first bad cell.
    """
    from smdrd.rating.tariff import _band

    compiled = {name: _band(name, b.days, b.hours, b.holidays) for name, b in bands.items()}
    return [_rule_config(r) for r in parse_deck(text.lstrip("\ufeff").splitlines(keepends=True), source,
                                                bands=compiled)]


def file_rules(tariff: TariffConfig, base_dir: Path | None = None) -> list[TariffRuleConfig]:
    """Every rule of a files-managed tariff as it is compiled: ``[[tariff.rules]]`` first, then each deck's
    (relative deck paths from ``base_dir``), for the console to show what prices the calls.

    Raises:
        TariffSourceError: a deck cannot be read or has a bad line (named).
    """
    from smdrd.rating.deck import read_deck
    from smdrd.rating.tariff import _band

    bands = {name: _band(name, b.days, b.hours, b.holidays) for name, b in tariff.bands.items()}
    rules = list(tariff.rules)
    for deck in tariff.decks:
        path = Path(deck)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        rules += [_rule_config(r) for r in read_deck(path, bands=bands)[0]]
    return rules


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set | frozenset):
        return ";".join(str(v) for v in value)
    if isinstance(value, Decimal):
        return plain_decimal(value)
    return str(value)


def write_csv(rules: Sequence[TariffRuleConfig], *, yeastar: bool = False) -> str:
    """A CSV deck of ``rules``: smdrd's columns (one line per prefix), or Yeastar's (its seven columns, last rule
    first as Yeastar writes them; what Yeastar has no column for is left out). Written through `smdrd.csvsafe`:
    a cell a spreadsheet would run as a formula is written as text."""
    from smdrd.csvsafe import csv_text

    rows: list[list[object]] = []
    if yeastar:
        rows.append(list(YEASTAR_HEADER))
        rows.extend([rule.name, prefix, rule.number_length or "", plain_decimal(rule.rate), rule.billing_unit,
                     rule.initial_time, plain_decimal(rule.initial_cost)]
                    for rule in reversed(rules) for prefix in rule.prefixes)
        return csv_text(rows)
    rows.append(list(COLUMNS))
    for rule in rules:
        data = rule.model_dump()
        for prefix in rule.prefixes:
            row = {**data, "prefix": prefix, "number_length": rule.number_length or None}
            rows.append([_cell(row.get(c)) for c in COLUMNS])
    return csv_text(rows)


# ---- re-rating stored calls with the tariff in force ----

_MICROS = 1_000_000


def _money(micros: int) -> str:
    return str(Decimal(micros) / _MICROS)


@dataclass
class RerateSummary:
    """What re-rating a range of calls changes (or would): how many, the cost before and after per currency, the
    calls and cost per class before and after, and the commonest rule changes."""

    checked: int = 0
    changed: int = 0
    cost_before: Counter[str] = field(default_factory=Counter)
    cost_after: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: per class: calls and cost (micro-units) before and after.
    calls_by_class_before: Counter[str] = field(default_factory=Counter)
    calls_by_class_after: Counter[str] = field(default_factory=Counter)
    cost_by_class_before: Counter[str] = field(default_factory=Counter)
    cost_by_class_after: Counter[str] = field(default_factory=Counter)
    #: calls that move from the tariff version that priced them to another (`Rating.tariff_version`; ``""``:
    #: not known), figures changed or not.
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: calls whose stored rating is (or would be) written: their figures or only their tariff version change.
    updates: int = 0

    def by_class(self) -> list[dict[str, object]]:
        """One row per class: calls and cost before and after (cost as a decimal string)."""
        classes = sorted(set(self.calls_by_class_before) | set(self.calls_by_class_after))
        return [{"call_class": c, "calls_before": self.calls_by_class_before[c],
                 "calls_after": self.calls_by_class_after[c], "cost_before": _money(self.cost_by_class_before[c]),
                 "cost_after": _money(self.cost_by_class_after[c])} for c in classes]

    def as_json(self) -> dict[str, object]:
        currencies = sorted(set(self.cost_before) | set(self.cost_after))
        return {
            "checked": self.checked,
            "changed": self.changed,
            "cost_before": {c: _money(self.cost_before[c]) for c in currencies},
            "cost_after": {c: _money(self.cost_after[c]) for c in currencies},
            "by_class": self.by_class(),
            "rule_changes": [{"from": a, "to": b, "calls": n} for (a, b), n in self.rules.most_common(20)],
            "version_changes": [{"from": a, "to": b, "calls": n} for (a, b), n in self.versions.most_common(20)],
        }


def rerate(store: Rebuild, rater: Rater, lo: int, hi: int, *, apply: bool) -> RerateSummary:
    """Rate the calls stored between ``lo`` and ``hi`` (UTC seconds) again with ``rater``; store the new
    ratings when ``apply`` (in short batches, while the daemon keeps writing), else only say what would change.
    Every call checked is then priced by ``rater``'s tariff version, figures changed or not."""
    from smdrd.store.api import RatingUpdate

    summary = RerateSummary()
    updates: list[RatingUpdate] = []
    for call in store.ratings(lo, hi):
        summary.checked += 1
        r = rater.rate_call(call.number, datetime.fromisoformat(call.start), call.duration,
                            direction=call.direction, trunk=call.trunk, answered=call.answered)
        new = (r.e164, r.call_class, r.rule, r.prefix, int(r.cost * _MICROS), r.currency, r.region,
               r.tariff_version or None)
        old = call.rating
        before_class, before_cost = str(old[1] or ""), int(old[4] or 0)
        summary.cost_before[str(old[5] or "")] += before_cost
        summary.cost_after[r.currency] += new[4]
        summary.calls_by_class_before[before_class] += 1
        summary.cost_by_class_before[before_class] += before_cost
        summary.calls_by_class_after[r.call_class] += 1
        summary.cost_by_class_after[r.call_class] += new[4]
        if old[:7] != new[:7]:
            summary.changed += 1
            if old[2] != r.rule:
                summary.rules[(str(old[2] or ""), r.rule)] += 1
            updates.append(RatingUpdate(call.call_id, new))
        elif old[7] != new[7]:
            updates.append(RatingUpdate(call.call_id, new, figures=False))
        if old[7] != new[7]:
            summary.versions[(old[7] or "", r.tariff_version)] += 1
    summary.updates = len(updates)
    if apply:
        store.update_ratings(updates)
    return summary
