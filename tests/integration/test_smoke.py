"""A first walk through the FHIR API: create a record, write, read, search."""

from __future__ import annotations

from starlette.testclient import TestClient

from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"


def test_patient_opens_record_and_reads_it(client: TestClient, auth: Mint) -> None:
    """A patient creates their own Patient, writes an Observation and reads both back."""
    headers = auth(kind="patient", identifier=f"{INS}|1840399123456")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": "1840399123456"}],
        "name": [{"family": "Durand"}],
    }
    created = client.post("/fhir/Patient", json=patient, headers=headers)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2024-05-01",
        "valueQuantity": {"value": 72.50, "unit": "kg"},
    }
    headers = auth(kind="patient", identifier=f"{INS}|1840399123456")
    made = client.post("/fhir/Observation", json=obs, headers=headers)
    assert made.status_code == 201, made.text
    oid = made.json()["id"]
    read = client.get(f"/fhir/Observation/{oid}", headers=headers)
    assert read.status_code == 200
    assert read.json()["valueQuantity"]["value"] == 72.5
    found = client.get(
        f"/fhir/Observation?patient={pid}&code=http://loinc.org|29463-7&date=ge2024", headers=headers
    )
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 1
    other = auth(kind="patient", identifier=f"{INS}|2990199000000")
    assert client.get(f"/fhir/Observation/{oid}", headers=other).status_code == 404
