"""A SMART on FHIR app end to end against the real server: Chromium clicks through the patient's consent screen.

The operator registers the app with ``carnet apps add`` (the real command, on the live server's
directories); the app is authlib's OAuth 2 client over real HTTP (PKCE S256, code exchange,
refresh, revocation); the patient signs in, grants part of what the app asks (a denied scope),
sees the app's blood pressure in the profile's chart, and revokes the app in « Mes
applications »: its next call is refused with ``invalid_token``, and the access history names
the app and the refusal. The whole of it runs once in French and once in English (issue 14's
"Done when").
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from playwright.sync_api import Page, Route, expect

from browser.browsing import LiveServer, check

REDIRECT = "http://127.0.0.1:9/callback"
MEASURES_BUNDLE = (
    "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mesures-bundle-flux-alimentation"
)


def _carnet(live_server: LiveServer, *args: str) -> str:
    """Run a ``carnet`` command on the live server's data and key directories; return its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    env.update(CARNET_DATA_DIR=str(live_server.data_dir), CARNET_KEY_DIR=str(live_server.key_dir))
    done = subprocess.run(
        [sys.executable, "-m", "carnet", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _blood_pressure(patient_id: str, systolic: int, diastolic: int, day: int) -> dict[str, Any]:
    """A « Mesures de santé » flux Bundle with one blood-pressure measure."""

    def part(code: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    observation = {
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2026-12-0{day}T08:00:00+01:00",
        "component": [part("8480-6", systolic), part("8462-4", diastolic)],
    }
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [MEASURES_BUNDLE]},
        "type": "transaction",
        "entry": [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}],
    }


#: What the patient reads at each step, in each language.
WORDS = {
    "fr": {
        "patient": 5,
        "data": "Mesures et résultats (tension, poids, glycémie…)",
        "chart": "dernière : 127 / 83",
        "revoked": "L'application n'a plus accès à votre dossier.",
        "who": "Tensio, application connectée",
        "refusal": "Refusé : Vous avez révoqué l'accès de cette application : elle a été refusée et n'a rien vu.",
        "empty": "Aucune application n'a accès à votre dossier.",
    },
    "en": {
        "patient": 6,
        "data": "Measures and results (blood pressure, weight, glucose…)",
        "chart": "latest: 127 / 83",
        "revoked": "The app no longer has access to your record.",
        "who": "Tensio, connected app",
        "refusal": "Refused: You revoked this app's access: it was refused and saw nothing.",
        "empty": "No app has access to your record.",
    },
}


@pytest.mark.parametrize("language", ["fr", "en"])
def test_patient_grants_an_app_in_the_browser_then_revokes_it(
    page: Page, live_server: LiveServer, language: str
) -> None:
    """Consent clicked in Chromium (one scope refused), PKCE token, a BP in the chart, no documents, refresh, revoked: 401, journaled."""
    words = WORDS[language]
    patient = live_server.patients[int(words["patient"])]
    client_id = f"tensio-{language}"
    out = _carnet(
        live_server,
        "apps", "add", "Tensio", "--kind", "public", "--client-id", client_id,
        "--redirect-uri", REDIRECT,
        "--scope", "launch/patient", "--scope", "offline_access",
        "--scope", "patient/Observation.cs", "--scope", "patient/DocumentReference.rs",
    )  # fmt: skip
    assert f"client_id: {client_id}" in out
    assert client_id in _carnet(live_server, "apps", "list")

    app = OAuth2Client(
        client_id=client_id,
        scope="launch/patient offline_access patient/Observation.cs patient/DocumentReference.rs",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
        base_url=live_server.url,
    )
    verifier = "c" * 30 + "-a-pkce-verifier-long-enough-for-s256"
    url, state = app.create_authorization_url(
        f"{live_server.url}/auth/authorize", code_verifier=verifier, aud=f"{live_server.url}/fhir"
    )
    # The app's redirect URI is not served: catch the browser's arrival there, as a native app would.
    arrivals: list[str] = []

    def arrive(route: Route) -> None:
        arrivals.append(route.request.url)
        route.fulfill(
            status=200, content_type="text/html", body="<!doctype html><title>Tensio</title><p>OK</p>"
        )

    page.route(f"{REDIRECT}**", arrive)

    # The patient reads the portal in their language; not signed in, the consent screen sends
    # them to sign in, then back.
    page.goto(f"/language/{language}?next=/login")
    page.goto(url)
    assert "/login" in page.url
    page.select_option("#login-patient", f"{patient.ins_system}|{patient.ins_value}")
    with page.expect_navigation():
        page.click("#login-patient-submit")
    assert "/auth/authorize" in page.url
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.locator("#consent-title")).to_contain_text("Tensio")
    expect(page.locator("#consent-form")).to_contain_text(words["data"])
    check(page, f"patient-app-consent-{language}")
    # The patient refuses the documents: only the measures are granted.
    page.uncheck("input[name=scope][value='patient/DocumentReference.rs']")
    page.select_option("#consent-duration", "30")
    page.click("#consent-allow")
    page.wait_for_url(f"{REDIRECT}**")
    query = parse_qs(urlsplit(arrivals[-1]).query)
    assert query["state"] == [state]

    token = app.fetch_token(
        f"{live_server.url}/auth/token", authorization_response=arrivals[-1], code_verifier=verifier
    )
    assert token["scope"] == "launch/patient offline_access patient/Observation.cs"
    assert token["patient"] == patient.patient_id
    assert token["expires_in"] <= 3600
    headers = {"Content-Type": "application/fhir+json"}
    for day, (systolic, diastolic) in enumerate([(133, 86), (127, 83)], start=2):
        sent = app.post(
            "/fhir", json=_blood_pressure(patient.patient_id, systolic, diastolic, day), headers=headers
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["entry"][0]["response"]["status"] == "201"
    # The refused scope: no document, answered with an OperationOutcome.
    documents = app.get("/fhir/DocumentReference", params={"patient": patient.patient_id})
    assert documents.status_code in (403, 404)
    assert documents.json()["resourceType"] == "OperationOutcome"

    page.goto("/patient/profile")
    expect(page.locator("main")).to_contain_text("133 / 86")
    expect(page.locator("main")).to_contain_text("127 / 83")
    expect(page.locator("svg.measure-chart desc", has_text=words["chart"])).to_have_count(1)
    check(page, f"patient-profile-app-measures-{language}")

    # Asking for the refused scope again on refresh is an escalation: refused.
    with pytest.raises(OAuthError, match="invalid_scope"):
        app.refresh_token(f"{live_server.url}/auth/token")
    app.scope = token["scope"]
    refreshed = app.refresh_token(f"{live_server.url}/auth/token")
    assert refreshed["access_token"] != token["access_token"]
    assert app.get("/fhir/Observation", params={"patient": patient.patient_id}).status_code == 200

    page.goto("/patient/apps")
    expect(page.locator("#apps-list")).to_contain_text("Tensio")
    check(page, f"patient-apps-{language}")
    page.click(f"#revoke-{client_id}")
    page.wait_for_url("**/patient/apps")
    expect(page.locator("#flash")).to_contain_text(words["revoked"])
    expect(page.locator("#apps-empty")).to_contain_text(words["empty"])
    # The very next request is refused, whichever token the app holds.
    cut = app.post("/fhir", json=_blood_pressure(patient.patient_id, 120, 80, 4), headers=headers)
    assert cut.status_code == 401
    assert cut.json()["resourceType"] == "OperationOutcome"
    assert 'error="invalid_token"' in cut.headers["www-authenticate"]
    older = app.get(
        "/fhir/Observation",
        params={"patient": patient.patient_id},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert older.status_code == 401
    again = app.post(
        f"{live_server.url}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "client_id": client_id,
        },
    )
    assert again.json()["error"] == "invalid_grant"

    # Journaled: the access history names the app and says, in plain words, that it was refused.
    page.goto("/patient/access")
    expect(page.locator("main")).to_contain_text(words["who"])
    expect(page.locator("main")).to_contain_text(words["refusal"])
    check(page, f"patient-access-history-app-{language}")
    app.close()
