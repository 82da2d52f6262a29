"""Lay a :class:`~carnet.synthetic.reports.Report` out as a small, real PDF (A4, Helvetica).

fpdf2's ``multi_cell`` measures every character to break lines, which costs milliseconds per
paragraph; a generator that writes thousands of documents wraps lines itself at a width that fits
Helvetica 10 pt on A4 and places them with ``text``, which is a hundred times faster.

The output is deterministic: the creation date is the document's, and nothing else in the file
depends on the clock. ``pad_to`` adds pages of advice to the patient until the file reaches
a size (for benchmarks that need realistic 100 KB documents); those pages are not compressed, so
the size grows predictably and one extra layout pass is enough.
"""

from __future__ import annotations

import random
import textwrap
from datetime import datetime

from fpdf import FPDF

from carnet.synthetic.reports import FILLER_SENTENCES, Report, Section
from carnet.synthetic.timestamps import french_date

_PAGE_BOTTOM = 280.0
_LEFT = 20.0
_LINE = 5.0
_WRAP = 92
_TEXT_WIDTH = 170.0
# Characters outside Latin-1, which Helvetica's core encoding lacks, and what to print instead.
_LATIN1 = str.maketrans(
    {
        "œ": "oe",
        "Œ": "OE",
        "€": "EUR",
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "…": "...",
        "≥": ">=",
        "≤": "<=",
        "\u202f": " ",
    }
)


def _latin1(text: str) -> str:
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


class _Writer:
    """A cursor over pages: writes lines and opens a new page when the current one is full."""

    def __init__(self, pdf: FPDF, footer: str) -> None:
        self.pdf = pdf
        self.footer = footer
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.pdf.add_page()
        self.pdf.set_font("Helvetica", size=8)
        self.pdf.text(_LEFT, 290, _latin1(f"{self.footer} - page {self.pdf.page_no()}"))
        self.y = 20.0

    def line(self, text: str, *, size: float = 10, bold: bool = False, indent: float = 0.0) -> None:
        if self.y > _PAGE_BOTTOM:
            self.new_page()
        self.pdf.set_font("Helvetica", style="B" if bold else "", size=size)
        self.pdf.text(_LEFT + indent, self.y, _latin1(text))
        self.y += _LINE * size / 10

    def paragraph(self, text: str) -> None:
        for piece in textwrap.wrap(text, _WRAP) or [""]:
            self.line(piece)
        self.y += 1.5

    def gap(self, height: float = 3.0) -> None:
        self.y += height

    def table(self, rows: tuple[tuple[str, ...], ...]) -> None:
        # Columns share the width in proportion to their longest text (capped), and a cell too
        # wide for its column is cut, so that columns never overlap.
        longest = [min(40, max(len(row[column]) for row in rows)) + 2 for column in range(len(rows[0]))]
        widths = [_TEXT_WIDTH * length / sum(longest) for length in longest]
        for index, row in enumerate(rows):
            if self.y > _PAGE_BOTTOM:
                self.new_page()
            self.pdf.set_font("Helvetica", style="B" if index == 0 else "", size=8)
            x = _LEFT
            for cell, width in zip(row, widths, strict=True):
                self.pdf.text(x, self.y, self._fit(_latin1(cell), width - 2))
                x += width
            self.y += 4.5
        self.y += 2

    def _fit(self, text: str, width: float) -> str:
        if self.pdf.get_string_width(text) <= width:
            return text
        while text and self.pdf.get_string_width(text + ".") > width:
            text = text[:-1]
        return text.rstrip() + "."


def render_pdf(
    report: Report, *, patient_lines: tuple[str, ...], rng: random.Random, pad_to: int | None = None
) -> bytes:
    """Return the PDF of ``report``; with ``pad_to``, add advice pages until it has that many bytes."""
    filler_seed = rng.getrandbits(64)
    pdf = _layout(report, patient_lines, filler_seed, pages=0)
    if pad_to is None or len(pdf) >= pad_to:
        return pdf
    one, two = (_layout(report, patient_lines, filler_seed, pages=n) for n in (1, 2))
    per_page = max(1, len(two) - len(one))
    pages = max(1, 1 + -(-(pad_to - len(one)) // per_page))
    padded = _layout(report, patient_lines, filler_seed, pages=pages)
    while len(padded) < pad_to:
        pages += 1
        padded = _layout(report, patient_lines, filler_seed, pages=pages)
    return padded


def _layout(report: Report, patient_lines: tuple[str, ...], filler_seed: int, *, pages: int) -> bytes:
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_compression(pages == 0)
    pdf.set_creation_date(report.created)
    pdf.set_title(_latin1(report.title))
    pdf.set_lang("fr-FR")
    if report.author is not None:
        pdf.set_author(_latin1(report.author.display_name))
    pdf.set_auto_page_break(False)
    footer = f"{report.title} - {patient_lines[0]}"
    writer = _Writer(pdf, footer)
    _letterhead(writer, report)
    writer.line(report.title, size=14, bold=True)
    writer.gap(2)
    for line in patient_lines:
        writer.line(line, size=9)
    if report.recipient:
        writer.line(f"Destinataire : {report.recipient}", size=9)
    writer.gap(4)
    for section in report.sections:
        _section(writer, section)
    writer.gap(4)
    if report.author is not None:
        writer.line(f"{report.author.display_name}, le {french_date(report.created.date())}", bold=True)
        writer.line(f"RPPS {report.author.rpps} - {report.author.role_label}", size=8)
    if pages:
        _filler(writer, random.Random(filler_seed), pages, report.created)  # noqa: S311 - reproducible filler text
    return bytes(pdf.output())


def _letterhead(writer: _Writer, report: Report) -> None:
    organization = report.organization
    if organization is None:
        writer.line("Document déposé par le patient", size=9, bold=True)
    else:
        writer.line(organization.name, size=11, bold=True)
        writer.line(organization.address.text, size=9)
        writer.line(f"Tél. {organization.phone}", size=9)
        if report.author is not None and report.author.service:
            writer.line(report.author.service, size=9)
    writer.gap(6)


def _section(writer: _Writer, section: Section) -> None:
    writer.line(section.heading, size=11, bold=True)
    writer.gap(1)
    for paragraph in section.paragraphs:
        writer.paragraph(paragraph)
    if section.table:
        writer.table(section.table)
    writer.gap(2)


def _filler(writer: _Writer, rng: random.Random, pages: int, created: datetime) -> None:
    last_page = writer.pdf.page_no() + pages
    writer.new_page()
    writer.line("Annexe - Informations et conseils", size=11, bold=True)
    writer.gap(2)
    number = 0
    while writer.pdf.page_no() < last_page or writer.y <= _PAGE_BOTTOM - 10:
        if writer.pdf.page_no() > last_page:
            break
        number += 1
        sentences = " ".join(rng.sample(FILLER_SENTENCES, 4))
        writer.paragraph(f"{number}. {sentences} (Document remis le {french_date(created.date())}.)")
