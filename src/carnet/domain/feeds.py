"""Feeds: the systems registered to write into records (hospitals, labs, the insurer, pharmacies).

A feed (alimentation automatique) is registered once by an operator (``carnet feeds add``): an id,
a name, a kind (:class:`FeedKind`), the DMP classCodes it may write, and its credentials — a
secret shown once and kept only as its SHA-256, and for HL7 v2 the sending application and
facility (MSH-3 and MSH-4) it must announce. A paused feed writes nothing. The policy reads the
feed through its principal (:func:`feed_principal`): the registered classes, never a token's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from carnet.domain.errors import InvalidRequest
from carnet.domain.matrix import CLASS_CODES
from carnet.domain.principal import ActorKind, Principal

_FEED_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}", re.ASCII)


class FeedKind(StrEnum):
    """What a feed sends, and so which routes it uses."""

    HL7V2 = "hl7v2"
    """Hospital and lab systems: ORU/MDM with the CDA in OBX-5 (ANS volet CDA en HL7 v2)."""
    CDA = "cda"
    """A CDA R2 document sent alone (``$from-cda``, ITI-105)."""
    CNAM = "cnam"
    """The insurer's reimbursement history (CNAM-HR, class 60)."""
    DISPENSATION = "dispensation"
    """A pharmacy's dispensations (class 43)."""
    MEASURES = "measures"
    """Connected-device measures (ANS "Mesures de santé")."""


class FeedStatus(StrEnum):
    """Whether a feed writes (``active``) or is stopped by an operator (``paused``)."""

    ACTIVE = "active"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed:
    """One registered feed. ``sender`` is ``MSH-3^MSH-4`` (HL7 v2 only); ``secret_hash`` hex SHA-256.

    ``certificate`` identifies it on the MLLP listener over TLS (mutual TLS).
    """

    feed_id: str
    name: str
    kind: FeedKind
    classes: frozenset[str]
    sender: str | None
    secret_hash: str
    status: FeedStatus
    created_at: datetime
    certificate: str | None = None
    """The SHA-256 (lower-case hex) of the DER client certificate it presents over MLLP with TLS."""

    @property
    def is_active(self) -> bool:
        """Whether the feed may write."""
        return self.status is FeedStatus.ACTIVE


def check_feed_id(feed_id: str) -> str:
    """Return a feed id if it is one (lower-case letters, digits, '.', '-'; 1 to 63).

    Raises:
        InvalidRequest: not a feed id.
    """
    if not _FEED_ID.fullmatch(feed_id):
        raise InvalidRequest(
            f"{feed_id[:70]!r} is not a feed id: use 1 to 63 lower-case letters, digits, '.' or '-'."
        )
    return feed_id


def parse_classes(values: str, allowed: frozenset[str] = CLASS_CODES) -> frozenset[str]:
    """Parse a comma-separated list of DMP classCodes (``10,11``), or of ``allowed`` codes.

    A device feed (kind ``measures``) is registered for measure types instead: the LOINC codes
    of the « Mesures de santé » profiles, which the caller passes as ``allowed``.

    Raises:
        InvalidRequest: empty, or a value that is not among the allowed codes.
    """
    classes = frozenset(v.strip() for v in values.split(",") if v.strip())
    unknown = sorted(classes - allowed)
    if not classes or unknown:
        what = "DMP classCodes" if allowed is CLASS_CODES else "measure types (LOINC)"
        raise InvalidRequest(
            f"Document classes must be {what} among {', '.join(sorted(allowed))}"
            + (f"; {', '.join(u[:8] for u in unknown)} is not one." if unknown else ".")
        )
    return classes


def hash_secret(secret: str) -> str:
    """Return the hex SHA-256 of a feed secret (the secrets are 256-bit random: no stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def has_secret(feed: Feed, secret: str) -> bool:
    """Tell whether ``secret`` is the feed's, in constant time."""
    return hmac.compare_digest(feed.secret_hash, hash_secret(secret))


def feed_principal(feed: Feed) -> Principal:
    """The principal a feed writes as: its id and its registered classes."""
    return Principal(
        kind=ActorKind.FEED,
        subject=f"feed:{feed.feed_id}",
        display=feed.name,
        feed_id=feed.feed_id,
        feed_categories=feed.classes,
    )


class LetterStatus(StrEnum):
    """Where a dead letter stands: waiting for an operator, or taken on a replay."""

    OPEN = "open"
    REPLAYED = "replayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A feed message that could not be taken, as an operator sees it: metadata, never content.

    ``sealed`` is the message itself, sealed; only a replay opens it.
    """

    letter_id: str
    feed_id: str
    control_id: str
    message_type: str
    received_at: datetime
    error_code: str
    error: str
    status: LetterStatus
    attempts: int
    sealed: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredOffer:
    """A feed's document waiting in a patient's inbox, as stored: ``sealed`` with the patient key."""

    patient_id: str
    offer_id: str
    feed_id: str
    class_code: str
    received_at: datetime
    sealed: bytes
