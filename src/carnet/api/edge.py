"""The server's edge: one ASGI layer every request crosses, and a short way in for the hot ones.

Every HTTP request crosses :class:`EdgeMiddleware` once. In this order, it

1. makes the request's client the journal's caller (:mod:`carnet.services.caller`): the FHIR
   API's under ``/fhir`` and ``/journal``, the portals' elsewhere, with the client's address;
2. logs the request's method, path, status and time (paths only: a query string can carry
   identifiers and never reaches the logs), and sends the obligations of the call's decision
   (``request.state.records``) back in ``X-Carnet-Obligations`` (a portal shows the mode banner);
3. under ``/fhir``, answers a request for FHIR XML with 406 (:mod:`carnet.api.formats`);
4. under ``/fhir`` and ``/journal``, answers a caller over its rate with 429 and gives the
   request its time budget (:mod:`carnet.api.guard`).

These were four middlewares; each layer a request crosses costs an await, a closure around
``send`` and a context of its own, and one layer does the same work for less.

A request that a hot route takes (:mod:`carnet.api.hot_routes`: the single read and create)
and that carries no cookie then goes straight to its endpoint, through the app's own exception
handlers (Starlette's ``ExceptionMiddleware`` with the same handlers as the full stack's), past
what it would only have crossed: the portals' session (opened from a cookie only), their
security headers and body limit (portal paths only: a hot route's path is under ``/fhir``),
FastAPI's exit stack (it closes uploaded form files: a read or a create has none) and the walk
of the routes. Every other request goes down the whole stack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carnet.api import formats
from carnet.api.guard import GUARDED, Guard
from carnet.api.hot_routes import HotRoutes
from carnet.services import deadline
from carnet.services.caller import FHIR_CLIENT, PORTAL_CLIENT, Caller, calling
from carnet.web.headers import is_web_path

log = logging.getLogger("carnet.api")
#: Obligations the server itself honours (the journal, the DPO's view of it): not shown to the client.
SERVER_SIDE = frozenset({"audit", "withhold_content"})


def shown_obligations(state: Mapping[str, Any]) -> str:
    """The ``X-Carnet-Obligations`` value of a request's decision (empty when there is none to show)."""
    records = state.get("records")
    return ", ".join(
        sorted(o.value for o in getattr(records, "obligations", ()) if o.value not in SERVER_SIDE)
    )


class EdgeMiddleware:
    """ASGI middleware: caller, access log, FHIR XML refusal, rate limit and time budget; the hot lane."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: Guard,
        routes: Sequence[Any] = (),
        handlers: Mapping[Any, Any] | None = None,
    ) -> None:
        """``routes``: the app's routes; ``handlers``: its exception handlers (FastAPI's table).

        The stack is built at the app's first request: the hot lane serves the hot routes placed
        in front of ``routes`` then (:func:`carnet.api.hot_routes.install`); without them, every
        request goes down the whole stack.
        """
        self.app = app
        self._guard = guard
        hot = routes[0] if routes and isinstance(routes[0], HotRoutes) else None
        self._hot = hot
        # FastAPI gives its ExceptionMiddleware every handler but the one of 500 / Exception
        # (ServerErrorMiddleware's, above this layer): the hot lane's gets the same ones.
        kept = {k: v for k, v in (handlers or {}).items() if k not in (500, Exception)}
        self._lane: ASGIApp | None = (
            ExceptionMiddleware(hot.handle, handlers=kept)
            if hot is not None and not any(is_web_path(route.path.pattern) for route in hot.hot)
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request as the module docstring says."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        api = path.startswith(GUARDED)
        peer = scope.get("client")
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                shown = shown_obligations(state)
                if shown:
                    MutableHeaders(scope=message)["X-Carnet-Obligations"] = shown
            await send(message)

        with calling(
            Caller(client=FHIR_CLIENT if api else PORTAL_CLIENT, address=str(peer[0]) if peer else None)
        ):
            try:
                if api:
                    await self._api(scope, receive, sending, path)
                else:
                    await self.app(scope, receive, sending)
            finally:
                log.info(
                    "%s %s %s %.1fms",
                    scope.get("method", ""),
                    path,
                    status,
                    1000 * (time.perf_counter() - started),
                )

    async def _api(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Serve a request of the FHIR API or the journal: refusals first, then within its budget."""
        refused = formats.refusal(scope) if path.startswith("/fhir") else None
        if refused is None:
            refused = await self._guard.refusal(scope)
        if refused is not None:
            await refused(scope, receive, send)
            return
        with deadline.within(self._guard.seconds):
            if self._lane is not None and self._takes(scope):
                await self._lane(scope, receive, send)
            else:
                await self.app(scope, receive, send)

    def _takes(self, scope: Scope) -> bool:
        """Whether the hot lane serves this request (a hot route's, without a cookie); sets its endpoint."""
        if self._hot is None or any(name == b"cookie" for name, _ in scope["headers"]):
            return False
        match, child = self._hot.matches(scope)
        if match is not Match.FULL:
            return False
        scope.update(child)
        return True
