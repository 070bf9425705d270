"""The report rollups, defined once for both stores: one table of dimensions (each with its value as an SQL
expression over a call row), the measures, and the list of rollups, from which each store generates its rollup
SQL (`smdrd.store.sqlite.rollups`: tables, triggers, the per-batch roll-up, backfills; `smdrd.store.postgres.schema`:
the same per site) and the report planner (`smdrd.store.planner`) picks the rollup that serves a range.

A rollup is a table of sums (`MEASURES`) keyed by some of the `DIMENSIONS` of a call, its time grain first
(``day`` or ``month``), so that a report over a range reads a few rows per day or month instead of every call.
A call counts once, on its first leg (a transfer's later legs add only their duration and cost). The grain is
the site-local day or month: the first 10 or 7 characters of ``calls.start`` (ISO local time with its offset).
The monthly rollups are the daily ones with ``day`` coarsened to ``month``: a report over whole months reads
them (about 12 rows per key a year instead of 365), and only the partial months at the ends of its range read
the daily ones.

A migration's text is frozen once shipped (databases hold it, restore compares it): a change to the rollups is
a new constant (``ROLLUPS_V11``...) and a new migration built from it, never an edit of `ROLLUPS_V7`,
`ROLLUPS_V8` or `ROLLUPS_V10`. Nothing here runs SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DAYS_TABLE", "DIMENSIONS", "MEASURES", "ROLLUPS", "ROLLUPS_V7", "ROLLUPS_V8", "ROLLUPS_V10", "Dimension",
           "Measure", "Rollup", "coarser_of"]

# E.164 country calling codes are prefix-free: 1 and 7; this two-digit list; every other one has three digits.
_TWO_DIGIT_CODES = (
    "'20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47', '48', '49', "
    "'51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65', '66', '81', '82', '84', "
    "'86', '90', '91', '92', '93', '94', '95', '98'"
)


@dataclass(frozen=True, slots=True)
class Dimension:
    """A rollup key column: its SQL type, its value as an expression over a call row (``{r}``: ``NEW``, ``OLD``
    or a table alias), the ``calls`` columns that expression reads, and what it means."""

    name: str
    type: str
    expr: str
    reads: tuple[str, ...]
    doc: str


@dataclass(frozen=True, slots=True)
class Measure:
    """A summed rollup column: its value for one call row (``{r}``), what it reads, what it means."""

    name: str
    expr: str
    reads: tuple[str, ...]
    doc: str


DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension("day", "TEXT", "substr({r}.start, 1, 10)", ("start",), "site-local date, YYYY-MM-DD"),
    Dimension("month", "TEXT", "substr({r}.start, 1, 7)", ("start",), "site-local month, YYYY-MM"),
    Dimension("hour", "INTEGER", "CAST(substr({r}.start, 12, 2) AS INTEGER)", ("start",),
              "site-local hour of the call's start, 0 to 23"),
    Dimension("extension", "TEXT", "{r}.extension", ("extension",), "the extension"),
    Dimension("direction", "TEXT", "{r}.direction", ("direction",), "outbound | inbound | internal"),
    Dimension("call_class", "TEXT", "coalesce({r}.call_class, '')", ("call_class",),
              "'' when the call was not rated"),
    Dimension("trunk", "TEXT", "{r}.trunk", ("trunk",), "the trunk"),
    Dimension("currency", "TEXT", "coalesce({r}.currency, '')", ("currency",), "'' when the call was not rated"),
    Dimension("country", "TEXT",
              "CASE WHEN {r}.e164 IS NULL OR substr({r}.e164, 1, 1) <> '+' THEN '' "
              "WHEN substr({r}.e164, 2, 1) IN ('1', '7') THEN substr({r}.e164, 2, 1) "
              f"WHEN substr({{r}}.e164, 2, 2) IN ({_TWO_DIGIT_CODES}) THEN substr({{r}}.e164, 2, 2) "
              "ELSE substr({r}.e164, 2, 3) END",
              ("e164",), "E.164 country calling code ('44'), '' when not in E.164"),
    Dimension("region", "TEXT", "{r}.region", ("region",),
              "ISO 3166 region of the number ('DO' for +1 809), '' when unknown"),
)}

MEASURES: tuple[Measure, ...] = (
    Measure("calls", "{r}.leg = 0", ("leg",), "first legs only: a transferred call counts once"),
    Measure("duration", "{r}.duration", ("duration",), "talk seconds, every leg"),
    Measure("cost_micros", "coalesce({r}.cost_micros, 0)", ("cost_micros",), "every leg"),
)


@dataclass(frozen=True, slots=True)
class Rollup:
    """One rollup table: its key (primary key order, the time grain first) and, for a coarser rollup, the finer
    one it is backfilled from: its key is the finer key with ``day`` made ``month`` and/or columns left out."""

    table: str
    key: tuple[str, ...]
    finer: str | None = None


#: The rollups of schema version 7. Frozen: migration 7 is generated from it.
ROLLUPS_V7: tuple[Rollup, ...] = (
    Rollup("rollup_daily", ("day", "extension", "direction", "call_class", "trunk", "currency")),
    Rollup("rollup_hourly", ("day", "trunk", "hour", "direction", "call_class", "currency")),
    Rollup("rollup_destinations", ("day", "country", "call_class", "extension", "direction", "trunk", "currency")),
    Rollup("rollup_monthly", ("month", "extension", "direction", "call_class", "trunk", "currency"),
           finer="rollup_daily"),
    Rollup("rollup_monthly_hourly", ("month", "trunk", "hour", "direction", "call_class", "currency"),
           finer="rollup_hourly"),
    Rollup("rollup_monthly_destinations",
           ("month", "country", "call_class", "extension", "direction", "trunk", "currency"),
           finer="rollup_destinations"),
)

#: the per-day totals without the extension: the ``days`` report of a year reads 365 x a few dozen rows of it
#: instead of one per extension and day (it serves only reports that need no extension).
DAYS_TABLE = "rollup_days"

#: The rollups of schema version 8: those of 7 and `DAYS_TABLE`. Frozen: migration 8 is generated from it.
ROLLUPS_V8: tuple[Rollup, ...] = (
    *ROLLUPS_V7,
    Rollup(DAYS_TABLE, ("day", "direction", "call_class", "trunk", "currency"), finer="rollup_daily"),
)

#: The destination rollups of schema version 10: a destination is its calling code and its region (the
#: number's ISO 3166 region, stored on each call since 10), so +1 809 is DO, not the US.
_DESTINATIONS_V10 = ("day", "country", "region", "call_class", "extension", "direction", "trunk", "currency")

#: The rollups of schema version 10: those of 8 with the destinations keyed by region too. Frozen: migration 10
#: is generated from it.
ROLLUPS_V10: tuple[Rollup, ...] = (
    *(r for r in ROLLUPS_V8 if "country" not in r.key),
    Rollup("rollup_destinations", _DESTINATIONS_V10),
    Rollup("rollup_monthly_destinations", ("month", *_DESTINATIONS_V10[1:]), finer="rollup_destinations"),
)

#: The rollups this version keeps (`ROLL_UP` and the update trigger of the latest migration maintain them).
ROLLUPS = ROLLUPS_V10

def coarser_of(rollups: tuple[Rollup, ...] = ROLLUPS) -> dict[str, str]:
    """Each daily rollup that has a monthly one with the same other keys: ``{daily table: monthly table}``."""
    by_table = {r.table: r for r in rollups}
    return {r.finer: r.table for r in rollups if r.finer and r.key[0] == "month"
            and r.key[1:] == by_table[r.finer].key[1:]}
