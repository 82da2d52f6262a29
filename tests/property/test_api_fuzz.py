"""Fuzz the FHIR API: thousands of generated requests, and not one answered with a 5xx.

Every write the server accepts (a 2xx to POST or PUT) is read back, and its stored JSON must
parse as strict standard JSON: no NaN or infinity, no number a double cannot hold, no lone
surrogate, no control character FHIR forbids (issue 11, item 3).

The server is seeded with two records and directory entries, then Hypothesis sends batches of
requests (see ``tests/strategies.py``) with every kind of credential. Failures are collected rather
than raised, so one run reports every distinct problem and Hypothesis never shrinks against a
server whose state each request changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

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
#: The long soak (``make test-long``): 8 x 12,600 = 100,800 requests per backend.
LONG_EXAMPLES = 12_600
LONG_REQUIRED = 100_000
#: Characters strict JSON readers and FHIR refuse inside strings.
_UNFIT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


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


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or (
        value == 0 and any(d in "123456789" for d in text.split("e")[0].split("E")[0])
    ):
        raise ValueError(f"{text[:40]} does not fit a double")
    return value


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def _unfit_strings(value: Any) -> list[str]:
    """The strings (keys included) in ``value`` that hold a character FHIR or strict JSON refuses."""
    stack = [value]
    found: list[str] = []
    while stack:
        node = stack.pop()
        if isinstance(node, str) and _UNFIT.search(node):
            found.append(node[:40])
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def stored_json_problems(content: bytes) -> list[str]:
    """What makes stored JSON unreadable by a strict standard parser (empty when it reads back)."""
    try:
        text = content.decode("utf-8")
        body = json.loads(text, parse_float=_strict_float, parse_constant=_strict_constant)
    except (ValueError, RecursionError) as exc:
        return [f"the stored JSON does not parse strictly: {str(exc)[:120]}"]
    return [f"the stored JSON holds the string {s!r}" for s in _unfit_strings(body)]


def _read_back_problems(client: TestClient, request: FuzzRequest, response: httpx.Response) -> list[str]:
    """For an accepted write, read the stored version back and check it is strict standard JSON."""
    if request.method not in ("POST", "PUT") or not 200 <= response.status_code < 300:
        return []
    location = response.headers.get("location", "")
    if "/_history/" not in location:
        return []  # a search or a Bundle: no one stored version to read
    path = location[location.index("/fhir/") :]
    authorization = dict(request.headers).get("Authorization")
    headers = {
        "Accept": "application/fhir+json",
        **({"Authorization": authorization} if authorization else {}),
    }
    read = client.get(path, headers=headers)
    if read.status_code != 200:
        return [f"an accepted write reads back as {read.status_code}"]
    return stored_json_problems(read.content)


def _fuzz(
    quiet_client: TestClient, world: World, caplog: pytest.LogCaptureFixture, examples: int, required: int
) -> None:
    sent: list[int] = []
    failures: dict[str, str] = {}
    caplog.set_level(logging.WARNING, logger="carnet.api")  # errors only: the access log stays out

    @settings(
        max_examples=examples,
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
            for problem in [
                *_problems(request, response),
                *_read_back_problems(quiet_client, request, response),
            ]:
                detail = _server_error(caplog) if response.status_code >= 500 else response.text[:300]
                failures.setdefault(f"{problem} {detail}", request.describe())

    send()
    # After everything the fuzzer got accepted, each record still reads whole as strict JSON.
    holder = dict(world.authorizations)["patient-A"]
    assert holder is not None
    everything = quiet_client.get(
        f"/fhir/Patient/{world.patient_ids[0]}/$everything", headers={"Authorization": holder}
    )
    assert everything.status_code == 200, everything.text[:300]
    for problem in stored_json_problems(everything.content):
        failures.setdefault(f"$everything: {problem}", "the primary record after the run")
    report = "\n".join(f"{problem}\n    from {request}" for problem, request in list(failures.items())[:20])
    assert failures == {}, f"{len(failures)} distinct problems:\n{report}"
    assert len(sent) >= required
    assert not [s for s in sent if s >= 500]


def test_no_generated_request_gets_a_server_error(
    quiet_client: TestClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Over 2,000 generated requests: no 5xx, every 4xx an OperationOutcome, every write reads back."""
    _fuzz(quiet_client, world, caplog, EXAMPLES, REQUIRED)


@pytest.mark.slow
def test_a_hundred_thousand_generated_requests_get_no_server_error(
    quiet_client: TestClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Over 100,000 generated requests: no 5xx, every 4xx an OperationOutcome, every write reads back."""
    _fuzz(quiet_client, world, caplog, LONG_EXAMPLES, LONG_REQUIRED)


def test_the_read_back_check_catches_json_standard_readers_refuse() -> None:
    """The fuzzer's read-back check flags infinities, lone surrogates and NULs, and passes clean JSON."""
    assert stored_json_problems(b'{"a": 1E+400}') != []
    assert stored_json_problems(b'{"a": 1e-400}') != []
    assert stored_json_problems(b'{"a": NaN}') != []
    assert stored_json_problems(b'{"a": "\\ud800"}') != []
    assert stored_json_problems(b'{"a": "x\\u0000"}') != []
    assert stored_json_problems(b'{"a": 1.50, "b": "tab\\t", "c": 0.0}') == []
