"""The demo: the synthetic French population seeded through the normal gate, and its identities.

Only the composition roots (``carnet.cli``, ``carnet.asgi``) and the tests import this module:
the API, the portals and the services never import ``carnet.synthetic`` (an import-linter
contract), so a production server carries no generator. The sign-in page of the development
mode offers the people of :func:`demo_people`, handed to ``create_app(..., demo_people=…)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.records import EntryRequest, RecordService
from carnet.synthetic import generate_population
from carnet.synthetic.patient import draw_person
from carnet.synthetic.population import DEFAULT_AS_OF
from carnet.synthetic.terminology import INS_NIR_TEST_SYSTEM

#: The seed of ``carnet demo`` and of the browser tests.
DEMO_SEED = 2026
#: How many people of the demo population the sign-in page looks for.
DEMO_CANDIDATES = 30

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
    for index, item in enumerate(generate_population(patients, seed, cnam_hr=True)):
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


def demo_people(seed: int = DEMO_SEED, count: int = DEMO_CANDIDATES) -> list[tuple[Identifier, str]]:
    """Return the INS and name of the first ``count`` people of the demo population of ``seed``.

    Drawn again from the seed (the same draw as ``carnet.synthetic.population``), identity only:
    nothing of their records. The sign-in page keeps those who have a record here.
    """
    taken: set[str] = set()
    people: list[tuple[Identifier, str]] = []
    for index in range(count):
        rng = random.Random(f"carnet.synthetic/{seed}/patient/{index}")  # noqa: S311 - reproducible
        person = draw_person(rng, DEFAULT_AS_OF, taken)
        people.append(
            (Identifier(system=INS_NIR_TEST_SYSTEM, value=person.nir), f"{person.given} {person.family}")
        )
    return people
