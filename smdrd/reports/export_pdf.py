"""A report as a printable PDF, written with fpdf2.

One document: the title, the header block (period, time zone, filters, currency), a chart where the kind has
one (cost per day for ``days``, the ten costliest rows for the per-extension, department, destination and trunk
reports), then the table with its heading repeated on every page (a details section's own heading too, as
"201 Anna (continued)", so that a page says whose calls it lists) and a bold totals row, and "Page N of M" with
the period at the foot of every page. A value too wide for its column is cut with "…", except a dialled number
(`_WHOLE`): the columns are sized on the first rows, and a longer number wraps within its row instead.
Durations are h:mm:ss and money carries its currency, as in the terminal table. The page is A4 or Letter
(``paper``), portrait, or landscape for a table of more than seven columns; the margins leave room for either
printer.

Text is drawn with DejaVu Sans when Debian's ``fonts-dejavu-core`` is installed (Latin, Greek, Cyrillic,
Arabic, Hebrew and more, but no Chinese, Japanese or Korean: fpdf2 draws nothing for a glyph a font lacks, so
a department 東京 came out blank). Characters DejaVu lacks are drawn with a CJK font, `CJK_FONTS` (Debian's
``fonts-wqy-zenhei``), loaded only for a document that needs it; with none installed, or for a character
neither has, a visible U+FFFD takes its place, logged once. Without DejaVu, text is set in the PDF core font
Helvetica, which holds Latin-1 only, and other characters become ``?``. fpdf2
writes every string as a PDF text object (escaped), so nothing from a PBX can become PDF syntax. The document is
built in memory: the ``calls`` listing is cut at `smdrd.reports.export.PDF_MAX_ROWS`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import structlog
from fpdf import FPDF
from fpdf.enums import WrapMode, XPos, YPos
from fpdf.fonts import TTFFont

from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports.export import Section, extra_totals, header_lines, title_of
from smdrd.reports.queries import DETAIL_KINDS, DIRECTIONS, Column, Report
from smdrd.reports.render import hms, local_time

__all__ = ["CJK_FONTS", "FONT_DIR", "write_pdf"]

log = structlog.get_logger(__name__)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
#: fonts for the characters DejaVu Sans lacks (Chinese, Japanese, Korean), the first installed one is used:
#: Debian's ``fonts-wqy-zenhei`` (every CJK script, Hangul too), ``fonts-droid-fallback`` (no Hangul).
CJK_FONTS = (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
             Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"))
#: what a character no installed font has is drawn as: visible, where fpdf2 would draw nothing.
REPLACEMENT = "\ufffd"
_FONT = "smdrd"
_FALLBACK = "smdrd-cjk"
_warned = threading.Event()
_ROW = 5.0
_MARGIN = 12.0
_NUMERIC = {"int", "seconds", "average", "minutes", "money"}
#: rows measured to size the columns (a long listing is sized by its first rows).
_MEASURED_ROWS = 300
#: columns never cut with an ellipsis: the dialled number is what a call is looked up by. Their width is never
#: shrunk for the text columns, is at least `_WHOLE_FLOOR` wide (an international number with a prefix), and a
#: value wider than that (a later extension's, or one past the measured rows) wraps onto more lines of its row.
_WHOLE = {"number"}
_WHOLE_FLOOR = "+" + "0" * 19
_CHART_BARS = 10


def cell_text(value: Any, kind: str, currency: str) -> str:
    """A value as the page shows it: h:mm:ss, money with its currency, ``None`` empty."""
    if value is None:
        return ""
    if kind in ("seconds", "average") and isinstance(value, int | Decimal):
        return hms(value)
    if kind == "money" and currency:
        return f"{value} {currency}"
    return str(value)


class _Document(FPDF):
    """fpdf2 with the report's font and a footer of the period and the page number."""

    def __init__(self, paper: str, landscape: bool, foot: str) -> None:
        super().__init__(orientation="L" if landscape else "P", unit="mm", format=paper.upper())
        self.foot = foot
        self.unicode = (FONT_DIR / "DejaVuSans.ttf").is_file() and (FONT_DIR / "DejaVuSans-Bold.ttf").is_file()
        if self.unicode:
            self.add_font(_FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
            self.add_font(_FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.family = _FONT if self.unicode else "helvetica"
        #: the code points DejaVu has, and those of the CJK font once loaded (None: not looked for yet).
        self.glyphs: set[int] = self.code_points(_FONT) if self.unicode else set()
        self.fallback: set[int] | None = None
        self.fallback_font = ""
        self.ellipsis = "…" if self.unicode else "..."
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(True, margin=_MARGIN + 4)

    def text_of(self, text: str) -> str:
        """``text`` as the fonts can draw it: a character no font has becomes `REPLACEMENT` (``?`` in
        Latin-1 Helvetica), never a blank."""
        if not self.unicode:
            return text.encode("latin-1", "replace").decode("latin-1")
        if text.isascii():
            return text
        glyphs = self.glyphs
        missing = {ch for ch in text if ord(ch) not in glyphs and ch.isprintable()}
        if not missing:
            return text
        if self.fallback is None:
            self.fallback = self.load_fallback()
        fallback = self.fallback
        lost = {ch for ch in missing if ord(ch) not in fallback}
        if not lost:
            return text
        if not _warned.is_set():
            _warned.set()
            log.warning("reports.pdf_glyphs_missing", characters="".join(sorted(lost))[:20], shown_as="U+FFFD",
                        font=self.fallback_font or "none of CJK_FONTS (apt-get install fonts-wqy-zenhei)")
        return "".join(REPLACEMENT if ch in lost else ch for ch in text)

    def load_fallback(self) -> set[int]:
        """Add the first installed of `CJK_FONTS` as fpdf2's fallback font (for bold text too); its code
        points, or none. Loaded on the first character DejaVu lacks: parsing it costs a tenth of a second."""
        for path in CJK_FONTS:
            if not path.is_file():
                continue
            try:
                self.add_font(_FALLBACK, "", str(path))
            except Exception as exc:  # a damaged or foreign font file: the text is replaced, not the report lost
                log.warning("reports.pdf_font_unreadable", path=str(path), reason=type(exc).__name__)
                continue
            self.set_fallback_fonts([_FALLBACK], exact_match=False)
            self.fallback_font = str(path)
            # fontTools warns on every subset that it drops wqy-zenhei's bitmap strikes ("BDF "), as it should:
            # the PDF draws the outlines. Noise in the daemon's log, once per document.
            logging.getLogger("fontTools.subset").setLevel(logging.ERROR)
            return self.code_points(_FALLBACK)
        return set()

    def code_points(self, family: str) -> set[int]:
        """The characters the TrueType font ``family`` has a glyph for."""
        font = self.fonts[family]
        return set(font.cmap) if isinstance(font, TTFFont) else set()

    def font(self, size: float, bold: bool = False) -> None:
        self.set_font(self.family, "B" if bold else "", size)

    def fitted(self, text: str, width: float) -> str:
        """``text`` cut with an ellipsis to fit a cell ``width`` wide."""
        text = self.text_of(text)
        room = width - 2 * self.c_margin
        if self.get_string_width(text) <= room:
            return text
        while text and self.get_string_width(text + self.ellipsis) > room:
            text = text[:-1]
        return text + self.ellipsis

    def footer(self) -> None:
        self.set_y(-_MARGIN)
        self.font(7)
        self.set_text_color(90)
        width = self.w - 2 * _MARGIN - 30
        self.cell(width, 4, self.fitted(self.foot, width))
        self.cell(30, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)


class _Table:
    """The report's table on a `_Document`: sized columns, a heading on every page, rows and totals."""

    def __init__(self, pdf: _Document, report: Report) -> None:
        self.pdf, self.report = pdf, report
        self.columns: Sequence[Column] = report.columns
        self.currency = str(report.meta.get("currency") or "")
        self.widths: list[float] = []
        #: the heading of the section being drawn, repeated "(continued)" over its rows on a new page.
        self.section: str | None = None

    def use(self, columns: Sequence[Column]) -> None:
        """Lay out the next table with ``columns`` (a section's own, such as a details summary)."""
        if list(columns) != list(self.columns):
            self.columns, self.widths = columns, []

    def size(self, sample: Sequence[dict[str, Any]], totals: dict[str, Any] | None) -> None:
        """Column widths from the titles and ``sample``, shrunk (text columns first) to the page's width."""
        pdf = self.pdf
        pdf.font(8, bold=True)
        natural = [pdf.get_string_width(pdf.text_of(self.title(c))) + 2 * pdf.c_margin + 1 for c in self.columns]
        widest = {"call_class": max(CALL_CLASSES, key=len), "direction": max(DIRECTIONS, key=len),
                  "number": _WHOLE_FLOOR}
        for rows, bold in ((sample, False), ([totals] if totals else [], True), ([widest], False)):
            pdf.font(8, bold=bold)
            for row in rows:
                for i, c in enumerate(self.columns):
                    text = pdf.text_of(self.text(row, c))
                    natural[i] = max(natural[i], pdf.get_string_width(text) + 2 * pdf.c_margin + 1)
        room = pdf.w - 2 * _MARGIN
        kept = [c.kind in _NUMERIC or c.key in _WHOLE for c in self.columns]
        numeric = sum(w for w, k in zip(natural, kept, strict=True) if k)
        texts = sum(natural) - numeric
        if sum(natural) > room and texts > 0:
            scale = max(0.2, (room - numeric) / texts)
            natural = [w if k else w * scale for w, k in zip(natural, kept, strict=True)]
        if sum(natural) > room:
            natural = [w * room / sum(natural) for w in natural]
        self.widths = natural

    def title(self, c: Column) -> str:
        return c.title.removesuffix(" (s)")

    def text(self, row: dict[str, Any], c: Column) -> str:
        value = row.get(c.key)
        return cell_text(local_time(value) if c.key == "start" else value, c.kind, self.currency)

    def head(self) -> None:
        pdf = self.pdf
        pdf.font(8, bold=True)
        pdf.set_fill_color(235)
        for c, w in zip(self.columns, self.widths, strict=True):
            pdf.cell(w, _ROW + 1, pdf.fitted(self.title(c), w), border="B", fill=True,
                     align="R" if c.kind in _NUMERIC else "L")
        pdf.ln()

    def row(self, row: dict[str, Any], *, bold: bool = False) -> None:
        pdf = self.pdf
        pdf.font(8, bold=bold)
        wrapped = self.wrapped(row)
        height = _ROW * max((len(lines) for lines in wrapped.values()), default=1)
        if pdf.will_page_break(height):
            pdf.add_page()
            if self.section is not None:  # whose calls these are: an extension's go on over pages
                pdf.font(11, bold=True)
                pdf.cell(0, 8, pdf.text_of(f"{self.section} (continued)"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.head()
            pdf.font(8, bold=bold)
        top = pdf.get_y()
        for i, (c, w) in enumerate(zip(self.columns, self.widths, strict=True)):
            if i in wrapped:  # a whole number on lines of its own, the other cells on the row's first line
                x = pdf.get_x()
                for n, line in enumerate(wrapped[i]):
                    pdf.set_xy(x, top + n * _ROW)
                    pdf.cell(w, _ROW, line)
                pdf.set_xy(x + w, top)
                continue
            text = self.text(row, c)
            if not text and not bold:  # an empty cell is only room: fpdf2's cell costs as much as a full one
                pdf.set_x(pdf.get_x() + w)
                continue
            pdf.cell(w, _ROW, pdf.fitted(text, w), border="T" if bold else 0,
                     align="R" if c.kind in _NUMERIC else "L")
        pdf.ln(height)

    def wrapped(self, row: dict[str, Any]) -> dict[int, list[str]]:
        """The lines of each `_WHOLE` cell of ``row`` too wide for its column, by column index (none when all
        fit, the common case: one width measured per cell, as `_Document.fitted` does anyway)."""
        pdf, out = self.pdf, {}
        for i, (c, w) in enumerate(zip(self.columns, self.widths, strict=True)):
            if c.key not in _WHOLE:
                continue
            text = pdf.text_of(self.text(row, c))
            if text and pdf.get_string_width(text) > w - 2 * pdf.c_margin:
                lines = pdf.multi_cell(w, _ROW, text, wrapmode=WrapMode.CHAR, dry_run=True, output="LINES")
                out[i] = [str(line) for line in lines] if isinstance(lines, list) else [text]
        return out


def _header(pdf: _Document, report: Report) -> None:
    pdf.font(16, bold=True)
    pdf.cell(0, 9, pdf.text_of(title_of(report)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.font(9)
    for label, value in header_lines(report):
        pdf.font(9, bold=True)
        pdf.cell(24, 5, label)
        pdf.font(9)
        pdf.multi_cell(0, 5, pdf.text_of(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def _chart_bars(report: Report, rows: Sequence[dict[str, Any]]) -> list[tuple[str, Decimal]]:
    """What the chart shows: cost per day (``days``), or the costliest rows (at most `_CHART_BARS`)."""
    if report.kind == "days":  # labelled by day of the month, or by month (MM-01) over a longer range
        long = len(rows) > 31
        return [("" if long and not str(r["day"]).endswith("-01") else str(r["day"])[5 if long else 8:],
                 Decimal(r["cost"])) for r in rows]
    label_key = {"extensions": "extension", "departments": "department", "destinations": "code",
                 "trunks": "trunk"}.get(report.kind)
    if label_key is None or report.meta.get("by_class"):
        return []
    ranked = sorted(rows, key=lambda r: -Decimal(r.get("cost") or 0))[:_CHART_BARS]
    return [(str(r.get(label_key) or "(none)"), Decimal(r.get("cost") or 0)) for r in ranked]


def _chart(pdf: _Document, report: Report, rows: Sequence[dict[str, Any]], currency: str) -> None:
    """Bars of cost: vertical per day for ``days``, horizontal per row for the others."""
    bars = _chart_bars(report, rows)
    top = max((v for _, v in bars), default=Decimal(0))
    if not bars or top <= 0:
        return
    left, width = _MARGIN, pdf.w - 2 * _MARGIN
    pdf.font(9, bold=True)
    pdf.cell(0, 6, pdf.text_of(f"Cost ({currency})" if currency else "Cost"), new_x=XPos.LMARGIN,
             new_y=YPos.NEXT)
    pdf.set_fill_color(70, 110, 170)
    pdf.font(6)
    if report.kind == "days":
        height, y = 30.0, pdf.get_y()
        step = width / len(bars)
        for i, (label, value) in enumerate(bars):
            h = float(value / top) * height
            pdf.rect(left + i * step + step * 0.15, y + height - h, step * 0.7, h, style="F")
            if label:
                pdf.text(left + i * step + step * 0.1, y + height + 3, pdf.text_of(label))
        pdf.set_y(y + height + 6)
    else:
        label_w, h = 30.0, 4.0
        for label, value in bars:
            y = pdf.get_y()
            pdf.cell(label_w, h, pdf.fitted(label, label_w))
            bar = float(value / top) * (width - label_w - 25)
            pdf.rect(left + label_w, y + 0.6, max(bar, 0.2), h - 1.2, style="F")
            pdf.set_xy(left + label_w + bar + 1, y)
            pdf.cell(24, h, pdf.text_of(f"{value} {currency}".strip()), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    pdf.ln(2)


def write_pdf(out: IO[bytes], report: Report, sections: Iterable[Section], *, paper: str = "a4") -> None:
    """Write ``report`` as a PDF on ``paper`` (``a4`` or ``letter``) to ``out``."""
    meta = report.meta
    foot = f"smdrd: {title_of(report)}, {meta.get('from')} to {meta.get('to')} ({meta.get('timezone')})"
    pdf = _Document(paper, landscape=len(report.columns) > 7 or report.kind in DETAIL_KINDS, foot=foot)
    pdf.set_title(pdf.text_of(title_of(report)))
    pdf.set_creator("smdrd")
    pdf.add_page()
    _header(pdf, report)
    table = _Table(pdf, report)
    sections = list(sections)
    details = report.kind in DETAIL_KINDS
    for n, section in enumerate(sections):
        rows = iter(section.rows)
        sample = list(itertools.islice(rows, _MEASURED_ROWS))
        if n == 0:  # every kind with a chart is an aggregate whose rows are a list (a year of days is 365)
            _chart(pdf, report, section.rows if isinstance(section.rows, list) else sample, table.currency)
        if len(sections) > 1 or section.key:
            if pdf.will_page_break(8 + 3 * _ROW):  # a heading never ends a page alone
                pdf.add_page()
            pdf.font(11, bold=True)
            pdf.cell(0, 8, pdf.text_of(section.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            table.section = section.name
        table.use(section.columns or report.columns)
        if not table.widths:  # the extensions' tables share the first one's widths: columns line up throughout
            table.size(sample, report.totals if details and section.columns is None else section.totals)
        table.head()
        for row in itertools.chain(sample, rows):
            table.row(row)
        if section.totals is not None:
            table.row({**section.totals, table.columns[0].key: section.total_label}, bold=True)
            extras = [f"{title}: {cell_text(value, kind, table.currency)}"
                      for title, value, kind in extra_totals(report, section)]
            if extras:
                pdf.font(8)
                pdf.cell(0, _ROW, pdf.text_of("   ".join(extras)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(4)
        table.section = None
    if details and report.totals is not None:  # the grand total again at the end, under the last extension
        table.use(report.columns)
        if not table.widths:
            table.size([], report.totals)
        table.row({**report.totals, table.columns[0].key: "Total"}, bold=True)
    out.write(bytes(pdf.output()))
