"""The real OpenID provider of the sign-in tests: panva's ``oidc-provider`` run by Node.js.

:class:`TestProvider` writes its configuration (issuer on a free port, an RSA signing key, the
clients, the accounts with Pro Santé Connect's claim names) and starts
``tests/browser/oidc_provider.mjs``; :meth:`TestProvider.restart` starts it again with a new
signing key (a key rotation). :func:`sign_in_at_provider` walks its login form over HTTP, as a
browser would, and returns where the provider sends the browser back.

Nothing here skips: without Node.js or ``tests/browser/node_modules`` (``make test`` runs
``npm ci``), the fixture fails with the command that fixes it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.jwk import RSAKey

from carnet.auth.oidc import ENCRYPTION_KEY_FILE, encryption_key, public_jwks
from carnet.settings import Mode, Settings
from served import popen_serve, serve_env, wait_until_up
from smtp_sink import free_port

SCRIPT = Path(__file__).resolve().parent / "browser" / "oidc_provider.mjs"
MODULE = Path(__file__).resolve().parent / "browser" / "node_modules" / "oidc-provider"
CLIENT_ID = "carnet-portal"
CLIENT_SECRET = "carnet-portal-secret-for-tests-only"
API_CLIENT_ID = "api-tester"
API_CLIENT_SECRET = "api-tester-secret-for-tests-only"
SHORT_CLIENT_ID = "api-short"  # its access tokens live one second
API_REDIRECT = "http://127.0.0.1/api-tester/callback"
AUDIENCE = "carnet"
#: Where the in-process Carnet of the API tests answers (the provider's clients are registered for it).
CARNET = "https://testserver"

#: Two professionals with PSC's claim names (the shape of a real sandbox payload, SPECS.md §b1):
#: a GP acting in one structure, a nurse in two (she chooses one at sign-in).
ACCOUNTS: dict[str, dict[str, Any]] = {
    "f:550e8400-e29b-41d4-a716-446655440000:810001234567": {
        "SubjectNameID": "810001234567",
        "preferred_username": "810001234567",
        "given_name": "Claire",
        "family_name": "MARTIN",
        "codeCivilite": "DR",
        "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
        "SubjectRefPro": {
            "codeCivilite": "DR",
            "exercices": [
                {
                    "codeProfession": "10",
                    "codeCategorieProfessionnelle": "C",
                    "codeSavoirFaire": "SM54",
                    "codeTypeSavoirFaire": "S",
                    "activities": [
                        {
                            "codeModeExercice": "L",
                            "codeSecteurDactivite": "SA07",
                            "raisonSocialeSite": "CABINET DU DR MARTIN",
                            "identifiantTechniqueDeLaStructure": "R10000001234567",
                            "ancienIdentifiantDeLaStructure": "499700123456004",
                        }
                    ],
                }
            ],
        },
        "Secteur_Activite": "SA07^1.2.250.1.71.4.2.4",
        "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
    },
    "f:6ba7b810-9dad-11d1-80b4-00c04fd430c8:810009876543": {
        "SubjectNameID": "810009876543",
        "preferred_username": "810009876543",
        "given_name": "Inès",
        "family_name": "BERNARD",
        "SubjectRole": ["60^1.2.250.1.213.1.1.5.5"],
        "SubjectRefPro": {
            "exercices": [
                {
                    "codeProfession": "60",
                    "activities": [
                        {
                            "raisonSocialeSite": "CENTRE DE SANTÉ DES LILAS",
                            "ancienIdentifiantDeLaStructure": "499700111111001",
                        },
                        {
                            "raisonSocialeSite": "SSIAD DU PARC",
                            "ancienIdentifiantDeLaStructure": "499700222222002",
                        },
                    ],
                }
            ],
        },
        "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
    },
}
#: A patient at the patients' provider (OpenID standard claims, as FranceConnect gives them).
PATIENT = "patient-3f2a9c"
PATIENT_CLAIMS = {
    "given_name": "Élise Marie",
    "family_name": "LÉGER",
    "birthdate": "1984-03-12",
    "gender": "female",
}
ACCOUNTS[PATIENT] = PATIENT_CLAIMS
#: A parent at the patients' provider: she acts for her daughter's record (a legal representative).
PARENT = "parent-8d41e7"
PARENT_CLAIMS = {
    "given_name": "Marie",
    "family_name": "DURAND",
    "birthdate": "1981-06-02",
    "gender": "female",
}
ACCOUNTS[PARENT] = PARENT_CLAIMS
PATIENT_CLIENT_ID = "carnet-patients"
PATIENT_CLIENT_SECRET = "carnet-patients-secret-for-tests-only"
GP = "f:550e8400-e29b-41d4-a716-446655440000:810001234567"
NURSE = "f:6ba7b810-9dad-11d1-80b4-00c04fd430c8:810009876543"


def signing_key() -> dict[str, Any]:
    """A fresh RSA signing key for the provider, as a private JWK with a kid."""
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
    key.ensure_kid()
    return key.as_dict(private=True)


class TestProvider:
    """``oidc-provider`` on a free port, configured for Carnet (``carnet_url``: Carnet's origin)."""

    __test__ = False

    def __init__(
        self,
        root: Path,
        *,
        carnet_url: str,
        carnet_key_dir: Path,
        access_token_seconds: int = 600,
        logout: bool = True,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.carnet_url = carnet_url
        self.resource = f"{carnet_url}/fhir"
        self.signing_jwk = signing_key()
        self.access_token_seconds = access_token_seconds
        #: Whether it offers RP-initiated logout (an ``end_session_endpoint``).
        self.logout = logout
        self.encryption_public = public_jwks(encryption_key(carnet_key_dir))
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """The provider's configuration (see the header of oidc_provider.mjs)."""
        callback = f"{self.carnet_url}/login/oidc/callback"
        return {
            "issuer": self.issuer,
            "port": self.port,
            "signing_jwk": self.signing_jwk,
            "resource": self.resource,
            "other_resource": "https://elsewhere.example/fhir",
            "audience": AUDIENCE,
            "access_token_seconds": self.access_token_seconds,
            "logout": self.logout,
            "accounts": ACCOUNTS,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [callback],
                    "post_logout_redirect_uris": [f"{self.carnet_url}/login"],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "id_token_signed_response_alg": "RS256",
                    "id_token_encrypted_response_alg": "RSA-OAEP-256",
                    "id_token_encrypted_response_enc": "A256GCM",
                    "userinfo_signed_response_alg": "RS256",
                    "jwks": self.encryption_public,
                },
                {
                    "client_id": PATIENT_CLIENT_ID,
                    "client_secret": PATIENT_CLIENT_SECRET,
                    "redirect_uris": [f"{self.carnet_url}/login/patient/oidc/callback"],
                    "post_logout_redirect_uris": [f"{self.carnet_url}/login"],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                *(
                    {
                        "client_id": client_id,
                        "client_secret": API_CLIENT_SECRET,
                        "redirect_uris": [API_REDIRECT],
                        "grant_types": ["authorization_code"],
                        "response_types": ["code"],
                        "token_endpoint_auth_method": "client_secret_basic",
                    }
                    for client_id in (API_CLIENT_ID, SHORT_CLIENT_ID)
                ),
            ],
        }

    def start(self) -> None:
        """Start the provider and wait until it listens.

        Raises:
            pytest.fail: Node.js or oidc-provider is missing, or the provider did not start.
        """
        if shutil.which("node") is None:
            pytest.fail("Node.js is needed for the OpenID provider of the tests: apt-get install nodejs npm.")
        if not MODULE.is_dir():
            pytest.fail("oidc-provider is not installed: run npm ci --prefix tests/browser (make test does).")
        path = self.root / "provider.json"
        path.write_text(json.dumps(self.config()), encoding="utf-8")
        with (self.root / "provider.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["node", str(SCRIPT), str(path)], stdout=subprocess.PIPE, stderr=log
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("ready"):
            self.stop()
            pytest.fail(
                f"the OpenID provider did not start: {(self.root / 'provider.log').read_text()[-2000:]}"
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        pytest.fail("the OpenID provider does not answer its discovery URL")

    def stop(self) -> None:
        """Stop the provider (its sessions and codes are in memory: they are gone)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def restart(self) -> None:
        """Rotate the signing key: the provider comes back on the same issuer with a new ``kid``."""
        self.stop()
        self.signing_jwk = signing_key()
        self.start()

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document."""
        data: dict[str, Any] = httpx.get(f"{self.issuer}/.well-known/openid-configuration").json()
        return data


def running_provider(root: Path, **options: Any) -> Iterator[TestProvider]:
    """Run a provider for the in-process Carnet at :data:`CARNET` (a fixture's body: ``yield from``)."""
    provider = TestProvider(root, carnet_url=CARNET, carnet_key_dir=root / "carnet-keys", **options)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def production_settings(
    settings: Settings, provider: TestProvider, key_dir: Path, *, patients: bool = False, **changes: Any
) -> Settings:
    """``settings`` in production mode at :data:`CARNET`, professionals (and ``patients``) signing in at ``provider``.

    ``key_dir`` receives the encryption key whose public half the provider encrypts ID tokens to.
    """
    key_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(provider.root / "carnet-keys" / ENCRYPTION_KEY_FILE, key_dir / ENCRYPTION_KEY_FILE)
    if patients:
        changes = {
            "patient_oidc_issuer": provider.issuer,
            "patient_oidc_client_id": PATIENT_CLIENT_ID,
            "patient_oidc_client_secret": PATIENT_CLIENT_SECRET,
            **changes,
        }
    return replace(
        settings,
        mode=Mode.PRODUCTION,
        key_dir=key_dir,
        base_url=f"{CARNET}/fhir",
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        **changes,
    )


def production_env(
    root: Path, port: int, provider: TestProvider, *, patients: bool = False
) -> dict[str, str]:
    """The environment of ``carnet serve`` in production mode on ``port`` (data and keys under ``root``).

    Professionals (and ``patients``) sign in at ``provider``; no demonstration identity exists.
    """
    env = serve_env(root, port)
    env.update(
        CARNET_MODE="production",
        CARNET_BASE_URL=f"{provider.carnet_url}/fhir",
        CARNET_OIDC_ISSUER=provider.issuer,
        CARNET_OIDC_CLIENT_ID=CLIENT_ID,
        CARNET_OIDC_CLIENT_SECRET=CLIENT_SECRET,
    )
    if patients:
        env.update(
            CARNET_PATIENT_OIDC_ISSUER=provider.issuer,
            CARNET_PATIENT_OIDC_CLIENT_ID=PATIENT_CLIENT_ID,
            CARNET_PATIENT_OIDC_CLIENT_SECRET=PATIENT_CLIENT_SECRET,
        )
    return env


@contextmanager
def serving(env: dict[str, str], root: Path, port: int) -> Iterator[None]:
    """Run ``carnet serve`` with ``env`` (its log in ``root``) for the block's duration."""
    log = root / "server.log"
    process = popen_serve(env, log)
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/fhir/metadata", log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def sign_in_at_provider(
    client: httpx.Client, authorize_url: str, *, account: str, acr: str = "eidas1"
) -> httpx.URL:
    """Follow ``authorize_url`` through the provider's login form; return the URL it redirects back to.

    ``client`` keeps the provider's cookies (one browser). Stops at the first redirect that
    leaves the provider.
    """
    response = client.get(authorize_url)
    while response.is_redirect:
        target = httpx.URL(urljoin(str(response.url), response.headers["location"]))
        if target.port != response.url.port or target.host != response.url.host:
            return target
        response = client.get(target)
    match = re.search(r'action="(/interaction/[^"]+)"', response.text)
    if match is None:
        raise AssertionError(f"no login form at the provider: {response.status_code} {response.text[:300]}")
    response = client.post(urljoin(str(response.url), match.group(1)), data={"account": account, "acr": acr})
    while response.is_redirect:
        target = httpx.URL(urljoin(str(response.url), response.headers["location"]))
        if target.port != response.url.port or target.host != response.url.host:
            return target
        response = client.get(target)
    raise AssertionError(
        f"the provider did not send the browser back: {response.status_code} {response.text[:500]}"
    )


def sign_out_at_provider(client: httpx.Client, end_session_url: str) -> httpx.URL:
    """Follow the provider's end-session URL, confirm the sign-out; return where it sends the browser back.

    ``client`` is the browser that signed in (it holds the provider's session cookie).
    """
    page = client.get(end_session_url)
    if page.is_redirect:
        return httpx.URL(urljoin(str(page.url), page.headers["location"]))
    form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', page.text, re.S)
    if form is None:
        raise AssertionError(f"no sign-out form at the provider: {page.status_code} {page.text[:300]}")
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    answer = client.post(urljoin(str(page.url), form.group(1)), data={**fields, "logout": "yes"})
    assert answer.is_redirect, (
        f"the provider did not send the browser back: {answer.status_code} {answer.text[:300]}"
    )
    return httpx.URL(urljoin(str(answer.url), answer.headers["location"]))


def access_token(
    provider: TestProvider, *, account: str, resource: str | None = None, client_id: str = API_CLIENT_ID
) -> str:
    """An access token for Carnet's API (``resource``, by default Carnet's), as a client app gets one.

    The code flow with PKCE at the provider, for the API test client, then the token request.
    """
    verifier = generate_token(64)
    target = resource or provider.resource
    metadata = provider.metadata()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": API_REDIRECT,
        "scope": "openid scope_all",
        "state": generate_token(16),
        "nonce": generate_token(16),
        "acr_values": "eidas1",
        "resource": target,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    with httpx.Client() as browser:
        url = httpx.URL(metadata["authorization_endpoint"], params=query)
        back = sign_in_at_provider(browser, str(url), account=account)
        answer = browser.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": back.params["code"],
                "redirect_uri": API_REDIRECT,
                "code_verifier": verifier,
                "resource": target,
            },
            auth=(client_id, API_CLIENT_SECRET),
        )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token
