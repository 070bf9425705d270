"""NEC SV8100 / SV9100 / SL1000 / SL1100 / SL2100 SMDR report: fixed-width printer lines. No I/O here.

Layout (NEC SL1100/SL2100 Features & Specifications, "SMDR Report Format with PRG 35-02-14 Set to '1'"; the
same 0-based slices in ADFDiesel/nec-smdr, "only tested on the SV9100"): `SLICES`, read as the toolkit layout
`LAYOUT` (`TOKENS` for collapsed lines, below). Each page starts with a header: 60 spaces, the date
``MM/DD/YYYY``, ``PAGE`` and the page number, then a line of column titles. Both are skipped (``None``); the
header's year is remembered, because records carry ``MM/DD`` only. Until a header arrives the year is the
context's ``year``, else the year of ``context.now`` (or today) with a date in the future taken as last year. A
record dated well before its page header (December header, January record) is the next year.

Times are ``HH:MM`` (``time_resolution`` 60); duration is ``HH:MM:SS`` talk time; there is no ring time.
``NO ANSWER`` in the account column marks an unanswered call. Lines whose whitespace was collapsed (as in the
manual's own example ``PIN 10:53 12/09 022 2142623801 NO ANSWER``) are read by tokens instead.

Caller names (SL1000/SL1100/SL2100 manuals, "SMDR Enhanced for Caller ID"; PRG 35-02-17 "Print Account Code or
Caller Name of Incoming Call", 0 = account code, 1 = caller name): with names on, the ACCOUNT column of an
**incoming** record holds the caller's name, up to 16 characters, and with PRG 35-02-18 = 1 (line feed) a
``NEXT`` line ("Calling Party Name for previous record") follows with the name. The name goes to
``extra["caller_name"]``, never to ``account``. The format option ``account_column`` says what the column of an
incoming record holds: ``"account"`` (PRG 35-02-17 = 0), ``"caller_name"`` (= 1), or ``"auto"`` (the default:
decided from the data, a name being any text that is not all digits, since account codes are digits).
Outgoing records always carry the account code there.

A ``NEXT`` line is joined to the record before it: when its text starts with the name already read it is the
whole name, else it is the rest of a name the column cut at 16 characters and is appended. So that nothing is
emitted before its ``NEXT``, an incoming record with a name is held until the next line when the name fills
the column (it cannot be whole) or once a ``NEXT`` line has been seen on the stream (line-feed mode); every
other record is emitted at once. A held record is released by the next line (or at the end of the stream).
A ``NEXT`` line that follows a record already emitted (a name shorter than the column before line-feed mode was
seen) cannot change it and is skipped; its raw line stays in the journal.

Direction comes from the class code: ``POT``/``POTA``/``POTP``/``POTW``/``IVOT``/``IVOTP``/``IDOT`` outgoing,
``PIN``/``IVIN``/``IDIN`` incoming, ``ICM``/``SDTA`` internal, ``ALB``/``BRD`` failed outgoing attempts (all
lines busy, toll restriction). ``BFL`` (buffer full),
``SAD`` and ``WAD`` (sensors) are not calls and are skipped; their raw lines stay in the journal (``NEXT``: above).

Multi-leg calls: a transferred call gives its first owner an ordinary record and every later owner a
``PTRS``/``ITRS`` record with its own talk time, on the same trunk line. So every trunk record gets the key
``<line>@<start>`` and a ``PTRS``/``ITRS`` record takes the key (and the direction) of the last record on its
line, with the next leg number, when it starts between that call's start and two hours after its end.

No handshake: the collector connects to the port set in PRG 10-20 and reads lines.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

from smdrd.errors import ParseError
from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Column, Layout, Slice, hms_seconds, seconds_text

#: 0-based [start, end) columns of a record.
SLICES = {
    "class": (0, 4), "time": (5, 10), "date": (11, 16), "line": (17, 21), "duration": (22, 30),
    "station": (31, 41), "number": (42, 62), "account": (63, 79),
}
OUTBOUND = frozenset({"POT", "POTA", "POTP", "POTW", "IVOT", "IVOTP", "IDOT", "ALB", "BRD"})
INBOUND = frozenset({"PIN", "IVIN", "IDIN"})
INTERNAL = frozenset({"ICM", "SDTA"})
TRANSFER = frozenset({"PTRS", "ITRS"})
NOT_CALLS = frozenset({"BFL", "SAD", "WAD"})
#: the class of a line carrying (the rest of) the previous record's caller name.
NEXT = "NEXT"
NO_ANSWER = "NO ANSWER"
#: what the ACCOUNT column of an incoming record may hold (format option ``account_column``).
ACCOUNT_COLUMN = ("auto", "account", "caller_name")
TITLES = "CLASS TIME  DATE  LINE DURATION  STATION    DIALLED No./CLI      ACCOUNT"
#: how long after a call's end a PTRS record on the same line may still belong to it.
TRANSFER_WINDOW = timedelta(hours=2)
MAX_OPEN_LINES = 1_000


def _hhmm(text: str) -> tuple[int, int]:
    if len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit() or not text.isascii():
        raise ValueError(f"expected HH:MM, got {text!r}")
    h, m = int(text[:2]), int(text[3:])
    if h > 23 or m > 59:
        raise ValueError(f"not a time of day: {text!r}")
    return h, m


def _mmdd(text: str) -> tuple[int, int]:
    if len(text) != 5 or text[2] != "/" or not (text[:2] + text[3:]).isdigit() or not text.isascii():
        raise ValueError(f"expected MM/DD, got {text!r}")
    return int(text[:2]), int(text[3:])


def _class(text: str) -> str:
    if text not in OUTBOUND and text not in INBOUND and text not in INTERNAL and text not in TRANSFER:
        raise ValueError(f"unknown class code {text!r}")
    return text


def _line(text: str) -> str:
    if not (text.isdigit() and text.isascii()):
        raise ValueError(f"expected a line number, got {text!r}")
    return text


#: a record that keeps its columns: what `parse` converts, in the order it checks it, then the texts. Each parser
#: binds ``date`` to its own converter (`NecSVParser._date`), which gives the day its year.
LAYOUT = Layout("nec-sv", [
    Slice("class", *SLICES["class"], _class),
    Slice("time", *SLICES["time"], _hhmm),
    Slice("date", *SLICES["date"], _mmdd),
    Slice("duration", *SLICES["duration"], hms_seconds, optional=True, default=0),
    Slice("line", *SLICES["line"], _line, optional=True),
    *(Slice(name, a, b) for name, (a, b) in SLICES.items() if name in ("station", "number", "account")),
])
#: a record whose whitespace was collapsed, once `NecSVParser._tokens` has sorted its tokens into the fields of
#: `SLICES` (in that order): the same fields and converters by position.
TOKENS = Layout("nec-sv", [Column(f.name, list(SLICES).index(f.name), f.convert, f.optional, f.default)
                           for f in LAYOUT.fields])


def _reads_collapsed(row: list[str]) -> bool:
    """A collapsed record's tokens (`NecSVParser._tokens`) convert with `TOKENS`."""
    try:
        TOKENS.extract(row)
    except ParseError:
        return False
    return True


class NecSVParser(Parser):
    """NEC SV8100 / SV9100 / SL series SMDR."""

    name = "nec-sv"
    description = "NEC SV8100/SV9100/SL SMDR (fixed width, class codes; year from page headers)"
    option_names = frozenset({"account_column"})
    time_resolution = 60

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        self._header_date: date | None = None
        self._layout = LAYOUT.with_converters(date=self._date)
        self._tokens_layout = TOKENS.with_converters(date=self._date)
        #: trunk line -> the last call on it: (call key, its start, its latest end, direction, last leg).
        self._lines: OrderedDict[str, tuple[str, datetime, datetime, Direction, int]] = OrderedDict()
        column = self.context.options.get("account_column", "auto")
        if column not in ACCOUNT_COLUMN:
            raise ValueError(f"nec-sv option 'account_column' must be one of {', '.join(ACCOUNT_COLUMN)}, "
                             f"got {column!r}")
        self._account_column: str = column
        #: an incoming record waiting for a possible NEXT line, and its name's column as written (not stripped).
        self._held: tuple[CallRecord, str] | None = None
        #: a NEXT line was seen: the PBX prints names on their own lines (PRG 35-02-18 = 1).
        self._line_feed = False

    def _page_header(self, line: str) -> bool:
        text = line.strip()
        if text.startswith("CLASS") and "TIME" in text:
            return True
        if "PAGE" not in text:
            return False
        head = text.split()[0] if text.split() else ""
        if len(head) == 10 and head[2] == "/" and head[5] == "/" and head.replace("/", "").isdigit() \
                and head.isascii():
            try:
                self._header_date = date(int(head[6:]), int(head[:2]), int(head[3:5]))
            except ValueError:
                raise self.error(f"page header date is not a date: {head!r}", "header") from None
            return True
        return False

    def _year(self, month: int, day: int) -> int:
        if self._header_date is not None:
            year = self._header_date.year
            # a January record under a December page header belongs to the next year
            if (month - self._header_date.month) < -6:
                year += 1
            return year
        if self.context.year is not None:
            return self.context.year
        now = self.context.now or datetime.now(self.context.timezone)
        try:
            future = date(now.year, month, day) > now.date() + timedelta(days=1)
        except ValueError:  # 02/29 outside a leap year: let the caller report the date
            future = False
        return now.year - 1 if future else now.year

    def _date(self, text: str) -> date:
        """``MM/DD`` in its year (see `_year`)."""
        month, day = _mmdd(text)
        return date(self._year(month, day), month, day)

    def _split(self, line: str) -> tuple[str, Layout, str | list[str]]:
        """A record's class code, and the layout to read it with: by columns when the line keeps them, else by
        tokens (collapsed whitespace)."""
        if len(line) >= 31 and line[4] == " " and line[7] == ":" and line[13] == "/" and line[16] == " ":
            a, b = SLICES["class"]
            return line[a:b].strip(), self._layout, line
        row = self._tokens(line)
        return row[0], self._tokens_layout, row

    @staticmethod
    def _tokens(line: str) -> list[str]:
        """The tokens of a collapsed record, sorted into the fields of `SLICES` (in that order)."""
        tokens = line.split()
        f = dict.fromkeys(SLICES, "")
        if len(tokens) < 3:
            return list((f | {"class": tokens[0] if tokens else ""}).values())
        f["class"], f["time"], f["date"] = tokens[0], tokens[1], tokens[2]
        rest = tokens[3:]
        if rest and rest[0].isdigit() and len(rest[0]) <= 4:
            f["line"] = rest.pop(0)
        if rest and rest[0].count(":") == 2:
            f["duration"] = rest.pop(0)
        if rest[-2:] == ["NO", "ANSWER"]:
            f["account"] = NO_ANSWER
            rest = rest[:-2]
        if len(rest) == 1:
            # a collapsed record with one party left: the number (an unanswered call has no station)
            f["number"] = rest[0]
        elif rest:
            f["station"], f["number"] = rest[0], rest[1]
            if len(rest) > 2 and not f["account"]:
                f["account"] = " ".join(rest[2:])
        return list(f.values())

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        if not line.strip():
            return None
        if line.split(None, 1)[0] == NEXT:
            return self._next_line(line)
        record = self._record(line)  # first: a line in error leaves a held record held
        held = self._release()
        if record is None:
            return held or None
        column = line[SLICES["account"][0]:SLICES["account"][1]]
        name = record.extra.get("caller_name", "")
        width = SLICES["account"][1] - SLICES["account"][0]
        if name and (self._line_feed or len(name) >= width or len(column.rstrip()) >= width):
            self._held = (record, column if column.strip() == name else name)
            return held
        return (*held, record)

    def flush(self) -> Sequence[CallRecord]:
        return self._release()

    def _release(self) -> tuple[CallRecord, ...]:
        held, self._held = self._held, None
        return (held[0],) if held is not None else ()

    def _next_line(self, line: str) -> Sequence[CallRecord] | None:
        """A ``NEXT`` line: the held record's name, whole or continued (see the module docstring)."""
        self._line_feed = True
        text = line.strip()[len(NEXT):].strip()
        if self._held is None:
            return None
        record, written = self._held
        self._held = None
        first = written.strip()
        # a cut at a word's end leaves the column's padding between the two parts: one space is kept
        name = text if text.startswith(first) else " ".join((written + text).split())
        return (replace(record, extra={**record.extra, "caller_name": name}),)

    def _is_name(self, text: str) -> bool:
        """Whether an incoming record's ACCOUNT text is a caller name (option ``account_column``)."""
        if self._account_column == "auto":
            return bool(text) and not (text.isdigit() and text.isascii())
        return self._account_column == "caller_name"

    def _record(self, line: str) -> CallRecord | None:
        if self._page_header(line):
            return None
        cls, layout, fields = self._split(line.rstrip())
        if cls in NOT_CALLS:
            return None
        f = layout.extract(fields)
        hour, minute = f["time"]
        day: date = f["date"]
        start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.context.timezone)
        duration: int = f["duration"]
        trunk: str = f["line"]
        account: str = f["account"]
        answered = account != NO_ANSWER and cls not in ("ALB", "BRD")
        if account == NO_ANSWER:
            account = ""

        leg = 0
        transfer = ""
        key = f"{trunk}@{start.isoformat()}" if trunk else ""
        if cls in OUTBOUND:
            direction = Direction.OUTBOUND
        elif cls in INBOUND:
            direction = Direction.INBOUND
        elif cls in INTERNAL:
            direction = Direction.INTERNAL
        else:
            transfer = cls
            direction = Direction.INBOUND
            held = self._lines.get(trunk) if trunk else None
            if held is not None and held[1] <= start <= held[2] + TRANSFER_WINDOW:
                key, direction, leg = held[0], held[3], held[4] + 1
        if trunk and direction is not Direction.INTERNAL:
            end = start + timedelta(seconds=duration)
            previous = self._lines.pop(trunk, None)
            if previous is not None and previous[0] == key:
                self._lines[trunk] = (key, previous[1], max(end, previous[2]), direction, leg)
            else:
                self._lines[trunk] = (key, start, end, direction, leg)
            if len(self._lines) > MAX_OPEN_LINES:
                self._lines.popitem(last=False)
        extra = {"class": cls}
        if direction is Direction.INBOUND and account and self._is_name(account):
            extra["caller_name"], account = account, ""
        return CallRecord(
            format=self.name,
            start=start,
            duration=duration,
            ring=None,
            direction=direction,
            extension=f["station"],
            number=f["number"],
            trunk=trunk,
            account=account,
            leg=leg,
            answered=answered,
            transfer=transfer,
            call_key=key,
            extra=extra,
        )

    @staticmethod
    def page_header(day: date, page: int = 1) -> str:
        """The first line of a report page (the line that carries the year)."""
        return f"{'':60}{day:%m/%d/%Y} PAGE {page:3d}"

    @classmethod
    def header_lines(cls, at: datetime | None = None) -> list[str]:
        """A page header for the day the stream starts (today by default) and the column titles."""
        return [cls.page_header(at.date() if at is not None else date.today()), TITLES]

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One 79-column record (PRG 35-02-14 = 1)."""
        if record.transfer in TRANSFER:
            code = record.transfer
        elif record.direction is Direction.INBOUND:
            code = "PIN"
        elif record.direction is Direction.OUTBOUND:
            code = record.extra.get("class", "POT") if record.extra.get("class") in OUTBOUND else "POT"
        else:
            code = "ICM"
        account = (record.account or record.extra.get("caller_name", "")) if record.answered else NO_ANSWER
        s = record.start
        return [f"{code:<4} {s:%H:%M} {s:%m/%d} {record.trunk[-4:]:>4} {seconds_text(record.duration)[-8:]} "
                f"{record.extension[:10]:<10} {record.number[:20]:<20} {account[:16]:<16}".rstrip()]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        """0.9 when a record that keeps its columns reads with `LAYOUT`, else 0.8 for a page header or a record
        whose whitespace was collapsed (as the manuals print their samples) that reads with `TOKENS`."""
        score = 0.0
        for line in lines[:20]:
            if LAYOUT.matches(line.rstrip()):
                score = max(score, 0.9)
            else:
                page_header = len(line) >= 74 and line[:60].strip() == "" and "PAGE" in line[60:]
                if page_header or (line.strip() and _reads_collapsed(cls._tokens(line))):
                    score = max(score, 0.8)
        return score
