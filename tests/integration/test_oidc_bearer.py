"""The FHIR API accepts access tokens of the configured OpenID provider (a real oidc-provider), and only good ones.

Carnet runs in production mode in-process; the provider issues JWT access tokens for Carnet's
resource carrying Pro Santé Connect's claims, as Keycloak does. Every refused token of that
issuer is a 401 OperationOutcome and an entry of the journal (``bearer:<reason>``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.auth.oidc import JWKS_REFETCH_SECONDS
from carnet.demo import SeededPatient, seed_population
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from oidc_provider import (
    CARNET,
    GP,
    NURSE,
    SHORT_CLIENT_ID,
    TestProvider,
    access_token,
    production_settings,
    running_provider,
    sign_in_at_provider,
)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestProvider]:
    """The OpenID provider, with Carnet's encryption key."""
    yield from running_provider(tmp_path_factory.mktemp("provider"))


def _production(settings: Settings, provider: TestProvider, tmp_path: Path) -> Settings:
    return production_settings(settings, provider, tmp_path / "production-keys", token_leeway_seconds=0)


@pytest.fixture
def carnet(
    settings: Settings, provider: TestProvider, tmp_path: Path
) -> Iterator[tuple[TestClient, Services, SeededPatient]]:
    """Carnet in production mode trusting ``provider``; one patient who authorised the GP."""
    production = _production(settings, provider, tmp_path)
    services = build_services(production)
    patient = seed_population(services.records, patients=1, seed=2026)[0]
    holder = Principal(kind=ActorKind.PATIENT, subject="patient:t", patient_id=patient.patient_id)
    services.records.records(holder).create(
        consent_for(ConsentKind.AUTHORISATION, patient.patient_id, "810001234567", now=datetime.now(UTC))
    )
    with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
        yield client, services, patient
    services.store.engine.dispose()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def _refusals(services: Services) -> list[tuple[str, ...]]:
    return [e.reasons for e in services.sign_ins.recent() if e.decision == "deny"]


def test_an_access_token_of_the_provider_reads_an_authorised_record(
    carnet: tuple[TestClient, Services, SeededPatient], provider: TestProvider
) -> None:
    """The GP's access token (PSC claims inside) reads the record; the nurse's is refused by the policy."""
    client, _, patient = carnet
    answer = client.get(
        f"/fhir/Patient/{patient.patient_id}", headers=_bearer(access_token(provider, account=GP))
    )
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["id"] == patient.patient_id
    nurse = client.get(
        f"/fhir/Patient/{patient.patient_id}", headers=_bearer(access_token(provider, account=NURSE))
    )
    assert nurse.status_code in (403, 404)


def test_a_token_for_another_audience_is_refused(
    carnet: tuple[TestClient, Services, SeededPatient], provider: TestProvider
) -> None:
    """A token the provider issued for another resource server is a 401 and a journal entry."""
    client, services, patient = carnet
    token = access_token(provider, account=GP, resource="https://elsewhere.example/fhir")
    answer = client.get(f"/fhir/Patient/{patient.patient_id}", headers=_bearer(token))
    assert answer.status_code == 401
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert ("bearer:audience",) in _refusals(services)


def test_an_expired_token_is_refused(
    carnet: tuple[TestClient, Services, SeededPatient], provider: TestProvider
) -> None:
    """A one-second token, used two seconds later, is a 401 and a journal entry."""
    client, services, patient = carnet
    token = access_token(provider, account=GP, client_id=SHORT_CLIENT_ID)
    time.sleep(2.1)
    answer = client.get(f"/fhir/Patient/{patient.patient_id}", headers=_bearer(token))
    assert answer.status_code == 401
    assert ("bearer:expired",) in _refusals(services)


def test_a_token_signed_with_an_unpublished_key_is_refused(
    carnet: tuple[TestClient, Services, SeededPatient], provider: TestProvider
) -> None:
    """A token of the right issuer but a key the provider does not publish (unknown kid): 401, journaled."""
    client, services, patient = carnet
    forger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": "carnet",
        "sub": GP,
        "iat": now,
        "exp": now + 300,
        "SubjectNameID": "810001234567",
        "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
    }
    token = jwt.encode({"alg": "RS256", "kid": "not-published"}, claims, forger)
    answer = client.get(f"/fhir/Patient/{patient.patient_id}", headers=_bearer(token))
    assert answer.status_code == 401
    assert ("bearer:unknown-kid",) in _refusals(services)
    # The same forged claims under a published kid fail on the signature.
    published = provider.signing_jwk["kid"]
    token = jwt.encode({"alg": "RS256", "kid": published}, claims, forger)
    assert client.get(f"/fhir/Patient/{patient.patient_id}", headers=_bearer(token)).status_code == 401
    assert ("bearer:signature",) in _refusals(services)


def test_a_key_rotation_is_followed(settings: Settings, tmp_path: Path) -> None:
    """The provider rotates its signing key: Carnet fetches its JWKS again on the new kid, sign-in and API go on."""
    own = TestProvider(tmp_path / "own", carnet_url=CARNET, carnet_key_dir=tmp_path / "own" / "carnet-keys")
    own.start()
    try:
        production = _production(settings, own, tmp_path)
        services = build_services(production)
        with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
            before = access_token(own, account=GP)
            assert client.get("/fhir/metadata", headers=_bearer(before)).status_code == 200
            assert client.get("/fhir/Patient", headers=_bearer(before)).status_code not in (401, 503)
            own.restart()
            # Carnet fetches the JWKS again at most once per JWKS_REFETCH_SECONDS (a flood of unknown
            # kids must not become a flood of fetches): a fast restart lands inside that window.
            time.sleep(JWKS_REFETCH_SECONDS)
            after = access_token(own, account=GP)
            assert client.get("/fhir/Patient", headers=_bearer(after)).status_code not in (401, 503)
            start = client.get("/login/oidc", follow_redirects=False).headers["location"]
            with httpx.Client() as browser:
                back = sign_in_at_provider(browser, start, account=GP)
            done = client.get(f"/login/oidc/callback?{back.query.decode()}", follow_redirects=False)
            assert done.status_code == 200, [e.reasons for e in services.sign_ins.recent()]
        services.store.engine.dispose()
    finally:
        own.stop()
