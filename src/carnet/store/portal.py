"""The SQL side of the portal sessions (SQLite and PostgreSQL): sealed rows found by id hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update

from carnet.store.connected import Connected
from carnet.store.tables import portal_sessions


class PortalSessionMixin(Connected):
    """Portal sessions; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def save_portal_session(self, sid_hash: str, sealed: bytes, expires_at: datetime | None) -> None:
        """Store a session's sealed content: a new row with ``expires_at``, or (None) an update.

        An update of a row that is gone (signed out, expired and pruned meanwhile) does nothing.
        """
        if expires_at is None:
            self._c.execute(
                update(portal_sessions).where(portal_sessions.c.sid_hash == sid_hash).values(sealed=sealed)
            )
            return
        self._c.execute(
            insert(portal_sessions).values(sid_hash=sid_hash, sealed=sealed, expires_at=expires_at)
        )

    def load_portal_session(self, sid_hash: str, now: datetime) -> bytes | None:
        """Return a session's sealed content, or None if there is no such session or it expired."""
        row = self._c.execute(
            select(portal_sessions.c.sealed).where(
                portal_sessions.c.sid_hash == sid_hash, portal_sessions.c.expires_at > now
            )
        ).first()
        return bytes(row.sealed) if row is not None else None

    def delete_portal_session(self, sid_hash: str) -> None:
        """Delete a session (deleting it twice is harmless)."""
        self._c.execute(delete(portal_sessions).where(portal_sessions.c.sid_hash == sid_hash))

    def forget_portal_sessions(self, now: datetime) -> int:
        """Delete the sessions expired at ``now``; return how many."""
        done = self._c.execute(delete(portal_sessions).where(portal_sessions.c.expires_at <= now))
        return int(done.rowcount or 0)
