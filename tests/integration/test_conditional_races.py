"""Concurrent conditional writes with the same criteria leave one resource, not one each.

A conditional create (``If-None-Exist``) or update (``PUT [type]?criteria``) searches, then
writes; without a lock on the criteria, clients sending the same one at the same moment each
found nothing and each created (seen with the bench's generated Bundles on PostgreSQL: later
requests then failed with 412 "matched 2 resources")."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from carnet.api.app import Services
from carnet.domain.principal import ActorKind, Identifier, Principal

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLIENTS = 8


def _own_record(services: Services) -> Principal:
    ins = Identifier(system=INS, value=uuid.uuid4().hex[:15])
    principal = Principal(kind=ActorKind.PATIENT, subject=f"pat:{ins.value}", identifier=ins)
    patient = {"resourceType": "Patient", "identifier": [{"system": ins.system, "value": ins.value}]}
    patient_id = services.records.records(principal).create(patient).stored.resource_id
    return Principal(kind=ActorKind.PATIENT, subject=principal.subject, identifier=ins, patient_id=patient_id)


def _observation(principal: Principal, lab_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:lab", "value": lab_id}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{principal.patient_id}"},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def _criteria(principal: Principal, lab_id: str) -> list[tuple[str, str]]:
    """The search for the record's Observations carrying the lab's identifier."""
    return [("patient", f"Patient/{principal.patient_id}"), ("identifier", f"urn:lab|{lab_id}")]


def _matches(services: Services, principal: Principal, lab_id: str) -> int:
    """How many Observations the search of :func:`_criteria` finds."""
    return services.records.records(principal).search("Observation", _criteria(principal, lab_id)).total


def _all_at_once(work: Callable[[int], str]) -> list[str]:
    start = threading.Barrier(CLIENTS)

    def run(index: int) -> str:
        start.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return list(pool.map(run, range(CLIENTS)))


def test_concurrent_if_none_exist_creates_one_resource(services: Services) -> None:
    """Clients sending the same If-None-Exist create at once make one resource between them."""
    principal = _own_record(services)
    lab_id = uuid.uuid4().hex

    def create(index: int) -> str:
        made = services.records.records(principal).create(
            _observation(principal, lab_id, 60 + index), if_none_exist=f"identifier=urn:lab|{lab_id}"
        )
        return made.stored.resource_id

    ids = _all_at_once(create)
    assert len(set(ids)) == 1, f"{len(set(ids))} resources for one If-None-Exist"
    assert _matches(services, principal, lab_id) == 1


def test_concurrent_conditional_updates_create_one_resource(services: Services) -> None:
    """Clients sending the same conditional update at once create one resource, then version it."""
    principal = _own_record(services)
    lab_id = uuid.uuid4().hex

    def put(index: int) -> str:
        made = services.records.records(principal).conditional_update(
            "Observation", _criteria(principal, lab_id), _observation(principal, lab_id, 60 + index)
        )
        return made.stored.resource_id

    ids = _all_at_once(put)
    assert len(set(ids)) == 1, f"{len(set(ids))} resources for one conditional update's criteria"
    assert _matches(services, principal, lab_id) == 1
    history = services.records.records(principal).history("Observation", ids[0], principal.patient_id)
    assert len(history) == CLIENTS  # one create, then each later PUT a new version of it
