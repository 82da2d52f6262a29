"""The reimbursement timeline in the portals: the lines of the CNAM-HR histories the viewer may read.

The demo patient's generated history shows every line to the patient and to a professional the
patient authorised; masked from professionals it shows none to that professional (and still all
to the patient); a history invisible to the patient shows none to the patient.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, seed_population
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.documents import binary_content
from carnet.domain.principal import ActorKind, Principal
from carnet.feeds.cnam_hr import read_reimbursements
from carnet.services.reimbursements import reimbursement_timeline
from carnet.settings import Settings
from carnet.synthetic import generate_population
from carnet.web.identities import demo_professionals
from minting import Mint

CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"
REMB_TYPE = {"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.12", "code": "REMB"}]}


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """A seeded server in-process: the demo patient (with a CNAM-HR history) and a physician."""

    services: Services
    patient: SeededPatient
    physician: str
    patient_client: TestClient
    pro_client: TestClient


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get(path, headers={"Accept": "text/html"}).text
    )
    assert found is not None
    return found.group(1)


@pytest.fixture
def world(settings: Settings, services: Services) -> Iterator[World]:
    """The demo patient signed in on one client, a physician of the directory on another."""
    patient = seed_population(services.records, patients=1, seed=2026)[0]
    physician = next(p.practitioner_id for p in demo_professionals(services.records) if p.profession == "10")
    app = create_app(settings, services)
    with (
        TestClient(app, base_url="http://testserver") as patient_client,
        TestClient(app, base_url="http://testserver") as pro_client,
    ):
        identifier = f"{patient.ins_system}|{patient.ins_value}"
        data = {"csrf_token": _csrf(patient_client, "/login"), "kind": "patient", "identifier": identifier}
        assert patient_client.post("/login", data=data, follow_redirects=False).status_code == 303
        data = {"csrf_token": _csrf(pro_client, "/login"), "kind": "professional", "practitioner": physician}
        assert pro_client.post("/login", data=data, follow_redirects=False).status_code == 303
        yield World(
            services=services,
            patient=patient,
            physician=physician,
            patient_client=patient_client,
            pro_client=pro_client,
        )


def _lines(html: str) -> int:
    return len(re.findall(r'<li class="card reimbursement ', html))


def _history(world: World) -> tuple[str, int]:
    """The id of the demo patient's CNAM-HR document and how many distinct lines it holds."""
    holder = world.services.records.records(
        Principal(kind=ActorKind.PATIENT, subject="t", patient_id=world.patient.patient_id)
    )
    found = holder.search(
        "DocumentReference", [("patient", f"Patient/{world.patient.patient_id}"), ("category", f"{CLASS}|60")]
    ).resources
    assert len(found) == 1
    url = found[0]["content"][0]["attachment"]["url"]
    raw = binary_content(holder.read("Binary", url.removeprefix("Binary/")).resource or {})
    return str(found[0]["id"]), len(set(read_reimbursements(raw).lines))


def test_the_patient_and_an_authorised_professional_see_every_line_until_it_is_masked(world: World) -> None:
    """Both portals list each line; masked from professionals, the professional's timeline is empty, the patient's whole."""
    document_id, expected = _history(world)
    assert expected > 10
    mine = world.patient_client.get("/patient/reimbursements")
    assert mine.status_code == 200
    assert _lines(mine.text) == expected
    assert 'id="reimbursements-period"' in mine.text
    medicines = _lines(world.patient_client.get("/patient/reimbursements?kind=medicine").text)
    assert 0 < medicines < expected

    token = _csrf(world.pro_client, "/pro/")
    consent = {"csrf_token": token, "ins": world.patient.ins_value, "kind": "authorisation", "agreed": "yes"}
    assert (
        world.pro_client.post("/pro/access/consent", data=consent, follow_redirects=False).status_code == 303
    )
    base = f"/pro/patients/{world.patient.patient_id}/reimbursements"
    assert _lines(world.pro_client.get(base).text) == expected

    token = _csrf(world.patient_client, f"/patient/documents/{document_id}")
    masked = world.patient_client.post(
        f"/patient/documents/{document_id}/visibility", data={"csrf_token": token, "masked": "1"}
    )
    assert masked.status_code == 200
    hidden = world.pro_client.get(base)
    assert hidden.status_code == 200
    assert _lines(hidden.text) == 0
    assert 'id="reimbursements-empty"' in hidden.text
    assert _lines(world.patient_client.get("/patient/reimbursements").text) == expected


def _generated() -> bytes:
    """The CNAM-HR document ``carnet generate --cnam-hr`` writes for one patient."""
    patient = next(iter(generate_population(1, seed=3, cnam_hr=True)))
    binaries = {entry["fullUrl"]: entry["resource"] for entry in patient.bundle["entry"]}
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if (
            resource["resourceType"] == "DocumentReference"
            and resource["type"]["coding"][0]["code"] == "REMB"
        ):
            return base64.b64decode(binaries[resource["content"][0]["attachment"]["url"]]["data"])
    raise AssertionError("no reimbursement history generated")


def test_a_history_invisible_to_the_patient_shows_no_line_to_the_patient(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """A CNAM-HR labelled INVISIBLE_PATIENT gives the patient an empty timeline and an authorised professional every line."""
    raw = _generated()
    nir = "2840312345678"
    headers = auth(kind="patient", identifier=f"urn:oid:1.2.250.1.213.1.4.10|{nir}")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": nir}],
    }
    patient_id = client.post("/fhir/Patient", json=patient, headers=headers).json()["id"]
    own = auth(kind="patient", patient=patient_id)
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": REMB_TYPE,
        "category": [{"coding": [{"system": CLASS, "code": "60"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "securityLabel": [{"coding": [{"system": VISIBILITY, "code": "INVISIBLE_PATIENT"}]}],
        "content": [{"attachment": {"contentType": "text/xml", "data": base64.b64encode(raw).decode()}}],
    }
    created = client.post("/fhir/DocumentReference", json=document, headers=own)
    assert created.status_code == 201, created.text
    gp = "810001234567"
    consent = consent_for(ConsentKind.AUTHORISATION, patient_id, gp, now=datetime.now(UTC))
    assert client.post("/fhir/Consent", json=consent, headers=own).status_code == 201
    as_patient = services.records.records(
        Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    )
    as_gp = services.records.records(
        Principal(kind=ActorKind.PROFESSIONAL, subject=f"idnps:{gp}", professional_id=gp, profession="10")
    )
    assert reimbursement_timeline(as_patient, patient_id).lines == ()
    seen = reimbursement_timeline(as_gp, patient_id)
    assert len(seen.lines) == len(set(read_reimbursements(raw).lines)) > 10
    assert seen.documents == 1


def _dispensed(html: str) -> list[str]:
    """The medicines of the "recently dispensed" list of a page."""
    block = re.search(r'<ul id="dispensed"[^>]*>(.*?)</ul>', html, re.S)
    return re.findall(r"<strong>([^<]+)</strong>", block.group(1)) if block else []


def test_recent_dispensations_feed_the_current_treatments_until_masked(world: World) -> None:
    """The latest reimbursed medicines and a pharmacy's MedicationDispense show under the treatments, while the viewer may read them."""
    patient_id = world.patient.patient_id
    holder = world.services.records.records(
        Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    )
    latest = reimbursement_timeline(holder, patient_id)
    newest = next(item.line for item in latest.lines if item.line.kind.value == "medicine")
    dispense = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {"text": "PARACETAMOL 500 MG GELULE"},
        "whenHandedOver": newest.start.isoformat(),
        "performer": [{"actor": {"display": "Pharmacie des Tests"}}],
    }
    holder.create(dispense)
    profile = world.patient_client.get("/patient/profile")
    assert profile.status_code == 200
    shown = _dispensed(profile.text)
    assert newest.label in shown
    assert "PARACETAMOL 500 MG GELULE" in shown

    token = _csrf(world.pro_client, "/pro/")
    consent = {"csrf_token": token, "ins": world.patient.ins_value, "kind": "authorisation", "agreed": "yes"}
    assert (
        world.pro_client.post("/pro/access/consent", data=consent, follow_redirects=False).status_code == 303
    )
    assert newest.label in _dispensed(world.pro_client.get(f"/pro/patients/{patient_id}").text)

    document_id, _ = _history(world)
    token = _csrf(world.patient_client, f"/patient/documents/{document_id}")
    world.patient_client.post(
        f"/patient/documents/{document_id}/visibility", data={"csrf_token": token, "masked": "1"}
    )
    assert _dispensed(world.pro_client.get(f"/pro/patients/{patient_id}").text) == [
        "PARACETAMOL 500 MG GELULE"
    ]
