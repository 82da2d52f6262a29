"""Portal sessions kept server-side; the browser holds only an opaque random id.

A portal session (``carnet.web.session``) is a cookie carrying 32 random bytes (URL-safe
base64) and nothing else: no name, no INS, no record id. The session's content (the signed-in
claims, the CSRF token, break-glass state) is a row of ``portal_sessions``:

- found by ``SHA-256("carnet-portal-session-id\\0" + id)``: the database never holds the id;
- sealed (AES-256-GCM, the row's hash as associated data) with the key
  ``SHA-256("carnet-portal-session-key\\0" + id)``: without the cookie, the row reads as noise,
  so a database copy reveals who was signed in to no one;
- valid :data:`SESSION_LIFETIME` from its creation (an absolute timeout, never extended);
- deleted at sign-out, so a copied cookie stops working at once; expired rows are pruned
  whenever a session is created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from carnet.domain.errors import EnvelopeError
from carnet.services.ports import Cipher, Store

#: How long a portal session lasts from its creation (the cookie's ``max_age``).
SESSION_LIFETIME = timedelta(hours=8)


def _lookup(sid: str) -> str:
    return hashlib.sha256(b"carnet-portal-session-id\0" + sid.encode()).hexdigest()


def _key(sid: str) -> bytes:
    # The id is 256 random bits: one hash, domain-separated from the lookup hash, is a sound KDF.
    return hashlib.sha256(b"carnet-portal-session-key\0" + sid.encode()).digest()


class PortalSessions:
    """The portal sessions: opened, saved and ended by their opaque id."""

    def __init__(
        self,
        *,
        store: Store,
        cipher: Cipher,
        clock: Callable[[], datetime],
        lifetime: timedelta = SESSION_LIFETIME,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock
        self._lifetime = lifetime

    def open(self, sid: str) -> dict[str, Any] | None:
        """Return the content of a live session, or None (unknown, ended, expired or unreadable)."""
        lookup = _lookup(sid)
        with self._store.session() as session:
            sealed = session.load_portal_session(lookup, self._clock())
        if sealed is None:
            return None
        try:
            content = json.loads(self._cipher.unseal(_key(sid), sealed, lookup.encode()))
        except (EnvelopeError, ValueError):
            return None
        return content if isinstance(content, dict) else None

    def save(self, sid: str, content: Mapping[str, Any], *, new: bool, replaces: str | None = None) -> None:
        """Seal and store a session's content: a ``new`` one (pruning expired sessions), or an update.

        ``replaces`` names a session this new one takes over from (signing in draws a new id),
        deleted in the same transaction.
        """
        lookup = _lookup(sid)
        sealed = self._cipher.seal(_key(sid), json.dumps(dict(content)).encode(), lookup.encode())
        now = self._clock()
        with self._store.session(write=True) as session:
            if replaces is not None:
                session.delete_portal_session(_lookup(replaces))
            if new:
                session.forget_portal_sessions(now)
            session.save_portal_session(lookup, sealed, now + self._lifetime if new else None)

    def end(self, sid: str) -> None:
        """End a session for good: its row is deleted, so its cookie, even copied, finds nothing."""
        with self._store.session(write=True) as session:
            session.delete_portal_session(_lookup(sid))
