"""Writes of concurrent callers share one durable commit on SQLite (side by side on PostgreSQL); each
answers once its own write (or refusal) is in."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from carnet.api.app import Services
from carnet.domain.errors import PreconditionFailed
from carnet.domain.journal import Entry
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.ports import StoreSession

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


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def test_concurrent_creates_share_a_commit_and_a_refused_write_keeps_only_its_journal_entry(
    services: Services,
) -> None:
    """Four creates and a stale update queue behind a batch: one commit for the five; the update's
    change is undone alone and its caller gets its own error, its refusal journaled; the creates stand."""
    patient_id, holder = _open_record(services)
    records = services.records.records(holder)
    patient = records.read("Patient", patient_id)
    group = services.records.gate.write_group
    started, release = threading.Event(), threading.Event()

    def hold(session: StoreSession) -> int:
        started.set()
        assert release.wait(timeout=20)
        return 0

    leader = threading.Thread(target=group.run, args=(hold,))
    leader.start()
    _wait_until(started.is_set)
    batches, units = group.batches, group.units
    results: dict[int, object] = {}

    def create(index: int) -> None:
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": f"mesure {index}"},
            "subject": {"reference": f"Patient/{patient_id}"},
        }
        results[index] = services.records.records(holder).create(observation).stored.resource_id

    def stale_update() -> None:
        try:
            services.records.records(holder).update(
                "Patient", patient_id, {**(patient.resource or {}), "active": False}, if_match='W/"7"'
            )
        except PreconditionFailed as error:
            results[4] = error

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=stale_update))
    for thread in threads:
        thread.start()
    if services.store.single_writer:  # SQLite: the five queue behind the open batch
        _wait_until(lambda: group.pending == 5)
        assert results == {}  # nobody answered before the batch committed
    else:  # PostgreSQL: each in its own transaction, side by side, none waits for the open one
        _wait_until(lambda: len(results) == 5)
    release.set()
    for thread in [leader, *threads]:
        thread.join(timeout=60)
    if services.store.single_writer:  # the leader's batch, then the five in one transaction
        assert (group.batches - batches, group.units - units) == (2, 6)
    else:  # each write in a transaction of its own, as it always was on PostgreSQL
        assert (group.batches - batches, group.units - units) == (1, 1)
    assert isinstance(results[4], PreconditionFailed)
    created = [str(results[i]) for i in range(4)]
    assert all(records.read("Observation", oid).resource_id == oid for oid in created)
    assert records.read("Patient", patient_id).version_id == patient.version_id
    entries = _entries(services, patient_id)
    writes = [(e.action, e.outcome) for e in entries if e.action in ("create", "update")]
    assert writes.count(("create", "ok")) == 5  # the Patient and the four Observations
    assert [w for w in writes if w[0] == "update"] == [("update", "precondition-failed")]
