"""The embedded demo identities offered by ``/login`` (development mode only).

Patients: the synthetic patients of the demo population (seed :data:`DEMO_SEED`, the seed of
``carnet demo`` and of the browser tests), drawn again from the seed — only their identity,
not their records — and kept when a record with their INS exists here. Any other record is
reached by typing its identifier (``system|value``) on the login page.

Professionals: the ``Practitioner`` entries of the shared directory, with the profession of
their ``qualification`` and the specialty of their ``PractitionerRole``; the directory is read
through the record service like any other read.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from carnet.domain.consent import IDNPS_SYSTEM
from carnet.domain.errors import CarnetError
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.records import RecordService
from carnet.synthetic.patient import draw_person
from carnet.synthetic.population import DEFAULT_AS_OF
from carnet.synthetic.terminology import INS_NIR_TEST_SYSTEM

DEMO_SEED = 2026
DEMO_CANDIDATES = 30
CACHE_SECONDS = 30.0
#: Reads the shared directory for the login page (no record is ever read with it).
DIRECTORY_READER = Principal(kind=ActorKind.PROFESSIONAL, subject="carnet-web:login-directory")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoPatient:
    """A patient one may sign in as: record id, INS and name."""

    patient_id: str
    identifier: Identifier
    display: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoProfessional:
    """A professional of the directory one may sign in as."""

    practitioner_id: str
    idnps: str
    display: str
    profession: str | None
    profession_label: str | None
    specialty: str | None
    specialty_label: str | None


_cache: dict[tuple[int, str], tuple[float, Any]] = {}


def _cached(service: RecordService, name: str, build: Any) -> Any:
    key = (id(service), name)
    hit = _cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    value = build()
    _cache[key] = (now, value)
    return value


def demo_patients(service: RecordService) -> list[DemoPatient]:
    """Return the demo population's patients that have a record here, in population order."""

    def build() -> list[DemoPatient]:
        taken: set[str] = set()
        found: list[DemoPatient] = []
        for index in range(DEMO_CANDIDATES):
            # The same draw as carnet.synthetic.population: patient i of a seed.
            rng = random.Random(f"carnet.synthetic/{DEMO_SEED}/patient/{index}")  # noqa: S311 - reproducible
            person = draw_person(rng, DEFAULT_AS_OF, taken)
            identifier = Identifier(system=INS_NIR_TEST_SYSTEM, value=person.nir)
            resolved = service.resolve(
                Principal(kind=ActorKind.PATIENT, subject=f"demo:{person.nir}", identifier=identifier)
            )
            if resolved.patient_id is not None:
                found.append(
                    DemoPatient(
                        patient_id=resolved.patient_id,
                        identifier=identifier,
                        display=f"{person.given} {person.family}",
                    )
                )
        return found

    result: list[DemoPatient] = _cached(service, "patients", build)
    return result


def _coding(concepts: Any, system_hint: str | None = None) -> tuple[str | None, str | None]:
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding") or []:
            if (
                isinstance(coding, dict)
                and coding.get("code")
                and (system_hint is None or system_hint in str(coding.get("system", "")))
            ):
                return str(coding["code"]), coding.get("display")
    return None, None


def practitioner_display(practitioner: dict[str, Any]) -> str:
    """Return a Practitioner's name as people read it: ``Dr Marie DUPONT``."""
    for name in practitioner.get("name") or []:
        if not isinstance(name, dict):
            continue
        if name.get("text"):
            return str(name["text"])
        given = " ".join(str(g) for g in name.get("given") or [])
        family = str(name.get("family") or "").upper()
        title = "Dr " if "DR" in (name.get("suffix") or []) else ""
        return f"{title}{given} {family}".strip()
    return idnps_of(practitioner) or str(practitioner.get("id", ""))


def idnps_of(practitioner: dict[str, Any]) -> str | None:
    """Return the idNat_PS of a Practitioner, if it carries one."""
    for identifier in practitioner.get("identifier") or []:
        if (
            isinstance(identifier, dict)
            and identifier.get("system") == IDNPS_SYSTEM
            and identifier.get("value")
        ):
            return str(identifier["value"])
    return None


def demo_professionals(service: RecordService) -> list[DemoProfessional]:
    """Return the directory's professionals with a national id, by profession then name."""

    def build() -> list[DemoProfessional]:
        records = service.records(DIRECTORY_READER)
        try:
            practitioners = records.search("Practitioner", [("_count", "1000")]).resources
            roles = records.search("PractitionerRole", [("_count", "1000")]).resources
        except CarnetError:
            return []
        specialty_of: dict[str, tuple[str | None, str | None]] = {}
        for role in roles:
            reference = str((role.get("practitioner") or {}).get("reference", ""))
            specialty_of[reference.removeprefix("Practitioner/")] = _coding(role.get("specialty"))
        found: list[DemoProfessional] = []
        for practitioner in practitioners:
            idnps = idnps_of(practitioner)
            if idnps is None:
                continue
            profession, profession_label = _coding(
                [q.get("code") for q in practitioner.get("qualification") or [] if isinstance(q, dict)]
            )
            specialty, specialty_label = specialty_of.get(str(practitioner.get("id")), (None, None))
            found.append(
                DemoProfessional(
                    practitioner_id=str(practitioner.get("id")),
                    idnps=idnps,
                    display=practitioner_display(practitioner),
                    profession=profession,
                    profession_label=profession_label,
                    specialty=specialty,
                    specialty_label=specialty_label,
                )
            )
        found.sort(key=lambda p: (p.profession or "99", p.specialty or "", p.display))
        return found

    result: list[DemoProfessional] = _cached(service, "professionals", build)
    return result
