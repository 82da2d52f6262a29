"""The registry of feeds: register, list, pause and resume them; know a feed when it writes.

The operator registers each feed (``carnet feeds add``); the routes that feeds write through
(the HL7 v2 endpoint and MLLP listener, ``$from-cda`` and ITI-105) ask :meth:`FeedRegistry.principal`
who the feed is. A feed that is not registered, or paused, writes nothing, whatever its token
says; the classes it may write are the registry's, never the token's.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from carnet.domain.errors import AccessDenied, InvalidRequest, NotFound, Unauthenticated
from carnet.domain.feeds import Feed, FeedKind, FeedStatus, check_feed_id, has_secret, hash_secret
from carnet.domain.matrix import CLASS_CODES
from carnet.domain.principal import ActorKind, Principal
from carnet.feeds.devices import measure_types
from carnet.services.ports import Store, StoreSession

Clock = Callable[[], datetime]
_FINGERPRINT = re.compile(r"[0-9a-f]{64}", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    """A feed just registered, with its secret (shown once, never stored)."""

    feed: Feed
    secret: str


class FeedRegistry:
    """The feeds registered with this server."""

    def __init__(self, *, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def add(
        self,
        feed_id: str,
        *,
        name: str,
        kind: FeedKind,
        classes: frozenset[str],
        sender: str | None = None,
        certificate: str | None = None,
    ) -> Registered:
        """Register a feed and make its secret.

        Raises:
            InvalidRequest: a bad id, an empty name or no classes. Conflict: the id is taken.
        """
        check_feed_id(feed_id)
        if not name.strip() or len(name) > 200:
            raise InvalidRequest("A feed needs a name of 1 to 200 characters (--name).")
        if not classes:
            raise InvalidRequest("A feed needs the DMP classCodes it may write (--classes 10,11).")
        allowed = measure_types() if kind is FeedKind.MEASURES else CLASS_CODES
        if not classes <= allowed or len(",".join(sorted(classes))) > 64:
            raise InvalidRequest(
                "A device feed (kind measures) is registered for measure types, the LOINC codes of the "
                "« Mesures de santé » profiles (59408-5 for oxygen saturation…); other feeds for DMP "
                "classCodes; at most 64 characters of them."
            )
        if certificate is not None and not _FINGERPRINT.fullmatch(certificate):
            raise InvalidRequest("A feed's certificate is the SHA-256 of its DER, 64 lower-case hex digits.")
        secret = secrets.token_urlsafe(32)
        feed = Feed(
            feed_id=feed_id,
            name=name.strip(),
            kind=kind,
            classes=classes,
            sender=sender.strip() if sender and sender.strip() else None,
            secret_hash=hash_secret(secret),
            status=FeedStatus.ACTIVE,
            created_at=self._clock(),
            certificate=certificate,
        )
        with self._store.session(write=True) as session:
            session.add_feed(feed)
        return Registered(feed=feed, secret=secret)

    def list(self) -> list[Feed]:
        """Return every registered feed."""
        with self._store.session() as session:
            return session.all_feeds()

    def get(self, feed_id: str) -> Feed:
        """Return one registered feed.

        Raises:
            NotFound: no such feed.
        """
        with self._store.session() as session:
            feed = session.feed(feed_id)
        if feed is None:
            raise NotFound(f"No feed {feed_id[:64]!r} is registered (carnet feeds list).")
        return feed

    def set_status(self, feed_id: str, status: FeedStatus) -> Feed:
        """Pause or resume a feed.

        Raises:
            NotFound: no such feed.
        """
        with self._store.session(write=True) as session:
            if not session.set_feed_status(feed_id, status):
                raise NotFound(f"No feed {feed_id[:64]!r} is registered (carnet feeds list).")
            feed = session.feed(feed_id)
        if feed is None:  # removed by another process between the two statements
            raise NotFound(f"No feed {feed_id[:64]!r} is registered (carnet feeds list).")
        return feed

    def writer(self, feed_id: str, *, session: StoreSession | None = None) -> Feed:
        """Return the feed that is about to write: registered and active (``session``: the caller's).

        Raises:
            Unauthenticated: no such feed. AccessDenied: the feed is paused.
        """
        if session is not None:
            feed = session.feed(feed_id)
        else:
            with self._store.session() as own:
                feed = own.feed(feed_id)
        if feed is None:
            raise Unauthenticated(f"No feed {feed_id[:64]!r} is registered on this server.")
        if not feed.is_active:
            raise AccessDenied("This feed is paused; an operator resumes it with carnet feeds resume.")
        return feed

    def with_certificate(self, certificate: str | None) -> Feed:
        """Return the active feed a client certificate (SHA-256 hex of its DER) was registered for.

        Raises:
            Unauthenticated: no certificate, or none registered like it. AccessDenied: the feed is paused.
        """
        feed = None
        if certificate:
            with self._store.session() as session:
                feed = session.feed_with_certificate(certificate)
        if feed is None:
            raise Unauthenticated(
                "This client certificate is not registered for any feed (carnet feeds add --certificate)."
            )
        if not feed.is_active:
            raise AccessDenied("This feed is paused; an operator resumes it with carnet feeds resume.")
        return feed

    def authenticate(self, feed_id: str, secret: str) -> Feed:
        """Return the active feed whose secret this is.

        Raises:
            Unauthenticated: no such feed, or not its secret. AccessDenied: the feed is paused.
        """
        with self._store.session() as session:
            feed = session.feed(feed_id)
        if feed is None or not has_secret(feed, secret):
            raise Unauthenticated("The feed id or its secret is wrong.")
        if not feed.is_active:
            raise AccessDenied("This feed is paused; an operator resumes it with carnet feeds resume.")
        return feed

    def principal(self, principal: Principal) -> Principal:
        """Return a token's feed principal as the registry knows it (its registered classes).

        Any other principal is returned as it is.

        Raises:
            Unauthenticated: the token names no registered feed. AccessDenied: the feed is paused.
        """
        if principal.kind is not ActorKind.FEED:
            return principal
        if principal.feed_id is None:
            raise Unauthenticated("A feed's token must name its registered feed (claim 'feed').")
        feed = self.writer(principal.feed_id)
        return replace(principal, feed_categories=feed.classes, display=principal.display or feed.name)
