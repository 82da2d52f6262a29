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
