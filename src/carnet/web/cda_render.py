"""Show a CDA R2 document as safe HTML: our own renderer, no stylesheet is ever executed.

A CDA document arrives with an ``<?xml-stylesheet?>`` pointing at the producer's XSLT; running
someone else's XSLT on a patient's document is running their code, so Carnet does not. It reads
the document with the hardened parser of :mod:`carnet.feeds.cda` (no DTD, no entities, no
network, DOCTYPE refused, size-limited) and writes HTML itself:

- the header: title, document type, patient (name, birth date, sex, INS), authors (name,
  organisation, time), date, custodian;
- a level-3 ``structuredBody``: each section's title and narrative ``text`` (subsections
  nested), the narrative's elements mapped to HTML (below); coded entries are not shown, as the
  narrative is the attested human-readable content (CDA R2 §1.2.3);
- a level-1 ``nonXMLBody``: the header, and an :class:`EmbeddedBody` result telling the caller to
  show the embedded document (the PDF) instead.

Narrative mapping (CDA R2 NarrativeBlock → HTML): ``paragraph`` → ``p``; ``list`` → ``ul``/``ol``
(``listType="ordered"``), ``item`` → ``li``; ``table``, ``caption``, ``colgroup``, ``col``,
``thead``, ``tbody``, ``tfoot``, ``tr``, ``th``, ``td`` → themselves; ``content`` → ``span``;
``br``, ``sub``, ``sup`` → themselves; ``footnote`` → ``small``; ``linkHtml`` → ``a`` when its
``href`` is ``http(s)://`` or an internal ``#anchor`` (else its text only); ``renderMultiMedia``
→ ``img`` only for an ``observationMedia`` of the document holding a base64 ``image/png`` or
``image/jpeg``, as a ``data:`` URI. ``styleCode`` Bold/Italics/Underline/Emphasis become
``strong``/``em``/``u``. Every other element is dropped with its content; every attribute but
``colspan``/``rowspan`` (bounded digits), ``ID`` (prefixed ``cda-``) and the mapped ones is
dropped; every text is escaped.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from datetime import datetime

from lxml import etree
from markupsafe import Markup, escape

from carnet.feeds.cda import (
    DEFAULT_MAX_BYTES,
    HL7_NAMESPACE,
    Author,
    BodyLevel,
    CDADocument,
    PersonName,
    parse_cda,
)

__all__ = ["EmbeddedBody", "render_cda"]

_H = f"{{{HL7_NAMESPACE}}}"
_NS = {"h": HL7_NAMESPACE}

_LABELS = {
    "fr": {
        "document": "Document",
        "type": "Type",
        "patient": "Patient",
        "born": "né(e) le",
        "sex": "sexe",
        "ins": "INS",
        "author": "Auteur",
        "date": "Date",
        "custodian": "Structure responsable",
        "untitled": "Document sans titre",
        "section": "Section sans titre",
        "image": "Image non affichée",
        "embedded": "Le contenu de ce document est joint (PDF) : il est affiché ci-dessous.",
        "empty": "Ce document ne contient pas de corps lisible.",
        "at": "à",
        "F": "féminin",
        "M": "masculin",
        "UN": "indéterminé",
    },
    "en": {
        "document": "Document",
        "type": "Type",
        "patient": "Patient",
        "born": "born",
        "sex": "sex",
        "ins": "INS",
        "author": "Author",
        "date": "Date",
        "custodian": "Custodian",
        "untitled": "Untitled document",
        "section": "Untitled section",
        "image": "Image not shown",
        "embedded": "This document's content is attached (PDF): it is shown below.",
        "empty": "This document has no readable body.",
        "at": "at",
        "F": "female",
        "M": "male",
        "UN": "undetermined",
    },
}

#: Elements mapped one to one.
_SAME = frozenset(
    {"table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td", "br", "sub", "sup"}
)
_VOID = frozenset({"br", "col"})
_SPAN_DIGITS = re.compile(r"[1-9][0-9]{0,2}")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg"})
#: An embedded image larger than this is not inlined (the page must stay light).
_MAX_IMAGE_BYTES = 5_000_000
_STYLE_TAGS = (("bold", "strong"), ("italic", "em"), ("underline", "u"), ("emphasis", "em"))


class EmbeddedBody(Markup):
    """The rendered header of a level-1 document: the caller shows the embedded content itself.

    ``media_type`` is the ``nonXMLBody/text/@mediaType`` (``application/pdf`` for the DMP's
    level-1 documents), or None when absent.
    """

    media_type: str | None

    @classmethod
    def of(cls, html: Markup, media_type: str | None) -> EmbeddedBody:
        """Wrap already-safe HTML as the marker of an embedded body."""
        made = cls(html)
        made.media_type = media_type
        return made


def render_cda(xml: bytes, language: str = "fr", *, max_bytes: int = DEFAULT_MAX_BYTES) -> Markup:
    """Render a CDA R2 document's header and narrative as safe HTML (an :class:`EmbeddedBody` at level 1).

    ``language`` is ``fr`` or ``en`` (the labels; the document's own text is shown as written).

    Raises:
        PayloadTooLarge: the document is over ``max_bytes`` or beyond the XML parser's limits.
        InvalidResource: not a safe, well-formed CDA R2 ``ClinicalDocument`` (DOCTYPE, encoding…).
    """
    labels = _LABELS.get(language, _LABELS["fr"])
    # parse_cda screens the bytes (size, DOCTYPE, encoding, root) and reads the header; only
    # bytes it accepted reach the second, identically hardened parse below.
    header = parse_cda(xml, max_bytes=max_bytes)
    root = etree.fromstring(xml, _parser())
    parts = ['<article class="cda" lang="', str(escape(_document_language(header, language))), '">']
    parts.extend(_header(header, labels))
    if header.level is BodyLevel.UNSTRUCTURED:
        parts.append(f'<p class="cda-embedded">{escape(labels["embedded"])}</p></article>')
        media_type = header.body.media_type if header.body else None
        return EmbeddedBody.of(_trusted(parts), media_type)
    body = root.find("h:component/h:structuredBody", _NS)
    if body is None:
        parts.append(f'<p class="cda-empty">{escape(labels["empty"])}</p>')
    else:
        media = _observation_media(root)
        for section in body.findall("h:component/h:section", _NS):
            parts.extend(_section(section, 3, labels, media))
    parts.append("</article>")
    return _trusted(parts)


def _trusted(parts: list[str]) -> Markup:
    """Join the pieces this module wrote: fixed tags and attribute names, and escaped values only."""
    return Markup("".join(parts))  # noqa: S704 (every value in ``parts`` went through escape())


def _parser() -> etree.XMLParser:
    # The same options as carnet.feeds.cda: nothing external is ever fetched or expanded.
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        recover=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _document_language(header: CDADocument, language: str) -> str:
    code = (header.language_code or "").split("-")[0].lower()
    return code if code.isalpha() and len(code) in (2, 3) else language


# The header ------------------------------------------------------------------------------------


def _when(moment: datetime | None, labels: dict[str, str]) -> str | None:
    if moment is None:
        return None
    day = moment.strftime("%d/%m/%Y") if labels is _LABELS["fr"] else moment.strftime("%Y-%m-%d")
    if (moment.hour, moment.minute) == (0, 0):
        return day
    return f"{day} {labels['at']} {moment.strftime('%H:%M')}"


def _person(name: PersonName | None) -> str | None:
    if name is None:
        return None
    words = [*name.prefix, *(p.value for p in name.given[:1]), name.family_name or ""]
    return " ".join(w for w in words if w) or None


def _author(author: Author, labels: dict[str, str]) -> str:
    pieces = [
        _person(author.name) or author.device or "",
        author.specialty.display_name if author.specialty and author.specialty.display_name else "",
        author.organization.name if author.organization and author.organization.name else "",
        _when(author.time, labels) or "",
    ]
    return ", ".join(p for p in pieces if p)


def _row(label: str, value: str | None) -> str:
    if not value:
        return ""
    return f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>"


def _header(header: CDADocument, labels: dict[str, str]) -> Iterator[str]:
    yield f"<h2>{escape(header.title or labels['untitled'])}</h2>"
    yield '<dl class="facts cda-header">'
    if header.code and header.code.display_name:
        yield _row(labels["type"], header.code.display_name)
    patient = header.patient
    if patient is not None:
        details = [_person(patient.name) or ""]
        if patient.birth_date:
            born = (
                patient.birth_date.strftime("%d/%m/%Y")
                if labels is _LABELS["fr"]
                else patient.birth_date.isoformat()
            )
            details.append(f"{labels['born']} {born}")
        if patient.gender:
            details.append(f"{labels['sex']} {labels.get(patient.gender.code, patient.gender.code)}")
        if patient.ins and patient.ins.extension:
            details.append(f"{labels['ins']} {patient.ins.extension}")
        yield _row(labels["patient"], ", ".join(d for d in details if d))
    for author in header.authors:
        yield _row(labels["author"], _author(author, labels))
    yield _row(labels["date"], _when(header.effective_time, labels))
    if header.custodian is not None:
        yield _row(labels["custodian"], header.custodian.name)
    yield "</dl>"


# The structured body ---------------------------------------------------------------------------


def _observation_media(root: etree._Element) -> dict[str, tuple[str, str]]:
    """Map each ``observationMedia/@ID`` holding a PNG or JPEG in base64 to (media type, base64)."""
    found: dict[str, tuple[str, str]] = {}
    for media in root.iter(f"{_H}observationMedia"):
        ident = media.get("ID")
        value = media.find("h:value", _NS)
        if not ident or value is None:
            continue
        media_type = (value.get("mediaType") or "").strip().lower()
        if media_type not in _IMAGE_TYPES or (value.get("representation") or "").upper() != "B64":
            continue
        compact = "".join((value.text or "").split())
        if not compact or len(compact) > _MAX_IMAGE_BYTES * 4 // 3 + 4:
            continue
        try:
            content = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Re-encoded from the decoded bytes: the data URI holds only base64 characters.
        found[ident] = (media_type, base64.b64encode(content).decode("ascii"))
    return found


def _text_of(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return " ".join("".join(str(piece) for piece in element.itertext()).split())


def _section(
    section: etree._Element, depth: int, labels: dict[str, str], media: dict[str, tuple[str, str]]
) -> Iterator[str]:
    yield '<section class="cda-section">'
    level = min(depth, 6)
    title = _text_of(section.find("h:title", _NS)) or labels["section"]
    yield f"<h{level}>{escape(title)}</h{level}>"
    text = section.find("h:text", _NS)
    if text is not None:
        yield '<div class="cda-narrative">'
        yield from _children(text, labels, media)
        yield "</div>"
    for sub in section.findall("h:component/h:section", _NS):
        yield from _section(sub, depth + 1, labels, media)
    yield "</section>"


def _children(
    element: etree._Element, labels: dict[str, str], media: dict[str, tuple[str, str]]
) -> Iterator[str]:
    """The element's own text, then each child rendered and followed by its tail."""
    if element.text:
        yield str(escape(element.text))
    for child in element:
        if isinstance(child.tag, str):  # comments, PIs and entity nodes are skipped
            yield from _element(child, labels, media)
        if child.tail:
            yield str(escape(child.tail))


def _safe_id(element: etree._Element) -> str:
    ident = element.get("ID")
    if not ident:
        return ""
    return f' id="cda-{_ID_UNSAFE.sub("_", ident[:64])}"'


def _styled(element: etree._Element, inner: Iterator[str]) -> Iterator[str]:
    codes = (element.get("styleCode") or "").lower()
    tags = [tag for code, tag in _STYLE_TAGS if code in codes]
    tags = list(dict.fromkeys(tags))
    yield "".join(f"<{t}>" for t in tags)
    yield from inner
    yield "".join(f"</{t}>" for t in reversed(tags))


def _href(raw: str | None) -> str | None:
    if not raw:
        return None
    href = raw.strip()
    if href.startswith("#") and len(href) > 1:
        return "#cda-" + _ID_UNSAFE.sub("_", href[1:65])
    lowered = href.lower()
    if (lowered.startswith("http://") or lowered.startswith("https://")) and not any(
        ch.isspace() or ord(ch) < 32 for ch in href
    ):
        return href
    return None


def _element(
    element: etree._Element, labels: dict[str, str], media: dict[str, tuple[str, str]]
) -> Iterator[str]:
    tag = element.tag
    if not isinstance(tag, str) or not tag.startswith(_H):
        return  # foreign namespaces are dropped with their content
    name = tag[len(_H) :]
    inner = _children(element, labels, media)
    if name == "paragraph":
        yield f"<p{_safe_id(element)}>"
        yield from _styled(element, inner)
        yield "</p>"
    elif name == "content":
        if element.get("revised") == "delete":
            return
        yield f"<span{_safe_id(element)}>"
        yield from _styled(element, inner)
        yield "</span>"
    elif name == "list":
        list_tag = "ol" if (element.get("listType") or "").lower() == "ordered" else "ul"
        caption = element.find("h:caption", _NS)
        if caption is not None:
            yield f'<p class="cda-caption">{escape(_text_of(caption))}</p>'
        yield f"<{list_tag}{_safe_id(element)}>"
        for item in element.findall("h:item", _NS):
            yield from _element(item, labels, media)
        yield f"</{list_tag}>"
    elif name == "item":
        yield f"<li{_safe_id(element)}>"
        yield from _styled(element, inner)
        yield "</li>"
    elif name == "footnote":
        yield f'<small class="cda-footnote"{_safe_id(element)}>'
        yield from inner
        yield "</small>"
    elif name == "linkHtml":
        href = _href(element.get("href"))
        if href is None:
            yield from inner
        else:
            yield f'<a href="{escape(href)}" rel="noopener noreferrer nofollow">'
            yield from inner
            yield "</a>"
    elif name == "renderMultiMedia":
        yield from _image(element, labels, media)
    elif name == "caption" and element.getparent() is not None and _local(element.getparent()) != "table":
        yield '<strong class="cda-caption">'
        yield from inner
        yield "</strong> "
    elif name in _SAME:
        yield f"<{name}{_table_attributes(element, name)}>"
        if name in _VOID:
            return
        if name in ("th", "td"):
            yield from _styled(element, inner)
        elif name == "table":
            # A table holds only its structural children; stray text between rows is dropped.
            for child in element:
                if isinstance(child.tag, str):
                    yield from _element(child, labels, media)
        else:
            yield from inner
        yield f"</{name}>"
    # Anything else (footnoteRef, unknown elements) is dropped with its content.


def _local(element: etree._Element | None) -> str:
    if element is None or not isinstance(element.tag, str):
        return ""
    return element.tag.rsplit("}", 1)[-1]


def _table_attributes(element: etree._Element, name: str) -> str:
    out = _safe_id(element) if name in ("table", "tr", "th", "td") else ""
    if name in ("th", "td", "col", "colgroup"):
        for attribute in ("colspan", "rowspan", "span"):
            value = (element.get(attribute) or "").strip()
            if _SPAN_DIGITS.fullmatch(value):
                out += f' {attribute}="{value}"'
    if name == "th" and (element.get("scope") or "") in ("row", "col", "rowgroup", "colgroup"):
        out += f' scope="{element.get("scope")}"'
    return out


def _image(
    element: etree._Element, labels: dict[str, str], media: dict[str, tuple[str, str]]
) -> Iterator[str]:
    caption = _text_of(element.find("h:caption", _NS))
    for reference in (element.get("referencedObject") or "").split():
        found = media.get(reference)
        if found is not None:
            media_type, data = found
            yield f'<img class="cda-image" alt="{escape(caption or labels["image"])}" src="data:{media_type};base64,{data}">'
            return
    yield f'<span class="cda-image-missing">[{escape(caption or labels["image"])}]</span>'
