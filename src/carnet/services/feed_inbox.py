"""The patient's choice per feed (issue 13 item 5): accept, ask me first, refuse; and the inbox.

For each registered feed the patient chooses (a Consent naming the feed, see
``carnet.domain.consent``):

=================  ======================  ================================================
Choice             Consent kind            What the feed's next document does
=================  ======================  ================================================
accept             ``feed-acceptance``      stored at once
ask me first       ``feed-ask-first``       waits in the patient's inbox (:class:`FeedInbox`)
refuse             ``feed-refusal``         refused: the sender gets an application reject
=================  ======================  ================================================

Without a choice the profile decides: ``fr-dmp`` accepts (as the law does), ``sovereign`` asks.
The policy (rule ``feed-writes-registered``) says ``feed-ask-patient`` or ``feed-refused``; the
HL7 v2 intake then offers the document or rejects it.

An offer is sealed with the patient's key. Accepted, it is published exactly as if it had just
been received (as the feed, in the feed mode, the patient's acceptance standing for this one
document); refused, its row is deleted and nothing of it stays. Either way the refusal the
policy journaled when the feed offered it stays in the journal: which feed, which class, when —
never the content.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from carnet.domain.consent import FEED_KINDS, FEED_SYSTEM, ConsentKind, consent_for, consent_kind
from carnet.domain.documents import document_facts
from carnet.domain.errors import FeedMessageError, InvalidRequest, NotFound
from carnet.domain.feeds import Feed, StoredOffer, feed_principal
from carnet.domain.policy import AccessMode
from carnet.domain.principal import ActorKind, Principal
from carnet.feeds.hl7v2 import Header, acknowledgement
from carnet.services.feed_registry import FeedRegistry
from carnet.services.records import RecordService

Clock = Callable[[], datetime]
_OFFER_TYPE = "FeedOffer"


class FeedChoice(StrEnum):
    """What the patient chose for one feed."""

    ACCEPT = "accept"
    ASK = "ask"
    REFUSE = "refuse"


_KINDS = {
    FeedChoice.ACCEPT: ConsentKind.FEED_ACCEPTANCE,
    FeedChoice.ASK: ConsentKind.FEED_ASK_FIRST,
    FeedChoice.REFUSE: ConsentKind.FEED_REFUSAL,
}
_CHOICES = {kind: choice for choice, kind in _KINDS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSetting:
    """One feed as the patient sees it: who, which classes, the choice and whether it is the default."""

    feed: Feed
    choice: FeedChoice
    chosen: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """A document waiting for the patient's decision: what it is, never yet in the record."""

    offer_id: str
    feed_id: str
    feed_name: str
    class_code: str
    type_code: str | None
    title: str | None
    received_at: datetime


def _holder(principal: Principal) -> str:
    """The record of a patient acting on their own choices and inbox.

    Raises:
        NotFound: not a patient holding a record.
    """
    if principal.kind is not ActorKind.PATIENT or not principal.patient_id:
        raise NotFound("Only the patient holding the record sees and decides its feeds.")
    return principal.patient_id


def _feed_named(consent: dict[str, Any]) -> str | None:
    for actor in (consent.get("provision") or {}).get("actor") or []:
        identifier = (actor.get("reference") or {}).get("identifier") or {}
        if identifier.get("system") == FEED_SYSTEM and isinstance(identifier.get("value"), str):
            return str(identifier["value"])
    return None


class FeedInbox:
    """The patient's feed choices and the documents waiting for their decision."""

    def __init__(self, *, records: RecordService, registry: FeedRegistry, clock: Clock) -> None:
        self._records = records
        self._registry = registry
        self._clock = clock

    # -- choices --------------------------------------------------------------------------------

    def settings(self, principal: Principal) -> list[FeedSetting]:
        """Return every registered feed with the patient's choice (or the profile's default)."""
        patient_id = _holder(principal)
        default = FeedChoice.ASK if self._records.profile.feeds_opt_in else FeedChoice.ACCEPT
        chosen: dict[str, FeedChoice] = {}
        with self._records.call(principal, "search-type", "Consent") as call:
            found = call.search.search("Consent", [("patient", f"Patient/{patient_id}"), ("_count", "1000")])
        for stored in sorted(found.entries, key=lambda s: s.last_updated):
            resource = stored.resource or {}
            kind = consent_kind(resource)
            feed_id = _feed_named(resource)
            if resource.get("status") == "active" and kind in FEED_KINDS and feed_id:
                chosen[feed_id] = _CHOICES[kind]
        return [
            FeedSetting(feed=feed, choice=chosen.get(feed.feed_id, default), chosen=feed.feed_id in chosen)
            for feed in self._registry.list()
        ]

    def choose(self, principal: Principal, feed_id: str, choice: FeedChoice) -> None:
        """Record the patient's choice for one feed (withdrawing the previous one), in one call.

        Raises:
            NotFound: no such feed, or not a patient. InvalidRequest: not a choice.
        """
        patient_id = _holder(principal)
        self._registry.get(feed_id)
        if choice not in _KINDS:
            raise InvalidRequest("Choose accept, ask or refuse.")
        with self._records.call(principal, "$set-feed-choice", "Consent", write=True) as call:
            found = call.search.search("Consent", [("patient", f"Patient/{patient_id}"), ("_count", "1000")])
            for stored in found.entries:
                resource = stored.resource or {}
                if (
                    resource.get("status") == "active"
                    and consent_kind(resource) in FEED_KINDS
                    and _feed_named(resource) == feed_id
                ):
                    call.writes.update(
                        "Consent",
                        stored.resource_id,
                        {**resource, "status": "inactive"},
                        if_match=stored.etag,
                    )
            call.writes.create(consent_for(_KINDS[choice], patient_id, now=self._clock(), feed_id=feed_id))

    # -- the inbox --------------------------------------------------------------------------------

    def offer(
        self, feed: Feed, patient_id: str, document: dict[str, Any], *, message: Header | None = None
    ) -> str:
        """Keep a feed's document for the patient's decision, sealed with their key; return its id.

        ``message`` is the HL7 v2 message's header, kept (sealed) so that a refusal later becomes
        that message's answer: an application reject the sender gets for its MSH-10.
        """
        offer_id = uuid.uuid4().hex
        facts = document_facts(document)
        vault, now = self._records.vault, self._clock()
        payload = {"document": document, "message": dataclasses.asdict(message) if message else None}
        with self._records.store.session(write=True) as session:
            key = vault.key(session, patient_id, now)
            sealed = vault.seal_resource(
                key, patient_id, _OFFER_TYPE, offer_id, 1, json.dumps(payload).encode()
            )
            session.add_offer(
                StoredOffer(
                    patient_id=patient_id,
                    offer_id=offer_id,
                    feed_id=feed.feed_id,
                    class_code=facts.class_code or "",
                    received_at=now,
                    sealed=sealed,
                )
            )
        return offer_id

    def pending(self, principal: Principal) -> list[Offer]:
        """Return the documents waiting for the patient's decision, oldest first."""
        patient_id = _holder(principal)
        names = {feed.feed_id: feed.name for feed in self._registry.list()}
        out: list[Offer] = []
        for stored, payload in self._opened(patient_id):
            document = payload["document"]
            kind = ((document.get("type") or {}).get("coding") or [{}])[0]
            attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
            out.append(
                Offer(
                    offer_id=stored.offer_id,
                    feed_id=stored.feed_id,
                    feed_name=names.get(stored.feed_id, stored.feed_id),
                    class_code=stored.class_code,
                    type_code=kind.get("code"),
                    title=attachment.get("title") or kind.get("display"),
                    received_at=stored.received_at,
                )
            )
        return out

    def accept(self, principal: Principal, offer_id: str) -> str:
        """Store an offered document as if it had just been received; return its DocumentReference id.

        Raises:
            NotFound: no such pending offer in the patient's record, or its feed is gone.
        """
        patient_id = _holder(principal)
        stored, payload = self._take(patient_id, offer_id, keep=True)
        feed = self._registry.get(stored.feed_id)
        records = self._records.records(feed_principal(feed), mode=AccessMode.FEED)
        result = records.publish(payload["document"], accepted_offer=True)
        self._take(patient_id, offer_id, keep=False)
        return result.stored.resource_id

    def decline(self, principal: Principal, offer_id: str) -> None:
        """Refuse an offered document: its row is deleted and nothing of its content stays.

        An HL7 v2 message's answer becomes an application reject (``AE``): the sender gets it when
        it asks again for that MSH-10 (``GET /feeds/<feed>/hl7v2/<MSH-10>``, or by resending).

        Raises:
            NotFound: no such pending offer in the patient's record.
        """
        stored, payload = self._take(_holder(principal), offer_id, keep=False)
        message = payload.get("message")
        if isinstance(message, dict) and message.get("control_id"):
            header = Header(**message)
            refusal = FeedMessageError("The patient declined this document; nothing of it was kept.")
            now = self._clock()
            ack = acknowledgement(header, control_id=uuid.uuid4().hex[:20], now=now, error=refusal)
            with self._records.store.session(write=True) as session:
                session.record_message(stored.feed_id, header.control_id[:64], "declined", ack, now)

    def _opened(self, patient_id: str) -> Sequence[tuple[StoredOffer, dict[str, Any]]]:
        vault, now = self._records.vault, self._clock()
        with self._records.store.session() as session:
            offers = session.offers(patient_id)
            if not offers:
                return []
            key = vault.key(session, patient_id, now)
        return [
            (o, json.loads(vault.open_resource(key, patient_id, _OFFER_TYPE, o.offer_id, 1, o.sealed)))
            for o in offers
        ]

    def _take(self, patient_id: str, offer_id: str, *, keep: bool) -> tuple[StoredOffer, dict[str, Any]]:
        """Return one offer and its sealed payload (document, message header); remove it unless ``keep``."""
        vault, now = self._records.vault, self._clock()
        with self._records.store.session(write=not keep) as session:
            if keep:
                stored = next((o for o in session.offers(patient_id) if o.offer_id == offer_id), None)
            else:
                stored = session.take_offer(patient_id, offer_id)
            if stored is None:
                raise NotFound("This document is no longer waiting for your decision.")
            key = vault.key(session, patient_id, now)
        raw = vault.open_resource(key, patient_id, _OFFER_TYPE, stored.offer_id, 1, stored.sealed)
        return stored, json.loads(raw)
