"""SMART on FHIR apps end to end in-process: authlib's own OAuth 2 client against Carnet's authorization server.

The patient's side (signing in, the consent screen, « Mes applications ») goes through the portal
as a browser would; the app's side is authlib's ``OAuth2Client`` (PKCE S256, the token endpoint,
refresh, revocation, introspection) over the same in-process app.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from authlib.integrations.httpx_client import OAuth2Client
from sqlalchemy import event
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, demo_people
from carnet.domain.feeds import FeedKind
from carnet.feeds.devices import MEASURE_ID_SYSTEM
from carnet.services.apps import AppKind
from carnet.settings import Settings
from smart_flow import (  # noqa: F401 (the smart_* fixtures are used by their names)
    BASE,
    BP_PANEL,
    FHIR_JSON,
    REDIRECT,
    add_lapsed_token,
    authorize,
    csrf,
    granted_app,
    measures_bundle,
    oauth,
    sign_in,
    smart_app_id,
    smart_browser,
    smart_patient,
    smart_settings,
)


def test_smart_configuration_has_the_required_fields(browser: TestClient) -> None:
    """/.well-known/smart-configuration names the endpoints, S256 only, the grant types and capabilities."""
    config = browser.get("/fhir/.well-known/smart-configuration")
    assert config.status_code == 200
    assert config.headers["content-type"] == "application/json"
    body = config.json()
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert set(body["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert {"launch-standalone", "client-public", "permission-v2", "context-standalone-patient"} <= set(
        body["capabilities"]
    )
    assert body["management_endpoint"] == f"{BASE}/patient/apps"
    assert body["token_endpoint"] == f"{BASE}/auth/token"
    security = browser.get("/fhir/metadata").json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["authorize"] == body["authorization_endpoint"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_an_app_gets_only_what_the_patient_granted_and_loses_it_on_revocation(
    browser: TestClient, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """Consent → code → token (PKCE) → writes a BP measure, cannot read documents, refresh, revoke: 401/403."""
    app, token = granted_app(
        browser, patient, app_id, "launch/patient offline_access patient/Observation.crs"
    )
    assert token["patient"] == patient.patient_id
    assert token["scope"] == "launch/patient offline_access patient/Observation.crs"
    assert "refresh_token" in token

    measure = {**BP_PANEL, "subject": {"reference": f"Patient/{patient.patient_id}"}}
    created = app.post("/fhir/Observation", json=measure, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    found = app.get(
        "/fhir/Observation", params={"patient": patient.patient_id, "code": "http://loinc.org|85354-9"}
    )
    assert found.status_code == 200
    assert found.json()["total"] >= 1
    # DocumentReference is registered but was not asked for nor granted: nothing.
    documents = app.get("/fhir/DocumentReference", params={"patient": patient.patient_id})
    assert documents.status_code in (403, 404)
    assert documents.json()["resourceType"] == "OperationOutcome"

    # The journal shows the app by its name.
    journal = browser.get("/patient/access")
    assert "Tensio" in journal.text

    refreshed = app.refresh_token(f"{BASE}/auth/token")
    assert refreshed["access_token"] != token["access_token"]
    assert app.get(f"/fhir/Observation/{created.json()['id']}").status_code == 200

    # The patient revokes in « Mes applications »: the very next call is refused.
    page = browser.get("/patient/apps")
    assert "Tensio" in page.text
    done = browser.post(
        f"/patient/apps/{app_id}/revoke", data={"csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert done.status_code == 303
    after = app.get(f"/fhir/Observation/{created.json()['id']}")
    assert after.status_code == 401
    assert after.json()["resourceType"] == "OperationOutcome"
    again = browser.post(
        f"{BASE}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "client_id": app_id,
        },
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_bad_requests_are_oauth_errors_never_500(
    browser: TestClient, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """Wrong redirect URI, no PKCE, PKCE mismatch, replayed code, scope escalation: clear 4xx OAuth errors."""
    sign_in(browser, patient)
    wrong = browser.get(
        "/auth/authorize",
        params={
            "response_type": "code",
            "client_id": app_id,
            "redirect_uri": "https://evil.example/cb",
            "scope": "patient/Observation.rs",
            "state": "s",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
        },
        follow_redirects=False,
    )
    assert wrong.status_code == 400  # never redirected to an unregistered URI
    plain = browser.get(
        "/auth/authorize",
        params={
            "response_type": "code",
            "client_id": app_id,
            "redirect_uri": REDIRECT,
            "scope": "patient/Observation.rs",
            "state": "s",
        },
        follow_redirects=False,
    )
    assert plain.status_code == 302
    assert parse_qs(urlsplit(plain.headers["location"]).query)["error"] == ["invalid_request"]
    escalate = browser.get(
        "/auth/authorize",
        params={
            "response_type": "code",
            "client_id": app_id,
            "redirect_uri": REDIRECT,
            "scope": "patient/Observation.cruds",
            "state": "s",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
        },
        follow_redirects=False,
    )
    assert parse_qs(urlsplit(escalate.headers["location"]).query)["error"] == ["invalid_scope"]

    app = oauth(browser, app_id, "offline_access patient/Observation.rs")
    location, verifier = authorize(browser, app)
    code = parse_qs(urlsplit(location).query)["code"][0]
    mismatch = browser.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": app_id,
            "code_verifier": "w" * 50,
        },
    )
    assert mismatch.status_code == 400
    assert mismatch.json()["error"] == "invalid_grant"
    location, verifier = authorize(browser, app)
    token = app.fetch_token(f"{BASE}/auth/token", authorization_response=location, code_verifier=verifier)
    assert "Tensio" not in browser.get("/patient/access").text  # the app has not touched the record yet
    replay = browser.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": parse_qs(urlsplit(location).query)["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": app_id,
            "code_verifier": verifier,
        },
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The replay revoked what the code gave, and the patient's access history shows the attempt.
    assert app.get("/fhir/Observation", params={"patient": patient.patient_id}).status_code == 401
    assert "Tensio" in browser.get("/patient/access").text
    escalation = browser.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": app_id,
            "scope": "patient/Observation.cruds",
        },
    )
    assert escalation.status_code == 400
    garbage = browser.post("/auth/token", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert 400 <= garbage.status_code < 500


def test_denied_consent_and_partial_grant(browser: TestClient, patient: SeededPatient, app_id: str) -> None:
    """A refusal sends access_denied; unticking a scope grants only the others (a denied scope)."""
    sign_in(browser, patient)
    app = oauth(browser, app_id, "patient/Observation.crs patient/DocumentReference.rs")
    location, _ = authorize(browser, app, decision="deny")
    assert parse_qs(urlsplit(location).query)["error"] == ["access_denied"]
    location, verifier = authorize(browser, app, scopes=["patient/Observation.crs"])
    token = app.fetch_token(f"{BASE}/auth/token", authorization_response=location, code_verifier=verifier)
    assert token["scope"] == "patient/Observation.crs"
    assert app.get("/fhir/DocumentReference", params={"patient": patient.patient_id}).status_code in (
        403,
        404,
    )
    introspected = app.introspect_token(f"{BASE}/auth/introspect", token=token["access_token"]).json()
    assert introspected["active"] is True
    assert introspected["patient"] == patient.patient_id
    app.revoke_token(f"{BASE}/auth/revoke", token=token["access_token"], token_type_hint="access_token")
    assert app.introspect_token(f"{BASE}/auth/introspect", token=token["access_token"]).json() == {
        "active": False
    }
    assert app.get("/fhir/Observation", params={"patient": patient.patient_id}).status_code == 401


def test_done_when_a_granted_app_writes_a_blood_pressure_that_the_chart_shows(
    browser: TestClient, patient: SeededPatient, app_id: str
) -> None:
    """patient/Observation.cs after consent: BP measures land in the chart, once each; no DocumentReference; revoked at once."""
    app, _ = granted_app(browser, patient, app_id, "launch/patient patient/Observation.cs")
    first = app.post("/fhir", json=measures_bundle(patient.patient_id, 131, 84), headers=FHIR_JSON)
    assert first.status_code == 200, first.text
    assert first.json()["entry"][0]["response"]["status"] == "201"
    again = app.post("/fhir", json=measures_bundle(patient.patient_id, 131, 84), headers=FHIR_JSON)
    assert again.json()["entry"][0]["response"]["status"] == "200"  # the same measure, stored once
    second = app.post("/fhir", json=measures_bundle(patient.patient_id, 142, 91), headers=FHIR_JSON)
    assert second.json()["entry"][0]["response"]["status"] == "201"
    profile = browser.get("/patient/profile").text
    assert "131 / 84" in profile
    assert "142 / 91" in profile
    assert profile.count('class="chart measure-chart"') >= 1
    assert app.get("/fhir/DocumentReference", params={"patient": patient.patient_id}).status_code in (
        403,
        404,
    )
    outside = app.post("/fhir", json=measures_bundle(patient.patient_id, 131, 250), headers=FHIR_JSON)
    assert outside.status_code == 422
    assert outside.json()["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.component[1].valueQuantity.value"
    ]
    page = browser.get("/patient/apps")
    browser.post(f"/patient/apps/{app_id}/revoke", data={"csrf_token": csrf(page.text)})
    refused = app.post("/fhir", json=measures_bundle(patient.patient_id, 120, 80), headers=FHIR_JSON)
    assert refused.status_code == 401
    access = browser.get("/patient/access").text
    assert "Tensio" in access


def test_a_device_is_stored_once_for_all_its_measures(
    browser: TestClient, patient: SeededPatient, app_id: str
) -> None:
    """The PhdDevice of a flux is created with the first measure and reused by the next ones."""
    app, _ = granted_app(
        browser, patient, app_id, "launch/patient patient/Observation.crs patient/Device.crs"
    )
    first = app.post(
        "/fhir", json=measures_bundle(patient.patient_id, 125, 80, device=True), headers=FHIR_JSON
    )
    assert first.status_code == 200, first.text
    second = app.post(
        "/fhir", json=measures_bundle(patient.patient_id, 127, 81, device=True), headers=FHIR_JSON
    )
    assert second.status_code == 200, second.text
    devices = app.get("/fhir/Device", params={"patient": patient.patient_id}).json()
    assert devices["total"] == 1
    device_id = devices["entry"][0]["resource"]["id"]
    observations = app.get(
        "/fhir/Observation", params={"patient": patient.patient_id, "code": "http://loinc.org|85354-9"}
    ).json()
    measured = [
        e["resource"]
        for e in observations["entry"]
        if any(i["system"] == MEASURE_ID_SYSTEM for i in e["resource"].get("identifier", []))
    ]
    assert len(measured) == 2
    assert {r["device"]["reference"] for r in measured} == {f"Device/{device_id}"}


def test_backend_service_gets_a_token_with_private_key_jwt(browser: TestClient, services: Services) -> None:
    """client_credentials + private_key_jwt (RS384): a token for the feed it acts as; a replayed, forged or RS256 assertion: invalid_client."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "labo-1", "alg": "RS384"})
    services.feeds.add("labo-est-feed", name="Labo Est", kind=FeedKind.HL7V2, classes=frozenset({"10", "60"}))
    services.apps.register(
        name="Labo Est",
        kind=AppKind.BACKEND,
        scopes=("system/*.rs",),
        client_id="labo-est",
        jwks={"keys": [key.as_dict(private=False)]},
        acts_as="feed:labo-est-feed",
    )
    token_url = f"{BASE}/auth/token"
    backend = OAuth2Client(
        client_id="labo-est",
        client_secret=key,
        token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="RS384"),
        transport=browser._transport,
        base_url=BASE,
    )
    token = backend.fetch_token(token_url, grant_type="client_credentials", scope="system/*.rs")
    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token
    principal = services.feeds.principal(services.apps.principal(token["access_token"]))
    assert (principal.kind.value, principal.feed_id, principal.feed_categories) == (
        "feed",
        "labo-est-feed",
        {"10", "60"},
    )
    # A feed never reads: its token gives no Observation.
    read = backend.get("/fhir/Observation", params={"patient": "x"})
    assert read.status_code in (403, 404), read.text

    # The same assertion twice is refused (jti), and so is one signed by another key.
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    assertion = private_key_jwt_sign(key, client_id="labo-est", token_endpoint=token_url, alg="RS384")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    assert browser.post("/auth/token", data=form).status_code == 200
    replay = browser.post("/auth/token", data=form)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_client"
    other = RSAKey.generate_key(2048)
    forged = private_key_jwt_sign(other, client_id="labo-est", token_endpoint=token_url, alg="RS384")
    assert (
        browser.post("/auth/token", data={**form, "client_assertion": forged}).json()["error"]
        == "invalid_client"
    )
    same_key = RSAKey.import_key({k: v for k, v in key.as_dict(private=True).items() if k != "alg"})
    weak = private_key_jwt_sign(same_key, client_id="labo-est", token_endpoint=token_url, alg="RS256")
    assert (
        browser.post("/auth/token", data={**form, "client_assertion": weak}).json()["error"]
        == "invalid_client"
    )
    # A backend service cannot use the patient's authorization code flow.
    assert browser.post(
        "/auth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": "labo-est"}
    ).status_code in (400, 401)


GARBAGE: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/auth/authorize", {}),
    (
        "GET",
        "/auth/authorize",
        {"response_type": "code", "client_id": "nobody", "redirect_uri": REDIRECT},
    ),
    (
        "GET",
        "/auth/authorize",
        {"response_type": "token", "client_id": "tensio", "redirect_uri": REDIRECT},
    ),
    (
        "GET",
        "/auth/authorize",
        {"response_type": "code", "client_id": "tensio", "scope": "patient/Nope.zz"},
    ),
    ("POST", "/auth/token", {}),
    (
        "POST",
        "/auth/token",
        {"grant_type": "password", "username": "a", "password": "b", "client_id": "tensio"},
    ),
    (
        "POST",
        "/auth/token",
        {"grant_type": "authorization_code", "code": "x" * 5000, "client_id": "tensio"},
    ),
    (
        "POST",
        "/auth/token",
        {"grant_type": "client_credentials", "client_assertion_type": "x", "client_assertion": "a.b.c"},
    ),
    ("POST", "/auth/revoke", {"token": "nothing", "client_id": "nobody"}),
    ("POST", "/auth/revoke", {"client_id": "tensio"}),
    ("POST", "/auth/introspect", {"token": "nothing", "client_id": "tensio"}),
    ("POST", "/auth/introspect", {"token": "nothing", "token_type_hint": "bogus", "client_id": "tensio"}),
]


def test_garbage_on_the_oauth_endpoints_is_a_4xx_or_an_error_redirect(
    browser: TestClient, patient: SeededPatient, app_id: str
) -> None:
    """Missing or unknown parameters, clients and grant types: an OAuth error (4xx or error redirect), never a 500."""
    sign_in(browser, patient)
    for method, path, data in GARBAGE:
        if method == "GET":
            answer = browser.get(path, params=data, follow_redirects=False)
        else:
            answer = browser.post(path, data=data, follow_redirects=False)
        case = (method, path, data, answer.status_code)
        if answer.status_code == 302:
            assert "error=" in answer.headers["location"], case
            assert answer.headers["location"].startswith(REDIRECT), case
        elif path == "/auth/introspect" and answer.status_code == 200:
            assert answer.json() == {"active": False}, case  # an unknown token is inactive (RFC 7662)
        else:
            assert 400 <= answer.status_code < 500, case


def test_oauth_over_plain_http_off_the_loopback_is_a_400_naming_tls(
    settings: Settings, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """OAuth over plain HTTP to a non-loopback host: 400 insecure_transport (consent page or JSON), never a 500."""
    app = create_app(settings, services, demo_people=demo_people())
    with TestClient(app, base_url="http://carnet.example") as remote:
        token = remote.post("/auth/token", data={"grant_type": "authorization_code", "code": "x"})
        assert token.status_code == 400
        assert token.json()["error"] == "insecure_transport"
        sign_in(remote, patient)
        page = remote.get("/auth/authorize", params={"client_id": app_id, "response_type": "code"})
        assert page.status_code == 400
        assert "insecure_transport" in page.text


def test_an_expired_token_is_refused_with_401(
    browser: TestClient, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """A token past its expiry is refused on /fhir (401 OperationOutcome) and reads as inactive."""
    add_lapsed_token(services, patient, app_id, "expired-token-of-tensio")
    answer = browser.get(
        "/fhir/Observation",
        params={"patient": patient.patient_id},
        headers={"Authorization": "Bearer expired-token-of-tensio"},
    )
    assert answer.status_code == 401
    assert "expired" in answer.json()["issue"][0]["diagnostics"]
    assert answer.headers["www-authenticate"].startswith("Bearer")
    inactive = browser.post(
        "/auth/introspect", data={"token": "expired-token-of-tensio", "client_id": app_id}
    )
    assert inactive.json() == {"active": False}


def test_openid_fhiruser_gives_an_id_token_naming_the_patient(
    browser: TestClient, patient: SeededPatient, app_id: str
) -> None:
    """openid fhirUser: an RS256 ID token, verifiable with /auth/jwks, whose fhirUser is the patient's Patient URL."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    config = browser.get("/fhir/.well-known/smart-configuration").json()
    assert "sso-openid-connect" in config["capabilities"]
    _, token = granted_app(browser, patient, app_id, "openid fhirUser launch/patient patient/Observation.rs")
    keys = KeySet.import_key_set(browser.get(urlsplit(config["jwks_uri"]).path).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == config["issuer"]
    assert claims["aud"] == [app_id]
    assert claims["fhirUser"] == f"{BASE}/fhir/Patient/{patient.patient_id}"
    assert claims["exp"] > claims["iat"]


def test_a_granted_app_exports_the_patients_record_within_its_grant(
    browser: TestClient, patient: SeededPatient, app_id: str
) -> None:
    """Portability through an app (issue 15 item 1): Patient/$export with the app's token alone.

    The app was granted reading Observations only: the export holds the patient's Observations and
    nothing else (no document, no other record); once the patient revokes the app, kick-off is 401.
    """
    app, _ = granted_app(browser, patient, app_id, "launch/patient patient/Observation.rs")

    def exported(query: str) -> list[dict[str, Any]] | int:
        kick_off = app.get(f"/fhir/Patient/$export{query}", headers={"Prefer": "respond-async"})
        if kick_off.status_code != 202:
            return kick_off.status_code
        for _ in range(600):
            status = app.get(kick_off.headers["Content-Location"])
            if status.status_code != 202:
                break
            time.sleep(0.05)
        assert status.status_code == 200, status.text[:300]
        found: list[dict[str, Any]] = []
        for item in status.json()["output"]:
            part = app.get(item["url"])
            assert part.status_code == 200
            found.extend(orjson.loads(line) for line in part.content.splitlines() if line)
        return found

    everything = exported("")
    assert isinstance(everything, list), everything
    assert everything, "the patient's Observations were exported"
    assert {r["resourceType"] for r in everything} == {"Observation"}
    assert {r["subject"]["reference"] for r in everything} == {f"Patient/{patient.patient_id}"}
    # A type the patient did not grant is not exported through the app: refused, or left out.
    documents = exported("?_type=DocumentReference")
    assert documents in (400, 403, [])

    page = browser.get("/patient/apps")
    browser.post(f"/patient/apps/{app_id}/revoke", data={"csrf_token": csrf(page.text)})
    assert exported("") == 401


def test_an_app_token_is_looked_up_off_the_event_loop_at_every_request(
    browser: TestClient, services: Services, patient: SeededPatient, app_id: str
) -> None:
    """An app's create and read run no SQL on the loop's thread (rate limit on); a revocation refuses the next call."""
    app, _ = granted_app(browser, patient, app_id, "launch/patient patient/Observation.crs")
    on_loop: list[str] = []

    def statement(_connection: Any, _cursor: Any, sql: str, *_: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        on_loop.append(sql)

    event.listen(services.store.engine, "before_cursor_execute", statement)
    try:
        measure = {**BP_PANEL, "subject": {"reference": f"Patient/{patient.patient_id}"}}
        created = app.post("/fhir/Observation", json=measure, headers=FHIR_JSON)
        assert created.status_code == 201, created.text
        read = app.get(f"/fhir/Observation/{created.json()['id']}")
        assert read.status_code == 200
    finally:
        event.remove(services.store.engine, "before_cursor_execute", statement)
    assert on_loop == []
    page = browser.get("/patient/apps")
    done = browser.post(
        f"/patient/apps/{app_id}/revoke", data={"csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert done.status_code == 303
    assert app.get(f"/fhir/Observation/{created.json()['id']}").status_code == 401
