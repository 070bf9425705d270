"""The central store's writer: journal entries that sites published (`smdrd.central`), stored idempotently.

One batch of entries is one transaction, under the journal writers' turn-taking lock: the sites named by the
batch are found (or added) by name; the lines are copied into a staging table and inserted ``ON CONFLICT DO
NOTHING`` on their identity (site, the line's id in the site's journal, its receipt time), so an entry delivered
twice is one line; the calls of the lines actually inserted are inserted ``ON CONFLICT DO NOTHING`` on theirs
(start, site, source, uid) and exactly those added to every rollup, under their site. A call's site is part of
every key, so two sites' identical lines (extension 201 at both, the same bytes) are two calls. The names the
sites' PBXs give extensions in those calls are learnt per site (extension 201 of one site is not of another).

A site that re-rates or reparses its calls publishes the entries it changed again, as they are now, each with
its ``revision`` (`smdrd.store.api.CallFeed.revisions`; a first publication has none: 0). A line keeps the
highest revision it got: a newer one replaces the line's calls (the old ones taken out of every rollup, the new
ones added, as ``smdrd reparse`` does; a call the reparse moved from another of the site's lines too) and its
status; an older one, or the same again, changes nothing; a revision of a line not stored yet stores it, and the
first publication arriving after it adds nothing. So the central store's figures follow the site's, whatever
order the two feeds' messages come in. A revision of a line older than this store's own call retention is not
applied (`CentralWriter.revision_cutoff`).

A lost server or a serialization failure raises `Unwritable` (retry the same batch: nothing of it was kept).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from smdrd.errors import SmdrdError
from smdrd.journal import ERROR, FLUSHED, MICROS
from smdrd.parsing import published_names
from smdrd.store.confirm import advance
from smdrd.store.directory_rows import name_rows
from smdrd.store.postgres.connect import AsyncPart, failure
from smdrd.store.postgres.directory import LEARN_SITE_NAME
from smdrd.store.postgres.rebuild import MOVED, UNROLL
from smdrd.store.postgres.schema import roll_up_sql
from smdrd.store.postgres.writer import ONE_WRITER, Unwritable
from smdrd.store.rows import CALL_COLUMNS

__all__ = ["CentralBatch", "CentralWriter", "EntryRefused", "StoredCalls", "call_row_of"]

_LINE_COLUMNS = ("site_id", "site_line", "source", "peer", "received_at", "format", "raw", "status", "error",
                 "revision")
_CALL_COLUMNS = ("line_id", "site_id", *CALL_COLUMNS)
_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS central_lines_in ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(_LINE_COLUMNS)} FROM lines WITH NO DATA;\n"
    f"CREATE TEMP TABLE IF NOT EXISTS central_calls_in ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls WITH NO DATA")
_BEGIN = f"{ONE_WRITER};\n{_STAGING}"
#: the staged lines not stored yet, in the order they came; returns each new line's id and identity.
_MOVE_LINES = (
    f"INSERT INTO lines ({', '.join(_LINE_COLUMNS)}) SELECT {', '.join(_LINE_COLUMNS)} FROM central_lines_in "
    f"ORDER BY site_id, site_line ON CONFLICT (site_id, site_line, received_at) DO NOTHING "
    f"RETURNING id, site_id, site_line, received_at")
#: the staged calls (of the lines just inserted) into ``calls`` and, those inserted, into every rollup.
_MOVE_CALLS = (
    f"WITH new AS (INSERT INTO calls ({', '.join(_CALL_COLUMNS)}) SELECT {', '.join(_CALL_COLUMNS)} "
    f"FROM central_calls_in ORDER BY line_id ON CONFLICT (start_utc, site_id, source, uid) DO NOTHING RETURNING *)"
    + "".join(f", r{i} AS ({sql})" for i, sql in enumerate(roll_up_sql("new")))
    + " SELECT site_id, source, direction, coalesce(call_class, ''), coalesce(currency, ''), count(*), "
      "count(*) FILTER (WHERE leg = 0), coalesce(sum(duration), 0), coalesce(sum(cost_micros), 0) "
      "FROM new GROUP BY 1, 2, 3, 4, 5")
#: the staged revisions newer than the stored lines': their status and revision, and each line's id and identity.
_REVISE_LINES = (
    "UPDATE lines SET status = s.status, error = s.error, revision = s.revision FROM central_lines_in s "
    "WHERE s.revision > 0 AND lines.site_id = s.site_id AND lines.site_line = s.site_line "
    "AND lines.received_at = s.received_at AND lines.revision < s.revision "
    "RETURNING lines.id, lines.site_id, lines.site_line, lines.received_at")
#: the calls of the revised lines out of ``calls``, kept in ``calls_moved`` to be taken out of every rollup.
_DELETE_REVISED = ("WITH gone AS (DELETE FROM calls WHERE line_id = ANY(%s) RETURNING *) "
                   "INSERT INTO calls_moved SELECT * FROM gone")
#: the stored calls that the staged ones are (the same identity, on whichever line), kept in ``calls_moved``.
_DELETE_SAME_CALLS = ("WITH gone AS (DELETE FROM calls c USING central_calls_in s WHERE c.start_utc = s.start_utc "
                      "AND c.site_id = s.site_id AND c.source = s.source AND c.uid = s.uid RETURNING c.*) "
                      "INSERT INTO calls_moved SELECT * FROM gone")
#: the sites' alerts into the central inbox, each once: its id prefixed with its site (two sites' calls may
#: raise alerts of the same id), delivered already (the site delivered it: nothing here publishes it again).
_INSERT_ALERTS = ("INSERT INTO alert_outbox (alert_id, rule, severity, created_at, payload, delivered_at) "
                  "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::bigint[]) "
                  "ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id")
_FIND_SITES = "SELECT name, id FROM sites WHERE name = ANY(%s)"
#: each site's confirmed point (NULL: none yet).
_CONFIRMED_OF = ("SELECT s.id, c.confirmed "
                 "FROM unnest(%s::integer[]) AS s (id) LEFT JOIN site_confirmed c ON c.site_id = s.id")
#: the entries' links (position, prev) above their site's point; a smaller prev of the same entry wins (a re-send
#: from a rewound cursor follows on from the point).
_ADD_LINKS = ("INSERT INTO site_links (site_id, site_line, prev) "
              "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) "
              "ON CONFLICT (site_id, site_line) DO UPDATE SET prev = least(site_links.prev, excluded.prev)")
#: a site's links above its point, in position order, a slice at a time.
_LINKS_ABOVE = ("SELECT site_line, prev FROM site_links WHERE site_id = %s AND site_line > %s "
                "ORDER BY site_line LIMIT %s")
_DROP_LINKS = "DELETE FROM site_links WHERE site_id = %s AND site_line <= %s"
_SAVE_CONFIRMED = ("INSERT INTO site_confirmed (site_id, confirmed) VALUES (%s, %s) "
                   "ON CONFLICT (site_id) DO UPDATE SET confirmed = excluded.confirmed")
_ALL_CONFIRMED = "SELECT s.name, c.confirmed FROM site_confirmed c JOIN sites s ON s.id = c.site_id"
#: links read at once while the confirmed point moves
_LINK_SLICE = 2000
_ADD_SITE = ("INSERT INTO sites (id, name) SELECT coalesce(max(id), 0) + 1, %s FROM sites "
             "ON CONFLICT (name) WHERE name <> '' DO NOTHING")

class EntryRefused(SmdrdError):
    """PostgreSQL refused the batch for its values (a field out of range, a constraint): not worth retrying as it
    is; stored one entry at a time, the others go in."""


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_AUTH_CODE, _COST_MICROS, _EXTRA = (CALL_COLUMNS.index(c) for c in ("auth_code", "cost_micros", "extra"))


def _latest(entries: Sequence[Mapping[str, Any]], cutoff: int = 0) -> dict[tuple[str, int, int], Mapping[str, Any]]:
    """Each line of ``entries`` once, by its identity (site, id, receipt time), at the highest revision given;
    revisions of lines received before ``cutoff`` left out (`CentralWriter.revision_cutoff`)."""
    out: dict[tuple[str, int, int], Mapping[str, Any]] = {}
    for e in entries:
        key = (str(e["site"]), int(e["id"]), int(e["received_at"]))
        if key[2] < cutoff and e.get("revision"):
            continue
        held = out.get(key)
        if held is None or int(e.get("revision") or 0) > int(held.get("revision") or 0):
            out[key] = e
    return out


async def _unroll(cur: psycopg.AsyncCursor[Any]) -> None:
    """The calls in ``calls_moved`` out of every rollup, the keys left at zero gone (as ``smdrd reparse``)."""
    for take, drop in UNROLL:
        await cur.execute(take)
        empty = await cur.fetchall()
        if empty:
            await cur.executemany(drop, empty)
    await cur.execute("DELETE FROM calls_moved")


async def _stage_calls(cur: psycopg.AsyncCursor[Any], rows: list[tuple[object, ...]]) -> None:
    """Call ``rows`` (``line_id``, ``site_id``, then `CALL_COLUMNS`) into the staging table, alone there."""
    await cur.execute("DELETE FROM central_calls_in")  # what an earlier pass of this transaction staged
    async with cur.copy(f"COPY central_calls_in ({', '.join(_CALL_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)


async def _move_calls(cur: psycopg.AsyncCursor[Any], rows: list[tuple[object, ...]]) -> list[tuple[Any, ...]]:
    """Call ``rows`` (as `_stage_calls` takes them) into ``calls`` and every rollup, those new to the store; what
    they added, grouped as `_MOVE_CALLS` returns it."""
    if not rows:
        return []
    await _stage_calls(cur, rows)
    await cur.execute(_MOVE_CALLS)
    return await cur.fetchall()


async def _replace_calls(cur: psycopg.AsyncCursor[Any], lines: list[int], rows: list[tuple[object, ...]]) -> None:
    """The calls of the revised ``lines`` replaced by ``rows`` (their revisions' calls), every rollup moved: the
    lines' stored calls, and any stored call of the site that a row is (a reparse may have moved it from another
    of the site's lines, whose own revision may come in a later batch), are taken out of every rollup and
    deleted; then the rows go in as new ones do."""
    await cur.execute(MOVED)
    await cur.execute(_DELETE_REVISED, (lines,))
    if rows:
        await _stage_calls(cur, rows)
        await cur.execute(_DELETE_SAME_CALLS)
    await _unroll(cur)
    if rows:
        await cur.execute(_MOVE_CALLS)
        await cur.fetchall()


def call_row_of(fields: Mapping[str, Any]) -> tuple[object, ...]:
    """A published call (`smdrd.store.api.CallFeed.after`'s fields) as a ``calls`` row in `CALL_COLUMNS` order:
    the cost back in millionths, no authorisation code (a site never sends one). A field missing
    (NULL) is refused by the column's NOT NULL, where the feed always has it."""
    get = fields.get
    row = [get(c) for c in CALL_COLUMNS]  # a column the feed does not carry is NULL
    cost = get("cost")
    row[_AUTH_CODE] = ""
    row[_COST_MICROS] = None if cost is None else int(Decimal(str(cost)) * MICROS)
    extra = get("extra")
    row[_EXTRA] = _encode_json(extra) if extra else "{}"
    return tuple(row)


@dataclass(frozen=True, slots=True)
class StoredCalls:
    """The calls of one site, source, direction, call class and currency that one batch added to the store."""

    site: str
    source: str
    direction: str
    call_class: str  # "" unrated
    currency: str  # "" unrated
    #: calls as reports count them (a transferred call once, on its first leg)
    calls: int
    #: talk time of every leg, in seconds
    talk: int
    #: cost of every leg, in millionths of the currency
    cost_micros: int


@dataclass(frozen=True, slots=True)
class CentralBatch:
    """What one batch stored: lines and calls (rows, every leg) new to the store, and entries it had already
    (re-deliveries); and the same by site, for the central collector's metrics."""

    lines: int
    calls: int
    known: int
    #: (site, source) -> (lines new to the store, those of them journalled with an error)
    lines_by: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    #: site -> entries it had already
    known_by: Mapping[str, int] = field(default_factory=dict)
    calls_by: tuple[StoredCalls, ...] = ()
    #: (site, rule, severity) -> alerts new to the central inbox
    alerts_by: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    #: site -> stored lines whose calls a newer revision replaced (a site's rerate or reparse)
    revised_by: Mapping[str, int] = field(default_factory=dict)
    #: site -> its confirmed point after this batch (`smdrd.store.confirm`), for the sites whose entries it linked
    confirmed_by: Mapping[str, int] = field(default_factory=dict)

    @property
    def revised(self) -> int:
        return sum(self.revised_by.values())


class CentralWriter(AsyncPart):
    """``await open()``, then `store` batches of published entries; ``await close()``."""

    def __init__(self, url: str, *, calls_days: int = 0) -> None:
        super().__init__(url)
        self._sites: dict[str, int] = {}
        #: ``[retention] calls_days`` of this store (0: details kept for ever), for `revision_cutoff`
        self.calls_days = calls_days

    def revision_cutoff(self) -> int:
        """The receipt time (UTC microseconds) before which a revision is not applied: retention (``smdrd prune``
        with this store's ``calls_days``) may have deleted the line's calls while their figures stay in the
        rollups, so there would be nothing to take away and the new figures would count twice. A day's margin
        for a call that started long before its line came. 0: every revision is applied."""
        if not self.calls_days:
            return 0
        return int((time.time() - (self.calls_days - 1) * 86_400) * 1_000_000)

    async def store(self, entries: Sequence[Mapping[str, Any]],
                    alerts: Sequence[Mapping[str, Any]] = (), *,
                    passed: Sequence[Mapping[str, Any]] = ()) -> CentralBatch:
        """Store ``entries`` (payloads as `smdrd.mqtt_payloads.read_journal_message` gives them) and ``alerts``
        (as `smdrd.mqtt_payloads.read_alert_message` gives them: into the inbox as ``<site>:<id>``) in one
        transaction, and move their sites' confirmed points; ``passed`` are entries refused for their values,
        never stored, that the points move over all the same (sending them again would not store them).

        Raises:
            Unwritable: the server cannot take it now; nothing of the batch was kept.
            EntryRefused: an entry's values were refused; nothing of the batch was kept.
        """
        try:
            return await self._store(entries, alerts, passed)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise Unwritable(failure(self.url, exc)) from exc
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise EntryRefused(str(exc).strip()) from exc
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # a field missing or of the wrong type
            raise EntryRefused(f"{type(exc).__name__}: {exc}") from exc

    async def _store(self, entries: Sequence[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]],
                     passed: Sequence[Mapping[str, Any]]) -> CentralBatch:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # lost, or not back yet after a reconnection that failed (the server still down): connect again
            await self.close()
            await self.open()
        conn = self.conn
        latest = _latest(entries, self.revision_cutoff())
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_BEGIN)  # the writers' lock and the staging tables: one round trip
            found = await self._site_ids(cur, {str(e["site"]) for e in (*latest.values(), *passed)})
            confirmed_by = await self._confirm(cur, found, [*entries, *passed])
            async with cur.copy(f"COPY central_lines_in ({', '.join(_LINE_COLUMNS)}) FROM STDIN") as copy:
                for e in latest.values():
                    await copy.write_row((found[e["site"]], e["id"], e["source"], e["peer"], e["received_at"],
                                          e["format"], e["raw"], e["status"], e.get("error"),
                                          int(e.get("revision") or 0)))
            await cur.execute(_MOVE_LINES)
            new_lines = await cur.fetchall()
            new = {(int(site), int(line), int(at)): int(line_id) for line_id, site, line, at in new_lines}
            revised: dict[tuple[int, int, int], int] = {}
            if any(e.get("revision") for e in latest.values()):
                await cur.execute(_REVISE_LINES)
                revised = {(int(site), int(line), int(at)): int(line_id)
                           for line_id, site, line, at in await cur.fetchall()}
            lines_by: dict[tuple[str, str], tuple[int, int]] = {}
            stored_by: dict[str, int] = {}  # site -> entries new to the store or revised
            revised_by: dict[str, int] = {}
            new_rows: list[tuple[object, ...]] = []
            revised_rows: list[tuple[object, ...]] = []
            learnt: dict[tuple[str, str], str] = {}  # (extension, site) -> the name the site's PBX gave it
            for key, e in latest.items():
                site = found[e["site"]]
                identity = (site, key[1], key[2])
                if (line_id := new.get(identity)) is not None:
                    rows = new_rows
                    if e["status"] != FLUSHED:  # counted as the site's smdrd_lines_received_total counts
                        n, errors = lines_by.get((e["site"], e["source"]), (0, 0))
                        lines_by[(e["site"], e["source"])] = (n + 1, errors + int(e["status"] == ERROR))
                elif (line_id := revised.get(identity)) is not None:
                    rows = revised_rows
                    revised_by[e["site"]] = revised_by.get(e["site"], 0) + 1
                else:
                    continue  # stored before, at this revision or a newer one
                stored_by[e["site"]] = stored_by.get(e["site"], 0) + 1
                rows.extend((line_id, site, *call_row_of(c)) for c in e["calls"])
                for number, name in published_names(e["calls"]):  # as the site's own writer learns them
                    learnt[(number, str(e["site"]))] = name
            # the entries that added nothing: delivered again, twice in this batch, or an older revision
            known_by = {site: n - stored_by.get(site, 0) for site, n in Counter(str(e["site"]) for e in entries).items()
                        if n > stored_by.get(site, 0)}
            if revised:  # their calls replaced: no new call for the metrics
                await _replace_calls(cur, list(revised.values()), revised_rows)
            calls_by: list[StoredCalls] = []
            calls = 0
            names = {i: n for n, i in found.items()}
            for site, source, direction, cls, currency, legs, first, talk, micros in await _move_calls(cur, new_rows):
                calls += int(legs)
                calls_by.append(StoredCalls(names[int(site)], str(source), str(direction), str(cls),
                                            str(currency), int(first), int(talk), int(micros)))
            if learnt:  # each site's names, never an edited one (`LEARN_SITE_NAME`)
                await cur.executemany(LEARN_SITE_NAME, name_rows(
                    ((number, name, at) for (number, at), name in sorted(learnt.items())), int(time.time())))
            alerts_by = await self._alerts(cur, alerts)
        self._sites.update(found)  # committed: the sites added are there for good
        return CentralBatch(len(new_lines), calls, sum(known_by.values()), lines_by, known_by, tuple(calls_by),
                            alerts_by, revised_by, confirmed_by)

    async def _confirm(self, cur: psycopg.AsyncCursor[Any], found: Mapping[str, int],
                       entries: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """The links of ``entries`` that carry ``prev`` kept, and each of their sites' confirmed point moved over
        them (`smdrd.store.confirm.advance`), in this batch's transaction; the points, by site name.

        A site without a point yet starts at the lowest ``prev`` of this batch, its first linked one (a new
        site's first entry has ``prev`` 0): whether it published before its payloads carried ``prev``, or its
        lines here were all pruned by retention, or this store is new, the point never sends the site back
        before what it is sending now (lines pruned here would be stored, and their calls counted, again). An
        entry lost before the first linked batch is not the point's to find."""
        linked: dict[int, dict[int, int]] = {}  # site id -> position -> prev
        for e in entries:
            prev = e.get("prev")
            if prev is None or e.get("revision") or str(e["site"]) not in found:
                continue
            links = linked.setdefault(found[str(e["site"])], {})
            position = int(e["id"])
            links[position] = min(int(prev), links.get(position, int(prev)))
        if not linked:
            return {}
        sites = sorted(linked)
        await cur.execute(_CONFIRMED_OF, (sites,))
        points: dict[int, int] = {}
        for site, point in await cur.fetchall():
            points[int(site)] = int(point) if point is not None else min(linked[int(site)].values())
        # The batch's own entries first: in the usual run of things they follow on from the point, and none of
        # them needs to be kept as a link (only those above a gap are).
        for site in sites:
            points[site] = advance(points[site], sorted(linked[site].items()))
        rows = [(site, position, prev) for site in sites for position, prev in linked[site].items()
                if position > points[site]]
        if rows:
            await cur.execute(_ADD_LINKS, tuple(map(list, zip(*rows, strict=True))))
        names = {i: n for n, i in found.items()}
        out: dict[str, int] = {}
        for site in sites:
            point = points[site]
            while True:
                await cur.execute(_LINKS_ABOVE, (site, point, _LINK_SLICE))
                above = [(int(a), int(b)) for a, b in await cur.fetchall()]
                moved = advance(point, above)
                if not above or moved != above[-1][0] or len(above) < _LINK_SLICE:
                    point = moved
                    break
                point = moved
            await cur.execute(_DROP_LINKS, (site, point))
            await cur.execute(_SAVE_CONFIRMED, (site, point))
            out[names[site]] = point
        return out

    async def confirmed(self) -> dict[str, int]:
        """Every site's confirmed point, by name (the collector publishes them all at each connection).

        Raises:
            Unwritable: the server cannot answer now.
        """
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                await self.close()
                await self.open()
            async with self.conn.transaction(), self.conn.cursor() as cur:
                await cur.execute(_ALL_CONFIRMED)
                return {str(name): int(point) for name, point in await cur.fetchall()}
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise Unwritable(failure(self.url, exc)) from exc

    async def _alerts(self, cur: psycopg.AsyncCursor[Any], alerts: Sequence[Mapping[str, Any]]
                      ) -> dict[tuple[str, str, str], int]:
        """``alerts`` into the inbox; the new ones by (site, rule, severity)."""
        if not alerts:
            return {}
        rows = {f"{a['site']}:{a['id']}": a for a in alerts}
        now = int(time.time() * 1_000_000)
        await cur.execute(_INSERT_ALERTS, (
            list(rows), [str(a["rule"]) for a in rows.values()], [str(a["severity"]) for a in rows.values()],
            [int(a["created_at"]) for a in rows.values()],
            [_encode_json({k: v for k, v in a.items() if k != "created_at"}) for a in rows.values()],
            [now] * len(rows)))
        out: dict[tuple[str, str, str], int] = {}
        for (alert_id,) in await cur.fetchall():
            a = rows[str(alert_id)]
            key = (str(a["site"]), str(a["rule"]), str(a["severity"]))
            out[key] = out.get(key, 0) + 1
        return out

    async def _site_ids(self, cur: psycopg.AsyncCursor[Any], names: set[str]) -> dict[str, int]:
        """Each site name's id, the sites not known yet added (under the writers' lock: one at a time)."""
        ids = {n: self._sites[n] for n in names if n in self._sites}
        missing = sorted(names - ids.keys())
        if missing:
            for name in missing:
                await cur.execute(_ADD_SITE, (name,))
            await cur.execute(_FIND_SITES, (missing,))
            ids.update({str(n): int(i) for n, i in await cur.fetchall()})
        return ids
