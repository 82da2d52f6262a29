"""The hot routes (api/hot_routes.py) give a request to the endpoint FastAPI's walk would give it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.routing import BaseRoute, Match
from starlette.testclient import TestClient
from starlette.types import Scope

from carnet.api.hot_routes import HotRoutes, install


class Refused(Exception):
    """An error an exception handler of the app turns into a response."""


async def read(resource_type: str, resource_id: str, request: Request) -> Response:
    """The generic read of the toy app."""
    if resource_id == "refused":
        raise Refused
    return Response(f"read {resource_type} {resource_id}")


async def create(resource_type: str, request: Request) -> Response:
    """The generic create of the toy app: echoes the body it read."""
    return Response(f"create {resource_type} " + (await request.body()).decode(), status_code=201)


def toy_app(*, hot: bool, before: list[BaseRoute] | None = None) -> FastAPI:
    """An app shaped like Carnet's: specific routes first, the generic ones in a router after."""
    app = FastAPI()
    specific = APIRouter()

    @specific.get("/Special/{special_id}")
    async def special(special_id: str) -> Response:
        return Response(f"special {special_id}")

    @specific.get("/Patient/$export")
    async def export() -> Response:
        return Response("export")

    @specific.post("/$operation")
    async def operation() -> Response:
        return Response("operation")

    generic = APIRouter()
    generic.add_api_route("/{resource_type}/_history", lambda resource_type: Response("history"))
    generic.add_api_route("/{resource_type}/{resource_id}", read, methods=["GET"])
    generic.add_api_route("/{resource_type}", create, methods=["POST"])
    app.router.routes.extend(before or [])
    app.include_router(specific, prefix="/fhir")
    app.include_router(generic, prefix="/fhir")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return Response("refused", status_code=403)

    if hot:
        installed = install(
            app.router.routes,
            [
                ("GET", "/fhir/{resource_type}/{resource_id}", read),
                ("POST", "/fhir/{resource_type}", create),
            ],
        )
        assert installed is not None
    return app


REQUESTS = [
    ("GET", "/fhir/Observation/abc-1.2"),
    ("GET", "/fhir/Special/abc"),
    ("GET", "/fhir/Patient/$export"),
    ("GET", "/fhir/Observation/_history"),
    ("GET", "/fhir/observation/abc"),
    ("GET", "/fhir/Observation/a%20b"),
    ("GET", "/fhir/Observation/refused"),
    ("HEAD", "/fhir/Observation/abc"),
    ("PUT", "/fhir/Observation/abc"),
    ("POST", "/fhir/Observation"),
    ("POST", "/fhir/$operation"),
    ("POST", "/fhir/"),
    ("GET", "/fhir/Observation/abc/extra"),
]


def answers(app: FastAPI) -> list[tuple[int, str]]:
    """Status and body of each request of REQUESTS."""
    with TestClient(app) as client:
        return [
            (r.status_code, r.text)
            for r in (client.request(method, path, content=b"{}") for method, path in REQUESTS)
        ]


def test_hot_routes_answer_every_request_as_fastapi_alone_does() -> None:
    """Reads, creates, shadowed, operation, history, HEAD and refused requests: the same answers."""
    assert answers(toy_app(hot=True)) == answers(toy_app(hot=False))


def test_hot_routes_take_only_the_requests_they_are_sure_of() -> None:
    """The hot read takes a plain read, not a path an earlier route serves or a non-FHIR id."""
    app = toy_app(hot=True)
    front = app.router.routes[0]
    assert isinstance(front, HotRoutes)

    def taken(method: str, path: str) -> Any:
        scope: Scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        match, child = front.matches(scope)
        return child.get("endpoint") if match is Match.FULL else None

    assert taken("GET", "/fhir/Observation/abc-1.2") is read
    assert taken("POST", "/fhir/Observation") is create
    assert taken("GET", "/fhir/Special/abc") is None  # GET /fhir/Special/{special_id} comes first
    assert taken("GET", "/fhir/Patient/$export") is None
    assert taken("GET", "/fhir/Observation/_history") is None
    assert taken("HEAD", "/fhir/Observation/abc") is None
    assert taken("POST", "/fhir/$operation") is None


class Opaque(BaseRoute):
    """A route whose template cannot be read."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Never matches (what it would take is unknown to the hot routes)."""
        return Match.NONE, {}


def test_nothing_is_installed_behind_a_route_that_cannot_be_read() -> None:
    """A preceding route without a template keeps the hot routes out: FastAPI routes everything."""
    app = toy_app(hot=False, before=[Opaque()])
    routes = app.router.routes
    assert install(routes, [("GET", "/fhir/{resource_type}/{resource_id}", read)]) is None
    assert not any(isinstance(route, HotRoutes) for route in routes)


def test_url_for_still_finds_the_routes_behind_the_hot_ones() -> None:
    """The hot routes name no URL: the app's url_path_for reaches the routes they stand in front of."""
    app = toy_app(hot=True)
    assert isinstance(app.router.routes[0], HotRoutes)
    assert app.url_path_for("special", special_id="x") == "/fhir/Special/x"
