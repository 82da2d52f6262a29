"""The SQL side of a professional's message notices (``carnet.services.message_inbox``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update

from carnet.services.message_inbox import MessageNotice
from carnet.store.connected import Connected, utc
from carnet.store.tables import message_notices


class MessageNoticeSessionMixin(Connected):
    """The message-notice methods of ``SQLStoreSession`` (``MessageNoticeStore``)."""

    def add_message_notice(self, notice: MessageNotice) -> None:
        """Insert one notice."""
        self._c.execute(
            insert(message_notices).values(
                patient_id=notice.patient_id,
                notice_id=notice.notice_id,
                recipient_hash=notice.recipient_hash,
                created_at=utc(notice.created_at),
                sealed=notice.sealed,
                read_at=None,
            )
        )

    def message_notices(self, recipient_hash: bytes, limit: int) -> list[MessageNotice]:
        """A professional's notices, newest first."""
        rows = self._c.execute(
            select(
                message_notices.c.patient_id,
                message_notices.c.notice_id,
                message_notices.c.created_at,
                message_notices.c.sealed,
                message_notices.c.read_at,
            )
            .where(message_notices.c.recipient_hash == recipient_hash)
            .order_by(message_notices.c.created_at.desc(), message_notices.c.notice_id)
            .limit(limit)
        ).all()
        return [
            MessageNotice(
                patient_id=row[0],
                notice_id=row[1],
                recipient_hash=recipient_hash,
                created_at=utc(row[2]),
                sealed=bytes(row[3]),
                read_at=utc(row[4]) if row[4] is not None else None,
            )
            for row in rows
        ]

    def mark_message_notices_read(self, recipient_hash: bytes, patient_id: str, now: datetime) -> int:
        """Mark a professional's unread notices of one record read; return how many."""
        result = self._c.execute(
            update(message_notices)
            .where(
                message_notices.c.patient_id == patient_id,
                message_notices.c.recipient_hash == recipient_hash,
                message_notices.c.read_at.is_(None),
            )
            .values(read_at=utc(now))
        )
        return int(result.rowcount or 0)
