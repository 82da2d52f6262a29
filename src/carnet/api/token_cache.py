"""A cache of verified bearer tokens: each token's signature is checked once, not at every request.

A client sends the same token with every request until it expires; verifying it (an Ed25519 or
RSA signature, four JSON decodes) cost ~4 % of a single read, twice (the rate limiter and the
route each asked). :class:`VerifiedTokens` keeps, per exact token string, the principal it
verified to and the token's ``exp``. A cached token is served only while

- its ``exp`` has not passed (the same instant the first verification accepted up to), and
- it was verified less than ``ttl`` seconds ago (60 s by default), so a change of the issuer's
  keys (a JWKS file reloaded by a restart) or of the verifier's settings is picked up within
  that time in any case.

Refusals are never cached: a bad token is verified (and refused) each time. The table is bounded
(``size`` entries, least recently used dropped first), so a flood of distinct tokens costs a
fixed amount of memory. It is per process, like the rate limiter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from carnet.domain.principal import Principal
from carnet.services.ttl_cache import TTLCache

DEFAULT_TTL_SECONDS = 60.0
DEFAULT_SIZE = 10_000


class VerifiedTokens:
    """Principals of tokens verified recently, by token string; thread-safe."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache: TTLCache[str, Principal] = TTLCache(ttl=ttl, size=size, clock=clock)

    def get(self, token: str) -> Principal | None:
        """The principal a token verified to, if it was verified within ``ttl`` and has not expired."""
        return self._cache.get(token)

    def put(self, token: str, principal: Principal, expires: float) -> None:
        """Remember a token that verified, with its ``exp`` (seconds since the epoch)."""
        self._cache.put(token, principal, deadline=expires)

    def __len__(self) -> int:
        """How many tokens are remembered (expired ones included until looked up or pushed out)."""
        return len(self._cache)
