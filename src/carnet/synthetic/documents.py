"""Documents of the record as FHIR ``DocumentReference`` + ``Binary`` pairs (IHE MHD, French PDSm).

Each kind of document has its DMP class (TRE_A03), its type (LOINC, or TRE_A05 when LOINC has
none), its format, and the writer of its words. Type and class agree with the ANS association
table ASS_X04 (which files the vaccination history under 52, certificates and declarations):

==============================  =====  ==========  ===========================================
kind                            class  type        content
==============================  =====  ==========  ===========================================
consultation note               10     11488-4     CDA level 1, PDF inside
prescription                    42     57833-6     CDA level 1, PDF inside
dispensation                    43     60593-1     CDA level 1, PDF inside
lab report                      10     11502-2     CDA level 3, sections with tables
vaccination history             52     11369-6     CDA level 3, a table of vaccinations
imaging report                  31     18748-4     CDA level 1, PDF inside
discharge letter                10     11490-0     CDA level 1, PDF inside
reimbursement history           60     REMB        CDA level 1, PDF inside (author: the insurer)
patient's own summary           90     EXPPAT_2    plain PDF (author: the patient)
==============================  =====  ==========  ===========================================

The DocumentReference carries the metadata the DMP indexes: ``masterIdentifier`` is the CDA
document id (``urn:oid:2.25.…``), ``securityLabel`` the confidentiality ``N``, ``context`` the
period of care, facility type (TRE_R02) and practice setting; ``content.attachment`` points at
the Binary by ``urn:uuid`` and gives the size and the base64 SHA-1 hash of its bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from carnet.synthetic.cda import DocumentCode, build_cda
from carnet.synthetic.cnam_hr import CNAM_HR_TEMPLATE, build_cnam_hr
from carnet.synthetic.dispensation import IHE_DIS_DOCUMENT, build_dispensation
from carnet.synthetic.identifiers import new_uuid, oid_from_uuid, urn_uuid
from carnet.synthetic.patient import Person
from carnet.synthetic.pdf import render_pdf
from carnet.synthetic.reports import (
    Context,
    Report,
    write_consultation,
    write_discharge_letter,
    write_dispensation,
    write_imaging_report,
    write_lab_report,
    write_patient_summary,
    write_prescription,
    write_reimbursements,
    write_vaccination_history,
)
from carnet.synthetic.terminology import (
    CLASS_CODE_SYSTEM,
    CONFIDENTIALITY,
    DMP_CLASSES,
    FACILITY_TYPE_SYSTEM,
    FACILITY_TYPES,
    JSON,
    LOINC,
    LOINC_OID,
    NON_PS_PRODUCER_OID,
    PRACTICE_SETTING_SYSTEM,
    PRACTICE_SETTINGS,
    TYPE_CODE_COMPLEMENT_OID,
    TYPE_CODE_COMPLEMENT_SYSTEM,
    URI_SYSTEM,
    coding,
    concept,
)
from carnet.synthetic.timestamps import fhir_instant, french_date


class DocumentKind(StrEnum):
    """The kinds of documents a synthetic record holds, in the order they are handed out."""

    CONSULTATION = "consultation"
    PRESCRIPTION = "prescription"
    DISPENSATION = "dispensation"
    LAB_REPORT = "lab_report"
    VACCINATION_HISTORY = "vaccination_history"
    IMAGING_REPORT = "imaging_report"
    DISCHARGE_LETTER = "discharge_letter"
    REIMBURSEMENTS = "reimbursements"
    PATIENT_SUMMARY = "patient_summary"


class Format(StrEnum):
    """How a document's bytes are laid out."""

    CDA_LEVEL_1 = "cda_level_1"
    """CDA R2 with a non-XML body: the PDF in base64."""
    CDA_LEVEL_3 = "cda_level_3"
    """CDA R2 with a structured body: sections, narrative tables."""
    PDF = "pdf"
    """A plain PDF, as patients upload them."""


@dataclass(frozen=True, slots=True)
class _Spec:
    class_code: str
    code: DocumentCode
    format: Format
    format_code: tuple[str, str, str | None]
    """(system, code, display) of the XDS formatCode."""
    writer: Callable[[Context, int], Report]
    model_templates: tuple[str, ...] = ()


def _loinc(code: str, display: str) -> DocumentCode:
    return DocumentCode(code=code, code_system=LOINC_OID, code_system_name="LOINC", display=display)


def _complement(code: str, display: str) -> DocumentCode:
    return DocumentCode(
        code=code,
        code_system=TYPE_CODE_COMPLEMENT_OID,
        code_system_name="TRE_A05-TypeDocComplementaire",
        display=display,
    )


IHE_FORMAT_SYSTEM = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
ANS_FORMAT_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.2.282"
"""TRE_A06-FormatCodeComplementaire: the format codes the ANS adds for its own CDA models."""

# Format codes from the ANS table ASS_A11 (CDA model → formatCode), as the CDA feed reads them.
_PDF_IN_CDA = (IHE_FORMAT_SYSTEM, "urn:ihe:iti:xds-sd:pdf:2008", "XDS-SD PDF")
_XD_LAB = (IHE_FORMAT_SYSTEM, "urn:ihe:lab:xd-lab:2008", "XD-LAB")
_VACCINATIONS = (ANS_FORMAT_SYSTEM, "urn:asip:ci-sis:vac:2019", None)
_MIME_TYPE = (IHE_FORMAT_SYSTEM, "urn:ihe:iti:xds:2017:mimeTypeSufficient", "mimeType Sufficient")

_SPECS: dict[DocumentKind, _Spec] = {
    DocumentKind.CONSULTATION: _Spec(
        "10",
        _loinc("11488-4", "CR ou fiche de consultation ou de visite"),
        Format.CDA_LEVEL_1,
        _PDF_IN_CDA,
        write_consultation,
    ),
    DocumentKind.PRESCRIPTION: _Spec(
        "42",
        _loinc("57833-6", "Prescription de produits de santé"),
        Format.CDA_LEVEL_1,
        _PDF_IN_CDA,
        write_prescription,
    ),
    DocumentKind.DISPENSATION: _Spec(
        "43",
        _loinc("60593-1", "Dispensation médicamenteuse"),
        Format.CDA_LEVEL_1,
        _PDF_IN_CDA,
        write_dispensation,
    ),
    DocumentKind.LAB_REPORT: _Spec(
        "10",
        _loinc("11502-2", "CR d'examens biologiques"),
        Format.CDA_LEVEL_3,
        _XD_LAB,
        write_lab_report,
        # IHE XD-LAB, then the CI-SIS model "CR d'examens biologiques".
        model_templates=("1.3.6.1.4.1.19376.1.3.3", "1.2.250.1.213.1.1.1.55"),
    ),
    DocumentKind.VACCINATION_HISTORY: _Spec(
        "52",
        _loinc("11369-6", "Historique des vaccinations"),
        Format.CDA_LEVEL_3,
        _VACCINATIONS,
        write_vaccination_history,
        # The CI-SIS model "Historique des vaccinations" (VAC).
        model_templates=("1.2.250.1.213.1.1.1.37",),
    ),
    DocumentKind.IMAGING_REPORT: _Spec(
        "31",
        _loinc("18748-4", "CR d'imagerie médicale"),
        Format.CDA_LEVEL_1,
        _PDF_IN_CDA,
        write_imaging_report,
    ),
    DocumentKind.DISCHARGE_LETTER: _Spec(
        "10",
        _loinc("11490-0", "Lettre de liaison à la sortie d'un établissement de soins"),
        Format.CDA_LEVEL_1,
        _PDF_IN_CDA,
        write_discharge_letter,
    ),
    DocumentKind.REIMBURSEMENTS: _Spec(
        "60",
        _complement("REMB", "Données de remboursement"),
        Format.CDA_LEVEL_1,
        _PDF_IN_CDA,
        write_reimbursements,
    ),
    DocumentKind.PATIENT_SUMMARY: _Spec(
        "90",
        _complement("EXPPAT_2", "Autre document du patient"),
        Format.PDF,
        _MIME_TYPE,
        write_patient_summary,
    ),
}

_CNAM_HR = _Spec(
    "60",
    _complement("REMB", "Données de remboursement"),
    Format.CDA_LEVEL_3,
    (ANS_FORMAT_SYSTEM, "urn:asip:ci-sis:hr:2019", None),
    write_reimbursements,
    model_templates=(CNAM_HR_TEMPLATE,),
)
"""The reimbursement history as the structured CNAM-HR volet (``carnet generate --cnam-hr``)."""

_DISPENSATION = _Spec(
    "43",
    _loinc("60593-1", "Dispensation médicamenteuse"),
    Format.CDA_LEVEL_3,
    (IHE_FORMAT_SYSTEM, "urn:ihe:pharm:dis:2010", "DIS"),
    write_dispensation,
    model_templates=(IHE_DIS_DOCUMENT,),
)
"""A dispensation as the structured FR-Dispensation-medicaments section (``carnet generate --dispensations``)."""

#: The kinds in the order documents are handed out: the first eight cover the classes the DMP
#: receives from professionals and the insurer; a ninth is the patient's own; more repeat the cycle.
KINDS: tuple[DocumentKind, ...] = tuple(DocumentKind)


def kind_of(index: int) -> tuple[DocumentKind, int]:
    """Return the kind of a patient's ``index``-th document and its rank among documents of that kind."""
    return KINDS[index % len(KINDS)], index // len(KINDS)


def class_of(kind: DocumentKind) -> str:
    """Return the DMP class code (TRE_A03) of a kind of document."""
    return _SPECS[kind].class_code


def format_of(kind: DocumentKind) -> Format:
    """Return how documents of a kind are laid out."""
    return _SPECS[kind].format


def document_entries(
    ctx: Context,
    kind: DocumentKind,
    rank: int,
    *,
    pdf_bytes: int | None = None,
    cnam_hr: bool = False,
    dispensations: bool = False,
) -> list[tuple[str, JSON]]:
    """Write one document and return its ``Binary`` and ``DocumentReference`` as (uuid, resource).

    ``pdf_bytes``, when given, pads the PDF (embedded or plain) to about that many bytes.
    ``cnam_hr`` writes the reimbursement history as the structured CNAM-HR volet
    (:mod:`carnet.synthetic.cnam_hr`) rather than a PDF; ``dispensations`` the pharmacy's
    dispensation as its structured entries (:mod:`carnet.synthetic.dispensation`).
    """
    spec = _SPECS[kind]
    if cnam_hr and kind is DocumentKind.REIMBURSEMENTS:
        spec = _CNAM_HR
    if dispensations and kind is DocumentKind.DISPENSATION:
        spec = _DISPENSATION
    report = spec.writer(ctx, rank)
    document_uuid, set_uuid = new_uuid(ctx.rng), new_uuid(ctx.rng)
    reference_uuid, binary_uuid = new_uuid(ctx.rng), new_uuid(ctx.rng)
    person = ctx.person
    if spec is _CNAM_HR:
        content = build_cnam_hr(ctx, rank, document_uuid=document_uuid, set_uuid=set_uuid)
    elif spec is _DISPENSATION:
        content = build_dispensation(ctx, rank, document_uuid=document_uuid, set_uuid=set_uuid)
    elif spec.format is Format.CDA_LEVEL_3:
        content = build_cda(
            document_uuid=document_uuid,
            set_uuid=set_uuid,
            code=spec.code,
            report=report,
            person=person,
            pdf=None,
            model_templates=spec.model_templates,
        )
    else:
        pdf = render_pdf(report, patient_lines=_patient_lines(person), rng=ctx.rng, pad_to=pdf_bytes)
        if spec.format is Format.PDF:
            content = pdf
        else:
            content = build_cda(
                document_uuid=document_uuid,
                set_uuid=set_uuid,
                code=spec.code,
                report=report,
                person=person,
                pdf=pdf,
                model_templates=spec.model_templates,
            )
    content_type = "application/pdf" if spec.format is Format.PDF else "text/xml"
    binary: JSON = {
        "resourceType": "Binary",
        "contentType": content_type,
        "securityContext": {"reference": urn_uuid(reference_uuid)},
        "data": base64.b64encode(content).decode("ascii"),
    }
    reference = _document_reference(
        spec, report, person, document_uuid, urn_uuid(binary_uuid), content, content_type, reference_uuid
    )
    return [(binary_uuid, binary), (reference_uuid, reference)]


def _patient_lines(person: Person) -> tuple[str, ...]:
    born = "Né" if person.sex == "male" else "Née"
    return (
        f"Patient : {person.display_name}",
        f"{born} le {french_date(person.birth_date)} - INS (NIR de test) : {person.nir}",
        f"Adresse : {person.address.text}",
    )


def _document_reference(
    spec: _Spec,
    report: Report,
    person: Person,
    document_uuid: str,
    binary_url: str,
    content: bytes,
    content_type: str,
    reference_uuid: str,
) -> JSON:
    type_system = LOINC if spec.code.code_system == LOINC_OID else TYPE_CODE_COMPLEMENT_SYSTEM
    format_system, format_code, format_display = spec.format_code
    reference: JSON = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": URI_SYSTEM, "value": "urn:oid:" + oid_from_uuid(document_uuid)},
        "identifier": [{"use": "official", "system": URI_SYSTEM, "value": urn_uuid(reference_uuid)}],
        "status": "current",
        "type": concept(type_system, spec.code.code, spec.code.display),
        "category": [concept(CLASS_CODE_SYSTEM, spec.class_code, DMP_CLASSES[spec.class_code])],
        "subject": {"reference": person.url},
        "date": fhir_instant(report.created),
        "author": [_author(report, person)],
    }
    if report.author is not None:
        reference["authenticator"] = {
            "reference": report.author.practitioner_url,
            "display": report.author.display_name,
        }
    if report.organization is not None:
        reference["custodian"] = {"reference": report.organization.url, "display": report.organization.name}
    reference["description"] = report.title
    reference["securityLabel"] = [concept(CONFIDENTIALITY, "N", "normal")]
    reference["content"] = [
        {
            "attachment": {
                "contentType": content_type,
                "language": "fr-FR",
                "url": binary_url,
                "size": len(content),
                # FHIR R4 defines Attachment.hash as the base64 SHA-1 of the data: an index, not a seal.
                "hash": base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode(
                    "ascii"
                ),
                "title": report.title,
                "creation": fhir_instant(report.created),
            },
            "format": coding(format_system, format_code, format_display),
        }
    ]
    reference["context"] = _context(report)
    return reference


def _author(report: Report, person: Person) -> JSON:
    if report.author is not None:
        return {"reference": report.author.role_url, "display": report.author.display_name}
    if report.organization is not None:
        return {"reference": report.organization.url, "display": report.organization.name}
    return {"reference": person.url, "display": person.display_name}


def _context(report: Report) -> JSON:
    context: JSON = {
        "period": {"start": fhir_instant(report.period[0]), "end": fhir_instant(report.period[1])}
    }
    organization = report.organization
    if organization is None:
        # A document of the patient's own: the producer is the patient (TRE_A00 EXP_PATIENT).
        context["facilityType"] = concept(
            "urn:oid:" + NON_PS_PRODUCER_OID, "EXP_PATIENT", "Expression personnelle du patient"
        )
        return context
    context["facilityType"] = concept(
        FACILITY_TYPE_SYSTEM, organization.facility_type, FACILITY_TYPES[organization.facility_type]
    )
    context["practiceSetting"] = concept(
        PRACTICE_SETTING_SYSTEM,
        organization.practice_setting,
        PRACTICE_SETTINGS[organization.practice_setting],
    )
    return context
