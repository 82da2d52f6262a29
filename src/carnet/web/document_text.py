"""The words of a document, for the holder's search in their own record (``carnet.web.patient_search``).

A CDA R2 gives its narrative: every section's ``title`` and ``text`` (the human-readable block,
whatever the level of coding), read with Carnet's safe parser (no DTD, no entities, no
network); a CDA level 1 gives the text of the PDF it carries. A PDF gives the text of its pages
through ``pypdf``. The text is extracted in the request of the signed-in holder from content
they may read, used to match and to show a snippet, and kept nowhere. Limits bound the work on
a large or hostile file: :data:`MAX_PAGES` pages, :data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import io
import unicodedata
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from carnet.domain.errors import CarnetError
from carnet.feeds.cda import parse_cda, parse_tree

__all__ = ["MAX_CHARS", "MAX_PAGES", "document_text", "snippet"]

HL7 = "{urn:hl7-org:v3}"
#: The pages of a PDF read for its words.
MAX_PAGES = 50
#: The characters of a document kept for matching.
MAX_CHARS = 200_000
#: What a malformed PDF may raise from inside pypdf (it is not a file of ours).
_PDF_ERRORS = (PyPdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError)


def document_text(data: bytes, content_type: str) -> str:
    """The words of a PDF or a CDA document ("" for anything else, or what does not parse)."""
    if data.startswith(b"%PDF-"):
        return pdf_text(data)
    if content_type.endswith("xml") or data.lstrip()[:1] == b"<":
        return cda_text(data)
    return ""


def pdf_text(data: bytes) -> str:
    """The text of a PDF's first pages."""
    parts: list[str] = []
    size = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        for number, page in enumerate(reader.pages):
            if number >= MAX_PAGES or size >= MAX_CHARS:
                break
            text = page.extract_text() or ""
            parts.append(text)
            size += len(text)
    except _PDF_ERRORS:
        pass  # what was read so far still counts
    return " ".join(parts)[:MAX_CHARS]


def cda_text(data: bytes) -> str:
    """The narrative of a CDA: section titles and texts, or the text of the PDF a level 1 carries."""
    try:
        root = parse_tree(data)
    except (CarnetError, ValueError):
        return ""
    parts = [
        _words(child)
        for section in root.iter(f"{HL7}section")
        for child in section
        if child.tag in (f"{HL7}title", f"{HL7}text")
    ]
    title = root.find(f"{HL7}title")
    if title is not None:
        parts.insert(0, _words(title))
    if root.find(f".//{HL7}nonXMLBody") is not None:
        try:
            body = parse_cda(data).body
        except (CarnetError, ValueError):
            body = None
        if body is not None and body.content and "pdf" in (body.media_type or "").lower():
            parts.append(pdf_text(body.content))
    return " ".join(p for p in parts if p)[:MAX_CHARS]


def _words(element: Any) -> str:
    return " ".join(" ".join(str(t) for t in element.itertext()).split())


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def snippet(text: str, words: str, *, around: int = 8) -> str:
    """A few words of ``text`` around the first of ``words`` found, with an ellipsis each side cut."""
    tokens = text.split()
    wanted = _fold(words).split()
    if not tokens or not wanted:
        return ""
    at = next((i for i, token in enumerate(tokens) if wanted[0] in _fold(token)), None)
    if at is None:
        return ""
    start, end = max(at - around, 0), min(at + around + 1, len(tokens))
    return ("… " if start else "") + " ".join(tokens[start:end]) + (" …" if end < len(tokens) else "")
