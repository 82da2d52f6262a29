"""The DPO's view of the access journal, as the policy decides it (obligation ``withhold_content``)."""

from __future__ import annotations

from starlette.testclient import TestClient

from journal_requests import open_record, weight
from minting import Mint


def test_the_dpo_reads_an_entry_without_its_clinical_targets(client: TestClient, auth: Mint) -> None:
    """The patient's AuditEvent names the Observation read; the DPO's copy of the same entry names only the record."""
    pid, headers = open_record(client, auth, "1840182345678")
    made = client.post("/fhir/Observation", json=weight(pid, 70.0), headers=headers).json()
    event = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}", headers=headers).json()["entry"][0][
        "resource"
    ]
    dpo = auth(kind="dpo")
    seen_by_dpo = client.get(f"/fhir/AuditEvent/{event['id']}", headers=dpo)
    assert seen_by_dpo.status_code == 200, seen_by_dpo.text
    patient_targets = {e["what"]["reference"] for e in event["entity"]}
    dpo_targets = {e["what"]["reference"] for e in seen_by_dpo.json()["entity"]}
    assert any(t.startswith(f"Observation/{made['id']}") for t in patient_targets)
    assert dpo_targets == {f"Patient/{pid}"}
    assert "X-Carnet-Obligations" not in seen_by_dpo.headers


def test_the_dpo_gets_a_proof_without_the_entrys_salt_and_content(client: TestClient, auth: Mint) -> None:
    """The patient's proof carries the salt and content that open the commitment; the DPO's carries neither."""
    pid, headers = open_record(client, auth, "1840192345678")
    client.post("/fhir/Observation", json=weight(pid, 71.0), headers=headers)
    event = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}", headers=headers).json()["entry"][0][
        "resource"
    ]
    names = {
        who: {
            p["name"]
            for p in client.get(f"/fhir/AuditEvent/{event['id']}/$proof", headers=h).json()["parameter"]
        }
        for who, h in (("patient", headers), ("dpo", auth(kind="dpo")))
    }
    assert {"salt", "content"} <= names["patient"]
    assert names["dpo"] == names["patient"] - {"salt", "content"}


def test_only_the_dpo_searches_every_records_journal(client: TestClient, auth: Mint) -> None:
    """Without patient=, the DPO gets every record's entries; a patient is told to name a record (400)."""
    pid, headers = open_record(client, auth, "1840202345678")
    everyone = client.get("/fhir/AuditEvent?_count=1000", headers=auth(kind="dpo"))
    assert everyone.status_code == 200, everyone.text
    assert any(
        e["what"]["reference"] == f"Patient/{pid}"
        for entry in everyone.json()["entry"]
        for e in entry["resource"]["entity"]
    )
    refused = client.get("/fhir/AuditEvent", headers=headers)
    assert refused.status_code == 400
    assert "patient=Patient/<id>" in refused.json()["issue"][0]["diagnostics"]
