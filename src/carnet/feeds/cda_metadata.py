"""Derive a CDA R2 document's sharing metadata from its header: a FHIR DocumentReference.

The DMP indexes every document by XDS DocumentEntry metadata; when the producer sends only the
CDA, the CI-SIS reads that metadata from the CDA header. IHE MHD (and its French profile PDSm)
carries the same metadata as a FHIR R4 DocumentReference. The mapping, element by element:

=================================  =============================  ==================================
DocumentReference                  XDS DocumentEntry              CDA R2 header
=================================  =============================  ==================================
masterIdentifier                   uniqueId                       ClinicalDocument/id
type                               typeCode                       code
category                           classCode                      code, through ANS table ASS_X04
securityLabel                      confidentialityCode            confidentialityCode (default N)
date, content.attachment.creation  creationTime                   effectiveTime
author                             author (authorPerson)          author/assignedAuthor
context.period                     serviceStart/StopTime          documentationOf/serviceEvent
context.facilityType               healthcareFacilityTypeCode     …/healthCareFacility/code
context.practiceSetting            practiceSettingCode            …/standardIndustryClassCode
content.attachment.language        languageCode                   languageCode
content.attachment.title           title                          title
content.format                     formatCode                     templateId, or the level 1 body's
                                                                  mediaType (ANS table ASS_A11)
content.attachment.data/size/hash  (the document, size, hash)     the CDA's own bytes
=================================  =============================  ==================================

The CDA itself is the document (``text/xml``, as the CI-SIS declares CDA documents): its bytes
are carried unchanged in ``content[0].attachment.data``, so the record returns them byte for byte.
The result declares the MHD Simplified Publish profile (ITI-105), ready for ``Records.publish``.

Codes keep their CDA code system, written ``urn:oid:<OID>`` except for the systems FHIR names
by URL (LOINC, HL7 v3 Confidentiality, IHE format codes). Authors are references by identifier
(the idNat_PS under ``urn:oid:1.2.250.1.71.4.2.1``), so nothing is contained or created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE, encode_base64, sha1_base64
from carnet.domain.errors import InvalidResource
from carnet.feeds.cda import (
    LOINC,
    PS_NATIONAL_ID_ROOT,
    Author,
    BodyLevel,
    CDADocument,
    Code,
    Identifier,
)

__all__ = [
    "CDA_CONTENT_TYPE",
    "CLASS_CODE_SYSTEM",
    "document_reference_from_cda",
    "fhir_system",
    "format_code_for",
    "master_identifier_for",
]

CDA_CONTENT_TYPE = "text/xml"
"""The attachment content type of a CDA document (the XDS mimeType the CI-SIS gives CDA)."""

CLASS_CODE_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.1"
"""TRE_A03-ClasseDocument-CISIS, the DMP classCode system."""

URI_SYSTEM = "urn:ietf:rfc:3986"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IHE_FORMAT_OID = "1.3.6.1.4.1.19376.1.2.3"
"""TRE_A11-IheFormatCode: format codes defined by IHE."""
ANS_FORMAT_OID = "1.2.250.1.213.1.1.4.2.282"
"""TRE_A06-FormatCodeComplementaire: format codes the ANS adds for its own CDA models."""

# Code systems that FHIR names by a URL rather than by their OID.
_FHIR_SYSTEMS: Mapping[str, str] = {
    LOINC: "http://loinc.org",
    CONFIDENTIALITY_OID: CONFIDENTIALITY,
    IHE_FORMAT_OID: "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
}

_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+", re.ASCII)
_UUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}", re.ASCII)


# The formatCode of each CDA model, from the ANS association table ASS_A11-CorresModeleCDA-
# XdsFormatCode-CISIS (urn:oid:1.2.250.1.213.1.1.4.331, Terminologies de Santé). A structured
# (level 3) document takes the formatCode of its model's templateId.
_ANS_FORMATS: Mapping[str, str] = {
    "1.2.250.1.213.1.1.1.2.1.1": "urn:asip:ci-sis:avk:2009",
    "1.2.250.1.213.1.1.1.2.1.2": "urn:asip:ci-sis:tap:2009",
    "1.2.250.1.213.1.1.1.2.1.3": "urn:asip:ci-sis:dci:2009",
    "1.2.250.1.213.1.1.1.2.1.4": "urn:asip:ci-sis:psc:2009",
    "1.2.250.1.213.1.1.1.2.1.5": "urn:asip:ci-sis:ppv:2009",
    "1.2.250.1.213.1.1.1.5.1": "urn:asip:ci-sis:cse-cs8:2017",
    "1.2.250.1.213.1.1.1.5.2": "urn:asip:ci-sis:cse-cs9:2017",
    "1.2.250.1.213.1.1.1.5.3": "urn:asip:ci-sis:cse-cs24:2017",
    "1.2.250.1.213.1.1.1.5.4": "urn:ans:ci-sis:cse-mde:2023",
    "1.2.250.1.213.1.1.1.8": "urn:asip:ci-sis:frcp:2011",
    "1.2.250.1.213.1.1.1.9": "urn:asip:ci-sis:idap:2011",
    "1.2.250.1.213.1.1.1.10": "urn:asip:ci-sis:cva:2017",
    "1.2.250.1.213.1.1.1.12.1": "urn:asip:ci-sis:obp-sap:2023",
    "1.2.250.1.213.1.1.1.12.2": "urn:asip:ci-sis:obp-snm:2023",
    "1.2.250.1.213.1.1.1.12.3": "urn:asip:ci-sis:obp-sne:2023",
    "1.2.250.1.213.1.1.1.12.4": "urn:asip:ci-sis:obp-scm:2023",
    "1.2.250.1.213.1.1.1.12.5": "urn:asip:ci-sis:obp-sem:2023",
    "1.2.250.1.213.1.1.1.13": "urn:asip:ci-sis:vsm:2012",
    "1.2.250.1.213.1.1.1.15": "urn:asip:ci-sis:aunv:2013",
    "1.2.250.1.213.1.1.1.16": "urn:asip:ci-sis:eunv:2013",
    "1.2.250.1.213.1.1.1.17": "urn:asip:ci-sis:sunv:2013",
    "1.2.250.1.213.1.1.1.18": "urn:asip:ci-sis:crrtn:2013",
    "1.2.250.1.213.1.1.1.20": "urn:asip:ci-sis:pps-paerpa:2017",
    "1.2.250.1.213.1.1.1.21": "urn:asip:ci-sis:ldl-ees:2017",
    "1.2.250.1.213.1.1.1.22": "urn:asip:ci-sis:dlu:2015",
    "1.2.250.1.213.1.1.1.23": "urn:asip:ci-sis:fludt:2017",
    "1.2.250.1.213.1.1.1.24": "urn:asip:ci-sis:fludr:2017",
    "1.2.250.1.213.1.1.1.25": "urn:asip:ci-sis:pavc:2016",
    "1.2.250.1.213.1.1.1.26": "urn:asip:ci-sis:pps-cancer:2017",
    "1.2.250.1.213.1.1.1.27": "urn:asip:ci-sis:d2lm-fin:2017",
    "1.2.250.1.213.1.1.1.28": "urn:asip:ci-sis:d2lm-fidd:2017",
    "1.2.250.1.213.1.1.1.29": "urn:asip:ci-sis:ldl-ses:2017",
    "1.2.250.1.213.1.1.1.30": "urn:asip:ci-sis:sdm-mr:2017",
    "1.2.250.1.213.1.1.1.32": "urn:asip:ci-sis:crgm:2018",
    "1.2.250.1.213.1.1.1.36": "urn:asip:ci-sis:hr:2019",
    "1.2.250.1.213.1.1.1.37": "urn:asip:ci-sis:vac:2019",
    "1.2.250.1.213.1.1.1.38": "urn:asip:ci-sis:tlm-da:2020",
    "1.2.250.1.213.1.1.1.40": "urn:asip:ci-sis:cr-anest:2020",
    "1.2.250.1.213.1.1.1.41": "urn:asip:ci-sis:cr-cpa:2020",
    "1.2.250.1.213.1.1.1.46": "urn:asip:ci-sis:vac-note:2021",
    "1.2.250.1.213.1.1.1.47": "urn:ans:ci-sis:img-da:2022",
    "1.2.250.1.213.1.1.1.48": "urn:asip:ci-sis:dlu-dlu-dom:2022",
    "1.2.250.1.213.1.1.1.49": "urn:asip:ci-sis:dlu-fludt-dom:2022",
    "1.2.250.1.213.1.1.1.50": "urn:asip:ci-sis:dlu-fludr-dom:2022",
    "1.2.250.1.213.1.1.1.52": "urn:ans:ci-sis:bio-ep-bio:2022",
    "1.2.250.1.213.1.1.1.56": "urn:asip:ci-sis:ppp:2023",
    "1.2.250.1.213.1.1.1.58": "urn:asip:ci-sis:export-dui:2023",
}
# IHE anatomic pathology structured reports, 1.3.6.1.4.1.19376.1.8.1.1.2.<n>, n = 1…20 in this order.
_APSR_ORGANS = (
    "breast",
    "colon",
    "prostate",
    "thyroid",
    "lung",
    "skin",
    "kidney",
    "cervix",
    "endometrium",
    "ovary",
    "esophagus",
    "stomach",
    "liver",
    "pancreas",
    "testis",
    "urinary_bladder",
    "lip_oral_cavity",
    "pharynx",
    "salivary_gland",
    "larynx",
)
_IHE_FORMATS: Mapping[str, str] = {
    "1.2.250.1.213.1.1.1.39": "urn:ihe:pharm:pre:2010",
    "1.2.250.1.213.1.1.1.42": "urn:ihe:eyecare:geneyeevalcn:2014",
    "1.2.250.1.213.1.1.1.43": "urn:ihe:eyecare:geneyeevalcn:2014",
    "1.2.250.1.213.1.1.1.44": "urn:ihe:eyecare:geneyeevalcn:2014",
    "1.2.250.1.213.1.1.1.45": "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",
    "1.2.250.1.213.1.1.1.51": "urn:ihe:pcc:ips:2020",
    "1.2.250.1.213.1.1.1.54": "urn:ihe:pharm:dis:2010",
    "1.2.250.1.213.1.1.1.55": "urn:ihe:lab:xd-lab:2008",
    "1.2.250.1.213.1.1.1.57": "urn:ihe:palm:apsr:2016",
    "1.3.6.1.4.1.19376.1.3.3": "urn:ihe:lab:xd-lab:2008",
    "1.3.6.1.4.1.19376.1.8.1.1.1": "urn:ihe:pat:apsr:all:2010",
    **{
        f"1.3.6.1.4.1.19376.1.8.1.1.2.{number}": f"urn:ihe:pat:apsr:{organ}:2010"
        for number, organ in enumerate(_APSR_ORGANS, start=1)
    },
}
# A level 1 document (the XDS-SD model, templateId 1.3.6.1.4.1.19376.1.2.20) takes the format
# of the content it embeds.
_UNSTRUCTURED_FORMATS: Mapping[str, str] = {
    "application/pdf": "urn:ihe:iti:xds-sd:pdf:2008",
    "text/plain": "urn:ihe:iti:xds-sd:text:2008",
    "image/jpeg": "urn:ihe:iti-fr:xds-sd:jpeg:2010",
    "text/rtf": "urn:ihe:iti-fr:xds-sd:rtf:2010",
    "application/rtf": "urn:ihe:iti-fr:xds-sd:rtf:2010",
    "image/tiff": "urn:ihe:iti-fr:xds-sd:tiff:2010",
}


def document_reference_from_cda(cda: CDADocument, raw: bytes, *, patient_id: str) -> dict[str, Any]:
    """Build the Simplified Publish DocumentReference of a CDA document for ``Patient/<patient_id>``.

    ``raw`` is the document exactly as received; it becomes the attachment unchanged. Elements
    the header does not give are left out (the class when the type is not in the ANS table, the
    format when the model is not in ASS_A11, an instant without a time zone…).

    Raises:
        InvalidResource: the document has no ``ClinicalDocument/id`` to serve as its uniqueId.
    """
    if cda.id is None:
        raise InvalidResource(
            "The CDA document has no ClinicalDocument/id, which is its unique identifier; "
            "give it an id root (and extension) and resend it.",
            expression=("ClinicalDocument.id",),
        )
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [SIMPLIFIED_PUBLISH_PROFILE]},
        "masterIdentifier": master_identifier_for(cda.id),
        "status": "current",
    }
    if cda.code is not None:
        document["type"] = {"coding": [_coding(cda.code)]}
    if cda.class_code is not None:
        document["category"] = [{"coding": [{"system": CLASS_CODE_SYSTEM, "code": str(cda.class_code)}]}]
    document["subject"] = {"reference": f"Patient/{patient_id}"}
    created = _instant(cda.effective_time)
    if created is not None:
        document["date"] = created
    authors = [reference for author in cda.authors if (reference := _author(author))]
    if authors:
        document["author"] = authors
    # PDSm: without a confidentiality code, a document is Normal, as CDA documents already are.
    confidentiality = cda.confidentiality_code or Code(code="N", code_system=CONFIDENTIALITY_OID)
    document["securityLabel"] = [{"coding": [_coding(confidentiality)]}]
    content: dict[str, Any] = {"attachment": _attachment(cda, raw)}
    format_code = format_code_for(cda)
    if format_code is not None:
        content["format"] = format_code
    document["content"] = [content]
    context = _context(cda)
    if context:
        document["context"] = context
    return document


def master_identifier_for(identifier: Identifier) -> dict[str, str]:
    """Return the ``masterIdentifier`` (XDS uniqueId) of a document whose CDA id is ``identifier``.

    The CI-SIS, like IHE PCC for every CDA, makes the uniqueId ``<root>`` when the id has no
    extension and ``<root>^<extension>`` when it has one; IHE MHD writes a uniqueId as a URI
    under ``urn:ietf:rfc:3986``: ``urn:oid:<root>`` for an OID, ``urn:uuid:<root>`` (lower case)
    for a UUID. The ``^`` form is not a URI: it is kept as the DMP spells it, so that the DMP's
    uniqueId and the masterIdentifier stay the same string.
    """
    if identifier.extension:
        return {"system": URI_SYSTEM, "value": f"{identifier.root}^{identifier.extension}"}
    return {"system": URI_SYSTEM, "value": _uri(identifier.root)}


def format_code_for(cda: CDADocument) -> dict[str, str] | None:
    """Return the formatCode of a CDA document as a FHIR Coding, or ``None`` when unknown.

    A level 1 document's format follows the media type it embeds; a level 3 document's follows
    its model, the last of its templateIds found in ASS_A11 (the CI-SIS lists the generic
    templates first and the model's own last).
    """
    if cda.level is BodyLevel.UNSTRUCTURED:
        media_type = (cda.body.media_type or "").lower() if cda.body else ""
        code = _UNSTRUCTURED_FORMATS.get(media_type)
        return {"system": fhir_system(IHE_FORMAT_OID), "code": code} if code else None
    for template in reversed(cda.template_ids):
        if template.root in _ANS_FORMATS:
            return {"system": fhir_system(ANS_FORMAT_OID), "code": _ANS_FORMATS[template.root]}
        if template.root in _IHE_FORMATS:
            return {"system": fhir_system(IHE_FORMAT_OID), "code": _IHE_FORMATS[template.root]}
    return None


def fhir_system(code_system: str) -> str:
    """Return the FHIR ``Coding.system`` of an HL7 code system given by its OID (or UUID)."""
    return _FHIR_SYSTEMS.get(code_system) or _uri(code_system)


# Helpers -------------------------------------------------------------------------------------


def _uri(root: str) -> str:
    if _UUID.fullmatch(root):
        return f"urn:uuid:{root.lower()}"
    if _OID.fullmatch(root):
        return f"urn:oid:{root}"
    # Neither an OID nor a UUID: not a valid II root, but kept rather than guessed at.
    return root


def _coding(code: Code) -> dict[str, str]:
    coding: dict[str, str] = {}
    if code.code_system:
        coding["system"] = fhir_system(code.code_system)
    coding["code"] = code.code
    if code.display_name:
        coding["display"] = code.display_name
    return coding


def _instant(moment: datetime | None) -> str | None:
    """Render a FHIR instant, which needs a time zone: a timestamp without one gives None."""
    if moment is None or moment.tzinfo is None:
        return None
    return moment.isoformat()


def _date_time(moment: datetime | None) -> str | None:
    """Render a FHIR dateTime; without a time zone, FHIR allows only the day."""
    if moment is None:
        return None
    return moment.isoformat() if moment.tzinfo is not None else moment.date().isoformat()


def _author(author: Author) -> dict[str, Any] | None:
    """Reference one author by identifier: the idNat_PS when there is one, else its first id."""
    identifier: dict[str, str] | None = None
    if author.national_id:
        identifier = {"system": f"urn:oid:{PS_NATIONAL_ID_ROOT}", "value": author.national_id}
    elif author.identifiers:
        first = author.identifiers[0]
        if first.extension:
            identifier = {"system": _uri(first.root), "value": first.extension}
        else:
            identifier = {"system": URI_SYSTEM, "value": _uri(first.root)}
    display = _person_display(author) or author.device
    if identifier is None and display is None:
        return None
    reference: dict[str, Any] = {"type": "Device" if author.device and not author.name else "Practitioner"}
    if identifier is not None:
        reference["identifier"] = identifier
    if display is not None:
        reference["display"] = display
    return reference


def _person_display(author: Author) -> str | None:
    if author.name is None:
        return None
    # The prefix (M, Mme, Dr…) is left out: the display names the person, not the form of address.
    parts = (author.name.given_name, author.name.family_name)
    return " ".join(part for part in parts if part) or None


def _attachment(cda: CDADocument, raw: bytes) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": CDA_CONTENT_TYPE}
    if cda.language_code:
        attachment["language"] = cda.language_code
    attachment["data"] = encode_base64(raw)  # remembered: checked by publish without a decode
    attachment["size"] = len(raw)
    attachment["hash"] = sha1_base64(raw)
    if cda.title:
        attachment["title"] = cda.title
    creation = _date_time(cda.effective_time)
    if creation is not None:
        attachment["creation"] = creation
    return attachment


def _context(cda: CDADocument) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if cda.facility_type is not None:
        context["facilityType"] = {"coding": [_coding(cda.facility_type)]}
    if cda.practice_setting is not None:
        context["practiceSetting"] = {"coding": [_coding(cda.practice_setting)]}
    if cda.service_period is not None:
        period = {
            key: text
            for key, moment in (("start", cda.service_period.low), ("end", cda.service_period.high))
            if (text := _date_time(moment)) is not None
        }
        if period:
            context["period"] = period
    return context
