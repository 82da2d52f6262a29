"""The journal's AuditEvents against IHE BALP: each success over the API claims its profile and keeps it."""

from __future__ import annotations

import base64
from typing import Any

from starlette.testclient import TestClient

from balp import profile_of, violations
from carnet.api.app import Services
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.domain.validation import validate
from journal_requests import GP, INS, STRANGER, open_record, professional, weight
from minting import Mint


def _events(client: TestClient, headers: dict[str, str], patient_id: str) -> list[dict[str, Any]]:
    found = client.get(f"/fhir/AuditEvent?patient=Patient/{patient_id}&_count=200", headers=headers)
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json()["entry"]]


def test_every_success_claims_its_balp_profile_and_conforms(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """Read, vread, search, create, update, delete by the patient and a professional: profile, shape, validity."""
    pid, patient = open_record(client, auth, "1840312345611")
    consent = consent_for(ConsentKind.AUTHORISATION, pid, GP, now=services.records.clock())
    assert client.post("/fhir/Consent", json=consent, headers=patient).status_code == 201
    gp = professional(auth, GP)
    observation = client.post("/fhir/Observation", json=weight(pid, 70.0), headers=gp).json()
    oid = observation["id"]
    assert client.get(f"/fhir/Observation/{oid}", headers=gp).status_code == 200
    assert client.get(f"/fhir/Observation/{oid}/_history/1", headers=patient).status_code == 200
    assert client.get(f"/fhir/Observation?patient=Patient/{pid}&code=29463-7", headers=gp).status_code == 200
    observation["valueQuantity"]["value"] = 71.0
    assert client.put(f"/fhir/Observation/{oid}", json=observation, headers=patient).status_code == 200
    assert client.get(f"/fhir/Observation/{oid}/_history", headers=patient).status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/$everything", headers=patient).status_code == 200
    assert client.get(f"/fhir/Observation/{oid}", headers=professional(auth, STRANGER)).status_code == 404
    assert client.delete(f"/fhir/Observation/{oid}", headers=patient).status_code in (200, 204)

    events = _events(client, patient, pid)
    claimed: dict[str, int] = {}
    for event in events:
        validate(event)  # a valid FHIR R4 AuditEvent
        assert violations(event) == [], (profile_of(event), event)
        name = profile_of(event)
        if name is not None:
            claimed[name] = claimed.get(name, 0) + 1
        client_agents = [a for a in event["agent"] if a.get("network") and "fhir-api" in str(a["who"])]
        assert len(client_agents) == 1  # every request here came over the API, from the test client
        assert client_agents[0]["network"]["address"] == "testclient"
    assert set(claimed) == {"PatientRead", "PatientQuery", "PatientCreate", "PatientUpdate", "PatientDelete"}
    by_action = {(e["subtype"][0]["code"], profile_of(e)) for e in events}
    assert ("history-instance", None) in by_action
    assert ("operation", None) in by_action  # $everything: an operation, no BALP profile
    refused = [e for e in events if e["outcome"] != "0"]
    assert refused
    assert all(profile_of(e) is None for e in refused)  # BALP profiles are for successes
    read = next(e for e in events if profile_of(e) == "PatientRead")
    for broken in (
        {**read, "agent": [a for a in read["agent"] if not a.get("network")]},  # no client, no server
        {**read, "action": "E"},
        {**read, "entity": read["entity"][:1]},  # no data entity
    ):
        assert violations(broken) != []  # the checker is not blind
    queries = {
        base64.b64decode(x["query"]).decode()
        for e in events
        if profile_of(e) == "PatientQuery"
        for x in e["entity"]
        if x["role"]["code"] == "24"
    }
    assert f"patient=Patient%2F{pid}&code=29463-7" in queries  # the search exactly as asked


def test_the_dpo_view_claims_no_profile_and_keeps_no_query(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """Without the resources touched or the search parameters, the DPO's events claim no BALP profile."""
    pid, patient = open_record(client, auth, "1840312345612")
    assert (
        client.get(f"/fhir/Observation?patient=Patient/{pid}&code=29463-7", headers=patient).status_code
        == 200
    )
    events = _events(client, auth(kind="dpo"), pid)
    assert events
    for event in events:
        validate(event)
        assert profile_of(event) is None
        assert all(e["role"]["code"] == "1" for e in event["entity"])


def test_work_from_no_request_names_no_client(services: Services) -> None:
    """Entries written by the command line or the services directly name the server but no client."""
    nir = "1840312345613"
    holder = Principal(kind=ActorKind.PATIENT, subject=nir, identifier=Identifier(system=INS, value=nir))
    created = services.records.records(holder).create(
        {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
    )
    pid = created.stored.resource_id
    own = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=pid)
    events = services.records.records(own).search("AuditEvent", [("patient", f"Patient/{pid}")]).resources
    assert events
    for event in events:
        validate(event)
        assert profile_of(event) is None
        assert not [a for a in event["agent"] if "client" in str(a.get("who"))]
        servers = [a for a in event["agent"] if "journal-origin" in str(a.get("who"))]
        assert len(servers) == 1
