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

from starlette.responses import Response
from starlette.types import Scope

from carnet.api.auth import TokenVerifier
from carnet.api.fhir import fhir_response
from carnet.api.outcome import operation_outcome
from carnet.domain.errors import CarnetError
from carnet.offload import offload
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


class Guard:
    """The rate limit of API callers and the time budget of API requests."""

    def __init__(self, *, verifier: TokenVerifier, limiter: RateLimiter, seconds: float) -> None:
        self._verifier = verifier
        self._limiter = limiter
        self.seconds = seconds

    async def refusal(self, scope: Scope) -> Response | None:
        """The 429 answer to a request whose bucket is empty, or None to serve it (within :attr:`seconds`)."""
        if not self._limiter.enabled:
            return None
        wait = self._limiter.take(await bucket_of(scope, self._verifier))
        if not wait:
            return None
        outcome = operation_outcome(
            "throttled",
            f"Too many requests from this caller (CARNET_API_RATE_PER_MINUTE); retry in {wait} s.",
        )
        return fhir_response(outcome, status=429, headers={"Retry-After": str(wait)})
