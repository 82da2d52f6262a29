"""An app's access ends at once, on every server of the store, and the attempts after it are journaled.

Two app instances over one database stand for ``carnet serve --workers 2``: each has its own
token verifier, token cache and authorization server, and shares only the store. The patient acts
on one, the app on the other.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from authlib.integrations.httpx_client import OAuth2Client
from sqlalchemy import func, select
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.demo import SeededPatient, demo_people
from carnet.domain.feeds import FeedKind
from carnet.domain.principal import ActorKind, Principal
from carnet.services.apps import AppKind
from carnet.settings import Settings
from carnet.store.tables import app_assertions
from smart_flow import (  # noqa: F401 (the smart_* fixtures are used by their names)
    BASE,
    BP_PANEL,
    add_lapsed_token,
    csrf,
    granted_app,
    oauth,
    sign_in,
    smart_app_id,
    smart_browser,
    smart_patient,
    smart_settings,
)


@pytest.fixture
def other_services(settings: Settings, services: Services) -> Iterator[Services]:
    """A second server's services over the same database (its own caches, its own authorization server)."""
    wired = build_services(settings)
    yield wired
    wired.store.engine.dispose()


@pytest.fixture
def other(settings: Settings, other_services: Services) -> Iterator[TestClient]:
    """A second app instance over the same store, as a second worker of ``carnet serve`` is."""
    app = create_app(settings, other_services, demo_people=demo_people())
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def app_on(server: TestClient, client_id: str, token: dict[str, Any]) -> OAuth2Client:
    """The app's OAuth 2 client holding ``token``, talking to ``server``."""
    return OAuth2Client(
        client_id=client_id,
        token=token,
        token_endpoint_auth_method="none",
        transport=server._transport,
        base_url=BASE,
    )


def assert_invalid_token(answer: Any) -> None:
    """A 401 OperationOutcome with an RFC 6750 ``invalid_token`` challenge."""
    assert answer.status_code == 401, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="carnet"')
    assert 'error="invalid_token"' in challenge


def history(browser: TestClient, language: str) -> str:
    """The patient's access history page in ``language``."""
    browser.get(f"/language/{language}")
    return html.unescape(browser.get("/patient/access").text)


def test_revoking_in_the_portal_cuts_every_token_at_once_on_another_server(
    browser: TestClient, other: TestClient, patient: SeededPatient, app_id: str
) -> None:
    """Revoked on server A: both access tokens and the refresh token answer invalid_token on server B at once."""
    app, first = granted_app(
        browser, patient, app_id, "launch/patient offline_access patient/Observation.crs"
    )
    second = app.refresh_token(f"{BASE}/auth/token")  # the first access token stays live until it expires
    measure = {**BP_PANEL, "subject": {"reference": f"Patient/{patient.patient_id}"}}
    created = app_on(other, app_id, second).post(
        "/fhir/Observation", json=measure, headers={"Content-Type": "application/fhir+json"}
    )
    assert created.status_code == 201, created.text
    read = f"/fhir/Observation/{created.json()['id']}"
    for token in (first, second):
        assert app_on(other, app_id, token).get(read).status_code == 200

    page = browser.get("/patient/apps")
    browser.post(f"/patient/apps/{app_id}/revoke", data={"csrf_token": csrf(page.text)})

    for token in (first, second):
        assert_invalid_token(app_on(other, app_id, token).get(read))
        assert_invalid_token(
            app_on(other, app_id, token).post(
                "/fhir/Observation", json=measure, headers={"Content-Type": "application/fhir+json"}
            )
        )
    refreshed = other.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"], "client_id": app_id},
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    # A refresh token sent as a bearer token is no access token either.
    assert_invalid_token(other.get(read, headers={"Authorization": f"Bearer {second['refresh_token']}"}))
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert other.post("/auth/introspect", data={"token": token, "client_id": app_id}).json() == {
            "active": False
        }
    # Journaled on the record, under the app's name, in the patient's words.
    french = history(browser, "fr")
    assert "Tensio, application connectée" in french
    assert "Vous avez révoqué l'accès de cette application : elle a été refusée et n'a rien vu." in french
    english = history(browser, "en")
    assert "Tensio, connected app" in english
    assert "You revoked this app's access: it was refused and saw nothing." in english


def _patient_principal(patient: SeededPatient) -> Principal:
    return Principal(kind=ActorKind.PATIENT, subject="patient:test", patient_id=patient.patient_id)


def test_a_grant_that_ended_answers_invalid_token_and_takes_its_refresh_token(
    browser: TestClient,
    other: TestClient,
    services: Services,
    patient: SeededPatient,
    app_id: str,
) -> None:
    """A grant whose period is over (its Consent's end passed): 401 on /fhir, the refresh refused, journaled."""
    app, token = granted_app(
        browser, patient, app_id, "launch/patient offline_access patient/Observation.crs"
    )
    assert app.get("/fhir/Observation", params={"patient": patient.patient_id}).status_code == 200
    # The grant's period ends (written as the patient's record holds it: the Consent's provision.period.end).
    records = services.records.records(_patient_principal(patient))
    (connected,) = services.apps.connected(_patient_principal(patient))
    consent = records.read("Consent", connected.consent_id)
    ended = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    provision = {**consent.resource["provision"], "period": {"end": ended}}
    records.update(
        "Consent", consent.resource_id, {**consent.resource, "provision": provision}, if_match=consent.etag
    )

    answer = app_on(other, app_id, token).get("/fhir/Observation", params={"patient": patient.patient_id})
    assert_invalid_token(answer)
    assert "grant" in answer.json()["issue"][0]["diagnostics"]
    refreshed = other.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": app_id},
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    assert "Cette application n'a plus votre autorisation" in history(browser, "fr")
    assert "This app no longer has your permission" in history(browser, "en")


def test_tokens_never_outlive_the_grant_and_an_ended_one_is_journaled(
    browser: TestClient, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """Tokens issued for a grant ending in 10 minutes expire with it; a token past its grant's end: 401, journaled."""
    now = datetime.now(UTC)
    until = now + timedelta(minutes=10)
    issued = services.apps.issue(
        client_id=app_id,
        patient_id=patient.patient_id,
        subject="patient:test",
        scope="offline_access patient/Observation.rs",
        family="f-10min",
        refresh=True,
        until=until,
    )
    assert issued["expires_in"] <= 600
    for raw in (issued["access_token"], issued["refresh_token"]):
        stored = services.apps.any_token(raw)
        assert stored is not None
        assert (stored.expires_at, stored.grant_until) == (until, until)

    add_lapsed_token(
        services, patient, app_id, "token-of-an-ended-grant", subject="patient:test", grant_ended=True
    )
    answer = browser.get(
        "/fhir/Observation",
        params={"patient": patient.patient_id},
        headers={"Authorization": "Bearer token-of-an-ended-grant"},
    )
    assert_invalid_token(answer)
    assert "grant" in answer.json()["issue"][0]["diagnostics"]
    sign_in(browser, patient)
    assert "Tensio, application connectée" in history(browser, "fr")
    assert "This app no longer has your permission (revoked or ended)" in history(browser, "en")


def test_an_expired_token_used_on_fhir_is_journaled_under_the_app(
    browser: TestClient, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """An expired access token: 401 invalid_token, and a refused access of the app in the patient's history."""
    add_lapsed_token(services, patient, app_id, "expired-token-of-tensio")
    answer = browser.get(
        "/fhir/Observation/whatever",
        headers={"Authorization": "Bearer expired-token-of-tensio"},
    )
    assert_invalid_token(answer)
    assert "expired" in answer.json()["issue"][0]["diagnostics"]
    sign_in(browser, patient)
    french = history(browser, "fr")
    assert "L'accès de cette application avait expiré : elle a été refusée et n'a rien vu." in french
    assert "This app's access had expired" in history(browser, "en")


def test_no_token_is_a_challenge_without_an_error_code(browser: TestClient) -> None:
    """No credentials: 401 with a bare Bearer challenge (RFC 6750 §3.1: no error code when none were sent)."""
    answer = browser.get("/fhir/Observation")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="carnet"'
    garbage = browser.get("/fhir/Observation", headers={"Authorization": "Bearer not-a-token-of-ours"})
    assert_invalid_token(garbage)


def test_a_client_assertion_is_taken_once_across_servers_and_purged(
    browser: TestClient, other: TestClient, services: Services
) -> None:
    """private_key_jwt: an assertion used on server A is a replay on server B; ids past their expiry are purged."""
    from authlib.oauth2.rfc7523 import private_key_jwt_sign
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "labo-1", "alg": "RS384"})
    services.feeds.add("labo-feed", name="Labo", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    services.apps.register(
        name="Labo",
        kind=AppKind.BACKEND,
        scopes=("system/*.rs",),
        client_id="labo",
        jwks={"keys": [key.as_dict(private=False)]},
        acts_as="feed:labo-feed",
    )
    with services.store.session(write=True) as session:
        session.take_app_assertion("stale", datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC))
    form = {
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": private_key_jwt_sign(
            key, client_id="labo", token_endpoint=f"{BASE}/auth/token", alg="RS384"
        ),
    }
    assert browser.post("/auth/token", data=form).status_code == 200
    replay = other.post("/auth/token", data=form)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_client")
    fresh = private_key_jwt_sign(key, client_id="labo", token_endpoint=f"{BASE}/auth/token", alg="RS384")
    assert other.post("/auth/token", data={**form, "client_assertion": fresh}).status_code == 200
    with services.store.engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(app_assertions)).scalar_one()
    assert count == 2  # the two assertions taken; the stale id was purged
