"""CDA R2 documents with the French CI-SIS header, level 1 (PDF inside) or level 3 (sections).

The header follows the ANS examples (TestContenuCDA): ``realmCode FR``, ``typeId
POCD_HD000040``, the HL7 France and CI-SIS template ids (plus IHE XDS-SD for level 1), the
document id and set id, the LOINC code, ``confidentialityCode N``, ``languageCode fr-FR``, the
patient under the test INS OID ``1.2.250.1.213.1.4.10``, the author under the RPPS OID with the
CI-SIS role code (``G15_10/SM54``), the custodian, the legal authenticator, the service event with
the practice setting, and the encounter with the facility type. A level-1 body is the PDF in
base64; a level-3 body has one section per report section, its narrative a paragraph list and a
table.

A level-3 document declares the template of its CI-SIS content model (volet) last, so that its
format code follows from the ANS table ASS_A11 as for any producer's document; it carries the
model's narrative sections but not the coded entries the model's schematron also asks for. That
is what a record needs to store, index and show the document, not what an ANS conformity test
needs.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from carnet.synthetic.identifiers import oid_from_uuid
from carnet.synthetic.patient import Person
from carnet.synthetic.professionals import Organization, Professional
from carnet.synthetic.reports import Report, Section
from carnet.synthetic.terminology import (
    AUTHOR_SPECIALTY_OID,
    CONFIDENTIALITY_OID,
    FACILITY_TYPE_OID,
    FACILITY_TYPES,
    IDNPS_OID,
    IDNST_OID,
    INS_NIR_TEST_OID,
    NON_PS_PRODUCER_OID,
    PRACTICE_SETTING_OID,
    PRACTICE_SETTINGS,
)
from carnet.synthetic.timestamps import cda_ts

NAMESPACE = "urn:hl7-org:v3"

HL7_FRANCE_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"
XDS_SD_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentCode:
    """The ``code`` of a ClinicalDocument: a LOINC type, or a TRE_A05 code when LOINC has none."""

    code: str
    code_system: str
    code_system_name: str
    display: str


def _el(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def build_cda(
    *,
    document_uuid: str,
    set_uuid: str,
    code: DocumentCode,
    report: Report,
    person: Person,
    pdf: bytes | None,
    model_templates: tuple[str, ...],
) -> bytes:
    """Return a CDA R2 document in UTF-8: level 1 around ``pdf``, else level 3 from the report's sections.

    ``model_templates`` are the template ids of the content model, written after the generic ones.
    """
    # Tags are written unqualified under a default namespace declared on the root: every element
    # is in the HL7 v3 namespace and attributes in none, as CDA wants.
    root = ET.Element("ClinicalDocument", {"xmlns": NAMESPACE})
    _el(root, "realmCode", code="FR")
    _el(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    _el(root, "templateId", root=HL7_FRANCE_TEMPLATE)
    _el(root, "templateId", root=CISIS_TEMPLATE)
    if pdf is not None:
        _el(root, "templateId", root=XDS_SD_TEMPLATE)
    for template in model_templates:
        _el(root, "templateId", root=template)
    _el(root, "id", root=oid_from_uuid(document_uuid))
    _el(
        root,
        "code",
        code=code.code,
        displayName=code.display,
        codeSystem=code.code_system,
        codeSystemName=code.code_system_name,
    )
    _el(root, "title", report.title)
    _el(root, "effectiveTime", value=cda_ts(report.created))
    _el(root, "confidentialityCode", code="N", displayName="Normal", codeSystem=CONFIDENTIALITY_OID)
    _el(root, "languageCode", code="fr-FR")
    _el(root, "setId", root=oid_from_uuid(set_uuid))
    _el(root, "versionNumber", value="1")
    _record_target(root, person)
    _author(root, report)
    organization = report.organization
    if organization is not None:
        custodian = _el(_el(root, "custodian"), "assignedCustodian")
        _organization(custodian, "representedCustodianOrganization", organization)
    if report.author is not None:
        authenticator = _el(root, "legalAuthenticator")
        _el(authenticator, "time", value=cda_ts(report.created))
        _el(authenticator, "signatureCode", code="S")
        entity = _el(authenticator, "assignedEntity")
        _el(entity, "id", root=IDNPS_OID, extension=report.author.idnps)
        _person_name(_el(entity, "assignedPerson"), report.author)
    _service_event(root, report, code)
    _encounter(root, report)
    component = _el(root, "component")
    if pdf is not None:
        body = _el(component, "nonXMLBody")
        _el(
            body,
            "text",
            base64.b64encode(pdf).decode("ascii"),
            mediaType="application/pdf",
            representation="B64",
        )
    else:
        body = _el(component, "structuredBody")
        for section in report.sections:
            _section(_el(body, "component"), section)
    text = ET.tostring(root, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text.encode("utf-8")


def _address(parent: ET.Element, line: str, postcode: str, city: str, use: str | None = None) -> None:
    addr = _el(parent, "addr", use=use) if use else _el(parent, "addr")
    _el(addr, "streetAddressLine", line)
    _el(addr, "postalCode", postcode)
    _el(addr, "city", city)
    _el(addr, "country", "FRANCE")


def _record_target(root: ET.Element, person: Person) -> None:
    role = _el(_el(root, "recordTarget"), "patientRole")
    _el(role, "id", root=INS_NIR_TEST_OID, extension=person.nir)
    _address(role, person.address.line, person.address.commune.postcode, person.address.commune.name, "H")
    _el(role, "telecom", value="tel:" + person.phone.replace(" ", ""), use="MC")
    patient = _el(role, "patient", classCode="PSN")
    name = _el(patient, "name")
    _el(name, "family", person.family.upper(), qualifier="BR")
    _el(name, "given", " ".join(person.given_names))
    _el(name, "given", person.given, qualifier="BR")
    _el(name, "family", (person.usual_family or person.family).upper(), qualifier="CL")
    _el(name, "given", person.given, qualifier="CL")
    gender = ("M", "Masculin") if person.sex == "male" else ("F", "Féminin")
    _el(
        patient,
        "administrativeGenderCode",
        code=gender[0],
        displayName=gender[1],
        codeSystem="2.16.840.1.113883.5.1",
    )
    _el(patient, "birthTime", value=person.birth_date.strftime("%Y%m%d"))
    place = _el(_el(_el(patient, "birthplace"), "place"), "addr")
    if person.birthplace.startswith("99"):
        _el(place, "country", person.birthplace_name.upper())
    else:
        _el(place, "county", person.birthplace)
        _el(place, "city", person.birthplace_name.upper())


def _person_name(parent: ET.Element, professional: Professional) -> None:
    name = _el(parent, "name")
    _el(name, "prefix", "MME" if professional.sex == "female" else "M")
    _el(name, "given", professional.given)
    _el(name, "family", professional.family.upper())
    if professional.is_doctor:
        _el(name, "suffix", "DR")


def _organization(parent: ET.Element, tag: str, organization: Organization) -> None:
    element = _el(parent, tag)
    system, value = organization.identifier
    if system.endswith(IDNST_OID):
        _el(element, "id", root=IDNST_OID, extension=value)
    else:
        _el(element, "id", root=oid_from_uuid(organization.uuid))
    _el(element, "name", organization.name)
    _el(element, "telecom", value="tel:" + organization.phone.replace(" ", ""), use="WP")
    address = organization.address
    _address(element, address.line, address.commune.postcode, address.commune.name)


def _author(root: ET.Element, report: Report) -> None:
    author = _el(root, "author")
    _el(author, "time", value=cda_ts(report.created))
    assigned = _el(author, "assignedAuthor")
    professional = report.author
    if professional is not None:
        _el(assigned, "id", root=IDNPS_OID, extension=professional.idnps)
        _el(
            assigned,
            "code",
            code=professional.author_code,
            displayName=professional.role_label,
            codeSystem=AUTHOR_SPECIALTY_OID,
        )
        _el(assigned, "telecom", value="tel:" + professional.phone.replace(" ", ""), use="WP")
        _person_name(_el(assigned, "assignedPerson"), professional)
        _organization(assigned, "representedOrganization", professional.organization)
    elif report.organization is not None:
        # A feed's document: the author is the insurer's system, not a person (TRE_A00 ALIM_AM).
        _el(assigned, "id", root=oid_from_uuid(report.organization.uuid))
        _el(
            assigned,
            "code",
            code="ALIM_AM",
            displayName="Alimentation automatique à partir du Système d'Information de l'Assurance Maladie",
            codeSystem=NON_PS_PRODUCER_OID,
        )
        device = _el(assigned, "assignedAuthoringDevice")
        _el(device, "manufacturerModelName", "Assurance Maladie")
        _el(device, "softwareName", "Historique des remboursements")
        _organization(assigned, "representedOrganization", report.organization)


def _service_event(root: ET.Element, report: Report, code: DocumentCode) -> None:
    event = _el(_el(root, "documentationOf"), "serviceEvent")
    _el(event, "code", code=code.code, displayName=code.display, codeSystem=code.code_system)
    period = _el(event, "effectiveTime")
    _el(period, "low", value=cda_ts(report.period[0]))
    _el(period, "high", value=cda_ts(report.period[1]))
    organization = report.organization
    if organization is None:
        return
    entity = _el(_el(event, "performer", typeCode="PRF"), "assignedEntity")
    if report.author is not None:
        _el(entity, "id", root=IDNPS_OID, extension=report.author.idnps)
        _person_name(_el(entity, "assignedPerson"), report.author)
    else:
        _el(entity, "id", root=oid_from_uuid(organization.uuid))
    represented = _el(entity, "representedOrganization")
    _el(represented, "name", organization.name)
    _el(
        represented,
        "standardIndustryClassCode",
        code=organization.practice_setting,
        displayName=PRACTICE_SETTINGS[organization.practice_setting],
        codeSystem=PRACTICE_SETTING_OID,
    )


def _encounter(root: ET.Element, report: Report) -> None:
    organization = report.organization
    if organization is None:
        return
    encounter = _el(_el(root, "componentOf"), "encompassingEncounter")
    period = _el(encounter, "effectiveTime")
    _el(period, "low", value=cda_ts(report.period[0]))
    _el(period, "high", value=cda_ts(report.period[1]))
    facility = _el(_el(encounter, "location"), "healthCareFacility")
    _el(
        facility,
        "code",
        code=organization.facility_type,
        displayName=FACILITY_TYPES[organization.facility_type],
        codeSystem=FACILITY_TYPE_OID,
    )


def _section(component: ET.Element, section: Section) -> None:
    element = _el(component, "section")
    if section.loinc is not None:
        _el(
            element,
            "code",
            code=section.loinc,
            displayName=section.heading,
            codeSystem="2.16.840.1.113883.6.1",
        )
    _el(element, "title", section.heading)
    text = _el(element, "text")
    for paragraph in section.paragraphs:
        _el(text, "paragraph", paragraph)
    if section.table:
        table = _el(text, "table", border="1", width="100%")
        header, *rows = section.table
        head_row = _el(_el(table, "thead"), "tr")
        for cell in header:
            _el(head_row, "th", cell)
        body = _el(table, "tbody")
        for row in rows:
            body_row = _el(body, "tr")
            for cell in row:
                _el(body_row, "td", cell)
