"""The SQL side of notifications: the outbox and the sealed preferences (SQLite and PostgreSQL).

Claiming is a compare-and-set on ``(status, attempts)``: every claim bumps ``attempts``, so a
worker that read a row before another claimed it updates nothing and moves on. This needs no
``SELECT … FOR UPDATE SKIP LOCKED`` and behaves the same on SQLite (one writer at a time) and
on PostgreSQL (the second UPDATE waits for the first, then finds the row changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.services.notifications import (
    MAX_ATTEMPTS,
    OutboxMessage,
    OutboxStatus,
    backoff,
)
from carnet.store.connected import Connected, first_plain, utc
from carnet.store.tables import notification_preferences, outbox

_COLUMNS = (
    outbox.c.patient_id,
    outbox.c.message_id,
    outbox.c.created_at,
    outbox.c.sealed,
    outbox.c.status,
    outbox.c.attempts,
    outbox.c.next_attempt_at,
    outbox.c.delivered_at,
    outbox.c.last_error,
    outbox.c.read_at,
)
_DUE = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)
#: Statuses from which a message may still become delivered (a late acceptance still counts).
_UNDELIVERED = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value, OutboxStatus.FAILED.value)
_ERROR_SIZE = 200
#: A record's sealed preferences: read for every notice not remembered (built once, run plain).
_PREFERENCES = select(notification_preferences.c.sealed).where(
    notification_preferences.c.patient_id == bindparam("p")
)


def _message(row: Sequence[Any]) -> OutboxMessage:
    return OutboxMessage(
        patient_id=row[0],
        message_id=row[1],
        created_at=utc(row[2]),
        sealed=row[3],
        status=OutboxStatus(row[4]),
        attempts=int(row[5]),
        next_attempt_at=utc(row[6]),
        delivered_at=utc(row[7]) if row[7] is not None else None,
        last_error=row[8],
        read_at=utc(row[9]) if row[9] is not None else None,
    )


class OutboxSessionMixin(Connected):
    """The outbox and preference methods of ``SQLStoreSession`` (``NotificationStore``)."""

    def add_outbox(self, message: OutboxMessage) -> None:
        """Insert one outbox message (with the transaction's next bulk insert: ``Connected._buffer``).

        A new message's id is new, so its row cannot conflict; it is written before anything
        reads the outbox in this transaction, and before the transaction commits.
        """
        self._buffer(
            outbox,
            [
                {
                    "patient_id": message.patient_id,
                    "message_id": message.message_id,
                    "created_at": utc(message.created_at),
                    "sealed": message.sealed,
                    "status": message.status.value,
                    "attempts": message.attempts,
                    "next_attempt_at": utc(message.next_attempt_at),
                    "delivered_at": utc(message.delivered_at) if message.delivered_at else None,
                    "last_error": message.last_error,
                }
            ],
        )

    def claim_outbox(self, now: datetime, *, lease: timedelta, limit: int) -> list[OutboxMessage]:
        """Claim up to ``limit`` due messages, each ``sending`` until ``now + lease``; count an attempt.

        A message whose claims kept expiring (a worker crashing on it) is given up as ``failed``
        once it reached ``MAX_ATTEMPTS``.
        """
        now = utc(now)
        rows = self._c.execute(
            select(*_COLUMNS)
            .where(outbox.c.status.in_(_DUE), outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.patient_id, outbox.c.message_id)
            .limit(limit)
        ).all()
        claimed: list[OutboxMessage] = []
        for row in rows:
            message = _message(row)
            same = (
                outbox.c.patient_id == message.patient_id,
                outbox.c.message_id == message.message_id,
                outbox.c.status == message.status.value,
                outbox.c.attempts == message.attempts,
            )
            if message.attempts >= MAX_ATTEMPTS:
                self._c.execute(
                    update(outbox)
                    .where(*same)
                    .values(
                        status=OutboxStatus.FAILED.value,
                        last_error="Delivery was interrupted too many times; the message was given up.",
                    )
                )
                continue
            until = now + lease
            result = self._c.execute(
                update(outbox)
                .where(*same)
                .values(
                    status=OutboxStatus.SENDING.value, attempts=message.attempts + 1, next_attempt_at=until
                )
            )
            if result.rowcount == 1:
                claimed.append(
                    OutboxMessage(
                        patient_id=message.patient_id,
                        message_id=message.message_id,
                        created_at=message.created_at,
                        sealed=message.sealed,
                        status=OutboxStatus.SENDING,
                        attempts=message.attempts + 1,
                        next_attempt_at=until,
                        last_error=message.last_error,
                    )
                )
        return claimed

    def mark_delivered(self, patient_id: str, message_id: str, now: datetime) -> None:
        """Record that the mail server accepted a message."""
        self._c.execute(
            update(outbox)
            .where(
                outbox.c.patient_id == patient_id,
                outbox.c.message_id == message_id,
                outbox.c.status.in_(_UNDELIVERED),
            )
            .values(status=OutboxStatus.DELIVERED.value, delivered_at=utc(now), last_error=None)
        )

    def retry_outbox(
        self, patient_id: str, message_id: str, now: datetime, error: str, *, permanent: bool = False
    ) -> OutboxStatus:
        """Schedule the next attempt after ``backoff(attempts)``; ``failed`` if permanent or out of attempts.

        A message no longer ``sending`` (another worker finished it) is left as it is.
        """
        where = (outbox.c.patient_id == patient_id, outbox.c.message_id == message_id)
        row = self._c.execute(select(outbox.c.status, outbox.c.attempts).where(*where)).first()
        if row is None:
            return OutboxStatus.DROPPED
        status, attempts = OutboxStatus(row[0]), int(row[1])
        if status is not OutboxStatus.SENDING:
            return status
        given_up = permanent or attempts >= MAX_ATTEMPTS
        new_status = OutboxStatus.FAILED if given_up else OutboxStatus.PENDING
        self._c.execute(
            update(outbox)
            .where(*where, outbox.c.status == OutboxStatus.SENDING.value, outbox.c.attempts == attempts)
            .values(
                status=new_status.value,
                next_attempt_at=utc(now) + backoff(attempts),
                last_error=error[:_ERROR_SIZE],
            )
        )
        return new_status

    def drop_outbox(self, patient_id: str, message_id: str, reason: str) -> None:
        """Mark a message ``dropped``: it is kept but never sent."""
        self._c.execute(
            update(outbox)
            .where(
                outbox.c.patient_id == patient_id,
                outbox.c.message_id == message_id,
                outbox.c.status != OutboxStatus.DELIVERED.value,
            )
            .values(status=OutboxStatus.DROPPED.value, last_error=reason[:_ERROR_SIZE])
        )

    def outbox_messages(self, patient_id: str) -> list[OutboxMessage]:
        """Return a record's outbox messages, oldest first."""
        rows = self._c.execute(
            select(*_COLUMNS)
            .where(outbox.c.patient_id == patient_id)
            .order_by(outbox.c.created_at, outbox.c.message_id)
        ).all()
        return [_message(r) for r in rows]

    def mark_outbox_read(self, patient_id: str, message_ids: Sequence[str] | None, now: datetime) -> int:
        """Mark a record's notices read (``None``: all of them); return how many were unread."""
        query = update(outbox).where(outbox.c.patient_id == patient_id, outbox.c.read_at.is_(None))
        if message_ids is not None:
            query = query.where(outbox.c.message_id.in_(list(message_ids)))
        return int(self._c.execute(query.values(read_at=utc(now))).rowcount or 0)

    def count_outbox(self) -> dict[OutboxStatus, int]:
        """Count the outbox messages of every status (zero included)."""
        counts = dict.fromkeys(OutboxStatus, 0)
        rows = self._c.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
        for status, count in rows:
            counts[OutboxStatus(status)] = int(count)
        return counts

    def get_preferences(self, patient_id: str) -> bytes | None:
        """Return a record's sealed preferences."""
        row = first_plain(self._c, _PREFERENCES, {"p": patient_id})
        return None if row is None else bytes(row[0])

    def put_preferences(self, patient_id: str, sealed: bytes, now: datetime) -> None:
        """Store a record's sealed preferences, replacing earlier ones."""
        values = {"sealed": sealed, "updated_at": utc(now)}
        result = self._c.execute(
            update(notification_preferences)
            .where(notification_preferences.c.patient_id == patient_id)
            .values(**values)
        )
        if result.rowcount == 0:
            try:
                self._c.execute(insert(notification_preferences).values(patient_id=patient_id, **values))
            except IntegrityError:
                raise Conflict("The notification preferences were changed concurrently; retry.") from None
