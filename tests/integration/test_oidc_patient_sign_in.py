"""Patients sign in through an OpenID provider (a real oidc-provider); their record is linked once, by the INS.

The identity-verification step: the first sign-in asks for the INS, and links the account only
when the provider's name, birth date and sex are the record's; later sign-ins go straight in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from carnet.web.access_visits import read_access
from journal_requests import journal_of
from oidc_provider import (
    CARNET,
    PATIENT,
    TestProvider,
    production_settings,
    running_provider,
    sign_in_at_provider,
)

TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
NIR = "2840312345678"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestProvider]:
    """The OpenID provider (it has a patients' client too)."""
    yield from running_provider(tmp_path_factory.mktemp("provider"))


@pytest.fixture
def carnet(
    settings: Settings, provider: TestProvider, tmp_path: Path
) -> Iterator[tuple[TestClient, Services, str]]:
    """Carnet in production mode with patients signing in at ``provider``; Élise Léger's record."""
    production = production_settings(settings, provider, tmp_path / "production-keys", patients=True)
    services = build_services(production)
    opener = Principal(kind=ActorKind.PATIENT, subject="t", identifier=Identifier(system=TEST_NIR, value=NIR))
    created = services.records.records(opener).create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": TEST_NIR, "value": NIR}],
            "name": [{"family": "Léger", "given": ["Élise", "Marie"]}],
            "birthDate": "1984-03-12",
            "gender": "female",
        }
    )
    with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
        yield client, services, created.stored.resource_id
    services.store.engine.dispose()


def _provider_round(client: TestClient) -> httpx.Response:
    start = client.get("/login/patient/oidc", follow_redirects=False)
    assert start.status_code == 303
    with httpx.Client() as browser:
        back = sign_in_at_provider(browser, start.headers["location"], account=PATIENT)
    assert back.path == "/login/patient/oidc/callback"
    return client.get(f"/login/patient/oidc/callback?{back.query.decode()}", follow_redirects=False)


def _csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_a_patient_links_their_record_once_then_signs_in_directly(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """First time: the INS, checked against the provider's traits; a wrong INS is refused; next time straight in."""
    client, services, _ = carnet
    assert 'id="login-patient-oidc"' in client.get("/login").text
    asked = _provider_round(client)
    assert asked.status_code == 200
    assert 'id="link-form"' in asked.text
    wrong = client.post("/login/patient/link", data={"csrf_token": _csrf(asked), "ins": "1840312345679"})
    assert wrong.status_code == 403
    assert 'id="link-error"' in wrong.text
    assert client.get("/patient/", follow_redirects=False).status_code == 303
    linked = client.post("/login/patient/link", data={"csrf_token": _csrf(asked), "ins": NIR})
    assert linked.status_code == 200, linked.text[:300]
    home = client.get("/patient/")
    assert home.status_code == 200
    client.post("/logout", data={"csrf_token": _csrf(home)})
    again = _provider_round(client)
    assert again.status_code == 200
    assert 'id="signed-in-continue"' in again.text  # no INS asked the second time
    assert client.get("/patient/").status_code == 200
    reasons = [(e.decision, e.reasons) for e in services.sign_ins.recent()]
    assert ("deny", ("oidc-patient:identity-not-verified",)) in reasons
    assert sum(1 for decision, _ in reasons if decision == "permit") == 2


def test_traits_that_differ_never_link(carnet: tuple[TestClient, Services, str]) -> None:
    """The right INS with another person's identity is refused (the record stays unlinked)."""
    client, services, patient_id = carnet
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    patient = dict(services.records.records(holder).read("Patient", patient_id).resource or {})
    patient["birthDate"] = "1984-03-13"
    services.records.records(holder).update("Patient", patient_id, patient)
    asked = _provider_round(client)
    refused = client.post("/login/patient/link", data={"csrf_token": _csrf(asked), "ins": NIR})
    assert refused.status_code == 403
    assert client.get("/patient/", follow_redirects=False).status_code == 303
    attempts = [e for e in journal_of(services, patient_id) if e.actor_id.startswith("oidc:")]
    assert [(e.action, e.outcome != "ok", e.targets) for e in attempts] == [("$link-identity", True, ())]
    events = services.records.records(holder).search("AuditEvent", [("patient", f"Patient/{patient_id}")])
    shown = [read_access(e, "t") for e in events.resources]
    linked = [a for a in shown if a.operation == "$link-identity"]
    assert [(a.refused, a.by_me) for a in linked] == [(True, False)]  # a refusal, not "you read your profile"


def test_a_successful_link_is_journaled_as_a_link(carnet: tuple[TestClient, Services, str]) -> None:
    """The link is one $link-identity entry of the record (the read and the update inside it), by the account."""
    client, services, patient_id = carnet
    asked = _provider_round(client)
    assert (
        client.post("/login/patient/link", data={"csrf_token": _csrf(asked), "ins": NIR}).status_code == 200
    )
    attempts = [e for e in journal_of(services, patient_id) if e.actor_id.startswith("oidc:")]
    assert attempts[0].action == "$link-identity"
    assert attempts[0].outcome == "ok"
    assert any(t.startswith("Patient/") for t in attempts[0].targets)
