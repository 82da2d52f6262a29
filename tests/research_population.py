"""A generated population loaded through the API, with research choices, for the research tests."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.principal import ActorKind, Principal
from carnet.research.study import Study
from carnet.services.export_jobs import ExportJobs
from carnet.synthetic import generate_population
from minting import Mint

ADMIN = Principal(kind=ActorKind.ADMIN, subject="admin:1")
DPO = Principal(kind=ActorKind.DPO, subject="dpo:1")
RESEARCHER = Principal(kind=ActorKind.RESEARCHER, subject="researcher:1")

#: A patient's research choice: none (the default), out of the study, out of all, into the study.
CHOICES = ("default", "out-study", "out-all", "in-study")


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One loaded patient: record id, NIR, traits, and research choice."""

    patient_id: str
    nir: str
    birth_date: date
    gender: str
    postcode: str | None
    choice: str


def registration(**changes: Any) -> dict[str, Any]:
    """A valid study registration (public interest, every type of a profile), with changes."""
    data: dict[str, Any] = {
        "title": "Tension et diabète",
        "sponsor": "CHU de Nantes",
        "purpose": "Blood pressure control in adults.",
        "legalBasis": "public-interest",
        "approvalReference": "CNIL DR-2026-123",
        "period": {"start": "2026-01-01", "end": "2099-12-31"},
        "data": {"types": ["Condition", "Observation", "Immunization", "AllergyIntolerance"]},
        "privacy": {"k": 5, "epsilon": 1.0, "dateShiftDays": 30, "maxSuppression": 0.2},
    }
    data.update(changes)
    return data


def approved_study(services: Services, study_id: str = "s1", **changes: Any) -> Study:
    """Register a study as the administrator and approve it as the DPO."""
    services.studies.register(ADMIN, study_id, registration(**changes))
    return services.studies.approve(DPO, study_id)


def load(
    client: TestClient,
    auth: Mint,
    patients: int,
    *,
    seed: int = 7,
    study_id: str = "s1",
    choose: bool = True,
) -> list[Member]:
    """Load ``patients`` generated patients; give each a random research choice about ``study_id``."""
    rng = random.Random(seed)
    members = []
    for item in generate_population(patients, seed, documents_per_patient=0, professionals=30):
        system, value = item.ins
        response = client.post(
            "/fhir", content=item.to_json(), headers=auth(kind="patient", identifier=f"{system}|{value}")
        )
        assert response.status_code == 200, response.text[:300]
        locations = [e["response"].get("location", "") for e in response.json()["entry"]]
        patient_id = next(loc.split("/")[1] for loc in locations if loc.startswith("Patient/"))
        choice = rng.choice(CHOICES) if choose else "default"
        consent = None
        now = datetime.now(UTC)
        if choice == "out-study":
            consent = consent_for(ConsentKind.RESEARCH_OPT_OUT, patient_id, now=now, study_id=study_id)
        elif choice == "out-all":
            consent = consent_for(ConsentKind.RESEARCH_OPT_OUT, patient_id, now=now)
        elif choice == "in-study":
            consent = consent_for(ConsentKind.RESEARCH_OPT_IN, patient_id, now=now, study_id=study_id)
        if consent is not None:
            created = client.post(
                "/fhir/Consent",
                content=orjson.dumps(consent),
                headers=auth(kind="patient", patient=patient_id),
            )
            assert created.status_code == 201, created.text[:300]
        patient = next(
            e["resource"] for e in item.bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        )
        members.append(
            Member(
                patient_id=patient_id,
                nir=value,
                birth_date=item.birth_date,
                gender=item.gender,
                postcode=(patient.get("address") or [{}])[0].get("postalCode"),
                choice=choice,
            )
        )
    return members


def output(jobs: ExportJobs, export_id: str) -> dict[str, list[dict[str, Any]]]:
    """Read every part of a finished export, by resource type."""
    out: dict[str, list[dict[str, Any]]] = {}
    for part, resource_type, _ in jobs.index(RESEARCHER, export_id):
        data = jobs.part(RESEARCHER, export_id, part)
        out.setdefault(resource_type, []).extend(orjson.loads(line) for line in data.splitlines() if line)
    return out
