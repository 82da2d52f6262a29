"""A CDA header becomes a valid Simplified Publish DocumentReference, edge cases included."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE, is_simplified_publish, sha1_base64
from carnet.domain.errors import InvalidResource
from carnet.domain.validation import validate
from carnet.feeds.cda import (
    LOINC,
    Author,
    BodyLevel,
    CDADocument,
    Code,
    Identifier,
    Period,
    UnstructuredBody,
)
from carnet.feeds.cda_metadata import (
    document_reference_from_cda,
    fhir_system,
    format_code_for,
    master_identifier_for,
)

RAW = b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>'
PARIS = timezone(timedelta(hours=1))


def _document(**fields: Any) -> CDADocument:
    """A minimal consultation report (11488-4) with ``fields`` changed."""
    base = CDADocument(id=Identifier(root="1.2.250.1.999.1"), code=Code(code="11488-4", code_system=LOINC))
    return dataclasses.replace(base, **fields)


def test_the_result_is_a_valid_simplified_publish() -> None:
    """The DocumentReference validates as FHIR R4 and declares the MHD Simplified Publish profile."""
    document = document_reference_from_cda(_document(), RAW, patient_id="p1")
    validate(document)
    assert document["meta"]["profile"] == [SIMPLIFIED_PUBLISH_PROFILE]
    assert is_simplified_publish(document)
    assert document["subject"] == {"reference": "Patient/p1"}


def test_the_attachment_is_the_cda_itself() -> None:
    """The attachment carries the CDA's exact bytes as text/xml, with their size and SHA-1."""
    attachment = document_reference_from_cda(_document(), RAW, patient_id="p1")["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == RAW
    assert (attachment["contentType"], attachment["size"], attachment["hash"]) == (
        "text/xml",
        len(RAW),
        sha1_base64(RAW),
    )


@pytest.mark.parametrize(
    ("identifier", "value"),
    [
        (Identifier(root="1.2.250.1.213.1.1.9"), "urn:oid:1.2.250.1.213.1.1.9"),
        (Identifier(root="1.2.250.1.213.1.1.9", extension="DOC-42"), "1.2.250.1.213.1.1.9^DOC-42"),
        (
            Identifier(root="90E1C8EC-F951-4B26-A305-A34848818DD6"),
            "urn:uuid:90e1c8ec-f951-4b26-a305-a34848818dd6",
        ),
    ],
)
def test_master_identifier_is_the_xds_unique_id(identifier: Identifier, value: str) -> None:
    """The CDA id becomes the uniqueId: a URI for a bare OID or UUID, root^extension otherwise."""
    assert master_identifier_for(identifier) == {"system": "urn:ietf:rfc:3986", "value": value}


def test_a_document_without_id_is_refused() -> None:
    """Without ClinicalDocument/id there is no uniqueId, and the document is refused."""
    with pytest.raises(InvalidResource, match="ClinicalDocument/id"):
        document_reference_from_cda(_document(id=None), RAW, patient_id="p1")


def test_codes_keep_their_system() -> None:
    """LOINC and HL7 codes take their FHIR URL; ANS codes keep their OID as urn:oid."""
    assert fhir_system(LOINC) == "http://loinc.org"
    assert fhir_system("2.16.840.1.113883.5.25") == "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    assert fhir_system("1.2.250.1.213.1.1.4.12") == "urn:oid:1.2.250.1.213.1.1.4.12"


def test_class_and_confidentiality_follow_the_dmp() -> None:
    """The category is the DMP classCode of the type; a missing confidentiality code means N."""
    document = document_reference_from_cda(_document(), RAW, patient_id="p1")
    assert document["category"] == [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10"}]}]
    assert document["securityLabel"][0]["coding"][0]["code"] == "N"


def test_a_type_outside_the_ans_table_has_no_category() -> None:
    """A document type the ANS table does not map gives no category rather than a guessed one."""
    document = document_reference_from_cda(
        _document(code=Code(code="X-1", code_system="1.2.3")), RAW, patient_id="p"
    )
    assert "category" not in document
    validate(document)


def test_timestamps_without_a_zone_keep_only_the_day() -> None:
    """FHIR needs a zone once hours are given: a zoneless time keeps its day and loses the instant."""
    moment = datetime(2024, 5, 2, 10, 30)  # an HL7 timestamp without an offset
    document = document_reference_from_cda(
        _document(effective_time=moment, service_period=Period(low=moment)), RAW, patient_id="p1"
    )
    validate(document)
    assert "date" not in document
    assert document["content"][0]["attachment"]["creation"] == "2024-05-02"
    assert document["context"]["period"] == {"start": "2024-05-02"}


def test_timestamps_with_a_zone_are_kept_whole() -> None:
    """A zoned effectiveTime is the document's date and creation, to the second."""
    moment = datetime(2024, 5, 2, 10, 30, tzinfo=PARIS)
    document = document_reference_from_cda(_document(effective_time=moment), RAW, patient_id="p1")
    assert document["date"] == document["content"][0]["attachment"]["creation"] == "2024-05-02T10:30:00+01:00"


def test_authors_are_referenced_by_national_id() -> None:
    """An author is referenced by idNat_PS with a display name; an author with nothing is left out."""
    authors = (
        Author(identifiers=(Identifier(root="1.2.250.1.71.4.2.1", extension="810001234567"),)),
        Author(
            device="Logiciel de labo", identifiers=(Identifier(root="1.2.250.1.71.4.2.2", extension="1X"),)
        ),
        Author(),
    )
    document = document_reference_from_cda(_document(authors=authors), RAW, patient_id="p1")
    validate(document)
    assert document["author"] == [
        {
            "type": "Practitioner",
            "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810001234567"},
        },
        {
            "type": "Device",
            "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1X"},
            "display": "Logiciel de labo",
        },
    ]


@pytest.mark.parametrize(
    ("cda", "code"),
    [
        (
            _document(level=BodyLevel.UNSTRUCTURED, body=UnstructuredBody(media_type="application/pdf")),
            "urn:ihe:iti:xds-sd:pdf:2008",
        ),
        (
            _document(level=BodyLevel.UNSTRUCTURED, body=UnstructuredBody(media_type="text/plain")),
            "urn:ihe:iti:xds-sd:text:2008",
        ),
        (_document(level=BodyLevel.UNSTRUCTURED, body=UnstructuredBody(media_type="video/mp4")), None),
        (
            _document(
                level=BodyLevel.STRUCTURED,
                template_ids=(
                    Identifier(root="1.2.250.1.213.1.1.1.1"),
                    Identifier(root="1.2.250.1.213.1.1.1.40"),
                ),
            ),
            "urn:asip:ci-sis:cr-anest:2020",
        ),
        (
            _document(level=BodyLevel.STRUCTURED, template_ids=(Identifier(root="1.3.6.1.4.1.19376.1.3.3"),)),
            "urn:ihe:lab:xd-lab:2008",
        ),
        (
            _document(level=BodyLevel.STRUCTURED, template_ids=(Identifier(root="1.2.250.1.213.1.1.1.59"),)),
            None,
        ),
    ],
)
def test_format_code_follows_ass_a11(cda: CDADocument, code: str | None) -> None:
    """Level 1 takes the format of its embedded media type, level 3 that of its model's templateId."""
    found = format_code_for(cda)
    assert (found or {}).get("code") == code
