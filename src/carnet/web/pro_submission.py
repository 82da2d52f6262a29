"""Submitting a document from the professional portal: the form, checked, and its DocumentReference.

A PDF carries its metadata in the form (title, DMP class, LOINC type, date, visibility flags)
and is published as an IHE MHD Simplified Publish (ITI-105) with the professional as author
(idNat_PS). A CDA R2 document carries its own metadata in its header
(``carnet.feeds.cda_metadata``); it must name the record's INS, and the form adds only the
visibility flags. Either may replace one of the professional's own documents (``relatesTo``
``replaces``); the record service decides, as for any write.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from starlette.datastructures import FormData, UploadFile

from carnet.domain.consent import IDNPS_SYSTEM
from carnet.domain.principal import Principal
from carnet.feeds.cda import parse_cda
from carnet.feeds.cda_metadata import document_reference_from_cda
from carnet.services.records import Records, instant
from carnet.web.csrf import form_text
from carnet.web.record_summary import CLASS_SYSTEM, VISIBILITY_SYSTEM

__all__ = ["CLASSES", "FLAGS", "ID", "TYPES", "FormProblem", "Upload", "publish", "read_upload"]

LOINC_SYSTEM = "http://loinc.org"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
FORMAT_SYSTEM = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""A FHIR id (the only shape of id that reaches the record service from a form)."""

#: The DMP document classes (TRE_A03 classCode), French label, English label.
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("10", "Compte rendu", "Report"),
    ("11", "Synthèse", "Summary"),
    ("31", "Imagerie médicale", "Medical imaging"),
    ("42", "Prescription", "Prescription"),
    ("43", "Dispensation", "Dispensation"),
    ("44", "Plan de soins", "Care plan"),
    ("45", "Traitement administré", "Administered treatment"),
    ("52", "Certificat", "Certificate"),
    ("90", "Document du patient", "Patient's document"),
)
#: Document types offered on the form (LOINC typeCode): code, French display, English label.
TYPES: tuple[tuple[str, str, str], ...] = (
    ("11488-4", "CR ou fiche de consultation ou de visite", "Consultation note"),
    ("11490-0", "Lettre de liaison à la sortie d'un établissement de soins", "Discharge letter"),
    ("11502-2", "CR d'examens biologiques", "Laboratory report"),
    ("18748-4", "CR d'imagerie médicale", "Imaging report"),
    ("57833-6", "Prescription de produits de santé", "Prescription"),
    ("60591-5", "Synthèse", "Patient summary"),
    ("11369-6", "Historique des vaccinations", "Immunisation history"),
    ("34133-9", "Synthèse d'épisode de soins", "Care episode summary"),
)
#: Visibility flags a professional may set on a document (TRE_A07).
FLAGS = ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")


def _flags(form: FormData) -> list[str]:
    return [flag for flag in FLAGS if form.get(f"flag_{flag}") == "on"]


def _labels(flags: list[str], existing: list[Any] | None = None) -> list[dict[str, Any]]:
    labels = [
        label
        for label in existing or []
        if not (
            isinstance(label, dict)
            and any(c.get("system") == VISIBILITY_SYSTEM for c in label.get("coding") or [])
        )
    ]
    if not labels:
        labels = [{"coding": [{"system": CONFIDENTIALITY_SYSTEM, "code": "N", "display": "normal"}]}]
    labels.extend({"coding": [{"system": VISIBILITY_SYSTEM, "code": flag}]} for flag in flags)
    return labels


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    """What the submission form carried, checked."""

    content: bytes
    is_pdf: bool
    title: str
    class_code: str
    type_code: str
    day: date
    flags: list[str]
    replaces: str | None


class FormProblem(Exception):
    """A submission form that cannot be used; ``message`` is a catalog message id."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def read_upload(form: FormData, *, limit: int) -> Upload:
    """Read and check the submission form (the file, then the metadata a PDF needs).

    Raises:
        FormProblem: no file, too large, neither PDF nor XML, or missing metadata for a PDF.
    """
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise FormProblem("Choose the file of the document (PDF or CDA).")
    content = await file.read(limit + 1)
    if not content:
        raise FormProblem("Choose the file of the document (PDF or CDA).")
    if len(content) > limit:
        raise FormProblem("The file is too large.")
    is_pdf = content.startswith(b"%PDF-")
    if not is_pdf and not content.lstrip().startswith(b"<"):
        raise FormProblem("Only PDF files and CDA R2 documents (XML) can be submitted.")
    class_code = form_text(form, "class_code", 4)
    type_code = form_text(form, "type_code", 12)
    if is_pdf and class_code not in {code for code, _, _ in CLASSES}:
        raise FormProblem("Choose the class of the document.")
    if is_pdf and type_code not in {code for code, _, _ in TYPES}:
        raise FormProblem("Choose the type of the document.")
    try:
        day = date.fromisoformat(form_text(form, "date", 10))
    except ValueError:
        if is_pdf:
            raise FormProblem("Give the date of the document.") from None
        day = datetime.now(UTC).date()
    title = form_text(form, "title", 200)
    if is_pdf and not title:
        raise FormProblem("Give the document a title.")
    replaces = form_text(form, "replaces", 64) or None
    if replaces is not None and not ID.fullmatch(replaces):
        replaces = None
    return Upload(
        content=content,
        is_pdf=is_pdf,
        title=title,
        class_code=class_code,
        type_code=type_code,
        day=day,
        flags=_flags(form),
        replaces=replaces,
    )


def pdf_document(principal: Principal, patient_id: str, upload: Upload, now: datetime) -> dict[str, Any]:
    """Build the Simplified Publish DocumentReference of a PDF, its metadata from the form."""
    type_display = next(fr for code, fr, _ in TYPES if code == upload.type_code)
    class_display = next(fr for code, fr, _ in CLASSES if code == upload.class_code)
    author: dict[str, Any] = {"identifier": {"system": IDNPS_SYSTEM, "value": principal.professional_id}}
    if principal.display:
        author["display"] = principal.display
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC_SYSTEM, "code": upload.type_code, "display": type_display}]},
        "category": [
            {"coding": [{"system": CLASS_SYSTEM, "code": upload.class_code, "display": class_display}]}
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": instant(now),
        "author": [author],
        "description": upload.title,
        "securityLabel": _labels(upload.flags),
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "language": "fr-FR",
                    "data": base64.b64encode(upload.content).decode("ascii"),
                    "title": upload.title,
                    "creation": upload.day.isoformat(),
                },
                "format": {"system": FORMAT_SYSTEM, "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"},
            }
        ],
        "context": {"period": {"start": upload.day.isoformat()}},
    }


def cda_document(patient_id: str, upload: Upload, patient: Mapping[str, Any]) -> dict[str, Any]:
    """Build the DocumentReference of a CDA from its header (it must name this patient's INS).

    Raises:
        FormProblem: the CDA is about another patient. InvalidResource: not a safe CDA R2.
    """
    cda = parse_cda(upload.content)
    ins = cda.ins
    values = {str(i.get("value")) for i in patient.get("identifier") or [] if isinstance(i, dict)}
    if ins is None or ins.extension not in values:
        raise FormProblem("This CDA document is about another patient (its INS is not this record's).")
    document = document_reference_from_cda(cda, upload.content, patient_id=patient_id)
    if upload.flags:
        document["securityLabel"] = _labels(upload.flags, document.get("securityLabel"))
    return document


def publish(records: Records, principal: Principal, patient_id: str, upload: Upload) -> str:
    """Publish the uploaded document into the record (replacing one if asked); return its id."""
    patient = records.read("Patient", patient_id).resource or {}
    now = datetime.now(UTC)
    document = (
        pdf_document(principal, patient_id, upload, now)
        if upload.is_pdf
        else cda_document(patient_id, upload, patient)
    )
    if upload.replaces is not None:
        document["relatesTo"] = [
            {"code": "replaces", "target": {"reference": f"DocumentReference/{upload.replaces}"}}
        ]
    result = records.publish(document)
    return result.stored.resource_id
