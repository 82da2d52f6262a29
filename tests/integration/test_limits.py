"""One caller cannot tie up the server (issue 11, item 4): size limits, a time budget, rate limits.

Bodies too large in elements, entries or depth are refused with 413/400 and an explanation before
validation; a request past ``CARNET_REQUEST_SECONDS`` is stopped and rolled back; API callers and
portal sign-ins are rate-limited with 429 and ``Retry-After``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, seed_population
from carnet.domain.errors import ConfigurationError
from carnet.settings import Settings, load
from minting import Mint
from outcomes import assert_outcome

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_with(settings: Settings, services: Services) -> Iterator[AppFactory]:
    """Build the real app with some settings changed; every client is closed at the end."""
    clients: list[TestClient] = []

    def build(**changes: Any) -> TestClient:
        changed = dataclasses.replace(settings, **changes)
        app = create_app(changed, dataclasses.replace(services, settings=changed), background=False)
        client = TestClient(app, base_url="http://testserver").__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def holder(client: TestClient, auth: Mint) -> tuple[dict[str, str], str]:
    """A patient who opened their record: headers and record id."""
    headers = auth(kind="patient", identifier=f"{INS}|1840399123456")
    body = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "1840399123456"}]}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return headers, created.json()["id"]


def _observation(patient_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    body.update(changes)
    return body


def _count(client: TestClient, headers: dict[str, str], patient_id: str) -> int:
    found = client.get(f"/fhir/Observation?patient={patient_id}&_summary=count", headers=headers)
    return int(found.json()["total"])


# -- sizes ------------------------------------------------------------------------------------------


def test_an_observation_with_400k_notes_is_refused_at_once(
    client: TestClient, holder: tuple[dict[str, str], str]
) -> None:
    """The 6 MB Observation with 400,000 notes (34 s to accept before) is a 413 within seconds."""
    headers, pid = holder
    body = _observation(pid, note=[{"text": "n"} for _ in range(400_000)])
    content = json.dumps(body, separators=(",", ":")).encode()
    assert len(content) > 5_000_000
    started = time.process_time()
    response = client.post("/fhir/Observation", content=content, headers=headers)
    elapsed = time.process_time() - started
    issue = assert_outcome(response, 413)
    assert "CARNET_MAX_" in issue["diagnostics"]
    assert elapsed < 5, f"refusing took {elapsed:.1f} s of CPU"
    assert _count(client, headers, pid) == 0


def test_a_5000_entry_batch_is_refused_at_once(
    client: TestClient, holder: tuple[dict[str, str], str]
) -> None:
    """The 5,000-entry batch (30 s before) is a 413 naming CARNET_MAX_BUNDLE_ENTRIES, and stores nothing."""
    headers, pid = holder
    entry = {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry] * 5000}
    started = time.process_time()
    response = client.post("/fhir", content=json.dumps(bundle), headers=headers)
    elapsed = time.process_time() - started
    issue = assert_outcome(response, 413)
    assert "5000 entries" in issue["diagnostics"]
    assert "CARNET_MAX_BUNDLE_ENTRIES" in issue["diagnostics"]
    assert elapsed < 5, f"refusing took {elapsed:.1f} s of CPU"
    assert _count(client, headers, pid) == 0


def test_bundle_entries_up_to_the_limit_are_processed(
    app_with: AppFactory, holder: tuple[dict[str, str], str]
) -> None:
    """With CARNET_MAX_BUNDLE_ENTRIES=3, a 3-entry batch is processed and a 4-entry one refused."""
    headers, pid = holder
    small = app_with(max_bundle_entries=3)
    entry = {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}
    accepted = small.post(
        "/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [entry] * 3}, headers=headers
    )
    assert accepted.status_code == 200, accepted.text
    refused = small.post(
        "/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [entry] * 4}, headers=headers
    )
    assert_outcome(refused, 413)
    assert _count(small, headers, pid) == 3


def test_a_resource_over_the_element_limit_is_413(
    app_with: AppFactory, holder: tuple[dict[str, str], str]
) -> None:
    """CARNET_MAX_RESOURCE_ELEMENTS bounds one resource, posted alone or inside a transaction."""
    headers, pid = holder
    small = app_with(max_resource_elements=100)
    big = _observation(pid, note=[{"text": str(i)} for i in range(60)])
    issue = assert_outcome(small.post("/fhir/Observation", json=big, headers=headers), 413)
    assert "CARNET_MAX_RESOURCE_ELEMENTS" in issue["diagnostics"]
    entries = [
        {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}},
        {"resource": big, "request": {"method": "POST", "url": "Observation"}},
    ]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    issue = assert_outcome(small.post("/fhir", json=transaction, headers=headers), 413)
    assert "entry 1" in issue["diagnostics"]
    assert small.post("/fhir/Observation", json=_observation(pid), headers=headers).status_code == 201
    assert _count(small, headers, pid) == 1


def test_a_body_over_the_element_limit_is_413(
    app_with: AppFactory, holder: tuple[dict[str, str], str]
) -> None:
    """CARNET_MAX_ELEMENTS bounds the whole body: a Bundle of small resources can exceed it."""
    headers, pid = holder
    small = app_with(max_elements=200)
    entry = {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 20}
    issue = assert_outcome(small.post("/fhir", json=transaction, headers=headers), 413)
    assert "CARNET_MAX_ELEMENTS" in issue["diagnostics"]


def test_nesting_depth_is_configurable(app_with: AppFactory, holder: tuple[dict[str, str], str]) -> None:
    """With CARNET_MAX_DEPTH=8, an extension nested ten levels is refused with 400 naming the limit."""
    headers, pid = holder
    shallow = app_with(max_depth=8)
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(4):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    issue = assert_outcome(
        shallow.post("/fhir/Observation", json=_observation(pid, extension=[extension]), headers=headers), 400
    )
    assert "8 levels" in issue["diagnostics"]


def test_limit_settings_come_from_the_environment() -> None:
    """Each limit is read from its CARNET_* variable; out-of-range values stop start-up."""
    loaded = load(
        {
            "CARNET_MAX_ELEMENTS": "5000",
            "CARNET_MAX_RESOURCE_ELEMENTS": "500",
            "CARNET_MAX_BUNDLE_ENTRIES": "50",
            "CARNET_MAX_DEPTH": "40",
            "CARNET_REQUEST_SECONDS": "5",
            "CARNET_API_RATE_PER_MINUTE": "120",
            "CARNET_API_BURST": "20",
            "CARNET_LOGIN_RATE_PER_MINUTE": "3",
        }
    )
    assert (loaded.max_elements, loaded.max_resource_elements, loaded.max_bundle_entries) == (5000, 500, 50)
    assert (loaded.max_depth, loaded.request_seconds) == (40, 5)
    assert (loaded.api_rate_per_minute, loaded.api_burst, loaded.login_rate_per_minute) == (120, 20, 3)
    with pytest.raises(ConfigurationError, match="CARNET_MAX_DEPTH"):
        load({"CARNET_MAX_DEPTH": "5000"})
    with pytest.raises(ConfigurationError, match="CARNET_MAX_BUNDLE_ENTRIES"):
        load({"CARNET_MAX_BUNDLE_ENTRIES": "0"})


# -- time -------------------------------------------------------------------------------------------


def test_a_request_past_its_time_budget_is_stopped_and_rolled_back(
    app_with: AppFactory, holder: tuple[dict[str, str], str]
) -> None:
    """With no time left (budget 0 s), a transaction is answered 503 timeout and stores nothing."""
    headers, pid = holder
    hurried = app_with(request_seconds=0)
    entry = {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 3}
    response = hurried.post("/fhir", json=transaction, headers=headers)
    issue = assert_outcome(response, 503)
    assert issue["code"] == "timeout"
    assert "CARNET_REQUEST_SECONDS" in issue["diagnostics"]
    assert hurried.get("/fhir/metadata").status_code == 200  # a request with no body or loop is unaffected


# -- rate limits ------------------------------------------------------------------------------------


def test_an_api_principal_over_its_rate_gets_429(
    app_with: AppFactory, auth: Mint, holder: tuple[dict[str, str], str]
) -> None:
    """Past its burst, a principal gets 429 with Retry-After and an OperationOutcome; others are served."""
    headers, pid = holder
    limited = app_with(api_rate_per_minute=6, api_burst=3)
    url = f"/fhir/Observation?patient={pid}"
    assert [limited.get(url, headers=headers).status_code for _ in range(3)] == [200, 200, 200]
    refused = limited.get(url, headers=headers)
    issue = assert_outcome(refused, 429)
    assert issue["code"] == "throttled"
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    other = auth(kind="professional", profession="10")
    assert limited.get(url, headers=other).status_code != 429  # served (or refused by policy), not throttled


def test_a_principal_with_a_second_token_shares_its_bucket(
    app_with: AppFactory, auth: Mint, holder: tuple[dict[str, str], str]
) -> None:
    """Minting another token does not reset the limit: the bucket is the principal's, not the token's."""
    headers, pid = holder
    limited = app_with(api_rate_per_minute=6, api_burst=2)
    url = f"/fhir/Observation?patient={pid}"
    assert limited.get(url, headers=headers).status_code == 200
    assert limited.get(url, headers=headers).status_code == 200
    sub = "patient:same-person"
    first = auth(kind="patient", sub=sub, identifier=f"{INS}|1840399123456")
    second = auth(kind="patient", sub=sub, identifier=f"{INS}|1840399123456")
    assert limited.get(url, headers=first).status_code == 200
    assert limited.get(url, headers=first).status_code == 200
    assert_outcome(limited.get(url, headers=second), 429)


def test_requests_without_a_valid_token_are_limited_by_address(app_with: AppFactory) -> None:
    """Token guessing is throttled: bad tokens from one address share the address's bucket (401, then 429)."""
    limited = app_with(api_rate_per_minute=6, api_burst=2)
    guesses = [
        limited.get("/fhir/Patient/x", headers={"Authorization": f"Bearer guess-{i}"}) for i in range(3)
    ]
    assert [r.status_code for r in guesses] == [401, 401, 429]
    assert_outcome(guesses[2], 429)


# -- portal sign-in ---------------------------------------------------------------------------------


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def _try_sign_in(client: TestClient, identifier: str, language: str = "en") -> Any:
    client.cookies.set("carnet_lang", language)
    token = _csrf(client.get("/login").text)
    return client.post(
        "/login",
        data={"csrf_token": token, "kind": "patient", "identifier": identifier},
        follow_redirects=False,
    )


@pytest.fixture
def seeded(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2026)[0]


@pytest.mark.parametrize(
    ("language", "words"), [("en", "Too many sign-in attempts"), ("fr", "Trop de tentatives")]
)
def test_portal_sign_in_is_limited_per_address(
    app_with: AppFactory, seeded: SeededPatient, language: str, words: str
) -> None:
    """Past CARNET_LOGIN_RATE_PER_MINUTE attempts from one address, sign-in answers a 429 page (FR/EN)."""
    limited = app_with(login_rate_per_minute=3)
    attempts = [_try_sign_in(limited, f"{INS}|bogus{i}", language) for i in range(3)]
    assert [r.status_code for r in attempts] == [422, 422, 422]
    refused = _try_sign_in(limited, f"{seeded.ins_system}|{seeded.ins_value}", language)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert words in refused.text
    assert "carnet_session" not in refused.headers.get("set-cookie", "") or "/patient/" not in refused.text


def test_portal_sign_in_is_limited_per_account(
    app_with: AppFactory, settings: Settings, services: Services, seeded: SeededPatient
) -> None:
    """Attempts on one account from several addresses share the account's bucket."""
    limited = app_with(login_rate_per_minute=2)
    identifier = f"{seeded.ins_system}|{seeded.ins_value}"
    answers = []
    for number in range(3):
        with TestClient(
            limited.app, base_url="http://testserver", client=(f"10.0.0.{number}", 5000)
        ) as other:
            answers.append(_try_sign_in(other, identifier).status_code)
    assert answers == [303, 303, 429]
