"""Lay a :class:`~carnet.synthetic.reports.Report` out as a small, real PDF (A4, Helvetica).

fpdf2's ``multi_cell`` measures every character to break lines, which costs milliseconds per
paragraph; a generator that writes thousands of documents wraps lines itself at a width that fits
Helvetica 10 pt on A4 and places them with ``text``, which is a hundred times faster.

The output is deterministic: the creation date is the document's, and nothing else in the file
depends on the clock. ``pad_to`` adds pages of advice to the patient until the file reaches
a size (for benchmarks that need realistic 100 KB documents); a padded file is not compressed,
so its size grows in step with the lines added.
"""

from __future__ import annotations

import functools
import itertools
import random
import textwrap
from collections.abc import Iterator
from datetime import datetime

from fpdf import FPDF

from carnet.synthetic.reports import FILLER_SENTENCES, Report, Section
from carnet.synthetic.timestamps import french_date

_PAGE_BOTTOM = 280.0
_LEFT = 20.0
_LINE = 5.0
_WRAP = 92
_SMALL_WRAP = 112
# What a line of advice costs besides its characters: "BT x y Td (…) Tj ET" and a share of its page.
_BYTES_PER_LINE = 36
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
    if text.isascii():
        return text
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


@functools.cache
def _filler_paragraphs() -> tuple[tuple[str, ...], ...]:
    """Return paragraphs of advice, wrapped and in Latin-1 once for all documents."""
    rng = random.Random("carnet.synthetic/filler")  # noqa: S311 - fixed text, not a secret
    paragraphs = []
    for _ in range(64):
        text = " ".join(rng.sample(FILLER_SENTENCES, 4))
        paragraphs.append(tuple(textwrap.wrap(_latin1(text), _SMALL_WRAP)))
    return tuple(paragraphs)


class _Writer:
    """A cursor over pages: writes lines and opens a new page when the current one is full."""

    def __init__(self, pdf: FPDF, footer: str) -> None:
        self.pdf = pdf
        self.footer = footer
        self.font: tuple[str, float] | None = None
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.pdf.add_page()
        self.set_font("", 8)
        self.pdf.text(_LEFT, 290, _latin1(f"{self.footer} - page {self.pdf.page_no()}"))
        self.y = 20.0

    def set_font(self, style: str, size: float) -> None:
        # fpdf2's set_font costs as much as writing a line; skip it when nothing changes.
        if self.font != (style, size):
            self.pdf.set_font("Helvetica", style=style, size=size)
            self.font = (style, size)

    def line(self, text: str, *, size: float = 10, bold: bool = False, indent: float = 0.0) -> None:
        if self.y > _PAGE_BOTTOM:
            self.new_page()
        self.set_font("B" if bold else "", size)
        self.pdf.text(_LEFT + indent, self.y, _latin1(text))
        self.y += _LINE * size / 10

    def small_print(self, text: str) -> None:
        """Write one line already wrapped (to ``_SMALL_WRAP``) and in Latin-1, in 8 pt."""
        if self.y > _PAGE_BOTTOM:
            self.new_page()
            self.set_font("", 8)
        self.pdf.text(_LEFT, self.y, text)
        self.y += 4.0

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
            self.set_font("B" if index == 0 else "", 8)
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
    """Return the PDF of ``report``; with ``pad_to``, add advice pages until it has that many bytes.

    A padded PDF is not compressed, so each line of advice adds its length plus a fixed overhead
    of PDF operators: the number of lines needed is counted from the lines themselves, and a
    single layout usually lands just above the target.
    """
    filler_seed = rng.getrandbits(64)
    if pad_to is None:
        return _layout(report, patient_lines, filler_seed, lines=0, compress=True)
    padded = _layout(report, patient_lines, filler_seed, lines=0, compress=False)
    lines = 0
    while len(padded) < pad_to:
        lines += _lines_for(pad_to - len(padded), filler_seed, skip=lines)
        padded = _layout(report, patient_lines, filler_seed, lines=lines, compress=False)
    return padded


def _filler_lines(filler_seed: int) -> Iterator[tuple[str, bool]]:
    """Yield the advice lines of a document, each with whether it ends its paragraph."""
    rng = random.Random(filler_seed)  # noqa: S311 - reproducible filler text, not a secret
    paragraphs = _filler_paragraphs()
    while True:
        paragraph = rng.choice(paragraphs)
        for index, line in enumerate(paragraph):
            yield line, index == len(paragraph) - 1


def _lines_for(budget: int, filler_seed: int, *, skip: int) -> int:
    """Count the advice lines, after the first ``skip``, that add at least about ``budget`` bytes."""
    total = 0
    for count, (line, _) in enumerate(itertools.islice(_filler_lines(filler_seed), skip, None), start=1):
        total += len(line) + _BYTES_PER_LINE
        if total >= budget:
            return count
    raise AssertionError("unreachable: the advice stream is endless")  # pragma: no cover


def _layout(
    report: Report, patient_lines: tuple[str, ...], filler_seed: int, *, lines: int, compress: bool
) -> bytes:
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_compression(compress)
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
    if lines:
        _filler(writer, filler_seed, lines, report.created)
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


def _filler(writer: _Writer, filler_seed: int, lines: int, created: datetime) -> None:
    writer.new_page()
    writer.line(
        f"Annexe - Informations et conseils remis le {french_date(created.date())}", size=11, bold=True
    )
    writer.gap(2)
    writer.set_font("", 8)
    for line, ends_paragraph in itertools.islice(_filler_lines(filler_seed), lines):
        writer.small_print(line)
        if ends_paragraph:
            writer.gap(1.5)
