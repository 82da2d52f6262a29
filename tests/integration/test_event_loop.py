"""No blocking call on the event loop: every route of the API and the portals, with a database hook.

The rule (``carnet.offload``): a handler is a plain ``def`` (run in a worker thread) or an
``async def`` whose every blocking call goes through ``offload``. The hook below, installed on
the real engine, records each SQL statement executed on a thread that is running an asyncio
event loop; every route is then requested once, signed in as whom it serves, and the hook must
have recorded nothing. A last test checks the hook itself catches a handler that breaks the rule.
"""

from __future__ import annotations

import asyncio
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import event
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, demo_people, seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from carnet.web.identities import demo_professionals
from minting import Mint

#: Requests that delete, withdraw or switch to break-glass go late; closing and signing out last.
_LATE = ("/delete", "/revoke", "end-emergency", "break-glass")
_LAST = ("/patient/close", "/logout")


def _rank(method: str, path: str) -> int:
    if path in _LAST:
        return 2 + _LAST.index(path)
    return 1 if method == "DELETE" or any(t in path for t in _LATE) else 0


@dataclass
class LoopWatch:
    """The statements the database ran on an event-loop thread, with the code that ran them."""

    seen: list[str] = field(default_factory=list)
    current: str = ""

    def statement(self, *_: Any) -> None:
        """SQLAlchemy ``before_cursor_execute`` hook: note the statement if an event loop runs here."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: as it should be
        frames = [
            f"{f.filename.rsplit('/src/', 1)[-1]}:{f.lineno} {f.name}"
            for f in traceback.extract_stack()
            if "/src/carnet/" in f.filename and "/carnet/store/" not in f.filename
        ]
        self.seen.append(f"{self.current}: " + " <- ".join(reversed(frames[-4:])))


@pytest.fixture
def watch(services: Services) -> Iterator[LoopWatch]:
    """The hook, installed on the engine of the wired services for the test's duration."""
    found = LoopWatch()
    engine = services.store.engine
    event.listen(engine, "before_cursor_execute", found.statement)
    yield found
    event.remove(engine, "before_cursor_execute", found.statement)


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the application serves, the included routers' routes included."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        inner: list[tuple[str, Any]] = [("", route)]
        if hasattr(route, "original_router"):  # FastAPI's included router
            prefix = str(route.include_context.prefix)
            inner = [(prefix, r) for r in route.original_router.routes]
        for prefix, candidate in inner:
            if isinstance(candidate, APIRoute):
                found += [(method, prefix + candidate.path) for method in sorted(candidate.methods)]
    return sorted(set(found), key=lambda mp: (_rank(*mp), mp[1], mp[0]))


def _csrf(client: TestClient, path: str) -> str:
    page = client.get(path, headers={"Accept": "text/html"})
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, (path, page.status_code)
    return found.group(1)


def _first_id(services: Services, patient_id: str, resource_type: str) -> str:
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    found = services.records.records(holder).search(resource_type, [("patient", f"Patient/{patient_id}")])
    return str(found.resources[0]["id"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Callers:
    """Clients signed in as the patient and as an authorised physician; the API token."""

    patient: TestClient
    pro: TestClient
    anonymous: TestClient
    patient_csrf: str
    pro_csrf: str
    bearer: dict[str, str]
    values: dict[str, str]


def _callers(app: FastAPI, services: Services, auth: Mint, seeded: SeededPatient) -> Iterator[Callers]:
    pros = demo_professionals(services.records)
    physician = next(p for p in pros if p.profession == "10")
    with (
        TestClient(app, base_url="http://testserver") as patient,
        TestClient(app, base_url="http://testserver") as pro,
        TestClient(app, base_url="http://testserver") as anonymous,
    ):
        token = _csrf(patient, "/login")
        identifier = f"{seeded.ins_system}|{seeded.ins_value}"
        patient.post("/login", data={"csrf_token": token, "kind": "patient", "identifier": identifier})
        token = _csrf(pro, "/login")
        pro.post(
            "/login",
            data={"csrf_token": token, "kind": "professional", "practitioner": physician.practitioner_id},
        )
        pro_csrf = _csrf(pro, "/pro/")
        pro.post(
            "/pro/access/consent",
            data={"csrf_token": pro_csrf, "ins": seeded.ins_value, "kind": "authorisation", "agreed": "yes"},
        )
        consent = _first_id(services, seeded.patient_id, "Consent")
        values = {
            "patient_id": seeded.patient_id,
            "document_id": _first_id(services, seeded.patient_id, "DocumentReference"),
            "consent_id": consent,
            "resource_type": "Observation",
            "resource_id": _first_id(services, seeded.patient_id, "Observation"),
            "version_id": "1",
            "event_id": "unknown-event",
            "event": "unknown-event",
            "code": "en",
            "index": "0",
            "idnps": physician.idnps,
        }
        yield Callers(
            patient=patient,
            pro=pro,
            anonymous=anonymous,
            patient_csrf=_csrf(patient, "/patient/"),
            pro_csrf=pro_csrf,
            bearer=auth(kind="patient", patient=seeded.patient_id),
            values=values,
        )


def _request(callers: Callers, method: str, template: str, seeded: SeededPatient) -> int:
    """Send one request to a route, as whom it serves, with plausible parameters; return the status."""
    path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: callers.values.get(m.group(1), "x"), template)
    if path.startswith(("/fhir", "/journal")):
        pid = seeded.patient_id
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        if path == "/fhir" or path == "/fhir/":
            body = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}],
            }
        if "$" in path and method == "POST":
            body = {"resourceType": "Parameters", "parameter": []}
        client = callers.anonymous
        content = None if method in ("GET", "DELETE") else orjson.dumps(body)
        searched = path.endswith(("/Observation", "/_history", "/_search"))
        params = {"patient": f"Patient/{pid}"} if searched else {}
        answer = client.request(method, path, headers=callers.bearer, content=content, params=params)
        return answer.status_code
    client = callers.pro if path.startswith("/pro") else callers.patient
    if path in ("/", "/login") or path.startswith("/language"):
        client = callers.anonymous
    token = callers.pro_csrf if client is callers.pro else callers.patient_csrf
    if method == "GET":
        return client.get(path, headers={"Accept": "text/html"}, follow_redirects=False).status_code
    form = {
        "csrf_token": token,
        "confirm": "1",
        "agreed": "yes",
        "kind": "authorisation",
        "idnps": callers.values["idnps"],
        "masked": "0",
        "ins": seeded.ins_value,
        "justification": "Unconscious patient in the emergency room",
        "identifier": f"{seeded.ins_system}|{seeded.ins_value}",
    }
    if path == "/login":
        form["kind"] = "patient"
        form["csrf_token"] = _csrf(client, "/login")
    return client.post(path, data=form, follow_redirects=False).status_code


def test_no_route_runs_a_database_call_on_the_event_loop(
    settings: Settings, services: Services, auth: Mint, watch: LoopWatch
) -> None:
    """Every route of the API and both portals answers without one SQL statement on the loop's thread."""
    seeded = seed_population(services.records, patients=1, seed=2026)[0]
    app = create_app(settings, services, background=False, demo_people=demo_people(count=3))
    routes = _routes(app)
    assert len(routes) > 60
    statuses: dict[tuple[str, str], int] = {}
    for callers in _callers(app, services, auth, seeded):
        watch.seen.clear()  # signing in and the set-up above are covered by the routes below
        for method, path in routes:
            watch.current = f"{method} {path}"
            statuses[(method, path)] = _request(callers, method, path, seeded)
    assert watch.seen == []
    assert all(status < 500 for status in statuses.values()), {k: v for k, v in statuses.items() if v >= 500}
    # The walk reached the record: most routes answered 2xx or 3xx, not only refusals.
    assert sum(200 <= s < 400 for s in statuses.values()) > len(statuses) // 2


def test_the_hook_catches_a_handler_that_breaks_the_rule(
    settings: Settings, services: Services, watch: LoopWatch
) -> None:
    """An async handler calling the record service directly (no offload) is recorded by the hook."""
    app = create_app(settings, services, background=False)

    @app.get("/blocking-on-purpose")
    async def blocking(request: Request) -> Response:
        services.records.resolve(Principal(kind=ActorKind.PATIENT, subject="x"))
        with services.store.session() as session:
            session.find_identities(b"\0" * 32)
        return Response(b"done")

    with TestClient(app) as client:
        watch.current = "GET /blocking-on-purpose"
        assert client.get("/blocking-on-purpose").status_code == 200
    assert len(watch.seen) >= 1
    assert watch.seen[0].startswith("GET /blocking-on-purpose: ")
