"""Signing out ends the session at the OpenID provider too (RP-initiated logout), against a real oidc-provider.

Production mode. A professional (JWE ID tokens) and a patient sign in through the provider;
``POST /logout`` ends Carnet's session and sends the browser to the provider's
``end_session_endpoint`` with the signed ID token as ``id_token_hint`` and ``/login`` as
``post_logout_redirect_uri``; once the person confirms there, the provider's session is over
(the next sign-in asks for the account again). A provider without an end-session endpoint: the
sign-out is local.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.identity_links import Traits, subject_identifier
from carnet.settings import Settings
from oidc_provider import (
    CARNET,
    GP,
    PATIENT,
    PATIENT_CLAIMS,
    TestProvider,
    production_settings,
    running_provider,
    sign_in_at_provider,
    sign_out_at_provider,
)

TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
NIR = "2840312345678"


def _carnet(settings: Settings, provider: TestProvider, tmp_path: Path) -> tuple[Settings, Services]:
    production = production_settings(settings, provider, tmp_path / "production-keys", patients=True)
    return production, build_services(production)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestProvider]:
    """The OpenID provider, with RP-initiated logout."""
    yield from running_provider(tmp_path_factory.mktemp("provider"))


@pytest.fixture
def carnet(settings: Settings, provider: TestProvider, tmp_path: Path) -> Iterator[TestClient]:
    """Carnet in production mode at ``provider``; Élise Léger's record, linked to her provider account."""
    production, services = _carnet(settings, provider, tmp_path)
    opener = Principal(kind=ActorKind.PATIENT, subject="t", identifier=Identifier(system=TEST_NIR, value=NIR))
    opener_records = services.records.records(opener)
    opener_records.create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": TEST_NIR, "value": NIR}],
            "name": [{"family": "Léger", "given": ["Élise", "Marie"]}],
            "birthDate": "1984-03-12",
            "gender": "female",
        }
    )
    services.identity_links.link(
        subject_identifier(provider.issuer, PATIENT),
        Traits.of(PATIENT_CLAIMS),
        Identifier(system=TEST_NIR, value=NIR),
    )
    with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
        yield client
    services.store.engine.dispose()


def _csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _round(client: TestClient, browser: httpx.Client, start: str, account: str) -> httpx.Response:
    begun = client.get(start, follow_redirects=False)
    back = sign_in_at_provider(browser, begun.headers["location"], account=account)
    return client.get(f"{back.path}?{back.query.decode()}", follow_redirects=False)


def _asks_for_an_account(client: TestClient, browser: httpx.Client, start: str) -> bool:
    """Whether the provider shows its login form again (its session is over) rather than answering at once."""
    url = client.get(start, follow_redirects=False).headers["location"]
    response = browser.get(url)
    while response.is_redirect:
        target = httpx.URL(str(response.url)).join(response.headers["location"])
        if target.host != response.url.host or target.port != response.url.port:
            return False
        response = browser.get(target)
    return 'id="provider-submit"' in response.text


@pytest.mark.parametrize(
    ("start", "account", "home"),
    [("/login/oidc", GP, "/pro/"), ("/login/patient/oidc", PATIENT, "/patient/")],
    ids=["professional", "patient"],
)
def test_signing_out_ends_the_session_at_the_provider(
    carnet: TestClient, provider: TestProvider, start: str, account: str, home: str
) -> None:
    """POST /logout → the provider's end_session_endpoint (id_token_hint, post_logout_redirect_uri) → back at /login."""
    client = carnet
    with httpx.Client() as browser:
        signed = _round(client, browser, start, account)
        assert 'id="signed-in-continue"' in signed.text, signed.text[:300]
        page = client.get(home)
        assert page.status_code == 200
        assert not _asks_for_an_account(client, browser, start)  # the provider's session is alive
        out = client.post("/logout", data={"csrf_token": _csrf(page)}, follow_redirects=False)
        assert out.status_code == 303
        target = httpx.URL(out.headers["location"])
        assert str(target).startswith(provider.metadata()["end_session_endpoint"])
        assert target.params["post_logout_redirect_uri"] == f"{CARNET}/login"
        hint = jwt.decode(target.params["id_token_hint"], provider_key(provider))
        assert hint.claims["iss"] == provider.issuer
        assert hint.claims["sub"] == account
        assert client.get(home, follow_redirects=False).status_code == 303  # signed out here
        back = sign_out_at_provider(browser, str(target))
        assert str(back).startswith(f"{CARNET}/login")
        assert _asks_for_an_account(client, browser, start)  # and there


def provider_key(provider: TestProvider) -> RSAKey:
    """The provider's public signing key (the hint is its own signed ID token)."""
    return RSAKey.import_key({k: v for k, v in provider.signing_jwk.items() if k in ("kty", "n", "e", "kid")})


def test_a_provider_without_end_session_signs_out_locally(settings: Settings, tmp_path: Path) -> None:
    """No end_session_endpoint in the provider's discovery: POST /logout ends Carnet's session and lands on /login."""
    root = tmp_path / "bare"
    root.mkdir()
    bare = TestProvider(root, carnet_url=CARNET, carnet_key_dir=root / "carnet-keys", logout=False)
    bare.start()
    try:
        assert "end_session_endpoint" not in bare.metadata()
        production, services = _carnet(settings, bare, tmp_path)
        with TestClient(create_app(production, services, background=False), base_url=CARNET) as client:
            with httpx.Client() as browser:
                assert _round(client, browser, "/login/oidc", GP).status_code == 200
            page = client.get("/pro/")
            out = client.post("/logout", data={"csrf_token": _csrf(page)}, follow_redirects=False)
            assert out.status_code == 303
            assert out.headers["location"] == "/login"
            assert client.get("/pro/", follow_redirects=False).status_code == 303
        services.store.engine.dispose()
    finally:
        bare.stop()
