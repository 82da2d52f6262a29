"""A generated French population goes in through transactions and comes back identical through MHD."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from carnet.synthetic import generate_population
from minting import Mint


def test_generated_documents_round_trip(client: TestClient, auth: Mint) -> None:
    """Every generated document (CDA with PDF, or PDF) is found by ITI-67 and retrieved byte-identical by ITI-68."""
    checked = 0
    for item in generate_population(3, seed=42):
        system, value = item.ins
        headers = auth(kind="patient", identifier=f"{system}|{value}")
        response = client.post("/fhir", content=item.to_json(), headers=headers)
        assert response.status_code == 200, response.text[:500]
        entries = item.bundle["entry"]
        locations = [e["response"].get("location", "") for e in response.json()["entry"]]
        patient_id = next(loc.split("/")[1] for loc in locations if loc.startswith("Patient/"))
        headers = auth(kind="patient", patient=patient_id)
        sent = {
            e["fullUrl"]: base64.b64decode(e["resource"]["data"])
            for e in entries
            if e["resource"]["resourceType"] == "Binary"
        }
        found = client.get(f"/fhir/DocumentReference?patient={patient_id}&_count=100", headers=headers).json()
        documents = [e["resource"] for e in found["entry"]]
        submitted = [e for e in entries if e["resource"]["resourceType"] == "DocumentReference"]
        assert len(documents) == len(submitted) > 0
        by_unique = {d["masterIdentifier"]["value"]: d for d in documents}
        for entry in submitted:
            stored = by_unique[entry["resource"]["masterIdentifier"]["value"]]
            attachment = stored["content"][0]["attachment"]
            raw = client.get(f"/fhir/{attachment['url']}", headers=headers)
            assert raw.status_code == 200
            assert raw.content == sent[entry["resource"]["content"][0]["attachment"]["url"]]
            assert raw.headers["content-type"].startswith(attachment["contentType"])
            checked += 1
    assert checked >= 3 * 8
