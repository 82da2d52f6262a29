"""Read a pharmacy's dispensation document (CDA, class 43) into the medicines it dispensed.

Wire format (ANS CI-SIS, ``ansforge/IG-document-core``, after IHE PHARM DIS): a level 3 CDA R2
document of type ``60593-1`` (Dispensation médicamenteuse, class 43) whose section
**FR-Dispensation-medicaments** (templates ``1.2.250.1.213.1.1.2.236``,
``1.3.6.1.4.1.19376.1.9.1.2.3``; LOINC ``60590-7`` "Médicaments délivrés") holds one entry
**FR-Traitement-dispense** per medicine handed over: a ``supply`` (``moodCode="EVN"``, templates
``1.2.250.1.213.1.1.3.204`` and IHE ``1.3.6.1.4.1.19376.1.9.1.3.4``) with

=========================================  ============================================
element                                     read as
=========================================  ============================================
``product/manufacturedProduct/``            the medicine: its name, and the codes of
``manufacturedMaterial``                    ``code`` and its translations — CIP
                                            (``1.2.250.1.215.200.1.1.1``), UCD (``…1.1.2``),
                                            ATC (``2.16.840.1.113883.6.73``) or the ATC
                                            level-3 group (``1.2.250.1.215.200.1.2.1``)
``quantity``                                how much (``value``, ``unit``: EDQM packaging)
``effectiveTime`` (or ``performer/time``)   the day it was handed over
``performer/…/representedOrganization``     the pharmacy (else the document's author's)
=========================================  ============================================

Strictness, as for the reimbursement history: a document that carries the dispense section and
has no entry, or an entry without a date, a medicine coded CIP or UCD, or a quantity, is refused
with :class:`InvalidResource` naming the entry, never a value. A dispensation without the
section (a level 1 PDF, say) is stored as any document and read into nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lxml import etree

from carnet.domain.errors import InvalidResource
from carnet.feeds.cda import DEFAULT_MAX_BYTES, HL7_NAMESPACE, Code, codes_of, parse_timestamp, parse_tree
from carnet.feeds.cnam_hr import ATC3_SYSTEM, CIP_SYSTEM, UCD_SYSTEM

__all__ = [
    "ATC_SYSTEM",
    "DISPENSATION_CODE",
    "DISPENSE_ENTRY_TEMPLATES",
    "DISPENSE_SECTION_CODE",
    "DISPENSE_SECTION_TEMPLATES",
    "DispensedItem",
    "read_dispensation",
    "read_if_dispensation",
    "read_tree_if_dispensation",
]

DISPENSATION_CODE = "60593-1"
"""The LOINC type of a dispensation document (TRE_A05, class 43)."""
DISPENSE_SECTION_CODE = "60590-7"
DISPENSE_SECTION_TEMPLATES = frozenset({"1.2.250.1.213.1.1.2.236", "1.3.6.1.4.1.19376.1.9.1.2.3"})
DISPENSE_ENTRY_TEMPLATES = frozenset({"1.2.250.1.213.1.1.3.204", "1.3.6.1.4.1.19376.1.9.1.3.4"})
ATC_SYSTEM = "2.16.840.1.113883.6.73"
IHE_DIS_DOCUMENT_TEMPLATE = "1.3.6.1.4.1.19376.1.9.1.1.3"
"""IHE PHARM DIS: the dispense document's template."""

_NS = {"h": HL7_NAMESPACE}


@dataclass(frozen=True, slots=True, kw_only=True)
class DispensedItem:
    """One medicine a pharmacy handed over: what, when, how much, by whom."""

    label: str
    day: date
    codes: tuple[Code, ...]
    quantity: str
    pharmacy: str | None = None

    def code_in(self, system: str) -> str | None:
        """Return this medicine's code in ``system`` (an OID), if it has one."""
        return next((code.code for code in self.codes if code.code_system == system), None)


def read_dispensation(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[DispensedItem, ...]:
    """Read a dispensation document into its items.

    Raises:
        InvalidResource: unsafe or malformed XML, no dispense section, or an entry that cannot be read.
        PayloadTooLarge: over ``max_bytes``.
    """
    items = read_tree_if_dispensation(parse_tree(data, max_bytes=max_bytes))
    if items is None:
        raise InvalidResource(
            "The document has no FR-Dispensation-medicaments section (LOINC 60590-7); it is not a "
            "structured dispensation.",
            expression=("ClinicalDocument.component.structuredBody",),
        )
    return items


def read_if_dispensation(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[DispensedItem, ...] | None:
    """Read a CDA into its dispensed items if it carries the dispense section, else return ``None``.

    Raises:
        InvalidResource: not a safe, well-formed CDA; or a dispense section that cannot be read.
    """
    return read_tree_if_dispensation(parse_tree(data, max_bytes=max_bytes))


def read_tree_if_dispensation(root: etree._Element) -> tuple[DispensedItem, ...] | None:
    """:func:`read_if_dispensation` on a document already parsed by :func:`carnet.feeds.cda.parse_tree`."""
    body = root.find("h:component/h:structuredBody", _NS)
    if body is None:
        return None
    sections = [s for s in body.iterfind(".//h:section", _NS) if _is_dispense_section(s)]
    if not sections:
        return None
    author = _organization(root.find("h:author/h:assignedAuthor/h:representedOrganization", _NS))
    items: list[DispensedItem] = []
    for section_number, section in enumerate(sections):
        supplies = [
            supply
            for supply in section.iterfind("h:entry/h:supply", _NS)
            if any(t.get("root") in DISPENSE_ENTRY_TEMPLATES for t in supply.iterfind("h:templateId", _NS))
        ]
        if not supplies:
            raise InvalidResource(
                f"The dispensation's section {section_number + 1} (Médicaments délivrés) has no "
                "FR-Traitement-dispense entry; give one per medicine handed over.",
                expression=("ClinicalDocument.component.structuredBody.component.section.entry",),
            )
        for number, supply in enumerate(supplies):
            items.append(_item(supply, author, f"section {section_number + 1}, entry {number + 1}"))
    items.sort(key=lambda item: (item.day, item.label))
    return tuple(items)


def _is_dispense_section(section: etree._Element) -> bool:
    if any(t.get("root") in DISPENSE_SECTION_TEMPLATES for t in section.iterfind("h:templateId", _NS)):
        return True
    code = section.find("h:code", _NS)
    return code is not None and code.get("code") == DISPENSE_SECTION_CODE


def _item(supply: etree._Element, author: str | None, where: str) -> DispensedItem:
    material = supply.find("h:product/h:manufacturedProduct/h:manufacturedMaterial", _NS)
    codes = _codes(material)
    if not any(code.code_system in (CIP_SYSTEM, UCD_SYSTEM) for code in codes):
        raise InvalidResource(
            f"The dispensation's {where} has no medicine coded CIP ({CIP_SYSTEM}) or UCD "
            f"({UCD_SYSTEM}) in product/manufacturedProduct/manufacturedMaterial/code."
        )
    label = _label(material, codes)
    day = _day(supply.find("h:effectiveTime", _NS)) or _day(supply.find("h:performer/h:time", _NS))
    if day is None:
        raise InvalidResource(f"The dispensation's {where} has no date (effectiveTime) to the day.")
    quantity = supply.find("h:quantity", _NS)
    value = quantity.get("value") if quantity is not None else None
    if not value:
        raise InvalidResource(f"The dispensation's {where} has no quantity (quantity/@value).")
    unit = quantity.get("unit") if quantity is not None else None
    pharmacy = _organization(supply.find("h:performer/h:assignedEntity/h:representedOrganization", _NS))
    return DispensedItem(
        label=label,
        day=day,
        codes=codes,
        quantity=f"{value} {unit.strip('{}')}" if unit and unit != "1" else value,
        pharmacy=pharmacy or author,
    )


def _codes(material: etree._Element | None) -> tuple[Code, ...]:
    if material is None:
        return ()
    return codes_of((material.find("h:code", _NS), *material.findall("h:code//h:translation", _NS)))


def _label(material: etree._Element | None, codes: tuple[Code, ...]) -> str:
    name = material.find("h:name", _NS) if material is not None else None
    if name is not None and name.text and name.text.strip():
        return " ".join(name.text.split())
    for code in codes:
        if code.display_name and code.code_system not in (ATC_SYSTEM, ATC3_SYSTEM):
            return " ".join(code.display_name.split())
    return next(c.code for c in codes if c.code_system in (CIP_SYSTEM, UCD_SYSTEM))


def _day(element: etree._Element | None) -> date | None:
    if element is None:
        return None
    low = element.find("h:low", _NS)
    value = element.get("value") or (low.get("value") if low is not None else None)
    moment = parse_timestamp(value) if value else None
    return moment.date() if moment is not None else None


def _organization(element: etree._Element | None) -> str | None:
    name = element.find("h:name", _NS) if element is not None else None
    text = " ".join(" ".join(str(p) for p in name.itertext()).split()) if name is not None else ""
    return text or None
