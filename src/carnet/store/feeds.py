"""The SQL side of the feeds (SQLite and PostgreSQL): the registry, messages taken, dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from carnet.domain.errors import Conflict
from carnet.domain.feeds import DeadLetter, Feed, FeedKind, FeedStatus, LetterStatus, StoredOffer
from carnet.store.connected import Connected, execute_plain, first_plain, utc
from carnet.store.tables import feed_dead_letters, feed_messages, feed_offers, feeds

# The statements of every feed message are built once; only their parameters change per call.
_FEED = select(feeds).where(feeds.c.feed_id == bindparam("f"))
_THIS_MESSAGE = (feed_messages.c.feed_id == bindparam("f"), feed_messages.c.control_id == bindparam("c"))
_MESSAGE_ACK = select(feed_messages.c.outcome, feed_messages.c.ack, feed_messages.c.digest).where(
    *_THIS_MESSAGE
)
#: Per dialect: one statement that remembers a message's answer, the last one winning (an
#: ``INSERT … ON CONFLICT … DO UPDATE``, which SQLite, PostgreSQL and Citus run alike: the
#: conflict is on the primary key, which holds the distribution column).
_REMEMBER_MESSAGE = {
    name: statement.on_conflict_do_update(
        index_elements=[feed_messages.c.feed_id, feed_messages.c.control_id],
        set_={
            "received_at": statement.excluded.received_at,
            "outcome": statement.excluded.outcome,
            "ack": statement.excluded.ack,
            # A new answer to the same message (the patient declined it) keeps its digest.
            "digest": func.coalesce(statement.excluded.digest, feed_messages.c.digest),
        },
    )
    for name, statement in (
        ("postgresql", pg_insert(feed_messages)),
        ("sqlite", sqlite_insert(feed_messages)),
    )
}


#: The columns of ``feeds`` in the table's order (that of a ``select(feeds)`` row).
_FEED_COLUMNS = tuple(feeds.c.keys())


def _feed(row: Sequence[Any]) -> Feed:
    """A feed from a row of ``select(feeds)`` (SQLAlchemy's or the driver's: the table's column order)."""
    values = dict(zip(_FEED_COLUMNS, row, strict=True))
    return Feed(
        feed_id=values["feed_id"],
        name=values["name"],
        kind=FeedKind(values["kind"]),
        classes=frozenset(c for c in values["classes"].split(",") if c),
        sender=values["sender"],
        secret_hash=values["secret_hash"],
        status=FeedStatus(values["status"]),
        created_at=utc(values["created_at"]),
        certificate=values["certificate"],
    )


class FeedSessionMixin(Connected):
    """The feed registry; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def add_feed(self, feed: Feed) -> None:
        """Register a feed.

        Raises:
            Conflict: a feed with this id is already registered.
        """
        if self.feed(feed.feed_id) is not None:
            raise Conflict(f"A feed {feed.feed_id!r} is already registered; choose another id.")
        self._c.execute(
            insert(feeds).values(
                feed_id=feed.feed_id,
                name=feed.name,
                kind=feed.kind.value,
                classes=",".join(sorted(feed.classes)),
                sender=feed.sender,
                secret_hash=feed.secret_hash,
                status=feed.status.value,
                created_at=feed.created_at,
                certificate=feed.certificate,
            )
        )

    def feed(self, feed_id: str) -> Feed | None:
        """Return a registered feed, or None."""
        row = first_plain(self._c, _FEED, {"f": feed_id})  # every feed message reads it
        return None if row is None else _feed(row)

    def all_feeds(self) -> list[Feed]:
        """Return every registered feed, by id."""
        return [_feed(r) for r in self._c.execute(select(feeds).order_by(feeds.c.feed_id)).all()]

    def feed_with_certificate(self, certificate: str) -> Feed | None:
        """Return the feed registered with this client certificate (SHA-256 hex), or None."""
        row = self._c.execute(select(feeds).where(feeds.c.certificate == certificate)).first()
        return None if row is None else _feed(row)

    def set_feed_status(self, feed_id: str, status: FeedStatus) -> bool:
        """Set a feed's status; return False if there is no such feed."""
        done = self._c.execute(update(feeds).where(feeds.c.feed_id == feed_id).values(status=status.value))
        return bool(done.rowcount)


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        letter_id=row.letter_id,
        feed_id=row.feed_id,
        control_id=row.control_id,
        message_type=row.message_type,
        received_at=utc(row.received_at),
        error_code=row.error_code,
        error=row.error,
        status=LetterStatus(row.status),
        attempts=row.attempts,
        sealed=bytes(row.sealed),
    )


class FeedMessageSessionMixin(Connected):
    """Messages taken and dead letters; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def message_ack(self, feed_id: str, control_id: str) -> tuple[str, bytes, bytes | None] | None:
        """Return the outcome, ACK and content digest of a message already taken (by feed and MSH-10), or None."""
        row = first_plain(self._c, _MESSAGE_ACK, {"f": feed_id, "c": control_id})
        return (
            None if row is None else (str(row[0]), bytes(row[1]), None if row[2] is None else bytes(row[2]))
        )

    def record_message(
        self,
        feed_id: str,
        control_id: str,
        outcome: str,
        ack: bytes,
        now: datetime,
        digest: bytes | None = None,
    ) -> None:
        """Remember the answer to a message (the last answer wins; without a digest, the one kept stays)."""
        connection = self._c
        execute_plain(  # once per feed message
            connection,
            _REMEMBER_MESSAGE[connection.dialect.name],
            {
                "feed_id": feed_id,
                "control_id": control_id,
                "received_at": now,
                "outcome": outcome,
                "ack": ack,
                "digest": digest,
            },
        )

    def add_letter(self, letter: DeadLetter) -> None:
        """Keep a dead letter."""
        self._c.execute(
            insert(feed_dead_letters).values(
                letter_id=letter.letter_id,
                feed_id=letter.feed_id,
                control_id=letter.control_id,
                message_type=letter.message_type,
                received_at=letter.received_at,
                error_code=letter.error_code,
                error=letter.error[:300],
                status=letter.status.value,
                attempts=letter.attempts,
                sealed=letter.sealed,
            )
        )

    def letters(self, *, status: LetterStatus | None, limit: int) -> list[DeadLetter]:
        """Return dead letters, oldest first (only those of ``status`` if given)."""
        query = select(feed_dead_letters).order_by(
            feed_dead_letters.c.received_at, feed_dead_letters.c.letter_id
        )
        if status is not None:
            query = query.where(feed_dead_letters.c.status == status.value)
        return [_letter(r) for r in self._c.execute(query.limit(limit)).all()]

    def letter(self, letter_id: str) -> DeadLetter | None:
        """Return one dead letter, or None."""
        row = self._c.execute(
            select(feed_dead_letters).where(feed_dead_letters.c.letter_id == letter_id)
        ).first()
        return None if row is None else _letter(row)

    def update_letter(self, letter_id: str, *, status: LetterStatus, error_code: str, error: str) -> None:
        """Record a replay's result (one more attempt)."""
        self._c.execute(
            update(feed_dead_letters)
            .where(feed_dead_letters.c.letter_id == letter_id)
            .values(
                status=status.value,
                error_code=error_code,
                error=error[:300],
                attempts=feed_dead_letters.c.attempts + 1,
            )
        )


class FeedOfferSessionMixin(Connected):
    """The feed inbox; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def add_offer(self, offer: StoredOffer) -> None:
        """Keep a document offered to a patient."""
        self._c.execute(
            insert(feed_offers).values(
                patient_id=offer.patient_id,
                offer_id=offer.offer_id,
                feed_id=offer.feed_id,
                class_code=offer.class_code,
                received_at=offer.received_at,
                sealed=offer.sealed,
            )
        )

    def offers(self, patient_id: str) -> list[StoredOffer]:
        """Return a record's pending offers, oldest first."""
        rows = self._c.execute(
            select(feed_offers)
            .where(feed_offers.c.patient_id == patient_id)
            .order_by(feed_offers.c.received_at, feed_offers.c.offer_id)
        ).all()
        return [_offer(r) for r in rows]

    def take_offer(self, patient_id: str, offer_id: str) -> StoredOffer | None:
        """Remove and return one pending offer of a record (None if there is none)."""
        where = (feed_offers.c.patient_id == patient_id, feed_offers.c.offer_id == offer_id)
        row = self._c.execute(select(feed_offers).where(*where)).first()
        if row is None:
            return None
        self._c.execute(delete(feed_offers).where(*where))
        return _offer(row)


def _offer(row: Any) -> StoredOffer:
    return StoredOffer(
        patient_id=row.patient_id,
        offer_id=row.offer_id,
        feed_id=row.feed_id,
        class_code=row.class_code,
        received_at=utc(row.received_at),
        sealed=bytes(row.sealed),
    )
