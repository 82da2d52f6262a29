"""The DMP access rules through the API: authorisations, blocks, masks, modes, and no side doors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE
from carnet.domain.feeds import FeedKind
from carnet.domain.resources import RECORD_STATUS_EXTENSION
from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
GP = "810001234567"
PHARMACIST = "810009999999"
AUTHOR = "810005555555"
NOW = datetime.now(UTC)


class World:
    """One patient's record with documents, and the professionals around it."""

    def __init__(
        self, client: TestClient, auth: Mint, *, masked: bool = True, nir: str = "2840312345678"
    ) -> None:
        self.client = client
        self.auth = auth
        headers = auth(kind="patient", identifier=f"{INS}|{nir}")
        patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
        self.id = client.post("/fhir/Patient", json=patient, headers=headers).json()["id"]
        self.patient = auth(kind="patient", patient=self.id)
        self.docs = {
            "report": self.document("10", "N"),
            "vaccination": self.document("52", "N"),
            "hidden": self.document("10", "INVISIBLE_PATIENT"),
        }
        if masked:
            self.docs["masked"] = self.document("10", "MASQUE_PS")

    def document(self, class_code: str, label: str) -> str:
        """Create a DocumentReference of a class and visibility, authored by AUTHOR; return its id."""
        body = {
            "resourceType": "DocumentReference",
            "status": "current",
            "category": [{"coding": [{"system": CLASS, "code": class_code}]}],
            "subject": {"reference": f"Patient/{self.id}"},
            "author": [{"identifier": {"system": IDNPS, "value": AUTHOR}}],
            "securityLabel": [{"coding": [{"system": VISIBILITY, "code": label}]}],
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(b"compte rendu").decode(),
                    }
                }
            ],
        }
        response = self.client.post("/fhir/DocumentReference", json=body, headers=self.patient)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def choose(self, kind: ConsentKind, professional: str | None = None) -> str:
        """The patient records a choice as a Consent; return its id."""
        consent = consent_for(kind, self.id, professional, now=NOW)
        response = self.client.post("/fhir/Consent", json=consent, headers=self.patient)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def professional(self, idnps: str, profession: str = "10", **headers: str) -> dict[str, str]:
        """Headers of a professional's token, with extra request headers (mode, justification)."""
        return {
            **self.auth(kind="professional", idnps=idnps, profession=profession, specialty="SM54"),
            **headers,
        }

    def visible(self, headers: dict[str, str]) -> set[str]:
        """The documents a caller finds by searching the record (empty if refused)."""
        response = self.client.get(f"/fhir/DocumentReference?patient={self.id}", headers=headers)
        if response.status_code != 200:
            return set()
        ids = {
            e["resource"]["id"]
            for e in response.json().get("entry", [])
            if e["resource"]["resourceType"] == "DocumentReference"
        }
        return {name for name, doc in self.docs.items() if doc in ids}


@pytest.fixture
def world(client: TestClient, auth: Mint) -> World:
    """A record with a report, a vaccination certificate, a hidden and a masked document."""
    return World(client, auth)


def test_professional_needs_authorisation(world: World) -> None:
    """Without the patient's authorisation a professional gets nothing; with it, the record minus masked documents."""
    gp = world.professional(GP)
    assert world.client.get(f"/fhir/DocumentReference?patient={world.id}", headers=gp).status_code == 403
    assert world.client.get(f"/fhir/DocumentReference/{world.docs['report']}", headers=gp).status_code == 404
    world.choose(ConsentKind.AUTHORISATION, GP)
    assert world.visible(gp) == {"report", "vaccination", "hidden"}
    assert world.client.get(f"/fhir/DocumentReference/{world.docs['masked']}", headers=gp).status_code == 404


def test_blocked_professional_gets_nothing_in_any_mode(world: World) -> None:
    """A professional the patient blocked is refused, even in break-glass."""
    world.choose(ConsentKind.AUTHORISATION, GP)
    world.choose(ConsentKind.BLOCK, GP)
    assert world.visible(world.professional(GP)) == set()
    glass = world.professional(GP, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": "coma"})
    assert world.visible(glass) == set()


def test_matrix_limits_what_a_pharmacist_reads(world: World) -> None:
    """The authorisation matrix hides classes the profession may not read (a pharmacist and class 52)."""
    world.choose(ConsentKind.AUTHORISATION, PHARMACIST)
    assert world.visible(world.professional(PHARMACIST, profession="21")) == {"report", "hidden"}


def test_treating_physician_sees_masked_and_patient_is_notified(world: World) -> None:
    """A treating physician in treating mode reads a masked document, with a notify_patient obligation."""
    world.choose(ConsentKind.TREATING_PHYSICIAN, GP)
    treating = world.professional(GP, **{"X-Carnet-Mode": "treating"})
    assert world.visible(treating) == {"report", "vaccination", "hidden", "masked"}
    read = world.client.get(f"/fhir/DocumentReference/{world.docs['masked']}", headers=treating)
    assert read.status_code == 200
    assert "notify_patient" in read.headers["x-carnet-obligations"]


def test_author_sees_own_masked_document(world: World) -> None:
    """The author of a masked document still reads it."""
    world.choose(ConsentKind.AUTHORISATION, AUTHOR)
    assert "masked" in world.visible(world.professional(AUTHOR))


def test_break_glass_needs_justification_and_respects_opposition(world: World) -> None:
    """Break-glass reads with a justification (banner, notification), never masked documents; an opposition stops it."""
    no_reason = world.professional(GP, **{"X-Carnet-Mode": "break_glass"})
    assert world.visible(no_reason) == set()
    glass = world.professional(
        GP, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": "inconscient aux urgences"}
    )
    assert world.visible(glass) == {"report", "vaccination", "hidden"}
    response = world.client.get(f"/fhir/DocumentReference?patient={world.id}", headers=glass)
    assert {"notify_patient", "show_mode_banner"} <= set(response.headers["x-carnet-obligations"].split(", "))
    write = world.client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{world.id}"},
        },
        headers=glass,
    )
    assert write.status_code == 403
    world.choose(ConsentKind.OPPOSITION_BREAK_GLASS)
    assert world.visible(glass) == set()


def test_regulation_is_for_samu_and_has_its_own_opposition(world: World) -> None:
    """SAMU regulation reads unless the patient opposed regulation; a break-glass opposition does not stop it."""
    samu = {
        **world.auth(kind="professional", idnps="810007777777", profession="10", samu=True),
        "X-Carnet-Mode": "regulation",
    }
    world.choose(ConsentKind.OPPOSITION_BREAK_GLASS)
    assert world.visible(samu) == {"report", "vaccination", "hidden"}
    world.choose(ConsentKind.OPPOSITION_REGULATION)
    assert world.visible(samu) == set()
    not_samu = world.professional(GP, **{"X-Carnet-Mode": "regulation"})
    assert world.visible(not_samu) == set()


def test_patient_does_not_see_invisible_document(world: World) -> None:
    """INVISIBLE_PATIENT hides a document from the patient, in search, read and $everything."""
    assert world.visible(world.patient) == {"report", "vaccination", "masked"}
    assert (
        world.client.get(f"/fhir/DocumentReference/{world.docs['hidden']}", headers=world.patient).status_code
        == 404
    )
    everything = world.client.get(f"/fhir/Patient/{world.id}/$everything", headers=world.patient).json()
    assert world.docs["hidden"] not in {e["resource"]["id"] for e in everything["entry"]}


def test_expired_authorisation_is_refused(world: World, client: TestClient) -> None:
    """An authorisation whose period ended no longer opens the record."""
    consent = consent_for(
        ConsentKind.AUTHORISATION, world.id, GP, NOW - timedelta(days=1), now=NOW - timedelta(days=30)
    )
    assert client.post("/fhir/Consent", json=consent, headers=world.patient).status_code == 201
    assert world.visible(world.professional(GP)) == set()


def test_forbidden_kinds_never_get_in(world: World) -> None:
    """An employer or a complementary insurer is refused even with an 'authorisation' in its name."""
    world.choose(ConsentKind.AUTHORISATION, GP)
    for kind in ("employer", "complementary_insurer", "bank"):
        headers = world.auth(kind=kind, idnps=GP)
        assert (
            world.client.get(f"/fhir/DocumentReference?patient={world.id}", headers=headers).status_code
            == 403
        )


def _interactions(world: World, headers: dict[str, str]) -> list[tuple[int, Any]]:
    """Every read-side interaction a professional may try, with its status and a comparable body."""
    out: list[tuple[int, Any]] = []
    masked = world.docs.get("masked", "00000000-0000-4000-8000-000000000000")
    for path in (
        f"DocumentReference?patient={world.id}",
        f"DocumentReference?patient={world.id}&_summary=count",
        f"DocumentReference?patient={world.id}&_count=1",
        f"DocumentReference?patient={world.id}&category={CLASS}|10",
        f"DocumentReference/_history?patient={world.id}",
        f"Patient/{world.id}/$everything",
        f"DocumentReference/{masked}",
        f"DocumentReference/{masked}/_history",
        f"DocumentReference/{masked}/_history/1",
    ):
        response = world.client.get(f"/fhir/{path}", headers=headers)
        out.append((response.status_code, _shape(response.json(), masked)))
    return out


def _shape(body: Any, masked: str) -> Any:
    """What a caller can learn from a body: resource types, ids of visible documents, totals, links, messages."""
    if body.get("resourceType") == "OperationOutcome":
        return ("outcome", body["issue"][0]["code"], body["issue"][0]["diagnostics"].replace(masked, "<id>"))
    entries = body.get("entry", [])
    return (
        body.get("total"),
        len(body.get("link", [])),
        sorted(
            (e["resource"]["resourceType"], e["resource"].get("status", ""))
            for e in entries
            if "resource" in e
        ),
    )


@pytest.mark.parametrize("mode", ["normal", "break_glass", "regulation"])
def test_paired_worlds_reveal_nothing_about_masked_documents(
    client: TestClient, auth: Mint, mode: str
) -> None:
    """For every interaction, a professional's view is identical whether or not a document masked from them exists."""
    with_mask = World(client, auth, masked=True)
    without = World(client, auth, masked=False, nir="1840312345679")
    extra = {"X-Carnet-Mode": mode, "X-Carnet-Justification": "urgence vitale"} if mode != "normal" else {}
    claims: dict[str, Any] = {
        "kind": "professional",
        "idnps": GP,
        "profession": "10",
        "samu": mode == "regulation",
    }
    for w in (with_mask, without):
        w.choose(ConsentKind.AUTHORISATION, GP)
    differences = 0
    queries = 0
    for _ in range(38):
        seen = [_interactions(w, {**auth(**claims), **extra}) for w in (with_mask, without)]
        queries += len(seen[0])
        differences += sum(1 for a, b in zip(*seen, strict=True) if a != b)
    assert queries >= 340  # three modes: over 1,000 paired queries in all
    assert differences == 0


def test_professional_records_the_patients_consent(world: World) -> None:
    """A professional records the present patient's agreement (patient notified), then reads; a blocked one cannot."""
    declaration = consent_for(ConsentKind.AUTHORISATION, world.id, GP, now=NOW)
    gp = world.professional(GP)
    made = world.client.post("/fhir/Consent", json=declaration, headers=gp)
    assert made.status_code == 201, made.text
    assert "notify_patient" in made.headers["x-carnet-obligations"]
    assert world.visible(gp) == {"report", "vaccination", "hidden"}
    for_someone_else = consent_for(ConsentKind.AUTHORISATION, world.id, PHARMACIST, now=NOW)
    assert world.client.post("/fhir/Consent", json=for_someone_else, headers=gp).status_code == 403
    world.choose(ConsentKind.BLOCK, PHARMACIST)
    own = consent_for(ConsentKind.AUTHORISATION, world.id, PHARMACIST, now=NOW)
    pharmacist = world.professional(PHARMACIST, profession="21")
    assert world.client.post("/fhir/Consent", json=own, headers=pharmacist).status_code == 403


def test_professional_declares_treating_physician(world: World) -> None:
    """A professional declares themselves treating physician with the patient's agreement, then reads masked documents in treating mode."""
    declaration = consent_for(ConsentKind.TREATING_PHYSICIAN, world.id, GP, now=NOW)
    assert (
        world.client.post("/fhir/Consent", json=declaration, headers=world.professional(GP)).status_code
        == 201
    )
    treating = world.professional(GP, **{"X-Carnet-Mode": "treating"})
    assert "masked" in world.visible(treating)


def test_author_lifts_invisible_to_patient(world: World) -> None:
    """The authoring professional lifts INVISIBLE_PATIENT by updating the label; then the patient sees the document."""
    world.choose(ConsentKind.AUTHORISATION, AUTHOR)
    author = world.professional(AUTHOR)
    url = f"/fhir/DocumentReference/{world.docs['hidden']}"
    document = world.client.get(url, headers=author).json()
    document["securityLabel"] = [{"coding": [{"system": VISIBILITY, "code": "N"}]}]
    other = world.professional(GP)
    world.choose(ConsentKind.AUTHORISATION, GP)
    assert world.client.put(url, json=document, headers=other).status_code == 404
    assert world.client.put(url, json=document, headers=author).status_code == 200
    assert "hidden" in world.visible(world.patient)


def test_feed_writes_registered_categories_only_and_never_reads(world: World, services: Services) -> None:
    """A lab feed publishes class-10 documents (ITI-105), not prescriptions, never reads, and stops when refused."""
    services.feeds.add("lab-biomnis", name="Biomnis", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    # The token claims every class: the registry's classes are the ones that count.
    feed = world.auth(kind="feed", feed="lab-biomnis", feed_categories=["10", "42"])

    def submit(class_code: str) -> int:
        body = {
            "resourceType": "DocumentReference",
            "meta": {"profile": [SIMPLIFIED_PUBLISH_PROFILE]},
            "status": "current",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.3.{class_code}"},
            "category": [{"coding": [{"system": CLASS, "code": class_code}]}],
            "subject": {"reference": f"Patient/{world.id}"},
            "content": [
                {"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"CR").decode()}}
            ],
        }
        return world.client.post("/fhir/DocumentReference", json=body, headers=feed).status_code

    assert submit("10") == 201
    assert submit("42") == 403
    assert world.client.get(f"/fhir/DocumentReference?patient={world.id}", headers=feed).status_code == 403
    consent = consent_for(ConsentKind.FEED_REFUSAL, world.id, now=NOW, feed_id="lab-biomnis")
    assert world.client.post("/fhir/Consent", json=consent, headers=world.patient).status_code == 201
    assert submit("10") == 403


def test_deleted_masked_document_reads_as_unknown(world: World) -> None:
    """A deleted document the caller could not see answers 404 like an unknown one, not 410."""
    world.choose(ConsentKind.AUTHORISATION, GP)
    masked = world.docs["masked"]
    assert world.client.delete(f"/fhir/DocumentReference/{masked}", headers=world.patient).status_code == 204
    assert world.client.get(f"/fhir/DocumentReference/{masked}", headers=world.patient).status_code == 410
    assert (
        world.client.get(f"/fhir/DocumentReference/{masked}", headers=world.professional(GP)).status_code
        == 404
    )


def test_malformed_choice_is_refused_at_write(world: World) -> None:
    """A Consent of the Carnet convention with an unknown kind is refused with 422, so reads never break on it."""
    consent = consent_for(ConsentKind.AUTHORISATION, world.id, GP, now=NOW)
    consent["category"][0]["coding"][0]["code"] = "all-access"
    response = world.client.post("/fhir/Consent", json=consent, headers=world.patient)
    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"


def test_closed_record_is_out_of_reach_of_professionals_until_reopened(world: World) -> None:
    """A closed record: professionals get nothing (break-glass too), feeds cannot add; reopened, access returns."""
    world.choose(ConsentKind.AUTHORISATION, GP)
    gp = world.professional(GP)
    assert "report" in world.visible(gp)
    patient = world.client.get(f"/fhir/Patient/{world.id}", headers=world.patient).json()
    closed = {
        **patient,
        "active": False,
        "extension": [{"url": RECORD_STATUS_EXTENSION, "valueCode": "closed"}],
    }
    assert (
        world.client.put(f"/fhir/Patient/{world.id}", json=closed, headers=world.patient).status_code == 200
    )
    assert world.visible(gp) == set()
    assert world.client.get(f"/fhir/DocumentReference/{world.docs['report']}", headers=gp).status_code == 404
    glass = world.professional(GP, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": "urgence"})
    assert world.visible(glass) == set()
    assert "report" in world.visible(world.patient)
    reopened = world.client.get(f"/fhir/Patient/{world.id}", headers=world.patient).json()
    reopened.pop("extension")
    reopened["active"] = True
    assert (
        world.client.put(f"/fhir/Patient/{world.id}", json=reopened, headers=world.patient).status_code == 200
    )
    assert "report" in world.visible(gp)
