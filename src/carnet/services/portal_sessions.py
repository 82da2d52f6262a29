"""Signing out of the portals for good: a session ended is refused even if its cookie was copied.

A portal session (``carnet.web.session``) is a signed cookie carrying a random session id. On
sign-out the SHA-256 of that id is stored; a cookie whose id was ended is treated as signed out.
Ended ids are pruned once older than a session's lifetime, when no cookie could still carry them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from carnet.services.ports import Store

#: How long a portal session lasts (the cookie's ``max_age``).
SESSION_LIFETIME = timedelta(hours=8)


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class PortalSessions:
    """The portal sessions that were signed out."""

    def __init__(
        self, *, store: Store, clock: Callable[[], datetime], lifetime: timedelta = SESSION_LIFETIME
    ) -> None:
        self._store = store
        self._clock = clock
        self._lifetime = lifetime

    def end(self, sid: str) -> None:
        """Sign a session out everywhere its cookie may be; prune the long-expired ones."""
        now = self._clock()
        with self._store.session(write=True) as session:
            session.end_portal_session(_hash(sid), now)
            session.forget_portal_sessions(now - self._lifetime - timedelta(hours=1))

    def ended(self, sid: str) -> bool:
        """Whether a session was signed out."""
        with self._store.session() as session:
            return session.portal_session_ended(_hash(sid))
