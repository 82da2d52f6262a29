"""Seed the demo store with the synthetic French population, through the normal gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.records import EntryRequest, RecordService
from carnet.synthetic import generate_population

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeededPatient:
    """A demo patient: their record id, INS and display name."""

    patient_id: str
    ins_system: str
    ins_value: str
    display: str


def seed_population(
    service: RecordService, *, patients: int, seed: int, progress: Progress | None = None
) -> list[SeededPatient]:
    """Open one record per synthetic patient (skipping those already there); return them all.

    Each patient opens their own record with a transaction Bundle, as a patient app would:
    the same policy gate as the API, no back door.
    """
    seeded: list[SeededPatient] = []
    for index, item in enumerate(generate_population(patients, seed)):
        system, value = item.ins
        principal = service.resolve(
            Principal(
                kind=ActorKind.PATIENT,
                subject=f"demo:{value}",
                identifier=Identifier(system=system, value=value),
            )
        )
        if principal.patient_id is None:
            entries = [
                EntryRequest(
                    method=e["request"]["method"],
                    url=e["request"]["url"],
                    resource=e.get("resource"),
                    full_url=e.get("fullUrl"),
                    if_none_exist=e["request"].get("ifNoneExist"),
                )
                for e in item.bundle["entry"]
            ]
            responses = service.records(principal).transaction(entries)
            patient_id = next(
                r.stored.resource_id for r in responses if r.stored and r.stored.resource_type == "Patient"
            )
        else:
            patient_id = principal.patient_id
        seeded.append(
            SeededPatient(
                patient_id=patient_id,
                ins_system=system,
                ins_value=value,
                display=f"{item.given} {item.family}",
            )
        )
        if progress is not None:
            progress(index + 1, patients)
    return seeded
