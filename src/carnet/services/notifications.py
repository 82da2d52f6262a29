"""Notifications to the patient (DESIGN §9): preferences, and the outbox written with the event.

A use case that records an event calls :meth:`Notifier.notify` inside its own open write
transaction; the notice is then committed (or rolled back) with the event itself, and a
separate worker (``carnet.notify.worker``) delivers it later. Nothing here talks to a mail
server or to SQL: the store behind :class:`NotificationStore` and the delivery adapter are
wired by the composition roots.

A notice says **who** (kind, name, profession, national id), **when** and **in which mode**;
it never carries clinical content nor the free-text justification of a break-glass access
(free text may hold clinical facts): the message asks the patient to read it in the portal.

Wire formats, both sealed with the patient key (``Cipher.seal``)::

    outbox.sealed                     {"v": 1, "to": str | null, "language": "fr" | "en",
                                       "notice": {"event", "at", "mode", "actor": {kind, id,
                                       display, profession}}}
                                      AAD = associated_data(patient_id, "outbox", message_id)
    notification_preferences.sealed   {"v": 1, "newDocument": bool, "newProfessional": bool,
                                       "maskedAccess": bool, "language": str, "email": str | null}
                                      AAD = associated_data(patient_id, "notification_preferences")

An outbox row moves through these statuses::

    pending ──claim──▶ sending ──accepted by SMTP──▶ delivered
       ▲                  │ (lease expires: claimable again)
       └──temporary error─┤
                          ├──permanent error, or MAX_ATTEMPTS reached──▶ failed (kept)
                          └──record shredded──▶ dropped (kept, never sent)
    no-address   the patient had no e-mail address when the event happened (kept, never sent)

The preferences a notice follows are remembered a short while per process
(:class:`RememberedPreferences`, shared by every :class:`Notifier` over one vault), so that a feed
does not read and unseal them for every document of a record. A change made through this process
(:meth:`Notifier.choose`) applies to the very next notice; one made through another worker process
applies within ``PREFERENCES_TTL`` seconds.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import orjson

from carnet.domain import fhirjson
from carnet.domain.envelope import associated_data
from carnet.domain.errors import CarnetError, InvalidRequest, NotFound, RecordShredded
from carnet.domain.policy import AccessMode
from carnet.domain.principal import ActorKind, Principal
from carnet.services.ports import StoreSession
from carnet.services.ttl_cache import TTLCache
from carnet.services.vault import Vault

Clock = Callable[[], datetime]
NewId = Callable[[], str]

PAYLOAD_FORMAT = 1
LANGUAGES = ("fr", "en")

#: Delay before the n-th retry is ``BACKOFF_BASE * 2 ** (n - 1)``, capped at ``BACKOFF_CAP``.
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
#: Delivery attempts before a message is given up as ``failed`` (about a day of retries).
MAX_ATTEMPTS = 30
#: How long a claimed message is reserved for the worker that claimed it.
LEASE = timedelta(minutes=10)
#: Seconds a process reuses a record's preferences read for a notice: the longest a change made
#: through another worker process goes unseen by this one (a change made here is seen at once).
PREFERENCES_TTL = 2.0
#: Records whose preferences a process remembers at most (least recently used dropped first).
PREFERENCES_REMEMBERED = 4096

# A deliberately plain address check: one @, no spaces, no characters that would change an
# address header's meaning, a dot in the domain. The mail server has the final word.
_EMAIL = re.compile(r"[^@\s<>(),;:\"\[\]\\]{1,64}@[^@\s<>(),;:\"\[\]\\]{1,251}\.[^@\s<>(),;:\"\[\]\\.]{1,63}")


class NoticeEvent(StrEnum):
    """What happened to the record that the patient may be told about."""

    BREAK_GLASS = "break-glass"
    """A professional read the record in emergency mode (accès en mode bris de glace)."""
    REGULATION = "regulation"
    """A SAMU regulating physician read the record (accès du médecin régulateur)."""
    NEW_DOCUMENT = "new-document"
    """A document was added to the record."""
    NEW_PROFESSIONAL = "new-professional"
    """A professional accessed the record for the first time."""
    MASKED_ACCESS = "masked-access"
    """A treating physician read a document masked from professionals (document masqué)."""
    NEW_MESSAGE = "new-message"
    """A professional of the care team wrote to the patient (messagerie sécurisée)."""
    PATIENT_MESSAGE = "patient-message"
    """A patient wrote to a professional: told to the professional, never in the patient's centre."""


#: Events that notify whatever the patient chose (CSP: the patient is told of every emergency access).
ALWAYS_NOTIFIED = frozenset({NoticeEvent.BREAK_GLASS, NoticeEvent.REGULATION})


class NoticeMode(StrEnum):
    """The access mode a notice states."""

    NORMAL = "normal"
    BREAK_GLASS = "break-glass"
    REGULATION = "regulation"


class OutboxStatus(StrEnum):
    """Where an outbox message stands (see the module docstring)."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    NO_ADDRESS = "no-address"
    DROPPED = "dropped"


def notice_mode(mode: AccessMode) -> NoticeMode:
    """Return the mode a notice states for an access mode (treating and the others read as normal)."""
    if mode is AccessMode.BREAK_GLASS:
        return NoticeMode.BREAK_GLASS
    if mode is AccessMode.REGULATION:
        return NoticeMode.REGULATION
    return NoticeMode.NORMAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """One event to tell the patient about: who, when, in which mode — never what was read.

    ``actor_profession`` is a TRE_G15 code (``10`` médecin…); ``actor_id`` the professional's
    national id (idNat_PS) or, for other actors, their subject. ``at`` is UTC.
    """

    event: NoticeEvent
    patient_id: str
    at: datetime
    actor_kind: ActorKind
    actor_display: str | None = None
    actor_profession: str | None = None
    actor_id: str
    mode: NoticeMode = NoticeMode.NORMAL

    @classmethod
    def of(
        cls, event: NoticeEvent, principal: Principal, *, patient_id: str, at: datetime, mode: AccessMode
    ) -> Notice:
        """Build the notice of an event caused by ``principal`` in access mode ``mode``."""
        return cls(
            event=event,
            patient_id=patient_id,
            at=at.astimezone(UTC),
            actor_kind=principal.kind,
            actor_display=principal.display,
            actor_profession=principal.profession,
            actor_id=principal.professional_id or principal.feed_id or principal.subject,
            mode=notice_mode(mode),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Preferences:
    """A patient's notification choices; break-glass and regulation always notify.

    ``email`` overrides the address of the record's ``Patient.telecom`` (system ``email``).

    Raises:
        InvalidRequest: an unsupported language or an address that is not an e-mail address.
    """

    new_document: bool = True
    new_professional: bool = True
    masked_access: bool = True
    language: str = "fr"
    email: str | None = None

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise InvalidRequest(
                f"Language {self.language[:20]!r} is not offered; choose 'fr' or 'en'.",
                expression=("language",),
            )
        if self.email is not None and not is_email(self.email):
            raise InvalidRequest(
                "The e-mail address is not valid; send one like name@example.org.", expression=("email",)
            )

    def wants(self, event: NoticeEvent) -> bool:
        """Tell whether the patient is to be notified of ``event``."""
        if event in ALWAYS_NOTIFIED:
            return True
        return {
            NoticeEvent.NEW_DOCUMENT: self.new_document,
            NoticeEvent.NEW_PROFESSIONAL: self.new_professional,
            NoticeEvent.MASKED_ACCESS: self.masked_access,
            # A message from the care team is always worth telling (no preference switches it off).
            NoticeEvent.NEW_MESSAGE: True,
            NoticeEvent.PATIENT_MESSAGE: False,  # addressed to a professional, not to the patient
        }[event]


def is_email(value: str) -> bool:
    """Tell whether ``value`` looks like a deliverable e-mail address."""
    return len(value) <= 254 and value.isprintable() and _EMAIL.fullmatch(value) is not None


def backoff(attempts: int) -> timedelta:
    """Return how long to wait after the ``attempts``-th failed delivery attempt (1, 2, 4… min, ≤ 1 h)."""
    exponent = min(max(attempts - 1, 0), 16)  # past the cap long before; no huge powers
    delay: timedelta = BACKOFF_BASE * (1 << exponent)
    return min(delay, BACKOFF_CAP)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """One outbox row as stored; ``sealed`` holds the :class:`Delivery` payload.

    The notice's kind (break-glass, regulation…) is only inside ``sealed``: an operator reading
    the table sees that a record has a notice and when, not what happened (docs/security.md).
    """

    patient_id: str
    message_id: str
    created_at: datetime
    sealed: bytes
    status: OutboxStatus
    attempts: int = 0
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None
    #: When the patient marked it read in the portal (None: unread).
    read_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxItem:
    """One notice of the portal's notification centre, and whether the patient read it."""

    message_id: str
    notice: Notice
    read: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """An opened outbox payload: what the worker renders and sends (``to`` None: no address)."""

    message_id: str
    to: str | None
    language: str
    notice: Notice


class NotificationStore(StoreSession, Protocol):
    """The store transaction the notifications need, on top of the record store's."""

    def add_outbox(self, message: OutboxMessage) -> None:
        """Insert one outbox message."""
        ...

    def claim_outbox(self, now: datetime, *, lease: timedelta, limit: int) -> list[OutboxMessage]:
        """Claim up to ``limit`` due messages: each becomes ``sending`` until ``now + lease``.

        A message is due when it is ``pending`` or its previous claim expired, and its
        ``next_attempt_at`` has come. Claiming counts one attempt. Two concurrent claimers
        never get the same message.
        """
        ...

    def mark_delivered(self, patient_id: str, message_id: str, now: datetime) -> None:
        """Record that the mail server accepted a message."""
        ...

    def retry_outbox(
        self, patient_id: str, message_id: str, now: datetime, error: str, *, permanent: bool = False
    ) -> OutboxStatus:
        """Schedule the next attempt after a failed one (``failed`` if permanent or out of attempts)."""
        ...

    def drop_outbox(self, patient_id: str, message_id: str, reason: str) -> None:
        """Mark a message ``dropped``: it will never be sent (its record was erased)."""
        ...

    def outbox_messages(self, patient_id: str) -> list[OutboxMessage]:
        """Return a record's outbox messages, oldest first."""
        ...

    def mark_outbox_read(self, patient_id: str, message_ids: Sequence[str] | None, now: datetime) -> int:
        """Mark a record's notices read (``None``: all of them); return how many were unread."""
        ...

    def count_outbox(self) -> dict[OutboxStatus, int]:
        """Count the outbox messages of every status."""
        ...

    def get_preferences(self, patient_id: str) -> bytes | None:
        """Return a record's sealed preferences, if the patient chose any."""
        ...

    def put_preferences(self, patient_id: str, sealed: bytes, now: datetime) -> None:
        """Store a record's sealed preferences (replacing earlier ones)."""
        ...


class NotificationStores(Protocol):
    """Opens transactions on a store that holds the outbox."""

    def session(self, *, write: bool = False) -> AbstractContextManager[NotificationStore]:
        """Open one transaction, committed when the block exits without error."""
        ...


def may_choose(principal: Principal, patient_id: str) -> bool:
    """Tell whether a principal chooses the notifications of a record: its holder or a representative."""
    if principal.kind is ActorKind.PATIENT:
        return principal.patient_id == patient_id
    if principal.kind is ActorKind.REPRESENTATIVE:
        return patient_id in principal.represents
    return False


class RememberedPreferences:
    """The records' preferences read lately for notices, each for at most ``ttl`` seconds.

    A read that overlaps a change (:meth:`forget` called between :meth:`start` and :meth:`put`)
    is not remembered, so a value read before a change committed never outlives it here. The
    writer forgets the record when it writes and again once its transaction has ended.
    """

    def __init__(
        self,
        *,
        ttl: float = PREFERENCES_TTL,
        size: int = PREFERENCES_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: TTLCache[str, Preferences] = TTLCache(ttl=ttl, size=size, clock=clock)
        self._changes = 0  # bumped by every forget
        self._lock = threading.Lock()

    def get(self, patient_id: str) -> Preferences | None:
        """Return the record's preferences if read lately, else None."""
        return self._cache.get(patient_id)

    def start(self) -> int:
        """Mark the start of a read; hand the mark to :meth:`put`."""
        return self._changes

    def put(self, patient_id: str, prefs: Preferences, started: int) -> None:
        """Remember preferences read since ``started``, unless a change happened meanwhile."""
        with self._lock:
            if self._changes == started:
                self._cache.put(patient_id, prefs)

    def forget(self, patient_id: str) -> None:
        """Drop the record's preferences and any read under way (they are being changed)."""
        with self._lock:
            self._changes += 1
            self._cache.get(patient_id, is_current=lambda _: False)


# One table per vault: the gate's notifier and the ones the API builds per request share it, so a
# change made through any of them is seen by all.
_REMEMBERED: weakref.WeakKeyDictionary[Vault, RememberedPreferences] = weakref.WeakKeyDictionary()
_REMEMBERED_LOCK = threading.Lock()


def _remembered_for(vault: Vault) -> RememberedPreferences:
    with _REMEMBERED_LOCK:
        found = _REMEMBERED.get(vault)
        if found is None:
            found = _REMEMBERED[vault] = RememberedPreferences()
        return found


class Notifier:
    """Enqueues notices in the event's transaction and keeps each patient's preferences.

    ``remembered``: the preferences read lately for notices (by default, the vault's own table).
    """

    def __init__(
        self, *, vault: Vault, clock: Clock, new_id: NewId, remembered: RememberedPreferences | None = None
    ) -> None:
        self._vault = vault
        self._clock = clock
        self._new_id = new_id
        self._remembered = remembered or _remembered_for(vault)

    # -- enqueueing ---------------------------------------------------------------------

    def notify(
        self,
        session: NotificationStore,
        key: bytes,
        notice: Notice,
        *,
        patient: Mapping[str, Any] | None = None,
    ) -> bool:
        """Enqueue ``notice`` in the caller's open write transaction if the patient wants it.

        ``key`` is the record's key, which the caller already holds. A patient without an
        e-mail address still gets a row, with status ``no-address``: the notice stays visible
        (and counted) but is never sent, not even once an address is added later.
        ``patient``: the record's current Patient if the caller read it already in this
        transaction (the policy did), so that it is not read again for its address.
        Returns whether a message was enqueued.
        """
        prefs = self._remembered.get(notice.patient_id)
        if prefs is None:
            started = self._remembered.start()
            prefs = self.preferences(session, key, notice.patient_id)
            self._remembered.put(notice.patient_id, prefs, started)
        if not prefs.wants(notice.event):
            return False
        to = prefs.email or self.record_email(session, key, notice.patient_id, patient=patient)
        message_id = self._new_id()
        payload = {
            "v": PAYLOAD_FORMAT,
            "to": to,
            "language": prefs.language,
            "notice": _notice_json(notice),
        }
        now = self._clock()
        session.add_outbox(
            OutboxMessage(
                patient_id=notice.patient_id,
                message_id=message_id,
                created_at=now,
                sealed=self._vault.cipher.seal(
                    key, orjson.dumps(payload), _outbox_aad(notice.patient_id, message_id)
                ),
                status=OutboxStatus.PENDING if to else OutboxStatus.NO_ADDRESS,
                next_attempt_at=now,
            )
        )
        return True

    def notify_address(
        self, session: NotificationStore, key: bytes, notice: Notice, *, to: str | None, language: str
    ) -> None:
        """Enqueue ``notice`` to a given address (a professional's), whatever the patient chose.

        The row is the record's (sealed with its key, erased with it); ``to`` None keeps it as
        ``no-address``. The patient's notification centre leaves these notices out.
        """
        message_id = self._new_id()
        payload = {"v": PAYLOAD_FORMAT, "to": to, "language": language, "notice": _notice_json(notice)}
        now = self._clock()
        session.add_outbox(
            OutboxMessage(
                patient_id=notice.patient_id,
                message_id=message_id,
                created_at=now,
                sealed=self._vault.cipher.seal(
                    key, orjson.dumps(payload), _outbox_aad(notice.patient_id, message_id)
                ),
                status=OutboxStatus.PENDING if to else OutboxStatus.NO_ADDRESS,
                next_attempt_at=now,
            )
        )

    def record_email(
        self,
        session: StoreSession,
        key: bytes,
        patient_id: str,
        *,
        patient: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Return the e-mail address of the record's Patient (``telecom``), if it has a usable one.

        The address with the best ``rank`` wins; ``use = old`` addresses are skipped. ``patient``:
        the current Patient, already read in this transaction (else it is read here).
        """
        if patient is None:
            version = session.current(patient_id, "Patient", patient_id)
            if version is None or version.deleted:
                found = session.search(patient_id, "Patient", (), ())
                version = found[0] if found else None
            if version is None or version.sealed is None:
                return None
            raw = self._vault.open_resource(
                key,
                patient_id,
                version.resource_type,
                version.resource_id,
                version.version_id,
                version.sealed,
            )
            patient = fhirjson.loads_stored(raw)
        candidates: list[tuple[int, str]] = []
        for telecom in patient.get("telecom") or ():
            if (
                not isinstance(telecom, dict)
                or telecom.get("system") != "email"
                or telecom.get("use") == "old"
            ):
                continue
            value, rank = telecom.get("value"), telecom.get("rank")
            if isinstance(value, str) and is_email(value.strip()):
                candidates.append((rank if isinstance(rank, int) and rank > 0 else 2**31, value.strip()))
        return min(candidates)[1] if candidates else None

    # -- delivering (the worker's side) -------------------------------------------------

    def open_message(self, session: NotificationStore, message: OutboxMessage) -> Delivery:
        """Open a claimed message's payload with its record's key.

        Raises:
            RecordShredded: the record was erased; the message must never be sent.
            EnvelopeError: the payload does not open.
            KeyProviderError: the record's key could not be unwrapped (try again later).
        """
        key = self._vault.key(session, message.patient_id, self._clock())
        raw = self._vault.cipher.unseal(
            key, message.sealed, _outbox_aad(message.patient_id, message.message_id)
        )
        data = orjson.loads(raw)
        return Delivery(
            message_id=message.message_id,
            to=data["to"],
            language=data["language"],
            notice=_notice_from_json(message.patient_id, data["notice"]),
        )

    # -- preferences ----------------------------------------------------------------------

    def preferences(self, session: NotificationStore, key: bytes, patient_id: str) -> Preferences:
        """Return a record's preferences (the defaults if the patient never chose)."""
        sealed = session.get_preferences(patient_id)
        if sealed is None:
            return Preferences()
        data = orjson.loads(self._vault.cipher.unseal(key, sealed, _preferences_aad(patient_id)))
        return Preferences(
            new_document=bool(data["newDocument"]),
            new_professional=bool(data["newProfessional"]),
            masked_access=bool(data["maskedAccess"]),
            language=str(data["language"]),
            email=data.get("email"),
        )

    def set_preferences(
        self, session: NotificationStore, key: bytes, patient_id: str, prefs: Preferences
    ) -> None:
        """Seal and store a record's preferences in the caller's write transaction.

        The caller calls :meth:`forget` once that transaction has ended (:meth:`choose` does), so
        that no notice follows what was read before it committed.
        """
        self.forget(patient_id)
        data = {
            "v": PAYLOAD_FORMAT,
            "newDocument": prefs.new_document,
            "newProfessional": prefs.new_professional,
            "maskedAccess": prefs.masked_access,
            "language": prefs.language,
            "email": prefs.email,
        }
        sealed = self._vault.cipher.seal(key, orjson.dumps(data), _preferences_aad(patient_id))
        session.put_preferences(patient_id, sealed, self._clock())

    def forget(self, patient_id: str) -> None:
        """Drop the preferences this process remembers for a record (they changed or may have)."""
        self._remembered.forget(patient_id)

    def preferences_for(
        self, store: NotificationStores, principal: Principal, patient_id: str
    ) -> Preferences:
        """Return a record's preferences to its holder or a representative.

        Raises:
            NotFound: anyone else, an unknown record or an erased one (the same answer for all).
        """
        with store.session() as session:
            return self.preferences(session, self._key_for(session, principal, patient_id), patient_id)

    def choose(
        self, store: NotificationStores, principal: Principal, patient_id: str, prefs: Preferences
    ) -> Preferences:
        """Replace a record's preferences, for its holder or a representative; return them.

        Raises:
            NotFound: anyone else, an unknown record or an erased one (the same answer for all).
        """
        try:
            with store.session(write=True) as session:
                key = self._key_for(session, principal, patient_id)
                self.set_preferences(session, key, patient_id, prefs)
        finally:
            self.forget(patient_id)
        return prefs

    # -- the portal's notification centre -------------------------------------------------

    def inbox(self, store: NotificationStores, principal: Principal, patient_id: str) -> list[InboxItem]:
        """Return a record's notices, newest first, with whether each was read, to its holder.

        Every notice the patient asked for is there, sent by e-mail or not (``no-address``);
        a message that no longer opens is left out rather than failing the page.

        Raises:
            NotFound: anyone else, an unknown record or an erased one (the same answer for all).
        """
        with store.session() as session:
            key = self._key_for(session, principal, patient_id)
            items = []
            for message in session.outbox_messages(patient_id):
                try:
                    raw = self._vault.cipher.unseal(
                        key, message.sealed, _outbox_aad(patient_id, message.message_id)
                    )
                except CarnetError:
                    continue
                notice = _notice_from_json(patient_id, orjson.loads(raw)["notice"])
                if notice.event is NoticeEvent.PATIENT_MESSAGE:
                    continue  # told to the professional the patient wrote to
                items.append(
                    InboxItem(message_id=message.message_id, notice=notice, read=message.read_at is not None)
                )
        items.sort(key=lambda i: (i.notice.at, i.message_id), reverse=True)
        return items

    def mark_read(
        self,
        store: NotificationStores,
        principal: Principal,
        patient_id: str,
        message_ids: Sequence[str] | None,
    ) -> int:
        """Mark notices read for their holder (``None``: all); return how many were unread.

        Raises:
            NotFound: anyone else, an unknown record or an erased one (the same answer for all).
        """
        with store.session(write=True) as session:
            self._key_for(session, principal, patient_id)
            return session.mark_outbox_read(patient_id, message_ids, self._clock())

    def _key_for(self, session: NotificationStore, principal: Principal, patient_id: str) -> bytes:
        unknown = NotFound(f"Patient/{patient_id[:64]} is not known.")
        # Decided before any lookup, so that a refusal reveals nothing about what exists.
        if not may_choose(principal, patient_id):
            raise unknown
        try:
            return self._vault.key(session, patient_id, self._clock())
        except RecordShredded:
            raise unknown from None


def _outbox_aad(patient_id: str, message_id: str) -> bytes:
    return associated_data(patient_id, "outbox", message_id)


def _preferences_aad(patient_id: str) -> bytes:
    return associated_data(patient_id, "notification_preferences")


def _notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "event": notice.event.value,
        "at": notice.at.astimezone(UTC).isoformat(),
        "mode": notice.mode.value,
        "actor": {
            "kind": notice.actor_kind.value,
            "id": notice.actor_id,
            "display": notice.actor_display,
            "profession": notice.actor_profession,
        },
    }


def _notice_from_json(patient_id: str, data: dict[str, Any]) -> Notice:
    actor = data["actor"]
    return Notice(
        event=NoticeEvent(data["event"]),
        patient_id=patient_id,
        at=datetime.fromisoformat(data["at"]),
        actor_kind=ActorKind(actor["kind"]),
        actor_display=actor.get("display"),
        actor_profession=actor.get("profession"),
        actor_id=actor["id"],
        mode=NoticeMode(data["mode"]),
    )
