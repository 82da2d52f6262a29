"""The SMART on FHIR flow as tests drive it: the patient's side through the portal, the app's with authlib.

Fixtures (``browser``, ``patient``, ``app_id``) and helpers shared by the SMART integration tests.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from authlib.integrations.httpx_client import OAuth2Client
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, demo_people, seed_population
from carnet.services.apps import AppKind, AppToken, digest
from carnet.settings import Settings

BASE = "http://127.0.0.1"
REDIRECT = "http://127.0.0.1:9/callback"
BP_PANEL = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]
    },
    "effectiveDateTime": "2026-12-01T08:00:00+01:00",
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 128,
                "unit": "mm[Hg]",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {
                "value": 82,
                "unit": "mm[Hg]",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
    ],
}


@pytest.fixture(name="settings")
def smart_settings(settings: Settings) -> Settings:
    """The test settings, with the FHIR base URL the in-process client uses."""
    return dataclasses.replace(settings, base_url=f"{BASE}/fhir")


@pytest.fixture(name="browser")
def smart_browser(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The real app in-process, as a browser on the loopback sees it."""
    app = create_app(settings, services, demo_people=demo_people())
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


@pytest.fixture(name="patient")
def smart_patient(services: Services) -> SeededPatient:
    """One synthetic patient with a record, documents and a directory."""
    return seed_population(services.records, patients=1, seed=2026)[0]


@pytest.fixture(name="app_id")
def smart_app_id(services: Services) -> str:
    """A public app registered for measures: create and search Observations, the patient in context."""
    client, secret = services.apps.register(
        name="Tensio",
        kind=AppKind.PUBLIC,
        redirect_uris=(REDIRECT,),
        scopes=(
            "openid",
            "fhirUser",
            "launch/patient",
            "offline_access",
            "patient/Observation.crs",
            "patient/Device.crs",
            "patient/DocumentReference.rs",
        ),
        client_id="tensio",
        loopback_http=True,
    )
    assert secret is None
    return client.client_id


def oauth(browser: TestClient, client_id: str, scope: str, **extra: Any) -> OAuth2Client:
    """authlib's OAuth 2 client for the app, talking to the in-process server."""
    return OAuth2Client(
        client_id=client_id,
        scope=scope,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
        transport=browser._transport,
        base_url=BASE,
        **extra,
    )


def csrf(text: str) -> str:
    """The CSRF token of a portal page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def sign_in(browser: TestClient, patient: SeededPatient) -> None:
    """Sign in as the patient through the demo sign-in form, following its redirect."""
    token = csrf(browser.get("/login").text)
    browser.post(
        "/login",
        data={
            "csrf_token": token,
            "kind": "patient",
            "identifier": f"{patient.ins_system}|{patient.ins_value}",
        },
        follow_redirects=False,
    )


def authorize(
    browser: TestClient, app: OAuth2Client, *, decision: str = "allow", scopes: list[str] | None = None
) -> tuple[str, str]:
    """Walk the consent screen; return the redirect the app receives and the code verifier."""
    verifier = "v" * 20 + "-verifier-of-pkce-s256-at-least-43-chars"
    url, _state = app.create_authorization_url(
        f"{BASE}/auth/authorize", code_verifier=verifier, aud=f"{BASE}/fhir"
    )
    page = browser.get(url, follow_redirects=False)
    assert page.status_code == 200, page.headers.get("location")
    chosen = scopes if scopes is not None else re.findall(r'name="scope" value="([^"]+)"', page.text)
    answer = browser.post(
        url,
        data={"csrf_token": csrf(page.text), "decision": decision, "duration": "90", "scope": chosen},
        follow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return answer.headers["location"], verifier


def granted_app(
    browser: TestClient, patient: SeededPatient, app_id: str, scope: str
) -> tuple[OAuth2Client, dict[str, Any]]:
    """Sign the patient in, grant ``scope`` to the app on the consent screen; return the app and its token.

    The app holds the token (PKCE code exchanged at the token endpoint) for its next requests.
    """
    sign_in(browser, patient)
    app = oauth(browser, app_id, scope)
    location, verifier = authorize(browser, app)
    assert location.startswith(REDIRECT), location
    token = app.fetch_token(f"{BASE}/auth/token", authorization_response=location, code_verifier=verifier)
    return app, dict(token)


def add_lapsed_token(
    services: Services,
    patient: SeededPatient,
    app_id: str,
    raw: str,
    *,
    subject: str | None = None,
    grant_ended: bool = False,
) -> None:
    """Store the app's access token ``raw`` for the patient, expired two hours ago.

    With ``grant_ended`` the patient's grant ended at the same instant (the token's ``grant_until``).
    """
    lapsed = datetime.now(UTC) - timedelta(hours=2)
    with services.store.session(write=True) as session:
        session.add_app_token(
            AppToken(
                token_hash=digest(raw),
                kind="access",
                family=f"family-of-{raw}",
                client_id=app_id,
                patient_id=patient.patient_id,
                subject=subject or f"app:{app_id}",
                scope="patient/Observation.rs",
                issued_at=lapsed - timedelta(hours=1),
                expires_at=lapsed,
                grant_until=lapsed if grant_ended else None,
            )
        )


def measures_bundle(
    patient_id: str, systolic: int, diastolic: int, *, device: bool = False
) -> dict[str, Any]:
    """A « Mesures de santé » flux Bundle: one blood-pressure Observation, and optionally its PhdDevice."""
    observation = {
        **BP_PANEL,
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2026-12-0{1 + systolic % 5}T08:00:00+01:00",
        "component": [
            {
                **BP_PANEL["component"][0],
                "valueQuantity": {**BP_PANEL["component"][0]["valueQuantity"], "value": systolic},
            },
            {
                **BP_PANEL["component"][1],
                "valueQuantity": {**BP_PANEL["component"][1]["valueQuantity"], "value": diastolic},
            },
        ],
    }
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": "urn:uuid:5d1c8f4e-0000-4000-8000-000000000001",
            "resource": observation,
            "request": {"method": "POST", "url": "Observation"},
        }
    ]
    if device:
        observation["device"] = {"reference": "urn:uuid:5d1c8f4e-0000-4000-8000-000000000002"}
        entries.append(
            {
                "fullUrl": "urn:uuid:5d1c8f4e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Device",
                    "identifier": [
                        {"system": "urn:ietf:rfc:3986", "value": "urn:eui64:00-1B-2C-FF-FE-3D-4E-5F"}
                    ],
                    "patient": {"reference": f"Patient/{patient_id}"},
                },
                "request": {"method": "POST", "url": "Device"},
            }
        )
    return {
        "resourceType": "Bundle",
        "meta": {
            "profile": [
                "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mesures-bundle-flux-alimentation"
            ]
        },
        "type": "transaction",
        "entry": entries,
    }


FHIR_JSON = {"Content-Type": "application/fhir+json"}
