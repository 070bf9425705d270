"""The report rollups in SQLite: every piece of their SQL generated from the one definition
(`smdrd.store.rollups`: tables, the insert and update triggers, ``smdrd reparse``'s unroll trigger, backfills).

Both grains are kept in the transaction that stores the calls, so they always agree.

Since schema version 9 new calls are added **per batch**, not per row: whoever inserts calls runs `ROLL_UP` with
the highest ``calls.id`` from before its inserts (a new call's id is always above it), and each rollup gets one
``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`` over the new calls (a batch of N calls upserts each
distinct key once, and the expressions run in SQLite's C loop rather than once per row in a trigger program).
A re-rated call still moves by the update trigger (rare, one row at a time).

The migrations' text is frozen once shipped (see `smdrd.store.rollups`). Nothing here runs SQL;
`smdrd.store.sqlite.schema` builds the migrations from these strings.
"""

from __future__ import annotations

from smdrd.store.rollups import (
    DAYS_TABLE,
    DIMENSIONS,
    MEASURES,
    ROLLUPS,
    ROLLUPS_V7,
    ROLLUPS_V8,
    ROLLUPS_V10,
    Dimension,
    Measure,
    Rollup,
    coarser_of,
)

__all__ = ["DAYS_TABLE", "DIMENSIONS", "MEASURES", "ROLLUPS", "ROLLUPS_V7", "ROLLUPS_V8", "ROLLUPS_V10", "ROLL_UP",
           "Dimension", "Measure", "Rollup", "backfill_sql", "batch_sql", "coarser_of", "create_table_sql", "delta_sql",
           "insert_trigger_sql", "rekey_sql", "unroll_trigger_sql", "update_trigger_sql"]

_UPSERT = ("ON CONFLICT DO UPDATE SET "
           + ", ".join(f"{m.name} = {m.name} + excluded.{m.name}" for m in MEASURES))


def create_table_sql(rollup: Rollup) -> str:
    """``CREATE TABLE`` of ``rollup`` (``WITHOUT ROWID``: the rows are their key)."""
    cols = [f"    {name:<11} {DIMENSIONS[name].type:<7} NOT NULL,  -- {DIMENSIONS[name].doc}" for name in rollup.key]
    cols += [f"    {m.name:<11} INTEGER NOT NULL,  -- {m.doc}" for m in MEASURES]
    return (f"CREATE TABLE {rollup.table} (\n" + "\n".join(cols)
            + f"\n    PRIMARY KEY ({', '.join(rollup.key)})\n) WITHOUT ROWID;")


def delta_sql(row: str, sign: int, rollups: tuple[Rollup, ...] = ROLLUPS) -> str:
    """Statements that add (``sign`` 1) or take away (-1) the call ``row`` (``NEW`` or ``OLD`` in a trigger) in
    every rollup; rows a subtraction leaves at zero go, so a rollup never holds empty keys."""
    neg = "" if sign > 0 else "-"
    out: list[str] = []
    for r in rollups:
        values = [DIMENSIONS[k].expr.format(r=row) for k in r.key]
        figures = [f"{neg}({m.expr.format(r=row)})" if neg else m.expr.format(r=row) for m in MEASURES]
        out.append(f"INSERT INTO {r.table} ({', '.join(r.key)}, {', '.join(m.name for m in MEASURES)}) "
                   f"VALUES ({', '.join(values + figures)}) {_UPSERT};")
        if sign < 0:
            match = " AND ".join(f"{k} = {v}" for k, v in zip(r.key, values, strict=True))
            zero = " AND ".join(f"{m.name} = 0" for m in MEASURES)
            out.append(f"DELETE FROM {r.table} WHERE {match} AND {zero};")
    return "\n".join(out)


def _reads(rollups: tuple[Rollup, ...]) -> list[str]:
    """The ``calls`` columns some rollup reads, in a stable order: an update of any other leaves them alone."""
    seen: dict[str, None] = {}
    for r in rollups:
        for k in r.key:
            seen.update(dict.fromkeys(DIMENSIONS[k].reads))
    for m in MEASURES:
        seen.update(dict.fromkeys(m.reads))
    return list(seen)


def insert_trigger_sql(rollups: tuple[Rollup, ...] = ROLLUPS) -> str:
    """``calls_rollup``: every inserted call is added to every rollup, in the inserting transaction. There is
    no DELETE trigger: pruning old call details (retention) leaves the totals alone."""
    return f"CREATE TRIGGER calls_rollup AFTER INSERT ON calls\nBEGIN\n{delta_sql('NEW', 1, rollups)}\nEND;"


def update_trigger_sql(rollups: tuple[Rollup, ...] = ROLLUPS) -> str:
    """``calls_rollup_update``: a call whose figures change (``smdrd rerate``) moves: old taken away, new added."""
    return (f"CREATE TRIGGER calls_rollup_update AFTER UPDATE OF {', '.join(_reads(rollups))} ON calls\nBEGIN\n"
            f"{delta_sql('OLD', -1, rollups)}\n{delta_sql('NEW', 1, rollups)}\nEND;")


def unroll_trigger_sql(rollups: tuple[Rollup, ...] = ROLLUPS) -> str:
    """``calls_unroll``, a TEMP trigger for ``smdrd reparse``'s own connection only: calls it deletes (to rebuild
    them from the journal) leave the rollups, where the rebuilt calls are added again."""
    return ("CREATE TEMP TRIGGER calls_unroll BEFORE DELETE ON main.calls\nBEGIN\n"
            f"{delta_sql('OLD', -1, rollups)}\nEND;")


def batch_sql(rollups: tuple[Rollup, ...] = ROLLUPS) -> tuple[str, ...]:
    """One statement per rollup adding every call whose ``id`` is above the one parameter (the highest id from
    before the batch's inserts): the new calls grouped by the rollup's key, each key upserted once."""
    measures = ", ".join(m.name for m in MEASURES)
    per_call = ", ".join(f"sum({m.expr.format(r='calls')})" for m in MEASURES)
    out = []
    for r in rollups:
        picks = ", ".join(DIMENSIONS[k].expr.format(r="calls") for k in r.key)
        group = ", ".join(str(i) for i in range(1, len(r.key) + 1))
        out.append(f"INSERT INTO {r.table} ({', '.join(r.key)}, {measures})\n"
                   f"SELECT {picks}, {per_call} FROM calls WHERE id > ? GROUP BY {group}\n{_UPSERT}")
    return tuple(out)


#: what every writer of calls runs, in its transaction, after its inserts (see the module's docstring).
ROLL_UP = batch_sql(ROLLUPS)


def backfill_sql(rollup: Rollup, rollups: tuple[Rollup, ...] = ROLLUPS) -> str:
    """Fill ``rollup`` (new and empty) from what is stored: a monthly rollup from its daily one (which still
    counts calls that retention has pruned), any other from ``calls``."""
    sums = ", ".join(f"sum({m.name})" for m in MEASURES)
    names = ", ".join(rollup.key)
    group = ", ".join(str(i) for i in range(1, len(rollup.key) + 1))
    measures = ", ".join(m.name for m in MEASURES)
    if rollup.finer is not None:
        finer = next(r for r in rollups if r.table == rollup.finer)
        if not set(rollup.key) <= {*finer.key, *(("month",) if "day" in finer.key else ())}:
            raise ValueError(f"{rollup.table}: its key must be {finer.table}'s, or part of it, day made month")
        picks = ", ".join("substr(day, 1, 7)" if k == "month" and k not in finer.key else k for k in rollup.key)
        return (f"INSERT INTO {rollup.table} ({names}, {measures})\n"
                f"SELECT {picks}, {sums} FROM {finer.table} GROUP BY {group};")
    picks = ", ".join(DIMENSIONS[k].expr.format(r="calls") for k in rollup.key)
    per_call = ", ".join(f"sum({m.expr.format(r='calls')})" for m in MEASURES)
    return (f"INSERT INTO {rollup.table} ({names}, {measures})\n"
            f"SELECT {picks}, {per_call} FROM calls GROUP BY {group};")


def rekey_sql(rollup: Rollup, old_table: str, old_key: tuple[str, ...], added: dict[str, str]) -> str:
    """Fill ``rollup`` (new and empty, a daily one) whose key adds columns to ``old_key``, the key of the table it
    replaces (``old_table``, still there): first every stored call under its new key, then what the old table
    counts beyond the stored calls (the calls retention has pruned, which only the rollups remember) under the
    old key, the added columns given by ``added`` (SQL over the old row ``o``: the best answer the old row holds).

    Exact whatever retention pruned: per old key, stored calls plus that remainder are the old figures."""
    if set(rollup.key) - set(old_key) != set(added) or not set(old_key) <= set(rollup.key):
        raise ValueError(f"{rollup.table}: added columns must be exactly those the new key adds")
    names = ", ".join(rollup.key)
    measures = ", ".join(m.name for m in MEASURES)
    # The stored calls summed by the old key, in a keyed TEMP table: the join below is one seek per old row.
    stored = Rollup("temp.rekey_stored", old_key)
    join = " AND ".join(f"s.{k} = o.{k}" for k in old_key)
    picks = ", ".join(added.get(k, f"o.{k}") for k in rollup.key)
    rest = ", ".join(f"o.{m.name} - coalesce(s.{m.name}, 0)" for m in MEASURES)
    differs = " OR ".join(f"o.{m.name} <> coalesce(s.{m.name}, 0)" for m in MEASURES)
    return (f"{backfill_sql(rollup, (rollup,))}\n"
            f"{create_table_sql(stored)}\n{backfill_sql(stored, (stored,))}\n"
            f"INSERT INTO {rollup.table} ({names}, {measures})\n"
            f"SELECT {picks}, {rest} FROM {old_table} o LEFT JOIN {stored.table} s ON {join}\n"
            f"WHERE {differs}\n{_UPSERT};\n"
            f"DROP TABLE {stored.table};")
