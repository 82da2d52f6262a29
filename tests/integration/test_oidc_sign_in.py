"""Professionals sign in through a real OpenID provider (oidc-provider, PSC's claims, JWE ID tokens).

Carnet runs in production mode in-process (https://testserver); the provider runs in Node.js on
a free port and Carnet talks to it over HTTP; the "browser" is an httpx client for the provider's
pages and the app's TestClient for Carnet's, each keeping its own cookies.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous import URLSafeSerializer
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.demo import seed_population
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from carnet.web.i18n import catalog
from carnet.web.oidc_flow import REASONS
from carnet.web.session import session_secret
from journal_requests import journal_of
from oidc_provider import (
    CARNET,
    GP,
    NURSE,
    TestProvider,
    production_settings,
    running_provider,
    sign_in_at_provider,
)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestProvider]:
    """The OpenID provider, with Carnet's encryption key (kept in a key directory of its own)."""
    yield from running_provider(tmp_path_factory.mktemp("provider"))


@pytest.fixture
def carnet(
    settings: Settings, provider: TestProvider, tmp_path: Path
) -> Iterator[tuple[TestClient, Services]]:
    """Carnet in production mode, signing professionals in through ``provider``."""
    production = production_settings(settings, provider, tmp_path / "production-keys")
    services = build_services(production)
    with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
        yield client, services
    services.store.engine.dispose()


def _start(client: TestClient) -> str:
    """Ask Carnet to start a sign-in; return the provider's authorization URL."""
    answer = client.get("/login/oidc", follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]
    return answer.headers["location"]


def _callback(client: TestClient, back: httpx.URL) -> httpx.Response:
    assert str(back).startswith(f"{CARNET}/login/oidc/callback"), back
    return client.get(f"/login/oidc/callback?{back.query.decode()}", follow_redirects=False)


def _sign_in(client: TestClient, account: str, acr: str = "eidas1") -> httpx.Response:
    with httpx.Client() as browser:
        back = sign_in_at_provider(browser, _start(client), account=account, acr=acr)
    return _callback(client, back)


def _reasons(services: Services) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.decision, e.reasons) for e in services.sign_ins.recent()]


def test_the_sign_in_request_is_psc_s(carnet: tuple[TestClient, Services], provider: TestProvider) -> None:
    """The authorization request asks for openid scope_all, eidas1, a nonce, a state and PKCE S256."""
    client, _ = carnet
    assert 'id="login-oidc"' in client.get("/login").text
    url = urlsplit(_start(client))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}" == provider.issuer
    assert query["scope"] == "openid scope_all"
    assert query["acr_values"] == "eidas1"
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"{CARNET}/login/oidc/callback"
    assert len(query["nonce"]) >= 32
    assert len(query["state"]) >= 32
    assert "code_verifier" not in query


def test_professional_signs_in_and_reads_an_authorised_record(carnet: tuple[TestClient, Services]) -> None:
    """A GP signs in (JWE ID token, signed userinfo), then opens the record of a patient who authorised her."""
    client, services = carnet
    patient = seed_population(services.records, patients=1, seed=2026)[0]
    holder = Principal(kind=ActorKind.PATIENT, subject="patient:t", patient_id=patient.patient_id)
    services.records.records(holder).create(
        consent_for(ConsentKind.AUTHORISATION, patient.patient_id, "810001234567", now=datetime.now(UTC))
    )
    done = _sign_in(client, GP)
    assert done.status_code == 200, done.text[:500]
    assert 'id="signed-in-continue"' in done.text
    home = client.get("/pro/")
    assert home.status_code == 200
    assert "Claire MARTIN" in home.text
    record = client.get(f"/pro/patients/{patient.patient_id}")
    assert record.status_code == 200, record.text[:300]
    assert 'id="patient-identity"' in record.text
    assert ("permit", (f"oidc:{services.settings.oidc_issuer}",)) in _reasons(services)


def test_a_professional_of_two_structures_chooses_one(carnet: tuple[TestClient, Services]) -> None:
    """A nurse listed in two structures picks where she works before she is signed in."""
    client, _ = carnet
    choice = _sign_in(client, NURSE)
    assert choice.status_code == 200
    assert "SSIAD DU PARC" in choice.text
    assert "CENTRE DE SANTÉ DES LILAS" in choice.text
    assert client.get("/pro/", follow_redirects=False).status_code == 303  # not signed in yet
    token = choice.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    wrong = client.post("/login/structure", data={"csrf_token": token, "choice": "7"})
    assert wrong.status_code == 422
    chosen = client.post("/login/structure", data={"csrf_token": token, "choice": "1"})
    assert chosen.status_code == 200
    assert 'id="signed-in-continue"' in chosen.text
    home = client.get("/pro/")
    assert "Inès BERNARD" in home.text
    assert '<span class="structure" id="who-structure"> — SSIAD DU PARC</span>' in home.text


def test_the_structure_chosen_is_journaled_with_the_sign_in_and_every_access(
    carnet: tuple[TestClient, Services],
) -> None:
    """The nurse's sign-in and her read of a record both name the structure she chose (SSIAD DU PARC)."""
    client, services = carnet
    patient = seed_population(services.records, patients=1, seed=2027)[0]
    holder = Principal(kind=ActorKind.PATIENT, subject="patient:t", patient_id=patient.patient_id)
    services.records.records(holder).create(
        consent_for(ConsentKind.AUTHORISATION, patient.patient_id, "810009876543", now=datetime.now(UTC))
    )
    choice = _sign_in(client, NURSE)
    token = choice.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.post("/login/structure", data={"csrf_token": token, "choice": "1"})
    assert client.get(f"/pro/patients/{patient.patient_id}").status_code == 200
    accepted = [e for e in services.sign_ins.recent() if e.decision == "permit"]
    assert [(e.actor_structure, e.actor_structure_name) for e in accepted] == [
        ("499700222222002", "SSIAD DU PARC")
    ]
    reads = [e for e in journal_of(services, patient.patient_id) if e.actor_id == "810009876543"]
    assert reads
    assert {e.actor_structure_name for e in reads} == {"SSIAD DU PARC"}
    events = services.records.records(holder).search(
        "AuditEvent", [("patient", f"Patient/{patient.patient_id}")]
    )
    located = [a["location"]["display"] for e in events.resources for a in e["agent"] if a.get("location")]
    assert "SSIAD DU PARC" in located


def test_a_downgraded_acr_is_refused_and_journaled(carnet: tuple[TestClient, Services]) -> None:
    """An ID token whose acr is below eidas1 signs nobody in: 401, a plain message, a journal entry."""
    client, services = carnet
    refused = _sign_in(client, GP, acr="eidas0")
    assert refused.status_code == 401
    assert 'id="login-error"' in refused.text
    assert client.get("/pro/", follow_redirects=False).status_code == 303
    assert ("deny", ("oidc:acr",)) in _reasons(services)


def test_a_replayed_answer_is_refused(carnet: tuple[TestClient, Services]) -> None:
    """The same callback twice: the second finds no sign-in in progress; with the old cookie, the code is spent."""
    client, services = carnet
    with httpx.Client() as browser:
        back = sign_in_at_provider(browser, _start(client), account=GP)
    pending = client.cookies.get("carnet_oidc")
    assert _callback(client, back).status_code == 200
    assert _callback(client, back).status_code == 401
    client.cookies.set("carnet_oidc", pending or "", domain="testserver.local", path="/login/oidc")
    assert _callback(client, back).status_code == 401
    reasons = _reasons(services)
    assert ("deny", ("oidc:state",)) in reasons
    assert ("deny", ("oidc:token",)) in reasons


def test_a_pkce_verifier_mismatch_and_a_wrong_nonce_are_refused(carnet: tuple[TestClient, Services]) -> None:
    """A code redeemed with another verifier fails at the provider; an ID token of another nonce fails here."""
    client, services = carnet
    serializer = URLSafeSerializer(session_secret(services.settings.key_dir), salt="oidc-pending")
    with httpx.Client() as browser:
        back = sign_in_at_provider(browser, _start(client), account=GP)
    first = serializer.loads(client.cookies.get("carnet_oidc") or "")
    _start(client)
    second = serializer.loads(client.cookies.get("carnet_oidc") or "")
    # PKCE: the first answer, with the second sign-in's verifier.
    client.cookies.set(
        "carnet_oidc",
        serializer.dumps({**first, "verifier": second["verifier"]}),
        domain="testserver.local",
        path="/login/oidc",
    )
    assert _callback(client, back).status_code == 401
    # Nonce: a fresh answer whose ID token carries another sign-in's nonce.
    with httpx.Client() as browser:
        back = sign_in_at_provider(browser, _start(client), account=GP)
    third = serializer.loads(client.cookies.get("carnet_oidc") or "")
    client.cookies.set(
        "carnet_oidc",
        serializer.dumps({**third, "nonce": second["nonce"]}),
        domain="testserver.local",
        path="/login/oidc",
    )
    assert _callback(client, back).status_code == 401
    reasons = _reasons(services)
    assert ("deny", ("oidc:token",)) in reasons
    assert ("deny", ("oidc:nonce",)) in reasons


def test_every_refusal_reason_reads_in_french() -> None:
    """Each message a refused sign-in shows has its French text."""
    assert [m for m in REASONS.values() if m not in catalog("fr")] == []


def test_a_redirect_uri_the_provider_does_not_know_is_refused_there(
    settings: Settings, provider: TestProvider, tmp_path: Path
) -> None:
    """Carnet configured with an unregistered callback: the provider answers 400 and never sends a code back."""
    wrong = production_settings(
        settings, provider, tmp_path / "mismatch-keys", oidc_redirect_uri="https://attacker.example/callback"
    )
    services = build_services(wrong)
    try:
        with TestClient(create_app(wrong, services, background=False), base_url=CARNET) as client:
            url = _start(client)
            assert "attacker.example" in url
            with httpx.Client() as browser:
                answer = browser.get(url)
            assert answer.status_code == 400
            assert "redirect_uri" in answer.text
    finally:
        services.store.engine.dispose()


def test_an_error_answer_from_the_provider_is_a_plain_refusal(carnet: tuple[TestClient, Services]) -> None:
    """The provider sends the browser back with error=access_denied: 401 page, journaled, nobody signed in."""
    client, services = carnet
    _start(client)
    refused = client.get("/login/oidc/callback?error=access_denied&state=x", follow_redirects=False)
    assert refused.status_code == 401
    assert 'id="login-error"' in refused.text
    assert ("deny", ("oidc:provider-error",)) in _reasons(services)
