"""The SQL side of the feed registry (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from carnet.domain.errors import Conflict
from carnet.domain.feeds import Feed, FeedKind, FeedStatus
from carnet.store.connected import Connected, utc
from carnet.store.tables import feeds


def _feed(row: Any) -> Feed:
    return Feed(
        feed_id=row.feed_id,
        name=row.name,
        kind=FeedKind(row.kind),
        classes=frozenset(c for c in row.classes.split(",") if c),
        sender=row.sender,
        secret_hash=row.secret_hash,
        status=FeedStatus(row.status),
        created_at=utc(row.created_at),
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
            )
        )

    def feed(self, feed_id: str) -> Feed | None:
        """Return a registered feed, or None."""
        row = self._c.execute(select(feeds).where(feeds.c.feed_id == feed_id)).first()
        return None if row is None else _feed(row)

    def all_feeds(self) -> list[Feed]:
        """Return every registered feed, by id."""
        return [_feed(r) for r in self._c.execute(select(feeds).order_by(feeds.c.feed_id)).all()]

    def set_feed_status(self, feed_id: str, status: FeedStatus) -> bool:
        """Set a feed's status; return False if there is no such feed."""
        done = self._c.execute(update(feeds).where(feeds.c.feed_id == feed_id).values(status=status.value))
        return bool(done.rowcount)
