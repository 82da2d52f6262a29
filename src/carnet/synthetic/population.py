"""A population of synthetic patients, each as a FHIR R4 ``transaction`` Bundle loadable on its own.

Every entry is ``POST <Type>`` with a ``urn:uuid:`` ``fullUrl``, and entries refer to each other
by those URNs. A bundle carries the professionals and organizations its resources refer to; their
entries are conditional creates (``ifNoneExist`` on their identifier), as is the patient's on the
INS, so loading many bundles into one server creates each professional once and each patient once.

Generation is deterministic: patient ``i`` of seed ``s`` comes from ``random.Random`` seeded with
``(s, i)`` and the professional pool from ``(s, pool size)``, so the same arguments give the same
bytes on every machine, a larger population starts with the patients of a smaller one, and no
clock, ``uuid4`` or ``os.urandom`` is involved. The record is dated ``as_of``, not today.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from carnet.synthetic.documents import KINDS, document_entries, kind_of
from carnet.synthetic.patient import draw_person, patient_resource, related_person_resource
from carnet.synthetic.professionals import (
    Organization,
    Pool,
    Professional,
    generate_professionals,
    organization_resource,
    practitioner_resource,
    practitioner_role_resource,
)
from carnet.synthetic.profile import draw_profile
from carnet.synthetic.reports import Context
from carnet.synthetic.resources import profile_resources
from carnet.synthetic.terminology import IDNPS_SYSTEM, INS_NIR_TEST_SYSTEM, JSON, URI_SYSTEM

#: The day synthetic records are "as of" unless told otherwise; fixed so that output is stable.
DEFAULT_AS_OF = date(2025, 1, 1)
DEFAULT_DOCUMENTS = 8
DEFAULT_PROFESSIONALS = 120


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientBundle:
    """One synthetic patient: the transaction bundle and the traits a test looks up."""

    bundle: JSON
    ins: tuple[str, str]
    """(system, value) of the INS: ``urn:oid:1.2.250.1.213.1.4.10`` and the test NIR."""
    given: str
    family: str
    """The birth name."""
    gender: str
    birth_date: date
    patient_url: str
    """The ``urn:uuid:`` of the Patient entry in :attr:`bundle`."""

    def to_json(self) -> bytes:
        """Serialize the bundle as compact JSON (UTF-8), byte-for-byte stable for a seed."""
        return orjson.dumps(self.bundle)


def generate_population(
    patients: int,
    seed: int,
    *,
    documents_per_patient: int = DEFAULT_DOCUMENTS,
    pdf_bytes: int | None = None,
    professionals: int = DEFAULT_PROFESSIONALS,
    as_of: date = DEFAULT_AS_OF,
    cnam_hr: bool = False,
    dispensations: bool = False,
) -> Iterator[PatientBundle]:
    """Yield ``patients`` synthetic patients drawn from ``seed``, one transaction bundle each.

    ``documents_per_patient`` documents go to each patient, one of each kind in turn (the default
    8 covers the consultation note, prescription, dispensation, lab report, vaccination history,
    imaging report, discharge letter and reimbursement history; a 9th is a note the patient
    uploads; more repeat the cycle on earlier dates). ``pdf_bytes`` pads every PDF to about that
    size. ``cnam_hr`` writes the reimbursement history as a structured CNAM-HR document of 24
    months (sections and coded lines) instead of a PDF; ``dispensations`` the pharmacy's dispensation
    as a structured FR-Dispensation-medicaments document (its coded medicines) instead of a PDF. ``professionals`` is the size of the pool of professionals the patients share. Patients
    are drawn as the iterator is consumed; the arguments are checked at once.

    Raises:
        ValueError: a count is negative, ``pdf_bytes`` is not positive, or the pool is too small.
    """
    if patients < 0 or documents_per_patient < 0:
        raise ValueError("Counts of patients and documents cannot be negative; pass 0 or more.")
    if pdf_bytes is not None and pdf_bytes <= 0:
        raise ValueError(f"pdf_bytes must be a positive size in bytes, got {pdf_bytes}.")
    pool = generate_professionals(seed, professionals)
    return _patients(patients, seed, pool, as_of, documents_per_patient, pdf_bytes, (cnam_hr, dispensations))


def _patients(
    patients: int,
    seed: int,
    pool: Pool,
    as_of: date,
    documents: int,
    pdf_bytes: int | None,
    structured: tuple[bool, bool],
) -> Iterator[PatientBundle]:
    taken_nirs: set[str] = set()
    for index in range(patients):
        # Synthetic data must be reproducible from the seed, so the generator is random.Random on purpose.
        rng = random.Random(f"carnet.synthetic/{seed}/patient/{index}")  # noqa: S311
        yield _draw_patient(rng, pool, taken_nirs, as_of, documents, pdf_bytes, *structured)


def _draw_patient(
    rng: random.Random,
    pool: Pool,
    taken_nirs: set[str],
    as_of: date,
    documents: int,
    pdf_bytes: int | None,
    cnam_hr: bool = False,
    dispensations: bool = False,
) -> PatientBundle:
    person = draw_person(rng, as_of, taken_nirs)
    rounds = max(1, -(-documents // len(KINDS)))
    profile = draw_profile(rng, person, pool, as_of, rounds=rounds)
    ctx = Context(rng=rng, person=person, profile=profile, pool=pool, as_of=as_of)
    patient = _entry(
        person.uuid,
        patient_resource(person, profile.general_practitioner),
        f"identifier={INS_NIR_TEST_SYSTEM}|{person.nir}",
    )
    own: list[tuple[str, JSON]] = []
    if person.relative is not None:
        own.append((person.relative.uuid, related_person_resource(person, person.relative)))
    own.extend(profile_resources(person, profile))
    for index in range(documents):
        kind, rank = kind_of(index)
        own.extend(
            document_entries(
                ctx, kind, rank, pdf_bytes=pdf_bytes, cnam_hr=cnam_hr, dispensations=dispensations
            )
        )
    references = _references([patient["resource"], *(resource for _, resource in own)])
    entries = _shared_entries(pool, references)
    entries.append(patient)
    entries.extend(_entry(uuid, resource) for uuid, resource in own)
    return PatientBundle(
        bundle={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        ins=(INS_NIR_TEST_SYSTEM, person.nir),
        given=person.given,
        family=person.family,
        gender=person.sex,
        birth_date=person.birth_date,
        patient_url=person.url,
    )


def _entry(uuid: str, resource: JSON, if_none_exist: str | None = None) -> JSON:
    request: JSON = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": f"urn:uuid:{uuid}", "resource": resource, "request": request}


def _references(resources: Iterable[JSON]) -> set[str]:
    """Collect every ``reference`` value in ``resources``, however deep."""
    found: set[str] = set()
    stack: list[Any] = list(resources)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "reference" and isinstance(value, str):
                    found.add(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _shared_entries(pool: Pool, references: set[str]) -> list[JSON]:
    """Return the entries of the professionals and organizations that ``references`` name."""
    professionals: list[Professional] = [
        p for p in pool.professionals if p.practitioner_url in references or p.role_url in references
    ]
    organizations: dict[str, Organization] = {}
    for professional in professionals:
        organizations.setdefault(professional.organization.uuid, professional.organization)
    if pool.insurer.url in references:
        organizations.setdefault(pool.insurer.uuid, pool.insurer)
    entries = []
    for organization in organizations.values():
        system, value = organization.identifier
        entries.append(
            _entry(organization.uuid, organization_resource(organization), f"identifier={system}|{value}")
        )
    for professional in professionals:
        entries.append(
            _entry(
                professional.practitioner_uuid,
                practitioner_resource(professional),
                f"identifier={IDNPS_SYSTEM}|{professional.idnps}",
            )
        )
        entries.append(
            _entry(
                professional.role_uuid,
                practitioner_role_resource(professional),
                f"identifier={URI_SYSTEM}|{professional.role_url}",
            )
        )
    return entries
