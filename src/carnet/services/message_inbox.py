"""A professional's side of secure messaging: the notices of the messages patients wrote to them.

When a patient (or their representative) writes to a professional, :func:`note_message` adds,
in the message's own transaction, a notice for the professional: a row of ``message_notices``
found by a keyed hash of their idNat_PS (the global index key, never the id in clear), holding
who wrote and which message sealed with the record's key; and an e-mail through the outbox to
the professional's directory address, if they have one, that says only that a message is
waiting (no name, no content: ``NoticeEvent.PATIENT_MESSAGE``). The professional's inbox
(:meth:`MessageInbox.inbox`) lists the records with messages for them and the unread count;
opening a conversation marks its notices read (:meth:`MessageInbox.mark_read`).

Sealed payload (``message_notices.sealed``, AAD = ``associated_data(patient_id,
"message_notices", notice_id)``)::

    {"v": 1, "from": <display of the writer>, "message": <Communication id>}
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

import orjson

from carnet.domain.envelope import associated_data
from carnet.domain.errors import CarnetError, RecordShredded
from carnet.domain.principal import ActorKind, Principal
from carnet.services.notifications import Notice, NoticeEvent, NotificationStore, Notifier
from carnet.services.ports import StoreSession
from carnet.services.vault import INDEX, Vault

__all__ = ["InboxThread", "MessageInbox", "MessageNotice", "MessageNoticeStore"]

_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageNotice:
    """One stored notice: a message a patient wrote to a professional."""

    patient_id: str
    notice_id: str
    recipient_hash: bytes
    created_at: datetime
    sealed: bytes
    read_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxThread:
    """The messages of one record waiting in a professional's inbox."""

    patient_id: str
    writer: str
    last: datetime
    unread: int
    total: int


class MessageNoticeStore(StoreSession, Protocol):
    """The store transaction the professional's inbox needs."""

    def add_message_notice(self, notice: MessageNotice) -> None:
        """Insert one notice."""
        ...

    def message_notices(self, recipient_hash: bytes, limit: int) -> list[MessageNotice]:
        """A professional's notices, newest first."""
        ...

    def mark_message_notices_read(self, recipient_hash: bytes, patient_id: str, now: datetime) -> int:
        """Mark a professional's unread notices of one record read; return how many."""
        ...


class MessageNoticeStores(Protocol):
    """Opens transactions on a store that holds the notices."""

    def session(self, *, write: bool = False) -> AbstractContextManager[MessageNoticeStore]:
        """Open one transaction."""
        ...


class MessageInbox:
    """Writes a professional's message notices and reads their inbox."""

    def __init__(
        self, *, vault: Vault, notifier: Notifier, clock: Callable[[], datetime], new_id: Callable[[], str]
    ) -> None:
        self._vault = vault
        self._notifier = notifier
        self._clock = clock
        self._new_id = new_id

    def _recipient(self, session: StoreSession, idnps: str) -> bytes:
        index_key = self._vault.key(session, INDEX, self._clock())
        return self._vault.cipher.blind_index(index_key, "message-recipient", idnps)

    def note_message(
        self,
        session: StoreSession,
        key: bytes,
        principal: Principal,
        *,
        patient_id: str,
        idnps: str,
        writer: str,
        message_id: str,
        email: str | None,
    ) -> None:
        """In the message's write transaction: the professional's notice, and their e-mail if any."""
        now = self._clock()
        notice_id = self._new_id()
        payload = orjson.dumps({"v": _FORMAT, "from": writer, "message": message_id})
        store = _store(session)
        store.add_message_notice(
            MessageNotice(
                patient_id=patient_id,
                notice_id=notice_id,
                recipient_hash=self._recipient(session, idnps),
                created_at=now,
                sealed=self._vault.cipher.seal(key, payload, _aad(patient_id, notice_id)),
            )
        )
        notice = Notice(
            event=NoticeEvent.PATIENT_MESSAGE,
            patient_id=patient_id,
            at=now,
            actor_kind=principal.kind,
            actor_id=idnps,  # the recipient: the e-mail names nobody else
        )
        self._notifier.notify_address(_outbox(session), key, notice, to=email, language="fr")

    def inbox(
        self, store: MessageNoticeStores, principal: Principal, *, limit: int = 500
    ) -> list[InboxThread]:
        """The records with messages for this professional, newest first, each with its unread count."""
        if principal.kind is not ActorKind.PROFESSIONAL or not principal.professional_id:
            return []
        threads: dict[str, InboxThread] = {}
        with store.session() as session:
            recipient = self._recipient(session, principal.professional_id)
            for row in session.message_notices(recipient, limit):
                try:
                    key = self._vault.key(session, row.patient_id, self._clock())
                    data = orjson.loads(
                        self._vault.cipher.unseal(key, row.sealed, _aad(row.patient_id, row.notice_id))
                    )
                except (RecordShredded, CarnetError):
                    continue  # an erased record's notices tell nothing any more
                seen = threads.get(row.patient_id)
                unread = int(row.read_at is None)
                if seen is None:
                    threads[row.patient_id] = InboxThread(
                        patient_id=row.patient_id,
                        writer=str(data.get("from") or ""),
                        last=row.created_at,
                        unread=unread,
                        total=1,
                    )
                else:
                    threads[row.patient_id] = InboxThread(
                        patient_id=seen.patient_id,
                        writer=seen.writer,
                        last=seen.last,
                        unread=seen.unread + unread,
                        total=seen.total + 1,
                    )
        return sorted(threads.values(), key=lambda t: (t.unread > 0, t.last), reverse=True)

    def unread(self, store: MessageNoticeStores, principal: Principal) -> int:
        """How many messages wait unread for this professional."""
        return sum(t.unread for t in self.inbox(store, principal))

    def mark_read(self, store: MessageNoticeStores, principal: Principal, patient_id: str) -> int:
        """Mark this professional's notices of one record read (they opened the conversation)."""
        if principal.kind is not ActorKind.PROFESSIONAL or not principal.professional_id:
            return 0
        with store.session(write=True) as session:
            recipient = self._recipient(session, principal.professional_id)
            return session.mark_message_notices_read(recipient, patient_id, self._clock())


def _aad(patient_id: str, notice_id: str) -> bytes:
    return associated_data(patient_id, "message_notices", notice_id)


def _store(session: StoreSession) -> MessageNoticeStore:
    return cast(MessageNoticeStore, session)


def _outbox(session: StoreSession) -> NotificationStore:
    return cast(NotificationStore, session)
