"""A legal representative signs in as themself through the patients' OpenID provider (a real oidc-provider).

Production mode. Without a record of her own, a mother claims the desk's code at her first
sign-in and is signed in as a representative (never refused for lacking a record); with one,
linked by her INS at the desk, she signs in as a patient who also represents her daughter.
Either way she acts for the child's record in the representative mode, what the rules hide from
representatives stays hidden, and the child's journal names her provider account or her record.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.identity_links import subject_identifier
from carnet.settings import Settings
from journal_requests import journal_of
from oidc_provider import (
    CARNET,
    PARENT,
    TestProvider,
    production_settings,
    running_provider,
    sign_in_at_provider,
)

TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"
DESK = Principal(kind=ActorKind.ADMIN, subject="cli:desk")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestProvider]:
    """The OpenID provider, with the mother's account."""
    yield from running_provider(tmp_path_factory.mktemp("provider"))


def _create(
    services: Services, resource: dict[str, object], nir: str | None = None, patient: str | None = None
) -> str:
    opener = Principal(
        kind=ActorKind.PATIENT,
        subject="t",
        patient_id=patient,
        identifier=Identifier(system=TEST_NIR, value=nir) if nir else None,
    )
    return services.records.records(opener).create(resource).stored.resource_id


def _document(services: Services, patient_id: str, label: str) -> str:
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "securityLabel": [{"coding": [{"system": VISIBILITY, "code": label}]}],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"cr").decode()}}],
    }
    return _create(services, body, patient=patient_id)


@pytest.fixture
def carnet(
    settings: Settings, provider: TestProvider, tmp_path: Path
) -> Iterator[tuple[TestClient, Services, dict[str, str]]]:
    """Production mode, patients at ``provider``; the daughter's record with a visible and a hidden document."""
    production = production_settings(settings, provider, tmp_path / "production-keys", patients=True)
    services = build_services(production)
    child = _create(
        services,
        {
            "resourceType": "Patient",
            "identifier": [{"system": TEST_NIR, "value": "2150775000001"}],
            "name": [{"family": "Durand", "given": ["Léa"]}],
            "birthDate": "2015-07-01",
            "gender": "female",
        },
        nir="2150775000001",
    )
    ids = {
        "child": child,
        "shown": _document(services, child, "N"),
        "hidden": _document(services, child, "INVISIBLE_REPRESENTANTS_LEGAUX"),
        "account": "oidc:" + subject_identifier(provider.issuer, PARENT).value,
    }
    with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
        yield client, services, ids
    services.store.engine.dispose()


def _provider_round(client: TestClient) -> httpx.Response:
    start = client.get("/login/patient/oidc", follow_redirects=False)
    with httpx.Client() as browser:
        back = sign_in_at_provider(browser, start.headers["location"], account=PARENT)
    return client.get(f"/login/patient/oidc/callback?{back.query.decode()}", follow_redirects=False)


def _csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _acts_for_the_child(client: TestClient, ids: dict[str, str]) -> None:
    listing = client.get("/patient/switch")
    assert listing.status_code == 200
    assert "Léa Durand" in listing.text
    chosen = client.post("/patient/switch", data={"csrf_token": _csrf(listing), "record": ids["child"]})
    assert chosen.status_code == 200
    documents = client.get("/patient/documents")
    assert "Vous agissez pour Léa Durand" in documents.text
    assert ids["shown"] in documents.text
    assert ids["hidden"] not in documents.text
    assert client.get(f"/patient/documents/{ids['hidden']}").status_code == 404


def test_a_representative_without_a_record_claims_the_desks_code_then_signs_in_directly(
    carnet: tuple[TestClient, Services, dict[str, str]],
) -> None:
    """First sign-in: a wrong code 403, the right one signs her in as a representative; the next one goes straight in."""
    client, services, ids = carnet
    _, code = services.representations.add(ids["child"], basis="parent", name="Marie Durand", by=DESK)
    assert code is not None
    asked = _provider_round(client)
    assert asked.status_code == 200
    assert 'id="represent-form"' in asked.text
    wrong = client.post(
        "/login/patient/represent", data={"csrf_token": _csrf(asked), "code": "AAAA-BBBB-CCCC-DDDD"}
    )
    assert wrong.status_code == 403
    assert client.get("/patient/", follow_redirects=False).status_code == 303
    claimed = client.post("/login/patient/represent", data={"csrf_token": _csrf(asked), "code": code})
    assert claimed.status_code == 200
    assert "/patient/switch" in claimed.text
    _acts_for_the_child(client, ids)
    client.post("/logout", data={"csrf_token": _csrf(client.get("/patient/switch"))})
    again = _provider_round(client)
    assert 'id="signed-in-continue"' in again.text  # no code asked the second time
    _acts_for_the_child(client, ids)
    entries = [e for e in journal_of(services, ids["child"]) if e.actor_id != "t"]
    reads = [e for e in entries if e.resource_type != "Representation"]
    assert reads
    assert {(e.actor_id, e.actor_kind, e.mode) for e in reads} == {
        (ids["account"], "representative", "representative")
    }
    assert {e.actor_display for e in reads} == {"Marie DURAND"}
    assert ("represent-claim", ids["account"]) in [(e.action, e.actor_id) for e in entries]
    sign_ins = [(e.decision, e.reasons, e.actor_id) for e in services.sign_ins.recent()]
    assert ("deny", ("oidc-patient:represent-code",), "unknown") in sign_ins
    assert sum(1 for d, _, actor in sign_ins if d == "permit" and actor == ids["account"]) == 2


def test_a_parent_with_her_own_record_signs_in_as_a_patient_who_represents_her_child(
    carnet: tuple[TestClient, Services, dict[str, str]],
) -> None:
    """Her INS given at the desk: after she links her own record once, she switches from it to her daughter's."""
    client, services, ids = carnet
    own = _create(
        services,
        {
            "resourceType": "Patient",
            "identifier": [{"system": TEST_NIR, "value": "2810675000002"}],
            "name": [{"family": "Durand", "given": ["Marie"]}],
            "birthDate": "1981-06-02",
            "gender": "female",
        },
        nir="2810675000002",
    )
    services.representations.add(
        ids["child"], basis="parent", name="Marie Durand", by=DESK, representative_record=own
    )
    asked = _provider_round(client)
    linked = client.post("/login/patient/link", data={"csrf_token": _csrf(asked), "ins": "2810675000002"})
    assert linked.status_code == 200, linked.text[:300]
    home = client.get("/patient/")
    assert 'id="acting-for-banner"' in home.text
    assert 'id="switch-own"' in client.get("/patient/switch").text
    _acts_for_the_child(client, ids)
    reads = [e for e in journal_of(services, ids["child"]) if e.actor_id not in ("t", "cli:desk")]
    assert reads
    assert {(e.actor_kind, e.mode) for e in reads} == {("patient", "representative")}
    assert {e.actor_id for e in reads} == {ids["account"]}
