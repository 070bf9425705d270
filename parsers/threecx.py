"""3CX CDR output: unquoted CSV, one line per call, field order chosen by the 3CX administrator. No I/O here.

Layout (3CX "CDR - Call Data Records" admin docs; the default field set in the order 3CX ships it, as used by
dorel14/3CX-Cdr-Server; one real line from that project is our fixture): see `DEFAULT_FIELDS`. 3CX sends no
header line; a line starting ``historyid`` (a header a collector wrote) is skipped.

3CX lets the administrator reorder or drop fields ("Configure CDR Output fields"), so the order is an option::

    [sources.format_options]
    fields = ["historyid", "callid", "duration", "time_start", "time_answered", "time_end", ...]
    utc = true   # 3CX writes times in UTC (default); false reads them in the source's timezone

Unknown names are kept in ``extra``. ``time_start``, ``time_end`` and one of ``from_no``/``from_dn`` are
needed. With the default order, a line that stops early (the administrator unticked the last fields) is read
as far as it goes when it reaches ``chain`` and its 20th field starts ``Chain:``: that marker proves the
order up to there (a real site sends exactly these 20 fields).

Times are ``YYYY/MM/DD HH:MM:SS``; ``duration`` is talk time ``HH:MM:SS``; ring time is start to answer (start
to end when unanswered: ``time_answered`` empty). Direction comes from
``from_type``/``to_type``/``final_type`` (``Line`` is a trunk, ``Extension``, ``Queue``, ``IVR``... are
internal): from a line is inbound, to a line is outbound, anything else internal. Without those fields,
``from_no`` of the form ``Ext.NNN`` marks an extension.

Multi-leg calls: 3CX writes one record per call, with the path it took (transfers, queues) in ``chain`` and
the ``final_*`` fields, so records are not joined; every vendor field is kept in ``extra``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Column, Layout, check_call_seconds, hms_seconds, seconds_text, ymd_hms

DEFAULT_FIELDS = (
    "historyid", "callid", "duration", "time_start", "time_answered", "time_end", "reason_terminated",
    "from_no", "to_no", "from_dn", "to_dn", "dial_no", "reason_changed", "final_number", "final_dn",
    "bill_code", "bill_rate", "bill_cost", "bill_name", "chain", "from_type", "to_type", "final_type",
    "from_dispname", "to_dispname", "final_dispname", "missed_queue_calls",
)
REQUIRED = ("time_start", "time_end")
_CORE = frozenset({"duration", "time_start", "time_answered", "time_end", "callid"})


def _blank_or_hms(text: str) -> int:
    return hms_seconds(text) if text else 0


class ThreeCXParser(Parser):
    """3CX CDR (CSV, configurable field order)."""

    name = "3cx"
    description = "3CX CDR output (CSV, configurable field order; one record per call)"
    option_names = frozenset({"fields", "utc"})

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        fields = opts.get("fields", DEFAULT_FIELDS)
        if isinstance(fields, str) or not isinstance(fields, list | tuple) \
                or not all(isinstance(x, str) for x in fields):
            raise ValueError(f"3cx option 'fields' must be a list of 3CX field names, got {fields!r}")
        missing = [r for r in REQUIRED if r not in fields]
        if missing or not ({"from_no", "from_dn"} & set(fields)):
            raise ValueError(f"3cx option 'fields' must name time_start, time_end and from_no or from_dn "
                             f"(missing {', '.join(missing) or 'from_no/from_dn'})")
        self.fields: tuple[str, ...] = tuple(fields)
        utc = opts.get("utc", True)
        if not isinstance(utc, bool):
            raise ValueError(f"3cx option 'utc' must be true or false, got {utc!r}")
        self.utc = utc
        #: the converted fields, in the order they are checked; the field order is the administrator's.
        convert = {"time_start": self._time, "time_end": self._time, "time_answered": self._time_or_none,
                   "duration": _blank_or_hms}
        last = {name: i for i, name in enumerate(self.fields)}  # a name given twice: its last column, as in `f`
        self._layout = Layout(self.name, [Column(name, last[name], convert[name])
                                          for name in convert if name in last])

    def _time(self, text: str) -> datetime:
        if self.utc:
            t = ymd_hms(text, UTC)
            tz = self.context.timezone
            return t.astimezone(tz) if tz else t
        return ymd_hms(text, self.context.timezone)

    def _time_or_none(self, text: str) -> datetime | None:
        return self._time(text) if text else None

    def _default_prefix(self, row: Sequence[str]) -> bool:
        """A shorter row that is the default order cut after ``chain`` (see the module docstring)."""
        chain = DEFAULT_FIELDS.index("chain")
        return self.fields == DEFAULT_FIELDS and len(row) > chain and row[chain].startswith("Chain:")

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        try:
            rows = list(csv.reader([line]))
        except csv.Error as exc:
            raise self.error(f"not a CSV line: {exc}") from None
        row = rows[0] if rows else []
        if row and row[0].strip().lower() == "historyid":
            return None
        # 3CX ends every line with a comma, so one empty column more than the fields is normal.
        if len(row) < len(self.fields) and not self._default_prefix(row):
            raise self.error(f"expected {len(self.fields)} comma-separated fields, got {len(row)}")
        f = dict(zip(self.fields, row, strict=False))
        for i in range(len(self.fields), len(row)):
            if row[i]:
                f[f"field{i + 1}"] = row[i]
        v = self._layout.extract(row)
        start: datetime = v["time_start"]
        end: datetime = v["time_end"]
        answered_at: datetime | None = v.get("time_answered")
        if "duration" in v:
            duration: int = v["duration"]
        else:
            duration = int((end - answered_at).total_seconds()) if answered_at else 0
        ring = int(((answered_at or end) - start).total_seconds())
        if ring < 0:
            raise self.error("time_answered/time_end is before time_start", "time_start")
        check_call_seconds(self.name, duration=duration, ring=ring)

        g = f.get
        from_type, to_type, final_type = g("from_type", ""), g("to_type", ""), g("final_type", "")
        from_ext = from_type == "Extension" if from_type else g("from_no", "").startswith("Ext.")
        from_dn = g("from_dn", "") or g("from_no", "").removeprefix("Ext.")
        if from_type == "Line" or (not from_type and not from_ext):
            direction = Direction.INBOUND
            number = g("from_no", "")
            # the final number is the one that took the call ("in a transfer ... the final connected number");
            # without final_type among the fields, its "Ext." prefix says it is an extension
            final_ext = final_type == "Extension" if final_type else g("final_number", "").startswith("Ext.")
            extension = g("final_dn", "") if final_ext else (g("to_dn", "") or g("to_no", ""))
            trunk = from_dn
        elif to_type == "Line" or final_type == "Line" or (not to_type and not final_type):
            direction = Direction.OUTBOUND
            extension = from_dn
            number = g("dial_no", "") or g("to_no", "")
            trunk = g("to_dn", "") if to_type == "Line" else g("final_dn", "")
        else:
            direction = Direction.INTERNAL
            extension = from_dn
            number = g("to_dn", "") or g("to_no", "")
            trunk = ""
        return (CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=extension,
            number=number,
            trunk=trunk,
            call_id=g("callid", ""),
            answered=answered_at is not None,
            transfer=g("reason_changed", ""),
            extra={k: v for k, v in f.items() if v and k not in _CORE},
        ),)

    @classmethod
    def extension_name(cls, record: CallRecord) -> str:
        """The display name 3CX gives the extension's side of the call: ``from_dispname`` when the extension
        called, ``final_dispname`` or ``to_dispname`` when it was called (whichever side is the extension)."""
        g, ext = record.extra.get, record.extension
        sides = (("from_dn", "from_dispname"), ("from_no", "from_dispname")) \
            if record.direction is not Direction.INBOUND else (
            ("final_dn", "final_dispname"), ("to_dn", "to_dispname"))
        for number, name in sides:
            if ext and g(number, "").removeprefix("Ext.") == ext:
                return g(name, "").strip()
        return ""

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One line in 3CX's default field order, times in UTC."""
        start = record.start.astimezone(UTC) if record.start.tzinfo else record.start
        ring = record.ring or 0
        answered = start + timedelta(seconds=ring) if record.answered else None
        end = start + timedelta(seconds=ring + record.duration)
        ext, num, trunk = record.extension, record.number, record.trunk or "10000"
        if record.direction is Direction.INBOUND:
            from_no, to_no, from_dn, to_dn, dial = num, ext, trunk, ext, ext
            types = ("Line", "Extension", "Extension")
            final_no, final_dn = ext, ext
        elif record.direction is Direction.OUTBOUND:
            from_no, to_no, from_dn, to_dn, dial = f"Ext.{ext}", num, ext, trunk, num
            types = ("Extension", "Line", "Line")
            final_no, final_dn = num, trunk
        else:
            from_no, to_no, from_dn, to_dn, dial = f"Ext.{ext}", f"Ext.{num}", ext, num, num
            types = ("Extension", "Extension", "Extension")
            final_no, final_dn = f"Ext.{num}", num

        def when(t: datetime | None) -> str:
            return t.strftime("%Y/%m/%d %H:%M:%S") if t else ""

        x = record.extra.get
        row = [
            x("historyid", "Call 1"), record.call_id, seconds_text(record.duration), when(start),
            when(answered), when(end), x("reason_terminated", "TerminatedBySrc"), from_no, to_no, from_dn,
            to_dn, dial, record.transfer, final_no, final_dn, x("bill_code", ""), "", "", "",
            f"Chain: {from_no};{to_no};", *types, "", "", "", "",
        ]
        return [",".join(v.replace(",", " ") for v in row) + ","]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        score = 0.0
        for line in lines[:20]:
            f = line.split(",")
            if len(f) >= 20 and f[0].startswith("Call ") and len(f[3]) == 19 and f[3][4] == "/":
                score = max(score, 0.95 if any(x.startswith("Chain:") for x in f) else 0.7)
        return score
