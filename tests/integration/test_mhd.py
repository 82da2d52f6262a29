"""Documents through IHE MHD (French profile PDSm): ITI-65, ITI-105, ITI-67, ITI-68, lifecycle."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services
from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
LOINC = "http://loinc.org"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def _sha1(content: bytes) -> str:
    return base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode()


class Record:
    """A patient record with helpers to submit documents."""

    def __init__(self, client: TestClient, auth: Mint, nir: str = "2840312345678") -> None:
        self.client = client
        headers = auth(kind="patient", identifier=f"{INS}|{nir}")
        patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
        self.id = client.post("/fhir/Patient", json=patient, headers=headers).json()["id"]
        self.headers = auth(kind="patient", patient=self.id)

    def document(
        self, *, unique: str, type_code: str = "11488-4", class_code: str = "10", **extra: Any
    ) -> dict[str, Any]:
        """Build DocumentReference metadata for this record."""
        return {
            "resourceType": "DocumentReference",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.250.1.999.{unique}"},
            "status": "current",
            "type": {"coding": [{"system": LOINC, "code": type_code}]},
            "category": [{"coding": [{"system": CLASS, "code": class_code}]}],
            "subject": {"reference": f"Patient/{self.id}"},
            "date": "2024-05-02T10:00:00+02:00",
            "securityLabel": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
                    ]
                }
            ],
            **extra,
        }

    def provide(self, content: bytes, *, unique: str, mime: str = "application/pdf", **extra: Any) -> Any:
        """Submit one document with an ITI-65 provide-document bundle."""
        document = self.document(unique=unique, **extra)
        document["content"] = [
            {
                "attachment": {
                    "contentType": mime,
                    "url": "urn:uuid:b0000000-0000-0000-0000-000000000001",
                    "size": len(content),
                    "hash": _sha1(content),
                }
            }
        ]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "meta": {
                "profile": [
                    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle"
                ]
            },
            "entry": [
                {
                    "fullUrl": "urn:uuid:a0000000-0000-0000-0000-000000000001",
                    "resource": {
                        "resourceType": "List",
                        "status": "current",
                        "mode": "working",
                        "code": {
                            "coding": [
                                {
                                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                                    "code": "submissionset",
                                }
                            ]
                        },
                        "subject": {"reference": f"Patient/{self.id}"},
                        "entry": [{"item": {"reference": "urn:uuid:d0000000-0000-0000-0000-000000000001"}}],
                    },
                    "request": {"method": "POST", "url": "List"},
                },
                {
                    "fullUrl": "urn:uuid:d0000000-0000-0000-0000-000000000001",
                    "resource": document,
                    "request": {"method": "POST", "url": "DocumentReference"},
                },
                {
                    "fullUrl": "urn:uuid:b0000000-0000-0000-0000-000000000001",
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": mime,
                        "data": base64.b64encode(content).decode(),
                    },
                    "request": {"method": "POST", "url": "Binary"},
                },
            ],
        }
        return self.client.post("/fhir", json=bundle, headers=self.headers)

    def document_id(self, response: Any) -> str:
        """Return the DocumentReference id from an ITI-65 response."""
        return str(response.json()["entry"][1]["response"]["location"].split("/")[1])


@pytest.fixture
def record(client: TestClient, auth: Mint) -> Record:
    """A fresh record."""
    return Record(client, auth)


def test_iti65_then_iti68_byte_identical(record: Record) -> None:
    """A provided document comes back byte-identical with its mime type."""
    response = record.provide(PDF, unique="1")
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201", "201", "201"]
    document = record.client.get(
        f"/fhir/DocumentReference/{record.document_id(response)}", headers=record.headers
    ).json()
    url = document["content"][0]["attachment"]["url"]
    assert url.startswith("Binary/")
    raw = record.client.get(f"/fhir/{url}", headers={**record.headers, "Accept": "application/pdf"})
    assert raw.status_code == 200
    assert raw.content == PDF
    assert raw.headers["content-type"] == "application/pdf"
    as_fhir = record.client.get(
        f"/fhir/{url}", headers={**record.headers, "Accept": "application/fhir+json"}
    ).json()
    assert as_fhir["resourceType"] == "Binary"


def test_iti65_refuses_wrong_hash_or_size_atomically(record: Record) -> None:
    """A document whose declared hash or size does not match is refused and nothing is stored."""
    wrong_size = record.client.post(
        "/fhir", json=_tampered_bundle(record, size=len(PDF) + 1), headers=record.headers
    )
    assert wrong_size.status_code == 422
    assert "size" in wrong_size.json()["issue"][0]["diagnostics"]
    wrong_hash = record.client.post(
        "/fhir", json=_tampered_bundle(record, sha1=_sha1(b"other")), headers=record.headers
    )
    assert wrong_hash.status_code == 422
    assert "hash" in wrong_hash.json()["issue"][0]["diagnostics"]
    found = record.client.get(f"/fhir/DocumentReference?patient={record.id}", headers=record.headers).json()
    assert found["total"] == 0


def _tampered_bundle(record: Record, *, size: int = len(PDF), sha1: str = _sha1(PDF)) -> dict[str, Any]:
    document = record.document(unique="3")
    document["content"] = [
        {"attachment": {"contentType": "application/pdf", "url": "urn:uuid:b1", "size": size, "hash": sha1}}
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:d1",
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:b1",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": base64.b64encode(PDF).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def test_iti105_simplified_publish(record: Record) -> None:
    """ITI-105 stores the inline document as a Binary, points the attachment at it and records a SubmissionSet."""
    document = record.document(
        unique="4",
        meta={
            "profile": [
                "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.SimplifiedPublish.DocumentReference"
            ]
        },
    )
    document["content"] = [
        {"attachment": {"contentType": "application/pdf", "data": base64.b64encode(PDF).decode()}}
    ]
    response = record.client.post("/fhir/DocumentReference", json=document, headers=record.headers)
    assert response.status_code == 201, response.text
    attachment = response.json()["content"][0]["attachment"]
    assert "data" not in attachment
    assert (attachment["size"], attachment["hash"]) == (len(PDF), _sha1(PDF))
    raw = record.client.get(f"/fhir/{attachment['url']}", headers=record.headers)
    assert raw.content == PDF
    lists = record.client.get(f"/fhir/List?patient={record.id}", headers=record.headers).json()
    assert lists["total"] == 1


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("status=current", 2),
        (f"category={CLASS}|10", 1),
        (f"type={LOINC}|11502-2", 1),
        ("date=ge2024-05-01", 2),
        ("date=lt2024-01-01", 0),
        ("period=2024-04", 1),
        ("security-label=N", 2),
        ("identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.7", 1),
        ("author=Practitioner/p1", 1),
    ],
)
def test_iti67_find_documents(record: Record, query: str, count: int) -> None:
    """ITI-67 finds DocumentReferences by status, class, type, date, period, label, uniqueId and author."""
    record.provide(PDF, unique="7", author=[{"reference": "Practitioner/p1"}])
    record.provide(
        PDF + b"2",
        unique="8",
        type_code="11502-2",
        class_code="11",
        context={"period": {"start": "2024-04-02", "end": "2024-04-03"}},
    )
    body = record.client.get(
        f"/fhir/DocumentReference?patient={record.id}&{query}", headers=record.headers
    ).json()
    assert body["total"] == count


def test_replacement_supersedes(record: Record) -> None:
    """A document that replaces another makes the old one superseded, as a new version."""
    first = record.document_id(record.provide(PDF, unique="9"))
    second = record.provide(
        PDF + b"v2",
        unique="10",
        relatesTo=[{"code": "replaces", "target": {"reference": f"DocumentReference/{first}"}}],
    )
    assert second.status_code == 200, second.text
    old = record.client.get(f"/fhir/DocumentReference/{first}", headers=record.headers).json()
    assert (old["status"], old["meta"]["versionId"]) == ("superseded", "2")
    current = record.client.get(
        f"/fhir/DocumentReference?patient={record.id}&status=current", headers=record.headers
    ).json()
    assert [e["resource"]["id"] for e in current["entry"]] == [record.document_id(second)]


def test_same_unique_id_is_idempotent_or_conflict(record: Record) -> None:
    """Resubmitting a uniqueId with the same content is idempotent; with other content it is a 409."""
    first = record.provide(PDF, unique="11")
    again = record.provide(PDF, unique="11")
    assert again.status_code == 200
    assert again.json()["entry"][1]["response"]["status"] == "200"
    assert record.document_id(again) == record.document_id(first)
    other = record.provide(PDF + b"changed", unique="11")
    assert other.status_code == 409
    total = record.client.get(f"/fhir/DocumentReference?patient={record.id}", headers=record.headers).json()[
        "total"
    ]
    assert total == 1


def test_document_delete_is_logical(record: Record) -> None:
    """Deleting a document keeps its history; it reads as Gone."""
    doc = record.document_id(record.provide(PDF, unique="12"))
    assert record.client.delete(f"/fhir/DocumentReference/{doc}", headers=record.headers).status_code == 204
    assert record.client.get(f"/fhir/DocumentReference/{doc}", headers=record.headers).status_code == 410
    assert (
        record.client.get(f"/fhir/DocumentReference/{doc}/_history/1", headers=record.headers).status_code
        == 200
    )


def test_archive_and_unarchive(record: Record) -> None:
    """Archiving makes a new version tagged archived, findable with _tag; unarchiving removes the tag."""
    doc = record.document_id(record.provide(PDF, unique="13"))
    tag = "https://carnet.health/fhir/CodeSystem/document-flag|archived"
    archived = record.client.post(f"/fhir/DocumentReference/{doc}/$archive", headers=record.headers)
    assert archived.status_code == 200, archived.text
    assert archived.json()["meta"]["versionId"] == "2"
    found = record.client.get(
        f"/fhir/DocumentReference?patient={record.id}&_tag={tag}", headers=record.headers
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [doc]
    record.client.post(f"/fhir/DocumentReference/{doc}/$unarchive", headers=record.headers)
    found = record.client.get(
        f"/fhir/DocumentReference?patient={record.id}&_tag={tag}", headers=record.headers
    ).json()
    assert found["total"] == 0
    raw = record.client.get(f"/fhir/DocumentReference/{doc}", headers=record.headers).json()
    assert raw["meta"]["versionId"] == "3"
    assert (
        record.client.post("/fhir/DocumentReference/unknown-id/$archive", headers=record.headers).status_code
        == 404
    )


def test_iti105_checks_the_document_before_opening_a_transaction(
    record: Record, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document Simplified Publish refuses opens no write transaction (on SQLite: no turn at the writer lock)."""
    store = services.records.store
    opened: list[bool] = []
    real = store.session

    def session(*, write: bool = False, **kwargs: Any) -> Any:
        opened.append(write)
        return real(write=write, **kwargs)

    monkeypatch.setattr(store, "session", session)
    document = record.document(
        unique="41",
        meta={
            "profile": [
                "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.SimplifiedPublish.DocumentReference"
            ]
        },
    )
    document["content"] = [{"attachment": {"contentType": "application/pdf", "url": "Binary/elsewhere"}}]
    response = record.client.post("/fhir/DocumentReference", json=document, headers=record.headers)
    assert response.status_code == 422, response.text
    assert "content.attachment.data" in response.text
    assert True not in opened
