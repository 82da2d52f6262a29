"""The API's guard: a rate limit per principal and a time budget per request.

For every request under ``/fhir`` and ``/journal``:

- the caller's bucket (:mod:`carnet.services.rate_limit`) gives up one token, or the request is
  answered ``429 Too Many Requests`` with ``Retry-After`` and an OperationOutcome (``throttled``)
  before any other work. The bucket is the verified token's principal (``kind:subject``): one
  principal holding several tokens shares one bucket. A request without a valid token uses the
  bucket of its client address, so guessing tokens is throttled too;
- the work runs within ``CARNET_REQUEST_SECONDS`` (:mod:`carnet.services.deadline`).

The portals have their own limit, on signing in (``carnet.web.login``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from carnet.api.auth import TokenVerifier
from carnet.api.fhir import fhir_response
from carnet.api.outcome import operation_outcome
from carnet.domain.errors import CarnetError
from carnet.offload import offload
from carnet.services import deadline
from carnet.services.rate_limit import RateLimiter

GUARDED = ("/fhir", "/journal")


async def bucket_of(scope: Scope, verifier: TokenVerifier) -> str:
    """The rate-limit key of a request: its verified principal, else its client address.

    A token not verified lately (an app's opaque token, looked up in the store) is verified
    off the event loop.
    """
    authorization = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    if authorization:
        principal = verifier.known(authorization)
        if principal is None:
            try:
                principal = await offload(verifier.verify, authorization)
            except CarnetError:
                principal = None
        if principal is not None:
            return f"principal:{principal.kind.value}:{principal.subject}"
    peer = scope.get("client")
    return f"address:{peer[0] if peer else 'unknown'}"


class GuardMiddleware:
    """ASGI middleware: rate-limit each API caller and give each API request its time budget."""

    def __init__(
        self, app: ASGIApp, *, verifier: TokenVerifier, limiter: RateLimiter, seconds: float
    ) -> None:
        self.app = app
        self._verifier = verifier
        self._limiter = limiter
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request with 429 if its bucket is empty; else serve it within its budget."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        if self._limiter.enabled:
            wait = self._limiter.take(await bucket_of(scope, self._verifier))
            if wait:
                outcome = operation_outcome(
                    "throttled",
                    f"Too many requests from this caller (CARNET_API_RATE_PER_MINUTE); retry in {wait} s.",
                )
                response = fhir_response(outcome, status=429, headers={"Retry-After": str(wait)})
                await response(scope, receive, send)
                return
        with deadline.within(self._seconds):
            await self.app(scope, receive, send)
