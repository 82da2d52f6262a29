"""A pharmacy's dispensation as a structured CDA document (class 43, ``carnet generate --dispensations``).

The generic CI-SIS header (:func:`carnet.synthetic.cda.build_cda`: the pharmacist as author, the
pharmacy as organisation) declaring the IHE PHARM DIS document template, and one section
FR-Dispensation-medicaments (``1.2.250.1.213.1.1.2.236``, IHE ``1.3.6.1.4.1.19376.1.9.1.2.3``,
CCD ``2.16.840.1.113883.10.20.1.8``; LOINC 60590-7) with a narrative table and one entry
FR-Traitement-dispense per medicine (a ``supply`` EVN with its four templates, id, text
reference, the day it was handed over, the quantity in boxes, the medicine coded CIP13 with its
ATC and ATC level-3 group as translations, the pharmacy as performer). The drugs are those of the
prescription the dispensing follows (:func:`carnet.synthetic.reports.draw_dispensing`); the same
seed gives the same bytes. CIP13 codes are synthetic (right shape and key), ATC codes real.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

from carnet.synthetic.cda import NAMESPACE, DocumentCode, build_cda
from carnet.synthetic.cnam_hr import ATC3, ATC3_GROUPS, CIP, LOINC, cip13
from carnet.synthetic.identifiers import oid_from_uuid
from carnet.synthetic.reports import Context, draw_dispensing
from carnet.synthetic.timestamps import french_date

IHE_DIS_DOCUMENT = "1.3.6.1.4.1.19376.1.9.1.1.3"
SECTION_TEMPLATES = ("1.2.250.1.213.1.1.2.236", "1.3.6.1.4.1.19376.1.9.1.2.3", "2.16.840.1.113883.10.20.1.8")
ENTRY_TEMPLATES = (
    "1.3.6.1.4.1.19376.1.9.1.3.4",
    "1.2.250.1.213.1.1.3.204",
    "2.16.840.1.113883.10.20.1.34",
    "1.3.6.1.4.1.19376.1.5.3.1.4.7.3",
)
ATC = "2.16.840.1.113883.6.73"
DISPENSATION = DocumentCode(
    code="60593-1", code_system=LOINC, code_system_name="LOINC", display="Dispensation médicamenteuse"
)


def _el(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{NAMESPACE}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def build_dispensation(ctx: Context, rank: int, *, document_uuid: str, set_uuid: str) -> bytes:
    """Return the ``rank``-th latest dispensing of the patient as a structured dispensation CDA, in UTF-8."""
    dispensing = draw_dispensing(ctx, rank)
    report = dispensing.report
    xml = build_cda(
        document_uuid=document_uuid,
        set_uuid=set_uuid,
        code=DISPENSATION,
        report=replace(report, sections=()),
        person=ctx.person,
        pdf=None,
        model_templates=(IHE_DIS_DOCUMENT,),
    )
    ET.register_namespace("", NAMESPACE)
    root = ET.fromstring(xml)  # noqa: S314 -- the bytes build_cda just wrote, not outside input
    body = root.find(f"{{{NAMESPACE}}}component/{{{NAMESPACE}}}structuredBody")
    assert body is not None  # build_cda writes one when no PDF is given
    section = _el(_el(body, "component"), "section")
    for template in SECTION_TEMPLATES:
        _el(section, "templateId", root=template)
    _el(section, "id", root=oid_from_uuid(document_uuid), extension="dispensation")
    _el(section, "code", code="60590-7", displayName="Médicaments délivrés", codeSystem=LOINC)
    _el(section, "title", "Médicaments délivrés")
    day = report.created.date()
    pharmacy = ctx.profile.pharmacist.organization.name
    text = _el(section, "text")
    table = _el(text, "table", border="0")
    header = _el(_el(table, "thead"), "tr")
    for cell in ("Médicament", "Quantité", "Date de délivrance", "Prescrit par"):
        _el(header, "th", cell)
    rows = _el(table, "tbody")
    author = _el(section, "author")
    _el(author, "time", value=report.created.strftime("%Y%m%d%H%M%S%z"))
    _el(_el(_el(author, "assignedAuthor"), "representedOrganization"), "name", pharmacy)
    for number, drug in enumerate(dispensing.drugs, start=1):
        row = _el(rows, "tr", ID=f"disp-{number}")
        for cell in (
            drug.label,
            f"{dispensing.boxes} boîte(s)",
            french_date(day),
            dispensing.prescriber.display_name,
        ):
            _el(row, "td", cell)
        supply = _el(_el(section, "entry"), "supply", classCode="SPLY", moodCode="EVN")
        for template in ENTRY_TEMPLATES:
            _el(supply, "templateId", root=template)
        _el(supply, "id", root=oid_from_uuid(document_uuid), extension=f"disp-{number}")
        _el(_el(supply, "text"), "reference", value=f"#disp-{number}")
        _el(supply, "statusCode", code="completed")
        _el(supply, "effectiveTime", value=day.strftime("%Y%m%d"))
        _el(supply, "quantity", value=str(dispensing.boxes), unit="{boite}")
        material = _el(_el(_el(supply, "product"), "manufacturedProduct"), "manufacturedMaterial")
        code = _el(material, "code", code=cip13(drug.label), displayName=drug.label.upper(), codeSystem=CIP)
        _el(code, "translation", code=drug.atc, codeSystem=ATC)
        group = ATC3_GROUPS.get(drug.atc[:3], f"GROUPE ATC {drug.atc[:3]}")
        _el(code, "translation", code=drug.atc[:3], displayName=group, codeSystem=ATC3)
        _el(material, "name", drug.label.upper())
        performer = _el(supply, "performer", typeCode="PRF")
        _el(performer, "time", value=day.strftime("%Y%m%d"))
        _el(_el(_el(performer, "assignedEntity"), "representedOrganization"), "name", pharmacy)
    written: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return written
