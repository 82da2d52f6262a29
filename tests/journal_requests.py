"""What the journal tests send over the API: records opened by their patient, a weight, professionals."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.journal import Entry
from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"
GP = "810001234567"
STRANGER = "810007777777"
EMERGENCY = "810003333333"


def open_record(client: TestClient, auth: Mint, nir: str) -> tuple[str, dict[str, str]]:
    """The patient with INS ``nir`` opens their record; return its id and the holder's headers."""
    headers = auth(kind="patient", identifier=f"{INS}|{nir}")
    patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
    response = client.post("/fhir/Patient", json=patient, headers=headers)
    assert response.status_code == 201, response.text
    patient_id = str(response.json()["id"])
    return patient_id, auth(kind="patient", patient=patient_id)


def weight(patient_id: str, value: float) -> dict[str, Any]:
    """A body-weight Observation (LOINC 29463-7) of the record, in kg."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }


def professional(auth: Mint, idnps: str, **headers: str) -> dict[str, str]:
    """Headers of a general practitioner ``idnps`` (``Dr Test``), plus any extra headers."""
    return {
        **auth(kind="professional", idnps=idnps, profession="10", specialty="SM54", name="Dr Test"),
        **headers,
    }


def journal_of(services: Services, patient_id: str) -> list[Entry]:
    """Every entry of a record's journal, opened with its key (oldest first)."""
    vault = services.records.vault
    with services.store.session() as session:
        key = vault.key(session, patient_id, services.records.clock())
        rows = session.journal_of(patient_id, limit=1000)
        entries = [services.journal.open(key, row).entry for row in rows]
    return sorted(entries, key=lambda e: e.recorded)
