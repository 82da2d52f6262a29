"""The embedded demo identities offered by ``/login`` (development mode only).

Patients: the people the composition root hands to ``create_app(..., demo_people=…)`` (the
demo population's first people, drawn by ``carnet.demo``; none in production), kept when a
record with their INS exists here. Any other record is reached by typing its identifier
(``system|value``) on the login page. The portals never import the synthetic generator.

Professionals: the ``Practitioner`` entries of the shared directory, with the profession of
their ``qualification`` and the specialty of their ``PractitionerRole``; the directory is read
through the record service like any other read.

Both lists are looked up at most every :data:`CACHE_SECONDS`, in a cache held by the portal's
:class:`DemoDirectory` (one per application, never a module-level cache). Looking them up
reads the database: call it from a worker thread (``carnet.offload``) in async code.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from carnet.domain.consent import IDNPS_SYSTEM
from carnet.domain.errors import CarnetError
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.records import RecordService

CACHE_SECONDS = 30.0
#: Reads the shared directory for the login page (no record is ever read with it).
DIRECTORY_READER = Principal(kind=ActorKind.PROFESSIONAL, subject="carnet-web:login-directory")

T = TypeVar("T")


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
    #: Where they practise: the organisation's name and city (from the PractitionerRole).
    place: str | None = None
    city: str | None = None

    def matches(self, words: str) -> bool:
        """Whether every word of ``words`` is in the name, RPPS/idNat_PS, city, place or specialty.

        Case and accents are ignored: ``ribeiro lyon`` finds « Dr Anaïs RIBEIRO », Lyon.
        """
        haystack = _folded(
            " ".join(
                part or ""
                for part in (
                    self.display,
                    self.idnps,
                    self.city,
                    self.place,
                    self.profession_label,
                    self.specialty_label,
                )
            )
        )
        return all(word in haystack for word in _folded(words).split())


def matches_words(text: str, words: str) -> bool:
    """Whether every word of ``words`` is in ``text``, case and accents ignored."""
    haystack = _folded(text)
    return all(word in haystack for word in _folded(words).split())


def _folded(text: str) -> str:
    """Lower-case ``text`` without its accents (for searching)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class DemoDirectory:
    """The demo patients and the directory's professionals, cached for :data:`CACHE_SECONDS`."""

    def __init__(self, service: RecordService, people: Sequence[tuple[Identifier, str]] = ()) -> None:
        self._service = service
        self._people = tuple(people)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}

    def _cached(self, name: str, build: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            value: T = hit[1]
            return value
        built = build()
        with self._lock:
            self._cache[name] = (now, built)
        return built

    def patients(self) -> list[DemoPatient]:
        """Return the demo people that have a record here, in the order given."""
        return self._cached("patients", self._find_patients)

    def professionals(self) -> list[DemoProfessional]:
        """Return the directory's professionals with a national id, by profession then name."""
        return self._cached("professionals", lambda: demo_professionals(self._service))

    def _find_patients(self) -> list[DemoPatient]:
        found: list[DemoPatient] = []
        for identifier, display in self._people:
            resolved = self._service.resolve(
                Principal(kind=ActorKind.PATIENT, subject=f"demo:{identifier.value}", identifier=identifier)
            )
            if resolved.patient_id is not None:
                found.append(
                    DemoPatient(patient_id=resolved.patient_id, identifier=identifier, display=display)
                )
        return found


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
    """Return the directory's professionals with a national id, by profession then name (uncached)."""
    records = service.records(DIRECTORY_READER)
    try:
        practitioners = records.search("Practitioner", [("_count", "1000")]).resources
        roles = records.search("PractitionerRole", [("_count", "1000")]).resources
        organizations = records.search("Organization", [("_count", "1000")]).resources
    except CarnetError:
        return []
    city_of = {
        f"Organization/{o.get('id')}": next(
            (str(a["city"]) for a in o.get("address") or [] if isinstance(a, dict) and a.get("city")), None
        )
        for o in organizations
    }
    specialty_of: dict[str, tuple[str | None, str | None]] = {}
    place_of: dict[str, tuple[str | None, str | None]] = {}
    for role in roles:
        reference = str((role.get("practitioner") or {}).get("reference", ""))
        specialty_of[reference.removeprefix("Practitioner/")] = _coding(role.get("specialty"))
        organization = role.get("organization") or {}
        place_of[reference.removeprefix("Practitioner/")] = (
            str(organization.get("display") or "") or None,
            city_of.get(str(organization.get("reference") or "")),
        )
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
                place=place_of.get(str(practitioner.get("id")), (None, None))[0],
                city=place_of.get(str(practitioner.get("id")), (None, None))[1],
            )
        )
    found.sort(key=lambda p: (p.profession or "99", p.specialty or "", p.display))
    return found
