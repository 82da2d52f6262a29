"""Carnet's app routes every FHIR request to the same endpoint with the hot routes as without them."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from carnet.api.app import Services, create_app
from carnet.api.fhir import create, read
from carnet.api.hot_routes import HotRoutes
from carnet.settings import Settings
from minting import Mint

#: Requests under /fhir whose shapes come near the hot read and create.
REQUESTS = [
    ("GET", "/fhir/Observation/abc"),
    ("GET", "/fhir/Patient/abc"),
    ("GET", "/fhir/ResearchStudy/abc"),
    ("GET", "/fhir/Patient/$export"),
    ("GET", "/fhir/$export"),
    ("GET", "/fhir/metadata"),
    ("GET", "/fhir/.well-known/smart-configuration"),
    ("GET", "/fhir/Observation/_history"),
    ("GET", "/fhir/Observation/_search"),
    ("GET", "/fhir/Observation/abc/_history"),
    ("GET", "/fhir/Patient/abc/$everything"),
    ("HEAD", "/fhir/Observation/abc"),
    ("POST", "/fhir/Observation"),
    ("POST", "/fhir/ResearchStudy"),
    ("POST", "/fhir/$confirm-break-glass"),
    ("POST", "/fhir/metadata"),
    ("POST", "/fhir/"),
    ("POST", "/fhir/Observation/_search"),
]


def endpoints(app: Any, headers: dict[str, str]) -> list[tuple[str, int]]:
    """The endpoint each request of REQUESTS reached (by name) and its status."""
    reached: list[str] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http":
            reached.append(getattr(scope.get("endpoint"), "__name__", "-"))

    with TestClient(spy) as client:
        statuses = [
            client.request(method, path, headers=headers, content=b"{}").status_code
            for method, path in REQUESTS
        ]
    return list(zip(reached, statuses, strict=True))


def test_the_hot_routes_change_no_routing_decision(
    settings: Settings, services: Services, auth: Mint
) -> None:
    """Every request near the hot shapes reaches the same endpoint, with the same status."""
    headers = auth(kind="patient", identifier="urn:oid:1.2.250.1.213.1.4.10|1850575000011")
    hot = create_app(settings, services, background=False)
    front = hot.router.routes[0]
    assert isinstance(front, HotRoutes)
    assert {(route.method, route.endpoint) for route in front.hot} == {("GET", read), ("POST", create)}
    plain = create_app(settings, services, background=False)
    plain.router.routes.pop(0)
    with_hot, without = endpoints(hot, headers), endpoints(plain, headers)
    assert with_hot == without
    assert with_hot[0] == ("read", 404)
    assert with_hot[2][0] == "read_study"


def _answers(
    app: Any, requests: list[tuple[str, str, dict[str, str], bytes]]
) -> list[tuple[int, Any, bytes]]:
    """Status, headers (but the date) and body of each request's answer, in order."""
    with TestClient(app) as client:
        answers = [client.request(m, p, headers=h, content=b) for m, p, h, b in requests]
    return [
        (a.status_code, sorted((k, v) for k, v in a.headers.multi_items() if k != "date"), a.content)
        for a in answers
    ]


def test_the_hot_lane_answers_as_the_whole_stack(settings: Settings, services: Services, auth: Mint) -> None:
    """A read or create through the edge's hot lane gets the answer the whole stack gives, errors included."""
    headers = auth(kind="patient", identifier="urn:oid:1.2.250.1.213.1.4.10|1850575000011")
    hot = create_app(settings, services, background=False)
    plain = create_app(settings, services, background=False)
    plain.router.routes.pop(0)  # no hot route: no hot lane either
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "1850575000011"}],
    }
    with TestClient(plain) as client:
        made = client.post("/fhir/Patient", json=patient, headers=headers)
    assert made.status_code == 201
    own = auth(kind="patient", patient=made.json()["id"])
    path = f"/fhir/Patient/{made.json()['id']}"
    bearer = {"Authorization": own["Authorization"]}
    requests = [
        ("GET", path, bearer, b""),
        ("GET", path, {**bearer, "Accept": "application/fhir+xml"}, b""),
        ("GET", f"{path}?_summary=true", bearer, b""),
        ("GET", f"{path}?name=x", bearer, b""),
        ("GET", path, {}, b""),
        ("GET", path, {"Authorization": "Bearer not-a-token"}, b""),
        ("GET", "/fhir/Observation/nothing-here", bearer, b""),
        ("POST", "/fhir/Observation", own, b"{not json"),
        ("POST", "/fhir/Observation", {**own, "Content-Type": "text/plain"}, b"{}"),
        ("POST", "/fhir/Observation", own, b'{"resourceType": "Patient"}'),
        ("POST", "/fhir/Observation?code=x", own, b'{"resourceType": "Observation"}'),
    ]
    through_lane, through_stack = _answers(hot, requests), _answers(plain, requests)
    assert through_lane == through_stack
    assert [status for status, _, _ in through_lane] == [
        200,
        406,
        200,
        400,
        401,
        401,
        404,
        400,
        400,
        400,
        400,
    ]


def test_a_hot_request_with_a_cookie_goes_down_the_whole_stack(
    settings: Settings, services: Services, auth: Mint
) -> None:
    """A read carrying a session cookie crosses the portal's session layer (which expires a stale cookie)."""
    app = create_app(settings, services, background=False)
    stale = "a" * 43  # a well-formed session id that no session has
    with TestClient(app) as client:
        answer = client.get(
            "/fhir/Observation/abc",
            headers={**auth(kind="patient", patient="abc"), "Cookie": f"carnet_session={stale}"},
        )
    assert answer.status_code in (403, 404)
    assert "carnet_session=" in answer.headers["set-cookie"]
    assert "Max-Age=0" in answer.headers["set-cookie"]
