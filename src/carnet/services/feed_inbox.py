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
policy journaled when the feed offered it stays in the journal, and a refusal adds its own entry
(the patient declined): which feed, which class, when — never the content.
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
from urllib.parse import urlencode

from carnet.domain.consent import FEED_KINDS, FEED_SYSTEM, ConsentKind, consent_for, consent_kind
from carnet.domain.documents import document_facts
from carnet.domain.errors import AccessDenied, FeedMessageError, InvalidRequest, InvalidResource, NotFound
from carnet.domain.feeds import Feed, StoredOffer, feed_principal
from carnet.domain.journal import Entry
from carnet.domain.policy import AccessMode
from carnet.domain.principal import ActorKind, Principal
from carnet.feeds.devices import measure_type, read_measure_bundle
from carnet.feeds.hl7v2 import Header, acknowledgement
from carnet.services.caller import current_caller
from carnet.services.feed_registry import FeedRegistry
from carnet.services.measures import SubmittedEntry, submit_measures
from carnet.services.ports import StoreSession
from carnet.services.record_types import WriteResult
from carnet.services.records import Records, RecordService

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """What a feed's write on a FHIR feed route became: stored (``result``), or offered (``offer_id``)."""

    result: WriteResult | None = None
    offer_id: str | None = None


#: What the patient's refusal of a feed answers on the FHIR feed routes (nothing was kept).
REFUSED = (
    "The patient refuses this feed's documents; nothing was kept. "
    "(Le patient refuse les documents de ce flux ; rien n'a été conservé.)"
)


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
        self,
        feed: Feed,
        patient_id: str,
        document: dict[str, Any],
        *,
        message: Header | None = None,
        kind: str = "document",
        class_code: str | None = None,
        session: StoreSession | None = None,
    ) -> str:
        """Keep a feed's write for the patient's decision, sealed with their key; return its id.

        ``kind`` says what waits: a ``document`` (a DocumentReference to publish), a ``resource``
        (a MedicationDispense to create) or ``measures`` (a « Mesures de santé » Bundle to submit).
        ``message`` is the HL7 v2 message's header, kept (sealed) so that a refusal later becomes
        that message's answer: an application reject the sender gets for its MSH-10. ``session``:
        write in the caller's transaction (a feed message's unit of group commit).
        """
        if session is None:
            with self._records.store.session(write=True) as own:
                return self.offer(
                    feed, patient_id, document, message=message, kind=kind, class_code=class_code, session=own
                )
        offer_id = uuid.uuid4().hex
        if class_code is None:
            class_code = document_facts(document).class_code if kind == "document" else None
        vault, now = self._records.vault, self._clock()
        payload = {
            "kind": kind,
            "document": document,
            "message": dataclasses.asdict(message) if message else None,
        }
        key = vault.key(session, patient_id, now)
        sealed = vault.seal_resource(key, patient_id, _OFFER_TYPE, offer_id, 1, json.dumps(payload).encode())
        session.add_offer(
            StoredOffer(
                patient_id=patient_id,
                offer_id=offer_id,
                feed_id=feed.feed_id,
                class_code=(class_code or "")[:8],
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
            kind, title = _what(payload.get("kind", "document"), document)
            out.append(
                Offer(
                    offer_id=stored.offer_id,
                    feed_id=stored.feed_id,
                    feed_name=names.get(stored.feed_id, stored.feed_id),
                    class_code=stored.class_code,
                    type_code=kind.get("code"),
                    title=title,
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
        principal_of_feed = feed_principal(feed)
        records = self._records.records(principal_of_feed, mode=AccessMode.FEED)
        kind, document = payload.get("kind", "document"), payload["document"]
        if kind == "measures":
            submitted = submit_measures(
                self._records, principal_of_feed, document, mode=AccessMode.FEED, accepted_offer=True
            )
            stored_id = submitted[0].stored.resource_id if submitted else ""
        elif kind == "resource":
            stored_id = records.create(document, accepted_offer=True).stored.resource_id
        else:
            stored_id = records.publish(document, accepted_offer=True).stored.resource_id
        self._take(patient_id, offer_id, keep=False)
        return stored_id

    def decline(self, principal: Principal, offer_id: str) -> None:
        """Refuse an offered document: its row is deleted and nothing of its content stays.

        The refusal leaves its own journal entry in the record (operation ``feed-offer-decline``,
        by the patient): which feed offered which class, when (the entry's query
        ``feed=…&class=…&offered=…``) — never the content, no resource named. An HL7 v2 message's
        answer becomes an application reject (``AE``): the sender gets it when it asks again for
        that MSH-10 (``GET /feeds/<feed>/hl7v2/<MSH-10>``, or by resending). The offer's removal,
        the answer and the entry are one transaction: all three, or none.

        Raises:
            NotFound: no such pending offer in the patient's record.
        """
        patient_id = _holder(principal)
        vault, now = self._records.vault, self._clock()
        with self._records.store.session(write=True) as session:
            stored = session.take_offer(patient_id, offer_id)
            if stored is None:
                raise NotFound("This document is no longer waiting for your decision.")
            key = vault.key(session, patient_id, now)
            raw = vault.open_resource(key, patient_id, _OFFER_TYPE, stored.offer_id, 1, stored.sealed)
            payload = json.loads(raw)
            message = payload.get("message")
            if isinstance(message, dict) and message.get("control_id"):
                header = Header(**message)
                refusal = FeedMessageError("The patient declined this document; nothing of it was kept.")
                ack = acknowledgement(header, control_id=uuid.uuid4().hex[:20], now=now, error=refusal)
                session.record_message(stored.feed_id, header.control_id[:64], "declined", ack, now)
            self._records.gate.journal.append(session, [(key, _declined(principal, stored, payload, now))])

    # -- the FHIR feed routes ---------------------------------------------------------------------

    def publish(self, records: Records, document: dict[str, Any]) -> Published:
        """Publish a feed's document (ITI-105, ITI-65, ``$from-cda``) as the HL7 v2 intake does.

        The patient's choice applies as on every feed route: accepted, the document is stored;
        "ask me first", it waits sealed in their inbox (``offer_id``), nothing in the record;
        refused, :class:`AccessDenied` and nothing is kept. The journal keeps the policy's entry
        either way (the feed, the create, the class, when — never the content).

        Raises:
            AccessDenied: the feed is refused (by the patient, or not registered for the class).
            InvalidResource, NotFound: as :meth:`Records.publish`.
        """
        document = self._placed(records, document)
        return self._or_offer(records, document, "document", lambda: records.publish(document))

    def create(self, records: Records, resource: dict[str, Any]) -> Published:
        """Create a feed's resource on a FHIR feed route (a pharmacy's MedicationDispense), or offer it."""
        resource = self._placed(records, resource)
        return self._or_offer(records, resource, "resource", lambda: records.create(resource))

    def submit(self, records: Records, bundle: dict[str, Any]) -> Published | list[SubmittedEntry]:
        """Submit a device feed's measures Bundle, or offer it whole; the entries written, or the offer.

        Raises:
            AccessDenied: a measure type the feed is not registered for, or the patient refuses it.
            InvalidResource: a Bundle outside the « Mesures de santé » profiles.
        """
        try:
            return submit_measures(self._records, records.actor, bundle, mode=records.mode)
        except AccessDenied as exc:
            first = measure_type(read_measure_bundle(bundle).profiles[0])
            return self._offered(records, exc, bundle, "measures", first, _measures_patient(bundle))

    def _or_offer(
        self, records: Records, resource: dict[str, Any], kind: str, write: Callable[[], WriteResult]
    ) -> Published:
        try:
            return Published(result=write())
        except AccessDenied as exc:
            reference = ((resource.get("subject") or {}).get("reference")) or ""
            return self._offered(records, exc, resource, kind, None, str(reference).removeprefix("Patient/"))

    def _offered(
        self,
        records: Records,
        exc: AccessDenied,
        resource: dict[str, Any],
        kind: str,
        class_code: str | None,
        patient_id: str,
    ) -> Published:
        feed_id = records.actor.feed_id
        if "feed-refused" in exc.reasons:
            raise AccessDenied(REFUSED, reasons=exc.reasons) from None
        if "feed-ask-patient" not in exc.reasons or feed_id is None or not patient_id:
            raise exc
        if kind == "resource" and class_code is None:
            class_code = self._records.profile.matrix.resource_classes.get(str(resource.get("resourceType")))
        offer_id = self.offer(
            self._registry.get(feed_id), patient_id, resource, kind=kind, class_code=class_code
        )
        return Published(offer_id=offer_id)

    def _placed(self, records: Records, resource: dict[str, Any]) -> dict[str, Any]:
        """A feed's resource whose subject names the patient by INS (no reference): placed in that record.

        A feed never reads, so it may name the patient by identifier; the identity index finds
        the record. Raises InvalidResource when no record carries it.
        """
        subject = resource.get("subject")
        if not isinstance(subject, dict) or subject.get("reference"):
            return resource
        identifier = subject.get("identifier")
        if not isinstance(identifier, dict):
            return resource
        system, value = identifier.get("system"), identifier.get("value")
        found = (
            records.record_with(system, value) if isinstance(system, str) and isinstance(value, str) else None
        )
        if found is None:
            raise InvalidResource(
                "No record carries the patient identifier of subject.identifier; the record must be "
                "opened first. (Aucun dossier ne porte l'identifiant du patient.)",
                expression=("subject.identifier",),
            )
        return {**resource, "subject": {"reference": f"Patient/{found}"}}

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


#: The journal's operation of a patient declining a waiting document (``carnet.web.access_visits``).
DECLINE_OPERATION = "feed-offer-decline"


def _declined(principal: Principal, stored: StoredOffer, payload: dict[str, Any], now: datetime) -> Entry:
    """The journal entry of a declined offer: the feed, the class, when it was offered; no content."""
    caller = current_caller()
    document = payload.get("document") or {}
    query = [
        ("feed", stored.feed_id),
        ("class", stored.class_code),
        ("offered", stored.received_at.isoformat()),
    ]
    return Entry(
        recorded=now,
        patient_id=stored.patient_id,
        actor_kind=principal.kind.value,
        actor_id=principal.subject,
        actor_display=principal.display,
        action=DECLINE_OPERATION,
        resource_type=str(document.get("resourceType") or "DocumentReference")[:64],
        reasons=(f"feed:{stored.feed_id}",),
        client=caller.client if caller is not None else None,
        client_address=caller.address if caller is not None else None,
        query=urlencode(query),
    )


def _what(kind: str, document: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The type coding and a title of a waiting write, as the inbox lists it."""
    if kind == "measures":
        return {}, None  # the portal names it by its measure type (Blood pressure, in the reader's language)
    if kind == "resource":
        concept = document.get("medicationCodeableConcept") or {}
        coding = (concept.get("coding") or [{}])[0]
        return {"code": coding.get("code")}, concept.get("text") or coding.get("display")
    coding = ((document.get("type") or {}).get("coding") or [{}])[0]
    attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
    return coding, attachment.get("title") or coding.get("display")


def _measures_patient(bundle: dict[str, Any]) -> str:
    """The record a measures Bundle writes into (its Observations' subject), or ''."""
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Observation":
            reference = (resource.get("subject") or {}).get("reference")
            if isinstance(reference, str) and reference.startswith("Patient/"):
                return reference.removeprefix("Patient/")
    return ""
