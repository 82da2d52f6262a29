"""The access journal through the API: every access an entry, fail closed, the patient's view, proofs."""

from __future__ import annotations

import base64
import dataclasses
import random
import time
from collections import Counter
from typing import Any

import pytest
from fhir.resources.R4B.parameters import Parameters
from sqlalchemy import text
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.audit.checkpoint import generate_signer
from carnet.audit.verify import verify_checkpoint_consistency, verify_event_proof
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.errors import AuditChainError
from carnet.domain.validation import validate
from carnet.settings import Settings
from carnet.store.distribution import is_citus
from carnet.testing import journal_entries as _entries
from journal_requests import EMERGENCY, GP, INS, STRANGER, open_record, professional, weight
from minting import Mint
from smtp_sink import Mailbox, free_port

CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
#: A generous deadline for events that take about a second on an idle machine.
EVENT_SECONDS = 60


def _document(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"CR").decode()}}],
    }


def test_every_request_on_a_record_is_one_entry(client: TestClient, auth: Mint, services: Services) -> None:
    """Over 1,000 generated requests of every interaction, entries about a patient equal requests and disclosures."""
    rng = random.Random(20261201)
    patients: dict[str, dict[str, str]] = {}
    resources: dict[str, list[str]] = {}
    for n in range(3):
        pid, headers = open_record(client, auth, f"18401{n}2345678")
        patients[pid] = headers
        resources[pid] = []
        for value in (70.0, 71.5):
            made = client.post("/fhir/Observation", json=weight(pid, value), headers=headers)
            resources[pid].append(f"Observation/{made.json()['id']}")
        doc = client.post("/fhir/DocumentReference", json=_document(pid), headers=headers)
        resources[pid].append(f"DocumentReference/{doc.json()['id']}")
        consent = consent_for(ConsentKind.AUTHORISATION, pid, GP, now=services.records.clock())
        assert client.post("/fhir/Consent", json=consent, headers=headers).status_code == 201
    before = {pid: len(_entries(services, pid)) for pid in patients}

    actors = {
        "patient": lambda pid: patients[pid],
        "other-patient": lambda pid: patients[next(p for p in patients if p != pid)],
        "gp": lambda pid: professional(auth, GP),
        "stranger": lambda pid: professional(auth, STRANGER),
        "break-glass": lambda pid: professional(
            auth, EMERGENCY, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": "inconscient"}
        ),
    }
    requests_about: Counter[str] = Counter()
    disclosures: Counter[str] = Counter()
    for _ in range(1_000):
        pid = rng.choice(list(patients))
        headers = actors[rng.choice(list(actors))](pid)
        target = rng.choice(resources[pid])
        kind = rng.choice(["read", "vread", "search", "history", "everything", "create", "update", "batch"])
        if kind == "read":
            response = client.get(f"/fhir/{target}", headers=headers)
        elif kind == "vread":
            response = client.get(f"/fhir/{target}/_history/1", headers=headers)
        elif kind == "search":
            rtype = target.split("/")[0]
            response = client.get(f"/fhir/{rtype}?patient=Patient/{pid}", headers=headers)
        elif kind == "history":
            response = client.get(f"/fhir/{target}/_history", headers=headers)
        elif kind == "everything":
            response = client.get(f"/fhir/Patient/{pid}/$everything", headers=headers)
        elif kind == "create":
            response = client.post("/fhir/Observation", json=weight(pid, rng.random()), headers=headers)
            if response.status_code == 201:
                resources[pid].append(f"Observation/{response.json()['id']}")
        elif kind == "update" and target.startswith("Observation/"):
            body = {**weight(pid, 80.0), "id": target.split("/")[1]}
            response = client.put(f"/fhir/{target}", json=body, headers=headers)
        else:
            bundle = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": target}}],
            }
            response = client.post("/fhir", json=bundle, headers=headers)
        assert response.status_code < 500, response.text
        requests_about[pid] += 1
        body = response.json() if response.content else {}
        if _discloses(body, response.status_code):
            disclosures[pid] += 1

    assert sum(disclosures.values()) > 300
    refusals = 0
    for pid in patients:
        entries = _entries(services, pid)[before[pid] :]
        refusals += sum(1 for e in entries if e.decision == "deny")
        journal_reads = [e for e in entries if e.action == "journal"]
        assert journal_reads == []
        assert len(entries) == requests_about[pid]
        disclosed = [e for e in entries if e.decision == "permit" and e.outcome == "ok" and e.targets]
        assert len(disclosed) == disclosures[pid]
    assert refusals > 100


def _discloses(body: Any, status: int) -> bool:
    """Whether a response carries data of the record (a resource, or a non-empty Bundle)."""
    if status >= 300 or not isinstance(body, dict):
        return False
    if body.get("resourceType") != "Bundle":
        return body.get("resourceType") not in (None, "OperationOutcome")
    if body.get("type") == "batch-response":
        return any("resource" in e for e in body.get("entry", []))
    return bool(body.get("entry"))


def _break_journal(services: Services) -> None:
    """Make every insert into the journal fail, as a full disk or a lost table would."""
    with services.store.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER journal_down BEFORE INSERT ON journal_entries "
                    "BEGIN SELECT RAISE(ABORT, 'journal down'); END"
                )
            )
        else:
            if is_citus(connection):
                # Citus propagates a trigger on a distributed table to its shards only when asked.
                connection.execute(text("SET LOCAL citus.enable_unsafe_triggers TO on"))
            connection.execute(
                text(
                    "CREATE FUNCTION journal_down() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'journal down'; END $$"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER journal_down BEFORE INSERT ON journal_entries "
                    "FOR EACH ROW EXECUTE FUNCTION journal_down()"
                )
            )


def _mend_journal(services: Services) -> None:
    with services.store.engine.begin() as connection:
        if is_citus(connection):
            connection.execute(text("SET LOCAL citus.enable_unsafe_triggers TO on"))
        connection.execute(
            text(
                "DROP TRIGGER journal_down"
                + (" ON journal_entries" if connection.dialect.name != "sqlite" else "")
            )
        )


def test_an_insurer_knocking_is_refused_and_shown_to_the_patient(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """An insurer's read of an existing record is a 403 like any other id, and a deny entry for the patient."""
    pid, headers = open_record(client, auth, "1840312345699")
    made = client.post("/fhir/Observation", json=weight(pid, 80.0), headers=headers).json()
    before = len(_entries(services, pid))
    insurer = auth(kind="complementary_insurer", name="Mutuelle Exemple")
    attempts = [
        client.get(f"/fhir/Observation/{made['id']}", headers=insurer),
        client.get(f"/fhir/Patient/{pid}/$everything", headers=insurer),
        client.delete(f"/fhir/Observation/{made['id']}", headers=insurer),
        client.get(f"/fhir/Observation?patient=Patient/{pid}", headers=insurer),
        client.get(f"/fhir/Patient?identifier={INS}|1840312345699", headers=insurer),
    ]
    for unknown_search in (
        "/fhir/Observation?patient=Patient/nobody",
        f"/fhir/Patient?identifier={INS}|1840312345600",
        "/fhir/Observation?bogus=1",
    ):
        assert client.get(unknown_search, headers=insurer).status_code == 403
    unknown = client.get("/fhir/Observation/00000000-0000-0000-0000-000000000000", headers=insurer)
    assert [a.status_code for a in attempts] == [403] * 5
    assert unknown.status_code == 403
    assert unknown.json()["issue"][0]["diagnostics"] == attempts[0].json()["issue"][0]["diagnostics"]
    entries = _entries(services, pid)[before:]
    assert [(e.actor_kind, e.decision, e.reasons, e.targets) for e in entries] == [
        ("complementary_insurer", "deny", ("forbidden-kind",), ())
    ] * 5
    assert [e.action for e in entries] == ["read", "$everything", "delete", "search-type", "search-type"]
    seen = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}&_sort=-date", headers=headers).json()
    agents = [e["resource"]["agent"][0]["who"].get("display") for e in seen["entry"][:6]]
    assert agents.count("Mutuelle Exemple") == 5


def test_a_bundle_cannot_read_or_write_the_journal(client: TestClient, auth: Mint) -> None:
    """AuditEvent inside a batch or transaction is a clear not-supported answer, never a false 404."""
    pid, headers = open_record(client, auth, "1840312345698")
    events = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}", headers=headers).json()
    event_id = events["entry"][0]["resource"]["id"]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"AuditEvent/{event_id}"}},
            {"request": {"method": "GET", "url": f"AuditEvent?patient=Patient/{pid}"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        ],
    }
    answer = client.post("/fhir", json=batch, headers=headers)
    assert answer.status_code == 200
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert [s.split()[0] for s in statuses] == ["405", "405", "200"]
    outcome = answer.json()["entry"][0]["response"]["outcome"]
    assert "GET /fhir/AuditEvent" in outcome["issue"][0]["diagnostics"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": events["entry"][0]["resource"], "request": {"method": "POST", "url": "AuditEvent"}}
        ],
    }
    refused = client.post("/fhir", json=transaction, headers=headers)
    assert refused.status_code == 405
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_no_journal_no_data_and_no_write(client: TestClient, auth: Mint, services: Services) -> None:
    """When the journal cannot be written, a read returns no data and a write does not happen (503)."""
    pid, headers = open_record(client, auth, "1840132345678")
    made = client.post("/fhir/Observation", json=weight(pid, 70.0), headers=headers).json()
    _break_journal(services)
    read = client.get(f"/fhir/Observation/{made['id']}", headers=headers)
    assert (read.status_code, read.json()["resourceType"]) == (503, "OperationOutcome")
    assert "29463-7" not in read.text
    created = client.post("/fhir/Observation", json=weight(pid, 99.0), headers=headers)
    assert created.status_code == 503
    everything = client.get(f"/fhir/Patient/{pid}/$everything", headers=headers)
    assert everything.status_code == 503
    _mend_journal(services)
    found = client.get(f"/fhir/Observation?patient=Patient/{pid}", headers=headers).json()
    assert [e["resource"]["valueQuantity"]["value"] for e in found.get("entry", [])] == [70.0]


def test_patient_reads_who_accessed_the_record(client: TestClient, auth: Mint, services: Services) -> None:
    """The patient lists AuditEvents of their record: break-glass with its justification, refusals too."""
    pid, headers = open_record(client, auth, "1840142345678")
    made = client.post("/fhir/Observation", json=weight(pid, 70.0), headers=headers).json()
    emergency = professional(
        auth, EMERGENCY, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": "patient inconscient"}
    )
    assert client.get(f"/fhir/Observation/{made['id']}", headers=emergency).status_code == 200
    assert (
        client.get(f"/fhir/Observation/{made['id']}", headers=professional(auth, STRANGER)).status_code == 404
    )
    found = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}&_sort=-date", headers=headers)
    assert found.status_code == 200, found.text
    events = [e["resource"] for e in found.json()["entry"]]
    for event in events:
        validate(event)  # FHIR R4 AuditEvent
    refused, glass = events[0], events[1]
    assert refused["agent"][0]["who"]["identifier"]["value"] == STRANGER
    assert refused["outcome"] == "4"
    assert glass["agent"][0]["who"]["identifier"]["value"] == EMERGENCY
    modes = [c["code"] for p in glass["purposeOfEvent"] for c in p["coding"]]
    assert modes == ["break_glass", "ETREAT"]
    assert glass["purposeOfEvent"][1]["text"] == "patient inconscient"
    assert f"Observation/{made['id']}/_history/1" in [e["what"]["reference"] for e in glass["entity"]]
    one = client.get(f"/fhir/AuditEvent/{glass['id']}", headers=headers)
    assert one.json()["id"] == glass["id"]


def test_journal_is_for_the_patient_and_the_dpo_only(client: TestClient, auth: Mint) -> None:
    """A professional cannot read a journal; another patient gets nothing; the DPO sees no clinical targets."""
    pid, headers = open_record(client, auth, "1840152345678")
    client.post("/fhir/Observation", json=weight(pid, 70.0), headers=headers)
    url = f"/fhir/AuditEvent?patient=Patient/{pid}"
    assert client.get(url, headers=professional(auth, GP)).status_code == 403
    _, other = open_record(client, auth, "1840162345678")
    assert client.get(url, headers=other).status_code == 403
    dpo = client.get("/fhir/AuditEvent", headers=auth(kind="dpo"))
    assert dpo.status_code == 200, dpo.text
    events = [e["resource"] for e in dpo.json()["entry"]]
    assert events
    assert all(ent["what"]["reference"].startswith("Patient/") for ev in events for ent in ev["entity"])
    assert client.get("/fhir/AuditEvent", headers=headers).status_code == 400


def test_an_entry_proves_its_inclusion(client: TestClient, auth: Mint) -> None:
    """An entry's proof verifies under the published key; forged proofs and other keys are rejected."""
    pid, headers = open_record(client, auth, "1840172345678")
    for value in range(5):
        client.post("/fhir/Observation", json=weight(pid, float(value)), headers=headers)
    event = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}", headers=headers).json()["entry"][2][
        "resource"
    ]
    proof = client.get(f"/fhir/AuditEvent/{event['id']}/$proof", headers=headers)
    assert proof.status_code == 200, proof.text
    assert sorted(proof.json()) == ["parameter", "resourceType"]  # FHIR's Parameters.parameter
    Parameters.model_validate(proof.json())
    key = client.get("/journal/verifier-key").text.strip()
    checkpoint = verify_event_proof(proof.json(), key)
    assert checkpoint.size >= 6

    def forged(name: str, change: Any) -> dict[str, Any]:
        body = proof.json()
        for part in body["parameter"]:
            if part["name"] == name:
                change(part)
                break
        return body

    def flip(part: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(next(v for k, v in part.items() if k.startswith("value"))))
        raw[3] ^= 1
        for k in list(part):
            if k.startswith("value"):
                part[k] = base64.b64encode(bytes(raw)).decode()

    for name in ("leafInput", "path", "content", "salt"):
        with pytest.raises(AuditChainError):
            verify_event_proof(forged(name, flip), key)
    _, other_key = generate_signer("carnet.localhost/journal")
    with pytest.raises(AuditChainError):
        verify_event_proof(proof.json(), other_key)
    assert (
        client.get(f"/fhir/AuditEvent/{event['id']}/$proof", headers=professional(auth, GP)).status_code
        == 404
    )


def test_checkpoints_are_consistent_and_never_roll_back(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """Two checkpoints come with a consistency proof; reversing them (a rollback) is rejected."""
    pid, headers = open_record(client, auth, "1840182345678")
    with services.store.session() as session:
        log = services.journal.log_of(session, pid)  # 0, or on Citus the record shard's log
    first = services.journal.checkpoint(log)
    for value in range(3):
        client.post("/fhir/Observation", json=weight(pid, float(value)), headers=headers)
    second = services.journal.checkpoint(log)
    size = lambda note: int(note.decode().splitlines()[1])  # noqa: E731
    answer = client.get(f"/journal/consistency?shard={log}&first={size(first)}&second={size(second)}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    key = client.get("/journal/verifier-key").text.strip()
    path = [base64.b64decode(h) for h in body["proof"]]
    verify_checkpoint_consistency(body["first"].encode(), body["second"].encode(), path, key)
    with pytest.raises(AuditChainError):
        verify_checkpoint_consistency(body["second"].encode(), body["first"].encode(), path, key)
    assert client.get(f"/journal/checkpoint?shard={log}").text == second.decode() or size(
        client.get(f"/journal/checkpoint?shard={log}").content
    ) >= size(second)


def test_break_glass_is_emailed_by_the_running_server(settings: Settings, auth: Mint) -> None:
    """A break-glass read through the API reaches a real SMTP server: who, when, mode, no clinical content."""
    box = Mailbox(free_port())
    box.start()
    wired = build_services(
        dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=box.port, worker_seconds=1)
    )
    try:
        with TestClient(create_app(wired.settings, wired)) as client:
            pid, headers = open_record(client, auth, "1840192345678")
            patient = client.get(f"/fhir/Patient/{pid}", headers=headers).json()
            patient["telecom"] = [{"system": "email", "value": "alice@example.org"}]
            assert client.put(f"/fhir/Patient/{pid}", json=patient, headers=headers).status_code == 200
            made = client.post("/fhir/Observation", json=weight(pid, 70.0), headers=headers).json()
            emergency = professional(
                auth, EMERGENCY, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": "inconscient"}
            )
            assert client.get(f"/fhir/Observation/{made['id']}", headers=emergency).status_code == 200
            deadline = time.monotonic() + EVENT_SECONDS
            while not box.sink.received and time.monotonic() < deadline:
                time.sleep(0.2)
        messages = box.sink.messages()
        assert [m["To"] for m in messages] == ["alice@example.org"]
        body = messages[0].get_body(preferencelist=("plain",))
        text_ = body.get_content() if body is not None else ""
        assert (EMERGENCY in text_, "Dr Test" in text_) == (True, True)
        assert ("29463-7" in text_, "inconscient" in text_) == (False, False)
        glass = [e for e in _entries(wired, pid) if e.mode == "break_glass"]
        assert [e.notified for e in glass] == [("break-glass",)]
    finally:
        box.stop()
        wired.store.engine.dispose()


def test_the_running_server_signs_checkpoints_while_it_works(settings: Settings, auth: Mint) -> None:
    """Under a stream of requests, the server's checkpointer signs growing checkpoints every second or so."""
    wired = build_services(dataclasses.replace(settings, checkpoint_seconds=1))
    try:
        with TestClient(create_app(wired.settings, wired)) as client:
            pid, headers = open_record(client, auth, "1840202345678")
            made = client.post("/fhir/Observation", json=weight(pid, 70.0), headers=headers).json()
            # Wait for the event (three checkpoints), not for a time: a loaded CI machine is slow.
            deadline = time.monotonic() + EVENT_SECONDS
            sizes: list[int] = []
            while len(sizes) < 3 and time.monotonic() < deadline:
                client.get(f"/fhir/Observation/{made['id']}", headers=headers)
                with wired.store.session() as session:  # the record's log (on Citus, its shard's)
                    log = wired.journal.log_of(session, pid)
                    sizes = [size for size, _ in session.journal_checkpoints(log)]
        assert len(sizes) >= 3, f"{len(sizes)} checkpoints signed in {EVENT_SECONDS} s"
        assert sizes == sorted(set(sizes))
    finally:
        wired.store.engine.dispose()
