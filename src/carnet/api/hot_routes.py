"""The two hottest FHIR interactions, a read and a create, routed without FastAPI's route walk.

FastAPI walks its included routers in order for every request: a single
``GET /fhir/Observation/{id}`` crossed some fifty routes (each through FastAPI's per-router
bookkeeping in the ASGI scope) and then solved the endpoint's parameters — ~8 % of a read's
CPU, more than the policy and the sealing together. :class:`HotRoutes`, placed first in the
app's routes, takes a request only when the full walk would have given it to the same endpoint,
and calls that endpoint directly (as Starlette's ``request_response`` does: the app's exception
handlers apply as before). Every other request falls through to FastAPI's routing, unchanged.

A request is taken only when

1. its method is exactly the hot route's (``GET`` for the read, ``POST`` for the create; a
   ``HEAD`` is left to FastAPI);
2. its path matches the hot route's template with stricter parameters: ``resource_type`` a FHIR
   resource type (``[A-Z][A-Za-z]{1,63}``) and ``resource_id`` a FHIR id
   (``[A-Za-z0-9\\-.]{1,64}``), so an operation (``$everything``), ``_history``, ``_search``,
   ``metadata`` or ``.well-known`` never matches; and
3. no route **preceding** the hot one in the app's order that answers the same method matches
   the path. Those routes are found when the app is built, by comparing their templates with the
   hot one segment by segment (e.g. ``GET /fhir/ResearchStudy/{study_id}`` precedes the read),
   and their own patterns are checked at each request.

A route whose template cannot be read that way keeps the hot route out (:func:`install` then
installs nothing): correctness never depends on this module being in place.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette._exception_handler import wrap_app_handling_exceptions
from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

RESOURCE_TYPE = r"[A-Z][A-Za-z]{1,63}"
RESOURCE_ID = r"[A-Za-z0-9\-.]{1,64}"
_PARAMETER = re.compile(r"^\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?\}$")
#: The strict pattern of each hot template's parameter, by name.
_STRICT = {"resource_type": RESOURCE_TYPE, "resource_id": RESOURCE_ID}

Endpoint = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    """One hot interaction: its method, its template, its endpoint, the routes that may shadow it."""

    method: str
    path: re.Pattern[str]
    endpoint: Endpoint
    #: Patterns of the preceding routes (same method) whose templates overlap this one's.
    shadows: tuple[re.Pattern[str], ...]


class HotRoutes(BaseRoute):
    """A route taking only the hot interactions' requests, ahead of FastAPI's routing."""

    def __init__(self, hot: Iterable[HotRoute]) -> None:
        self.hot = tuple(hot)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """FULL for a request a hot route takes (see the module docstring), else NONE."""
        if scope["type"] != "http":
            return Match.NONE, {}
        method = scope["method"]
        path = get_route_path(scope)
        for hot in self.hot:
            if hot.method != method:
                continue
            found = hot.path.fullmatch(path)
            if found is None or any(shadow.fullmatch(path) for shadow in hot.shadows):
                continue
            return Match.FULL, {"endpoint": hot.endpoint, "path_params": found.groupdict()}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """Name no URL: the endpoints keep their own routes, which ``url_for`` finds after this one.

        Raises:
            NoMatchFound: always.
        """
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Call the endpoint with the path's parameters and the request; send its response."""
        request = Request(scope, receive, send)
        endpoint: Endpoint = scope["endpoint"]
        params: dict[str, Any] = scope["path_params"]

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await endpoint(request=request, **params)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(app, request)(scope, receive, send)


def routes_in_order(routes: Iterable[Any]) -> Iterator[Any]:
    """The app's routes in the order FastAPI tries them, included routers flattened."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        else:
            yield route


def _may_overlap(hot_segments: list[str], other: re.Pattern[str], other_template: str) -> bool:
    """Whether a path could match both templates (conservative: True when unsure)."""
    theirs_segments = other_template.split("/")
    if ".*" in other.pattern or len(theirs_segments) != len(hot_segments):
        return ".*" in other.pattern  # a path parameter spans segments; else never the same length
    for mine, theirs in zip(hot_segments, theirs_segments, strict=True):
        mine_param = _PARAMETER.match(mine)
        if "{" in theirs:
            continue  # a parameter of theirs may take anything in the segment
        if mine_param is None:
            if mine != theirs:
                return False
        elif re.fullmatch(_STRICT[mine_param.group(1)], theirs) is None:
            return False
    return True


def hot_route(routes: list[Any], method: str, template: str, endpoint: Endpoint) -> HotRoute | None:
    """Describe the hot route ``method template`` served by ``endpoint``, or None if it cannot be.

    None when the endpoint is not found at that template, or a preceding route's template
    cannot be read.
    """
    segments = template.split("/")
    shadows: list[re.Pattern[str]] = []
    for route in routes_in_order(routes):
        path_format = getattr(route, "path_format", None)
        path_regex = getattr(route, "path_regex", None)
        methods = getattr(route, "methods", None)
        if not isinstance(path_format, str) or not isinstance(path_regex, re.Pattern):
            return None  # a route we cannot read: it might take anything
        if (
            getattr(route, "endpoint", None) is endpoint
            and path_format == template
            and method in (methods or ())
        ):
            pattern = "/".join(
                f"(?P<{found.group(1)}>{_STRICT[found.group(1)]})"
                if (found := _PARAMETER.match(segment)) is not None
                else re.escape(segment)
                for segment in segments
            )
            return HotRoute(method, re.compile(pattern), endpoint, tuple(shadows))
        if methods is not None and method not in methods:
            continue  # a route without methods (a mount) answers every method
        if _may_overlap(segments, path_regex, path_format):
            shadows.append(path_regex)
    return None


def install(routes: list[Any], hot: Iterable[tuple[str, str, Endpoint]]) -> HotRoutes | None:
    """Put a :class:`HotRoutes` first in ``routes`` for the ``(method, template, endpoint)`` given.

    Installs nothing when one of them cannot be described (:func:`hot_route`).
    """
    described = [hot_route(routes, method, template, endpoint) for method, template, endpoint in hot]
    if any(found is None for found in described):
        return None
    front = HotRoutes(found for found in described if found is not None)
    routes.insert(0, front)
    return front
