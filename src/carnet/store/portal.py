"""The SQL side of the portals' sign-out: the sessions that were ended (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.store.connected import Connected
from carnet.store.tables import portal_sessions_ended


class PortalSessionMixin(Connected):
    """Ended portal sessions; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def end_portal_session(self, sid_hash: str, ended_at: datetime) -> None:
        """Record that a session ended (ending it twice is harmless).

        Raises:
            Conflict: the same session was ended at the same moment by another request.
        """
        if self.portal_session_ended(sid_hash):
            return
        try:
            self._c.execute(insert(portal_sessions_ended).values(sid_hash=sid_hash, ended_at=ended_at))
        except IntegrityError:
            raise Conflict("This session was signed out at the same moment; it is ended.") from None

    def portal_session_ended(self, sid_hash: str) -> bool:
        """Whether a session was ended."""
        found = self._c.execute(
            select(portal_sessions_ended.c.sid_hash).where(portal_sessions_ended.c.sid_hash == sid_hash)
        ).first()
        return found is not None

    def forget_portal_sessions(self, before: datetime) -> int:
        """Drop the ended sessions older than ``before`` (their cookies have expired anyway)."""
        done = self._c.execute(delete(portal_sessions_ended).where(portal_sessions_ended.c.ended_at < before))
        return int(done.rowcount or 0)
