"""One use-case call: several reads and writes in one transaction, journaled once (RecordService.call)."""

from __future__ import annotations

import uuid

import pytest

from carnet.api.app import Services
from carnet.domain.errors import AccessDenied, NotFound
from carnet.domain.journal import Entry
from carnet.domain.principal import ActorKind, Identifier, Principal

INS = "urn:oid:1.2.250.1.213.1.4.10"


def _open_record(services: Services) -> tuple[str, Principal]:
    ins = Identifier(system=INS, value=uuid.uuid4().hex[:15])
    principal = Principal(kind=ActorKind.PATIENT, subject=f"pat:{ins.value}", identifier=ins)
    patient = {"resourceType": "Patient", "identifier": [{"system": ins.system, "value": ins.value}]}
    patient_id = services.records.records(principal).create(patient).stored.resource_id
    return patient_id, Principal(
        kind=ActorKind.PATIENT, subject=principal.subject, identifier=ins, patient_id=patient_id
    )


def _entries(services: Services, patient_id: str) -> list[Entry]:
    with services.store.session() as session:
        key = services.records.vault.key(session, patient_id, services.records.clock())
        rows = session.journal_of(patient_id, limit=1_000, newest_first=False)
        return [services.journal.open(key, row).entry for row in rows]


def test_a_read_then_an_update_is_one_transaction_and_one_entry(services: Services) -> None:
    """A use case reads the Patient and updates it in one call: one new version, one journal entry naming both."""
    patient_id, holder = _open_record(services)
    before = len(_entries(services, patient_id))
    with services.records.call(holder, "$close", "Patient", write=True) as call:
        patient = call.reads.read("Patient", patient_id)
        updated = call.writes.update(
            "Patient", patient_id, {**(patient.resource or {}), "active": False}, if_match=patient.etag
        )
    assert updated.stored.version_id == 2
    entries = _entries(services, patient_id)[before:]
    assert [(e.action, e.decision, e.outcome) for e in entries] == [("$close", "permit", "ok")]
    assert entries[0].targets == (f"Patient/{patient_id}/_history/1", f"Patient/{patient_id}/_history/2")
    assert services.records.records(holder).read("Patient", patient_id).resource["active"] is False  # type: ignore[index]


def test_a_failing_use_case_writes_nothing_and_journals_the_refusal(services: Services) -> None:
    """When the block raises after a write, the write is rolled back and the failed call is journaled."""
    patient_id, holder = _open_record(services)
    other_id, _ = _open_record(services)
    before = len(_entries(services, patient_id))

    def close_and_peek() -> None:
        with services.records.call(holder, "$close", "Patient", write=True) as call:
            patient = call.reads.read("Patient", patient_id)
            call.writes.update("Patient", patient_id, {**(patient.resource or {}), "active": False})
            call.reads.read("Patient", other_id)  # another's record: refused as unknown

    with pytest.raises(NotFound):
        close_and_peek()
    assert services.records.records(holder).read("Patient", patient_id).version_id == 1
    entries = _entries(services, patient_id)[before:]
    assert [(e.action, e.outcome, e.targets) for e in entries][:1] == [("$close", "not-found", ())]


def test_a_forbidden_kind_is_refused_inside_a_call(services: Services) -> None:
    """Inside a use-case call the policy decides as through Records: an employer is refused, and journaled."""
    patient_id, _ = _open_record(services)
    employer = Principal(kind=ActorKind.EMPLOYER, subject="employer:1")

    def peek() -> None:
        with services.records.call(employer, "read", "Patient") as call:
            call.reads.read("Patient", patient_id)

    with pytest.raises(AccessDenied):
        peek()
    entries = _entries(services, patient_id)
    assert (entries[-1].actor_kind, entries[-1].decision, entries[-1].reasons) == (
        "employer",
        "deny",
        ("forbidden-kind",),
    )
