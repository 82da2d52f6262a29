"""A printable summary of a patient's record, as a PDF (fpdf2), in French or English.

What it prints, in order: identity (name, birth date, sex, INS, address, phone); allergies;
current treatments; current conditions, then past history; vaccinations; recent measures (the
latest value of each kind); documents (newest first); advance directives and the people to call
(trusted person, legal representative, emergency contacts) when the record has them. It prints
only the resources it is given: the caller passes what the record service let it read.

Text is set in DejaVu Sans (Debian's ``fonts-dejavu-core``, installed by ``.ci/run``) so that
French accents, ``€``, ``≥``, ``œ`` and most scripts print as written; a character the font
lacks prints as ``?``. Without the font, the PDF core font Helvetica is used and text outside
Latin-1 is replaced, so a summary always prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from carnet.web.record_summary import Line, RecordSummary, summarise
from carnet.web.units import number

__all__ = ["FONT_DIRS", "summary_pdf"]

#: Where DejaVu Sans is looked for (Debian's fonts-dejavu-core first).
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
_MAX_ROWS = 40
_MAX_CHARS = 300

_TEXT = {
    "fr": {
        "title": "Synthèse du dossier médical",
        "generated": "Édité le {when} — document confidentiel, à remettre au seul patient ou à ses soignants.",
        "page": "Page {page}/{{nb}}",
        "identity": "Identité",
        "name": "Nom",
        "birth": "Date de naissance",
        "sex": "Sexe",
        "ins": "INS",
        "address": "Adresse",
        "phone": "Téléphone",
        "allergies": "Allergies et intolérances",
        "treatments": "Traitements en cours",
        "conditions": "Problèmes de santé en cours",
        "history": "Antécédents",
        "vaccinations": "Vaccinations",
        "measures": "Mesures récentes",
        "documents": "Documents",
        "directives": "Directives anticipées",
        "contacts": "Personne de confiance et contacts",
        "none": "Aucune information enregistrée.",
        "more": "… et {count} de plus dans le dossier.",
        "what": "Quoi",
        "details": "Détails",
        "date": "Date",
        "value": "Valeur",
        "type": "Type",
        "author": "Auteur",
        "female": "féminin",
        "male": "masculin",
        "other": "autre",
        "unknown": "inconnu",
        "high_risk": "RISQUE ÉLEVÉ : une réaction peut être grave",
    },
    "en": {
        "title": "Medical record summary",
        "generated": "Printed on {when} — confidential: for the patient and their carers only.",
        "page": "Page {page}/{{nb}}",
        "identity": "Identity",
        "name": "Name",
        "birth": "Date of birth",
        "sex": "Sex",
        "ins": "INS",
        "address": "Address",
        "phone": "Phone",
        "allergies": "Allergies and intolerances",
        "treatments": "Current treatments",
        "conditions": "Current conditions",
        "history": "Past history",
        "vaccinations": "Vaccinations",
        "measures": "Recent measures",
        "documents": "Documents",
        "directives": "Advance directives",
        "contacts": "Trusted person and contacts",
        "none": "Nothing recorded.",
        "more": "… and {count} more in the record.",
        "what": "What",
        "details": "Details",
        "date": "Date",
        "value": "Value",
        "type": "Type",
        "author": "Author",
        "female": "female",
        "male": "male",
        "other": "other",
        "unknown": "unknown",
        "high_risk": "HIGH RISK: a reaction may be severe",
    },
}


def _font_files() -> tuple[Path, Path] | None:
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def _day(value: str, language: str) -> str:
    """A FHIR date or dateTime as ``dd/mm/yyyy`` (fr) or ``yyyy-mm-dd`` (en), partial dates kept."""
    day = value[:10]
    parts = day.split("-")
    if language == "fr" and len(parts) == 3:
        return f"{parts[2]}/{parts[1]}/{parts[0]}"
    if language == "fr" and len(parts) == 2:
        return f"{parts[1]}/{parts[0]}"
    return day


def _number(value: float, language: str) -> str:
    return number(value, language)


class _SummaryPDF(FPDF):
    """An A4 page with the summary's running footer."""

    def __init__(self, text: Mapping[str, str], printed: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._text = text
        self._printed = printed
        self._family = "Helvetica"
        self._unicode = False
        fonts = _font_files()
        if fonts is not None:
            self.add_font("DejaVu", "", str(fonts[0]))
            self.add_font("DejaVu", "B", str(fonts[1]))
            self._family = "DejaVu"
            self._unicode = True
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(16, 16, 16)

    def clean(self, text: str) -> str:
        """Make ``text`` printable in the current font (missing glyphs become ``?``)."""
        text = " ".join(str(text).split())[:_MAX_CHARS]
        if not self._unicode:
            return text.encode("latin-1", "replace").decode("latin-1")
        cmap = getattr(self.current_font, "cmap", None)
        if not cmap:
            return text
        return "".join(ch if ord(ch) in cmap else "?" for ch in text)

    def use(self, size: float, *, bold: bool = False) -> None:
        """Select the summary's font at ``size`` points."""
        self.set_font(self._family, "B" if bold else "", size)

    def footer(self) -> None:
        """Print the confidentiality line and the page number at the foot of each page."""
        self.set_y(-13)
        self.use(7.5)
        self.set_text_color(90, 90, 90)
        self.cell(0, 4, self.clean(self._printed), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.cell(0, 4, self._text["page"].format(page=self.page_no()), align="R")
        self.set_text_color(0, 0, 0)


def _heading(pdf: _SummaryPDF, title: str) -> None:
    pdf.ln(3)
    pdf.use(12.5, bold=True)
    pdf.set_text_color(0, 60, 120)
    pdf.cell(0, 7, pdf.clean(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(0, 60, 120)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.set_text_color(0, 0, 0)
    pdf.ln(1.5)


def _paragraph(pdf: _SummaryPDF, text: str) -> None:
    pdf.use(9.5)
    pdf.multi_cell(0, 5, pdf.clean(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(
    pdf: _SummaryPDF,
    text: Mapping[str, str],
    headings: Sequence[str],
    rows: Sequence[Sequence[str]],
    widths: Sequence[int],
) -> None:
    if not rows:
        _paragraph(pdf, text["none"])
        return
    pdf.use(9)
    shown = rows[:_MAX_ROWS]
    with pdf.table(
        col_widths=tuple(widths),
        text_align="LEFT",
        line_height=4.8,
        padding=1.2,
        first_row_as_headings=True,
    ) as table:
        head = table.row()
        for cell in headings:
            head.cell(pdf.clean(cell))
        for values in shown:
            row = table.row()
            for value in values:
                row.cell(pdf.clean(value) or " ")
    if len(rows) > len(shown):
        _paragraph(pdf, text["more"].format(count=len(rows) - len(shown)))


def _lines(pdf: _SummaryPDF, text: Mapping[str, str], lines: Iterable[Line], language: str) -> None:
    _table(
        pdf,
        text,
        (text["what"], text["details"], text["date"]),
        [
            (
                line.label,
                " — ".join(
                    part for part in (text["high_risk"] if line.high_risk else "", line.detail) if part
                ),
                _day(line.when, language),
            )
            for line in lines
        ],
        (80, 70, 28),
    )


def _identity(pdf: _SummaryPDF, text: Mapping[str, str], summary: RecordSummary, language: str) -> None:
    _heading(pdf, text["identity"])
    identity = summary.identity
    if identity is None:
        _paragraph(pdf, text["none"])
        return
    sex = text.get(identity.gender or "", identity.gender or "")
    pairs = [
        (text["name"], identity.name),
        (text["birth"], _day(identity.birth_date or "", language)),
        (text["sex"], sex),
        (text["ins"], identity.ins or ""),
        (text["address"], identity.address or ""),
        (text["phone"], identity.phone or ""),
    ]
    for label, value in pairs:
        if not value:
            continue
        pdf.use(9.5, bold=True)
        pdf.cell(38, 5.5, pdf.clean(label))
        pdf.use(9.5)
        pdf.multi_cell(0, 5.5, pdf.clean(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def summary_pdf(resources: list[dict[str, Any]], language: str, *, printed: datetime | None = None) -> bytes:
    """Return a printable PDF summary of one record from its resources, in ``fr`` or ``en``.

    ``printed`` is the moment printed in the footer and the PDF metadata (now, in UTC, if None).
    """
    language = language if language in _TEXT else "fr"
    text = _TEXT[language]
    moment = printed or datetime.now(UTC)
    summary = summarise(resources)
    when = _day(moment.date().isoformat(), language) + moment.strftime(" %H:%M UTC")
    pdf = _SummaryPDF(text, text["generated"].format(when=when))
    pdf.set_creation_date(moment)
    pdf.set_lang(language)
    pdf.set_title(text["title"])
    pdf.set_creator("Carnet")
    pdf.add_page()
    pdf.use(17, bold=True)
    pdf.cell(0, 9, pdf.clean(text["title"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if summary.identity is not None:
        pdf.use(11)
        pdf.cell(0, 6, pdf.clean(summary.identity.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _identity(pdf, text, summary, language)
    for key, lines in (
        ("allergies", summary.allergies),
        ("treatments", summary.treatments),
        ("conditions", summary.conditions),
        ("history", summary.history),
        ("vaccinations", summary.vaccinations),
    ):
        _heading(pdf, text[key])
        _lines(pdf, text, lines, language)
    _heading(pdf, text["measures"])
    _table(
        pdf,
        text,
        (text["what"], text["value"], text["date"]),
        [
            (m.label, f"{_number(m.latest, language)} {m.unit}".strip(), _day(m.when, language))
            for m in summary.measures
        ],
        (80, 70, 28),
    )
    _heading(pdf, text["documents"])
    _table(
        pdf,
        text,
        (text["what"], text["type"], text["author"], text["date"]),
        [(d.title, d.class_label or d.type, d.author, _day(d.date, language)) for d in summary.documents],
        (62, 42, 46, 28),
    )
    if summary.directives:
        _heading(pdf, text["directives"])
        _lines(pdf, text, summary.directives, language)
    if summary.contacts:
        _heading(pdf, text["contacts"])
        _table(
            pdf,
            text,
            (text["name"], text["details"]),
            [(c.label, c.detail) for c in summary.contacts],
            (70, 108),
        )
    return bytes(pdf.output())
