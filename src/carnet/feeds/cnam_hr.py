"""Read the insurer's reimbursement history (CNAM-HR CDA volet, code REMB, class 60) into dated lines.

Wire format (CI-SIS volet "Historique des remboursements", ``ansforge/TestContenuCDA-3-0``
``CNAM-HR_2022.01.xml``): a level 3 CDA R2 document declaring the template
``1.2.250.1.213.1.1.1.36``, whose sections are known by their LOINC code:

==============  =============================================  ===============================
section code    section (CI-SIS)                                entries read as
==============  =============================================  ===============================
55112-7         Usage et Responsabilités (the disclaimer)      its text, shown with the lines
10160-0         FR-Traitements: dispensed medicines             ``substanceAdministration``
11369-6         FR-Vaccinations                                 ``substanceAdministration``
46264-8         FR-Dispositifs-medicaux (LPP)                   ``supply``
46240-8         FR-Historique-prises-en-charge-medicales        ``encounter`` (a stay)
67803-7         FR-Actes-et-interventions: care                 ``procedure``
18726-0         FR-Actes-et-interventions: radiology            ``procedure``
26436-6         FR-Actes-et-interventions: biology              ``procedure``
==============  =============================================  ===============================

A medicine's codes are the translations of ``manufacturedMaterial/code``: CIP
(``1.2.250.1.215.200.1.1.1``) or UCD (``…1.1.2``), the ATC level-3 group (``…1.2.1``) and the
active components (``…1.3.1``); its date is the dispensing time (``supply/performer/time``), its
prescriber ``supply/author``, its dispenser ``supply/performer``, its quantity
``supply/quantity``. Every other entry is dated by its ``effectiveTime`` (a value, or low–high).

Strictness: a document that declares the template (or is a structured REMB document) and lacks a
required section, or has an entry without a date, a label or (for a medicine) a CIP or UCD code,
is refused with :class:`InvalidResource` naming the section and entry, never the values — they
are patient data. Sections with other codes are skipped (later versions of the volet may add some).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from lxml import etree

from carnet.domain.errors import InvalidResource
from carnet.feeds.cda import (
    DEFAULT_MAX_BYTES,
    HL7_NAMESPACE,
    LOINC,
    CDADocument,
    Code,
    codes_of,
    parse_timestamp,
    parse_tree,
)

__all__ = [
    "ACTIVE_COMPONENT_SYSTEM",
    "ATC3_SYSTEM",
    "CIP_SYSTEM",
    "CNAM_HR_TEMPLATE",
    "REMB_CODE",
    "SECTION_CODES",
    "UCD_SYSTEM",
    "LineKind",
    "ReimbursementHistory",
    "ReimbursementLine",
    "is_cnam_hr",
    "read_if_cnam_hr",
    "read_reimbursements",
    "read_tree_if_cnam_hr",
]

CNAM_HR_TEMPLATE = "1.2.250.1.213.1.1.1.36"
REMB_CODE = "REMB"
CIP_SYSTEM = "1.2.250.1.215.200.1.1.1"
UCD_SYSTEM = "1.2.250.1.215.200.1.1.2"
ATC3_SYSTEM = "1.2.250.1.215.200.1.2.1"
ACTIVE_COMPONENT_SYSTEM = "1.2.250.1.215.200.1.3.1"
DISCLAIMER_SECTION = "55112-7"

_NS = {"h": HL7_NAMESPACE}


class LineKind(StrEnum):
    """What a line of the history reimbursed."""

    MEDICINE = "medicine"
    VACCINATION = "vaccination"
    DEVICE = "device"
    STAY = "stay"
    CARE = "care"
    RADIOLOGY = "radiology"
    BIOLOGY = "biology"


SECTION_CODES: dict[str, LineKind] = {
    "10160-0": LineKind.MEDICINE,
    "11369-6": LineKind.VACCINATION,
    "46264-8": LineKind.DEVICE,
    "46240-8": LineKind.STAY,
    "67803-7": LineKind.CARE,
    "18726-0": LineKind.RADIOLOGY,
    "26436-6": LineKind.BIOLOGY,
}
"""The LOINC code of each section with lines, and the kind of its lines."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReimbursementLine:
    """One reimbursed care: a dispensed medicine, a vaccination, a device, a stay or an act."""

    kind: LineKind
    start: date
    end: date | None = None
    """The last day of a stay; ``None`` for care given on one day."""
    label: str
    codes: tuple[Code, ...] = ()
    """CIP/UCD, ATC3 and active components for a medicine; the act's or product's code otherwise."""
    quantity: str | None = None
    prescriber: str | None = None
    performer: str | None = None
    """Who gave the care: the dispensing pharmacy, the establishment, the professional."""

    def code_in(self, system: str) -> str | None:
        """Return this line's code in ``system`` (an OID), if it has one."""
        return next((code.code for code in self.codes if code.code_system == system), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReimbursementHistory:
    """The lines of one CNAM-HR document, oldest first, and the period it covers."""

    lines: tuple[ReimbursementLine, ...]
    period_start: date | None = None
    period_end: date | None = None
    disclaimer: str | None = None


def is_cnam_hr(cda: CDADocument) -> bool:
    """Tell whether a parsed CDA is a structured reimbursement history (read and checked here)."""
    declared = any(template.root == CNAM_HR_TEMPLATE for template in cda.template_ids)
    remb = cda.code is not None and cda.code.code == REMB_CODE
    return declared or (remb and cda.level is not None and cda.level.value == 3)


def read_reimbursements(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ReimbursementHistory:
    """Read a CNAM-HR document's sections into its lines.

    Raises:
        InvalidResource: unsafe or malformed XML (as :func:`carnet.feeds.cda.parse_cda`), no
            structured body, a required section missing, or an entry that cannot be read.
        PayloadTooLarge: over ``max_bytes``.
    """
    return _read(parse_tree(data, max_bytes=max_bytes))


def read_if_cnam_hr(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ReimbursementHistory | None:
    """Read a CDA into its lines if it is a structured reimbursement history, else return ``None``.

    One parse (the same safety as :func:`read_reimbursements`) decides and reads, as
    :func:`is_cnam_hr` would decide on the parsed header.

    Raises:
        InvalidResource: not a safe, well-formed CDA; or a CNAM-HR that cannot be read.
        PayloadTooLarge: over ``max_bytes``.
    """
    return read_tree_if_cnam_hr(parse_tree(data, max_bytes=max_bytes))


def read_tree_if_cnam_hr(root: etree._Element) -> ReimbursementHistory | None:
    """:func:`read_if_cnam_hr` on a document already parsed by :func:`carnet.feeds.cda.parse_tree`."""
    declared = any(t.get("root") == CNAM_HR_TEMPLATE for t in root.iterfind("h:templateId", _NS))
    code = root.find("h:code", _NS)
    remb = code is not None and code.get("code") == REMB_CODE
    structured = root.find("h:component/h:structuredBody", _NS) is not None
    if not declared and not (remb and structured):
        return None
    return _read(root)


def _read(root: etree._Element) -> ReimbursementHistory:
    body = root.find("h:component/h:structuredBody", _NS)
    if body is None:
        raise InvalidResource(
            "The reimbursement history (CNAM-HR) has no structuredBody; send the level 3 document "
            "with its sections.",
            expression=("ClinicalDocument.component.structuredBody",),
        )
    sections: dict[str, etree._Element] = {}
    for section in body.iterfind(".//h:section", _NS):
        for code in _section_codes(section):
            sections.setdefault(code, section)
    missing = [code for code in (DISCLAIMER_SECTION, *SECTION_CODES) if code not in sections]
    if missing:
        raise InvalidResource(
            "The reimbursement history (CNAM-HR) lacks required sections (LOINC "
            + ", ".join(missing)
            + "); every section of the volet must be present, empty when there is nothing to report.",
            expression=("ClinicalDocument.component.structuredBody.component.section",),
        )
    lines: list[ReimbursementLine] = []
    for code, kind in SECTION_CODES.items():
        for index, entry in enumerate(sections[code].iterfind("h:entry", _NS)):
            lines.append(_line(kind, entry, f"section {code}, entry {index + 1}"))
    lines.sort(key=lambda line: (line.start, line.kind, line.label))
    text = sections[DISCLAIMER_SECTION].find("h:text", _NS)
    disclaimer = " ".join(_all_text(text).split()) if text is not None else ""
    period = root.find("h:documentationOf/h:serviceEvent/h:effectiveTime", _NS)
    return ReimbursementHistory(
        lines=tuple(lines),
        period_start=_day(period.find("h:low", _NS)) if period is not None else None,
        period_end=_day(period.find("h:high", _NS)) if period is not None else None,
        disclaimer=disclaimer or None,
    )


def _section_codes(section: etree._Element) -> list[str]:
    """A section's LOINC code and its translations (the acts sections are 29554-3 + a translation)."""
    code = section.find("h:code", _NS)
    if code is None:
        return []
    found = [code, *code.iterfind("h:translation", _NS)]
    return [str(c.get("code")) for c in found if c.get("code") and c.get("codeSystem") in (LOINC, None)]


def _line(kind: LineKind, entry: etree._Element, where: str) -> ReimbursementLine:
    act = next((child for child in entry if isinstance(child.tag, str)), None)
    if act is None:
        raise InvalidResource(f"The reimbursement history's {where} is empty; give it its act.")
    supply = act.find("h:entryRelationship/h:supply", _NS) if kind is LineKind.MEDICINE else None
    start, end = _dates(act, supply)
    if start is None:
        raise InvalidResource(
            f"The reimbursement history's {where} has no date (effectiveTime, or the dispensing "
            "time for a medicine) to day precision; date it and resend the document."
        )
    codes = _codes(act)
    label = _label(act, codes)
    if not label:
        raise InvalidResource(f"The reimbursement history's {where} has no label (name or displayName).")
    if kind is LineKind.MEDICINE and not any(c.code_system in (CIP_SYSTEM, UCD_SYSTEM) for c in codes):
        raise InvalidResource(
            f"The reimbursement history's {where} is a medicine without a CIP "
            f"({CIP_SYSTEM}) or UCD ({UCD_SYSTEM}) code; code it and resend the document."
        )
    owner = supply if supply is not None else act
    quantity = owner.find("h:quantity", _NS)
    return ReimbursementLine(
        kind=kind,
        start=start,
        end=end if end is not None and end != start else None,
        label=label,
        codes=codes,
        quantity=quantity.get("value") if quantity is not None else None,
        prescriber=_person(owner.find("h:author/h:assignedAuthor", _NS)),
        performer=_performer(owner),
    )


def _dates(act: etree._Element, supply: etree._Element | None) -> tuple[date | None, date | None]:
    if supply is not None:
        dispensed = _day(supply.find("h:performer/h:time", _NS))
        if dispensed is not None:
            return dispensed, None
    effective = act.find("h:effectiveTime", _NS)
    if effective is None:
        return None, None
    if effective.get("value") is not None:
        return _day(effective), None
    return _day(effective.find("h:low", _NS)), _day(effective.find("h:high", _NS))


def _day(element: etree._Element | None) -> date | None:
    value = element.get("value") if element is not None else None
    moment = parse_timestamp(value) if value else None
    return moment.date() if moment is not None else None


def _codes(act: etree._Element) -> tuple[Code, ...]:
    """A stay's qualifier (GHS…), the act's own code, then every coded translation of its product (nested ones included)."""
    candidates: list[etree._Element | None] = list(act.findall("h:code/h:qualifier/h:value", _NS))
    candidates.append(act.find("h:code", _NS))
    candidates += act.findall(".//h:manufacturedMaterial/h:code", _NS)
    candidates += act.findall(".//h:manufacturedMaterial/h:code//h:translation", _NS)
    return codes_of(candidates)


def _label(act: etree._Element, codes: tuple[Code, ...]) -> str | None:
    name = act.find(".//h:manufacturedMaterial/h:name", _NS)
    if name is not None and name.text and name.text.strip():
        return " ".join(name.text.split())
    for code in codes:
        if code.display_name and code.code_system not in (ATC3_SYSTEM, ACTIVE_COMPONENT_SYSTEM):
            return " ".join(code.display_name.split())
    return None


def _performer(owner: etree._Element) -> str | None:
    for path in (
        "h:performer/h:assignedEntity/h:representedOrganization/h:name",
        "h:participant/h:participantRole/h:playingEntity/h:name",
        "h:performer/h:assignedEntity/h:assignedPerson/h:name",
    ):
        element = owner.find(path, _NS)
        text = _name_text(element)
        if text:
            return text
    return None


def _person(assigned: etree._Element | None) -> str | None:
    if assigned is None:
        return None
    person = _name_text(assigned.find("h:assignedPerson/h:name", _NS))
    organization = _name_text(assigned.find("h:representedOrganization/h:name", _NS))
    if person and organization:
        return f"{person} ({organization})"
    return person or organization


def _name_text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return " ".join(_all_text(element).split()) or None


def _all_text(element: etree._Element) -> str:
    """The text of an element and its descendants (lxml yields ``str`` for parsed documents)."""
    return " ".join(str(part) for part in element.itertext())
