"""Fuzz the FHIR API: thousands of generated requests, and not one answered with a 5xx.

The server is seeded with two records and directory entries, then Hypothesis sends batches of
requests (see ``tests/strategies.py``) with every kind of credential. Failures are collected rather
than raised, so one run reports every distinct problem and Hypothesis never shrinks against a
server whose state each request changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from carnet.api.auth import issue_token
from carnet.settings import Settings
from minting import Mint
from outcomes import outcome_problems
from strategies import INS, FuzzRequest, World, api_requests, resolve_created, resource_template

#: Requests per Hypothesis example, and examples per run: 8 x 275 = 2,200 requests per backend.
BATCH = 8
EXAMPLES = 275
REQUIRED = 2_000


@pytest.fixture
def quiet_client(client: TestClient) -> Iterator[TestClient]:
    """The same app, answering a server error with its 500 response instead of raising it."""
    with TestClient(
        client.app, base_url="http://testserver", raise_server_exceptions=False, follow_redirects=False
    ) as test_client:
        yield test_client


def _created(client: TestClient, headers: dict[str, str], body: dict[str, object]) -> str:
    response = client.post(f"/fhir/{body['resourceType']}", json=body, headers=headers)
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


@pytest.fixture
def world(client: TestClient, auth: Mint, settings: Settings) -> World:
    """Two patients' records with a few resources each, directory entries, and every kind of token."""
    patient_ids: list[str] = []
    resources: list[tuple[str, str]] = []
    for number in ("1840399123456", "2990199000001"):
        headers = auth(kind="patient", identifier=f"{INS}|{number}")
        pid = _created(client, headers, resource_template("Patient", "", number))
        patient_ids.append(pid)
        for rtype in (
            "Observation",
            "Observation",
            "Condition",
            "Encounter",
            "MedicationRequest",
            "Immunization",
        ):
            resources.append(
                (rtype, _created(client, headers, resource_template(rtype, f"Patient/{pid}", number)))
            )
        for rtype in ("Practitioner", "Organization"):
            resources.append((rtype, _created(client, headers, resource_template(rtype, "", number))))
    expired = issue_token(
        settings,
        {"kind": "patient", "sub": "patient:late", "identifier": f"{INS}|1840399123456"},
        now=datetime.now(UTC) - timedelta(hours=2),
        lifetime=timedelta(hours=1),
    )

    def bearer(**claims: str) -> str:
        return auth(**claims)["Authorization"]

    # The first credential is the primary one (see ``strategies.World``): the holder of patient_ids[0].
    authorizations: dict[str, str | None] = {
        "patient-A": bearer(kind="patient", identifier=f"{INS}|1840399123456"),
        "anonymous": None,
        "garbage": "Bearer not.a.token",
        "basic": "Basic dXNlcjpwYXNz",
        "expired": f"Bearer {expired}",
        "patient-A-by-id": bearer(kind="patient", patient=patient_ids[0]),
        "patient-B": bearer(kind="patient", identifier=f"{INS}|2990199000001"),
        "patient-without-record": bearer(kind="patient", identifier=f"{INS}|1770599000002"),
        "patient-unknown-id": bearer(kind="patient", patient="no-such-record"),
        "professional": bearer(kind="professional", profession="10"),
        "admin": bearer(kind="admin"),
        "dpo": bearer(kind="dpo"),
        "researcher": bearer(kind="researcher"),
        "feed": bearer(kind="feed"),
        "employer": bearer(kind="employer"),
        "alien-kind": bearer(kind="alien"),
    }
    return World(
        patient_ids=tuple(patient_ids),
        resources=tuple(resources),
        identifiers=("1840399123456", "2990199000001", "1770599000002", "bogus"),
        authorizations=tuple(authorizations.items()),
    )


def _server_error(caplog: pytest.LogCaptureFixture) -> str:
    """The last exception the app logged, as its type and message."""
    for record in reversed(caplog.records):
        if record.name == "carnet.api" and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            return f"{type(error).__name__}: {str(error)[:200]}"
    return "no exception logged"


def _remember_created(world: World, response: httpx.Response) -> None:
    """Add a resource the server just created to the world, for later requests to read or change."""
    if response.status_code != 201 or not response.content:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        return
    if (
        isinstance(body, dict)
        and isinstance(body.get("resourceType"), str)
        and isinstance(body.get("id"), str)
    ):
        world.created.add(body["resourceType"], body["id"])


def _problems(request: FuzzRequest, response: httpx.Response) -> list[str]:
    """What is wrong with one response: a 5xx, a 4xx that is no OperationOutcome, a 2xx without a type."""
    status = response.status_code
    if status >= 500:
        return [f"{status}"]
    if request.method == "HEAD":  # no body to check
        return []
    if status >= 400:
        return [f"{status}: {p}" for p in outcome_problems(response)]
    if status >= 300:
        return [] if response.headers.get("location") else [f"{status} without a Location"]
    if request.url.startswith("/fhir/Binary/") and request.method == "GET":
        return []  # a Binary is read back as its own content, in its own media type (ITI-68)
    if not response.content or "json" not in response.headers.get("content-type", ""):
        return []
    try:
        body = json.loads(response.content)
    except ValueError:
        return [f"{status}: the JSON body does not parse"]
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        return [f"{status}: the JSON body has no resourceType"]
    return []


def test_no_generated_request_gets_a_server_error(
    quiet_client: TestClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Over 2,000 generated requests: none is a 5xx, every 4xx is an OperationOutcome, every 2xx typed."""
    sent: list[int] = []
    failures: dict[str, str] = {}
    caplog.set_level(logging.WARNING, logger="carnet.api")  # errors only: the access log stays out

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(batch=st.lists(api_requests(world), min_size=BATCH, max_size=BATCH))
    def send(batch: list[FuzzRequest]) -> None:
        for drawn in batch:
            request = dataclasses.replace(drawn, url=resolve_created(drawn.url, world))
            response = quiet_client.request(
                request.method, request.url, headers=dict(request.headers), content=request.content
            )
            sent.append(response.status_code)
            _remember_created(world, response)
            for problem in _problems(request, response):
                detail = _server_error(caplog) if response.status_code >= 500 else response.text[:300]
                failures.setdefault(f"{problem} {detail}", request.describe())

    send()
    report = "\n".join(f"{problem}\n    from {request}" for problem, request in list(failures.items())[:20])
    assert failures == {}, f"{len(failures)} distinct problems:\n{report}"
    assert len(sent) >= REQUIRED
    assert not [s for s in sent if s >= 500]
