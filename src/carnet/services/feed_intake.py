"""Taking a feed's HL7 v2 message into the record: parse, place, publish / replace / delete, acknowledge.

One use case, :meth:`HL7v2Intake.receive`, shared by the MLLP listener and the HTTP endpoint:

1. the feed must be registered and active; if it registered a sender, MSH-3^MSH-4 must be it;
2. the message is read (:mod:`carnet.feeds.hl7v2`): ORU^R01 v2.5 or MDM^T02/T10/T04 v2.6, the
   action agreed by ORC-1, OBX-11 and the event, the CDA of each document OBX (an ORU may carry
   the same report as a level 1 and a level 3 CDA), the INS of PID-3;
3. each CDA's INS must be one of PID-3's, and a record must carry it (found by the identity
   index: the feed never reads);
4. each document is written as the feed, in the feed mode, so the policy decides as on every feed
   route: its registered classes only, only while the patient lets it; a replacement points to
   the parent by uniqueId, a deletion removes the current document with the CDA's id, and a
   feed replaces or deletes only what it sent. The metadata OBXs become the document's labels:
   ``MASQUE_PS``, ``INVISIBLE_PATIENT``, ``INVISIBLE_REP_LEGAUX`` (securityLabel, TRE_A07) and
   ``CONNEXION_SECRETE`` (the minor's secret); ``DESTDMP=N`` stores nothing; PRT ``SB`` adds the
   sending professional and structure to the authors, after the feed itself; a patient who
   chose "ask me first" gets the document in their inbox (:mod:`carnet.services.feed_inbox`),
   one who refused the feed gets nothing and the sender an application reject (AE), never
   kept as a dead letter;
5. the answer is the technical ACK (AA, or AE/AR with ERR), followed by the ZAM business ack when
   the message asked for one (``ACK_RECEPTION=Y``).

The ACK is built only after the document is committed (or the refusal is known): a message that
was acknowledged ``AA`` is in the record. A message is all or nothing: its documents are written
in one savepoint, and one refused or invalid undoes the others (the ACK's ERR names its OBX); the
refused document's write is then tried alone again, so that the journal keeps the refusal the
policy wrote, as for a message of one document (which needs no savepoint of its own).

A message costs one transaction, shared with the concurrent messages (MLLP connections, HTTP
requests) of every feed: the message is read (HL7 v2, base64, CDA) in its caller's thread before
any transaction, then its duplicate check, feed, record, document and answer are one unit of the
record service's :class:`~carnet.services.group_commit.GroupCommit` (``Gate.write_group``): on
SQLite one durable commit for a burst, each message answered once its own unit is committed (a
failing one undone alone); on PostgreSQL one transaction per message, side by side, whose WAL
flushes PostgreSQL groups itself.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carnet.domain.consent import FEED_SYSTEM
from carnet.domain.documents import FLAG_SYSTEM, VISIBILITY_SYSTEM
from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    Conflict,
    FeedMessageError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from carnet.domain.feeds import DeadLetter, Feed, LetterStatus, feed_principal
from carnet.domain.policy import AccessMode
from carnet.domain.validation import validate
from carnet.feeds.cda import PS_NATIONAL_ID_ROOT, CDADocument, parse_cda
from carnet.feeds.cda_metadata import document_reference_from_cda, master_identifier_for
from carnet.feeds.hl7v2 import (
    Action,
    Document,
    DocumentMessage,
    Flags,
    Header,
    Sender,
    acknowledgement,
    business_ack,
    content_digest,
    parse_message,
    read_header,
)
from carnet.services.documents import check_publishable
from carnet.services.feed_inbox import FeedInbox
from carnet.services.feed_registry import FeedRegistry
from carnet.services.ports import StoreSession
from carnet.services.records import Records, RecordService
from carnet.services.vault import DIRECTORY

log = logging.getLogger("carnet.feeds")

Clock = Callable[[], datetime]
STRUCTURE_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
#: The sealed type of a dead letter (its associated data: directory, this type, letter id, 1).
_LETTER_TYPE = "FeedDeadLetter"
#: The feed a dead letter is kept under when its sender is no registered feed (not a feed id).
UNKNOWN_SENDER = "?"


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What a message got: the ACK (and ZAM) to send back, and what happened to its document.

    ``outcome`` is ``stored``, ``replaced``, ``deleted``, ``pending``, ``not-for-record`` or
    ``refused``; ``document_ids`` the DocumentReferences written or deleted, in message order
    (``document_id`` the first).
    """

    ack: bytes
    business: bytes | None
    outcome: str
    document_ids: tuple[str, ...] = ()
    error: FeedMessageError | None = None

    @property
    def document_id(self) -> str | None:
        """The first DocumentReference written or deleted, if any."""
        return self.document_ids[0] if self.document_ids else None

    @property
    def reply(self) -> bytes:
        """The bytes to answer with: the ACK, then the ZAM if any (each ends with CR)."""
        return self.ack + (self.business or b"")


@dataclass(frozen=True, slots=True)
class _ReadDocument:
    """One document OBX read before any transaction: its CDA, and its DocumentReference.

    ``document`` is the DocumentReference built from the CDA and labelled by the metadata OBXs,
    for a record not yet known (its subject, the feed among its authors and what it replaces
    are set in the transaction); ``document_error`` why it could not be built. ``checked``:
    :func:`check_publishable` accepted ``document`` as it is (then only what the transaction
    adds is validated there, not its ~100 KB content inside SQLite's writer lock).
    """

    obx: int
    raw: bytes
    cda: CDADocument | None = None
    cda_error: CarnetError | None = None
    document: dict[str, Any] | None = None
    document_error: CarnetError | None = None
    checked: bool = False

    @property
    def where(self) -> str:
        """The OBX-5 holding this document, as an ERR-2 names it."""
        return f"OBX^{self.obx}^5"


@dataclass(frozen=True, slots=True)
class _Read:
    """What was read of a message before any transaction: its header, the message, its documents."""

    header: Header | None
    digest: bytes | None = None
    message: DocumentMessage | None = None
    error: FeedMessageError | None = None
    documents: tuple[_ReadDocument, ...] = ()


#: The subject of a document built before its record is known (replaced in the transaction).
_NO_RECORD_YET = "?"


def _read(raw: bytes) -> _Read:
    """Read a message (:func:`_read_message`) with the digest that tells a resend from a reused MSH-10."""
    return dataclasses.replace(_read_message(raw), digest=content_digest(raw))


def _read_message(raw: bytes) -> _Read:
    """Read a message once (HL7 v2, the base64 of each OBX-5, the CDAs) and build its DocumentReferences.

    All of it runs in the caller's thread before any transaction, so that the part of a message
    run in the (on SQLite, single) writing transaction is only what needs the store. Errors are
    kept, to be answered in the order the transaction checks things.
    """
    try:
        message = parse_message(raw)
    except FeedMessageError as exc:
        return _Read(header=read_header(raw), error=exc)
    if not message.flags.for_record:
        return _Read(header=message.header, message=message)
    documents = tuple(_read_document(message, document) for document in message.documents)
    return _Read(header=message.header, message=message, documents=documents)


def _read_document(message: DocumentMessage, found: Document) -> _ReadDocument:
    """Read one document OBX's CDA and build its DocumentReference (errors kept, not raised)."""
    try:
        cda = parse_cda(found.cda)
    except CarnetError as exc:
        return _ReadDocument(found.obx, found.cda, cda_error=exc)
    if message.action is Action.DELETE:
        return _ReadDocument(found.obx, found.cda, cda=cda)
    try:
        document = _draft(cda, found.cda, message.flags)
    except CarnetError as exc:
        return _ReadDocument(found.obx, found.cda, cda=cda, document_error=exc)
    try:
        check_publishable(document)
    except CarnetError:  # checked again in the transaction, which reports it in its order
        return _ReadDocument(found.obx, found.cda, cda=cda, document=document)
    return _ReadDocument(found.obx, found.cda, cda=cda, document=document, checked=True)


def _draft(cda: CDADocument, raw: bytes, flags: Flags) -> dict[str, Any]:
    """The DocumentReference of a CDA, labelled by the message's metadata OBXs, for no record yet.

    Raises:
        InvalidResource: the CDA has no ClinicalDocument/id.
    """
    document = document_reference_from_cda(cda, raw, patient_id=_NO_RECORD_YET)
    _label(document, flags)
    return document


class HL7v2Intake:
    """Takes HL7 v2 messages of registered feeds into the records."""

    def __init__(
        self, *, records: RecordService, registry: FeedRegistry, inbox: FeedInbox, clock: Clock
    ) -> None:
        self._records = records
        self._registry = registry
        self._inbox = inbox
        self._clock = clock

    def receive(
        self, feed_id: str, raw: bytes, *, replay_of: str | None = None, sender_required: bool = False
    ) -> Receipt:
        """Take one message of a feed; return its acknowledgement, once it is durable.

        A message whose MSH-10 was already taken gets the same ACK again and changes nothing. A
        message that cannot be taken is kept as a dead letter (sealed) before its AE/AR is
        returned; ``replay_of`` names the dead letter a replay takes again (none is added then).
        ``sender_required``: the transport authenticated no one (MLLP over plain TCP), so the feed
        must have registered its MSH-3^MSH-4 and the message must carry it (else ``AR``).
        Never raises for a bad message; a storage failure raises, and no ACK is sent.
        """
        read = _read(raw)
        return self._records.gate.write_group.run(
            lambda session: self._receive_in(session, feed_id, raw, read, replay_of, sender_required)
        )

    def _receive_in(
        self,
        session: StoreSession,
        feed_id: str,
        raw: bytes,
        read: _Read,
        replay_of: str | None,
        sender_required: bool,
    ) -> Receipt:
        """Take a message that was read, in a writing transaction the group commits."""
        header = read.header
        control = header.control_id[:64] if header is not None else ""
        if control and replay_of is None:
            prior = session.message_ack(feed_id, control)
            # The same MSH-10 and content (or an answer kept before digests were): sent again.
            if prior is not None and prior[0] != "refused" and prior[2] in (None, read.digest):
                return Receipt(ack=prior[1], business=None, outcome="duplicate")
        receipt = self._take(session, feed_id, read, sender_required=sender_required)
        now = self._clock()
        if receipt.error is not None and receipt.error.dead_letter and replay_of is None:
            session.add_letter(self._letter(session, feed_id, raw, header, receipt.error, now))
        if control:
            session.record_message(feed_id, control, receipt.outcome, receipt.ack, now, read.digest)
        return receipt

    def answer(self, feed_id: str, control_id: str) -> bytes:
        """Return the current answer to a feed's message (its ACK; an AE once the patient declined it).

        Raises:
            NotFound: no message of this feed has this MSH-10.
        """
        with self._records.store.session() as session:
            found = session.message_ack(feed_id, control_id[:64])
        if found is None:
            raise NotFound(f"No message {control_id[:64]!r} of this feed was received.")
        return found[1]

    def dead_letters(self, *, every: bool = False, limit: int = 1000) -> list[DeadLetter]:
        """Return the dead letters (the open ones unless ``every``), metadata only."""
        with self._records.store.session() as session:
            found = session.letters(status=None if every else LetterStatus.OPEN, limit=limit)
        return [dataclasses.replace(letter, sealed=b"") for letter in found]

    def replay(self, letter_id: str) -> Receipt:
        """Take a dead letter again (after a fix: the record opened, the feed's classes widened…).

        Raises:
            NotFound: no such dead letter. Conflict: it was already replayed successfully.
        """
        store, vault = self._records.store, self._records.vault
        with store.session() as session:
            letter = session.letter(letter_id)
            if letter is None:
                raise NotFound(f"No dead letter {letter_id[:64]!r} (carnet feeds dead-letters).")
            if letter.status is LetterStatus.REPLAYED:
                raise Conflict(f"Dead letter {letter_id[:64]} was already taken on a replay.")
            key = vault.key(session, DIRECTORY, self._clock())
        raw = vault.open_resource(key, DIRECTORY, _LETTER_TYPE, letter_id, 1, letter.sealed)
        receipt = self.receive(letter.feed_id, raw, replay_of=letter_id)
        error = receipt.error
        with store.session(write=True) as session:
            session.update_letter(
                letter_id,
                status=LetterStatus.OPEN if error is not None else LetterStatus.REPLAYED,
                error_code=error.hl7_code if error is not None else letter.error_code,
                error=error.message if error is not None else letter.error,
            )
        return receipt

    def _letter(
        self,
        session: StoreSession,
        feed_id: str,
        raw: bytes,
        header: Header | None,
        error: FeedMessageError,
        now: datetime,
    ) -> DeadLetter:
        """Seal a refused message into a dead letter (under the reserved directory key)."""
        letter_id = uuid.uuid4().hex
        vault = self._records.vault
        key = vault.key(session, DIRECTORY, now)
        message_type = f"{header.message_type}^{header.event}" if header is not None else "?"
        return DeadLetter(
            letter_id=letter_id,
            feed_id=feed_id,
            control_id=(header.control_id if header is not None else "")[:64],
            message_type=message_type[:32],
            received_at=now,
            error_code=error.application_code or error.hl7_code,
            error=error.message,
            status=LetterStatus.OPEN,
            attempts=0,
            sealed=vault.seal_resource(key, DIRECTORY, _LETTER_TYPE, letter_id, 1, raw),
        )

    def refuse_sender(self, raw: bytes, reason: str, *, feed_id: str = UNKNOWN_SENDER) -> Receipt:
        """Refuse a message whose sender the transport could not tie to a feed: ``AR`` with ERR.

        Nothing of it is stored in a record; it is kept as a dead letter (sealed, under
        ``feed_id``, the unknown sender's placeholder unless the sender named a feed) so that an
        operator sees who tried; its MSH-10 is not remembered (it belongs to no feed).
        """
        header, now = read_header(raw), self._clock()
        error = FeedMessageError(reason[:280], rejected=True, location="MSH^1^3")
        receipt = self._refused(header, uuid.uuid4().hex[:20], now, error)
        with self._records.store.session(write=True) as session:
            session.add_letter(self._letter(session, feed_id, raw, header, error, now))
        return receipt

    def _take(
        self, session: StoreSession, feed_id: str, read: _Read, *, sender_required: bool = False
    ) -> Receipt:
        """Apply one message that was read; the ACK (and ZAM) it gets."""
        now = self._clock()
        control_id = uuid.uuid4().hex[:20]
        header = read.header
        try:
            feed = self._registry.writer(feed_id, session=session)
            if read.error is not None or read.message is None:
                raise read.error or FeedMessageError("The message could not be read.", hl7_code="100")
            message = read.message
            if sender_required and not feed.sender:
                raise FeedMessageError(
                    "This listener authenticates senders by MSH-3^MSH-4 and the feed registered none "
                    "(carnet feeds add --sender), or by a client certificate over TLS.",
                    rejected=True,
                    location="MSH^1^3",
                )
            if feed.sender and message.header.sender != feed.sender:
                raise FeedMessageError(
                    f"MSH-3^MSH-4 {message.header.sender[:80]!r} is not the sender registered for this feed.",
                    rejected=True,
                    location="MSH^1^4",
                )
            outcome, document_ids = self._apply(session, feed, message, read)
        except (Unauthenticated, AccessDenied) as exc:
            return self._refused(header, control_id, now, _application_error(exc, "901"))
        except FeedMessageError as exc:
            return self._refused(header, control_id, now, exc)
        except (InvalidRequest, Conflict, NotFound) as exc:
            return self._refused(header, control_id, now, _application_error(exc, None))
        ack = acknowledgement(message.header, control_id=control_id, now=now)
        business = None
        if message.flags.reception_ack:
            business = business_ack(
                message.header,
                control_id=uuid.uuid4().hex[:20],
                now=now,
                stored=outcome in ("stored", "replaced", "deleted"),
                document_types=[document.type_code for document in message.documents],
            )
        return Receipt(ack=ack, business=business, outcome=outcome, document_ids=document_ids)

    def _refused(
        self, header: Header | None, control_id: str, now: datetime, error: FeedMessageError
    ) -> Receipt:
        log.info("feed message refused: %s %s", error.hl7_code, error.message)
        return Receipt(
            ack=acknowledgement(header, control_id=control_id, now=now, error=error),
            business=None,
            outcome="refused",
            error=error,
        )

    def _apply(
        self, session: StoreSession, feed: Feed, message: DocumentMessage, read: _Read
    ) -> tuple[str, tuple[str, ...]]:
        """Store, replace or delete the message's documents, all or none; the outcome and their ids.

        Every document is checked (its CDA, INS, record, id, what it replaces) before any is
        written; then each is written. With several documents the writes share a savepoint: one
        refused undoes the others, and is tried alone again for the journal (:meth:`_journal_refusal`).

        Raises:
            FeedMessageError: a document is invalid or refused (ERR-2 its ``OBX^n^5``), its INS is
                missing, not PID-3's, or of no record.
        """
        if not message.flags.for_record:
            return "not-for-record", ()
        records = self._records.records(feed_principal(feed), mode=AccessMode.FEED, session=session)
        patients: dict[tuple[str, str], str] = {}
        placed = [self._place(records, message, document, patients) for document in read.documents]
        if len(placed) == 1:  # its write is one savepoint already (the gate's): no other needed
            outcome, written = self._write(session, records, feed, message, placed[0])
            return outcome, (written,) if written else ()
        results: list[tuple[str, str | None]] = []
        try:
            with session.savepoint():
                for index, one in enumerate(placed):
                    # One new-document notice per message: the first document's tells the patient.
                    results.append(self._write(session, records, feed, message, one, told=index > 0))
        except CarnetError:
            if len(results) < len(placed):  # a document's write was refused (not the savepoint's end)
                failed = placed[len(results)]
                self._journal_refusal(session, lambda: self._write(session, records, feed, message, failed))
            raise
        outcomes = [outcome for outcome, _ in results]
        outcome = "pending" if "pending" in outcomes else outcomes[0]
        return outcome, tuple(written for _, written in results if written)

    def _place(
        self,
        records: Records,
        message: DocumentMessage,
        read: _ReadDocument,
        patients: dict[tuple[str, str], str],
    ) -> _Placed:
        """Check one document before anything is written: its CDA, INS, record, id and parent.

        Raises:
            FeedMessageError: what is wrong, at the document's OBX (``902`` at PID-3).
        """
        where = read.where
        if read.cda_error is not None:
            raise _located(read.cda_error, where) from read.cda_error
        cda = read.cda if read.cda is not None else parse_cda(read.raw)
        ins = cda.ins
        if ins is None or not ins.extension:
            raise FeedMessageError(
                "The CDA document names no INS in recordTarget/patientRole/id.",
                application_code="903",
                location=where,
            )
        if (ins.root, ins.extension) not in message.ins:
            raise FeedMessageError(
                "The CDA's INS (recordTarget) is not one of PID-3's INS; they must be the same patient.",
                application_code="904",
                location=where,
            )
        patient_id = patients.get((ins.root, ins.extension))
        if patient_id is None:
            patient_id = records.record_with(f"urn:oid:{ins.root}", ins.extension)
            if patient_id is None:
                raise FeedMessageError(
                    "No record carries this INS; the patient's record must be opened first.",
                    application_code="902",
                    location="PID^1^3",
                )
            patients[(ins.root, ins.extension)] = patient_id
        if message.action is Action.DELETE:
            unique = master_identifier_for(cda.id) if cda.id is not None else None
            if unique is None:
                raise FeedMessageError(
                    "The CDA to delete has no ClinicalDocument/id.", hl7_code="101", location=where
                )
            return _Placed(where=where, patient_id=patient_id, unique=unique)
        if read.document_error is not None:
            raise _located(read.document_error, where) from read.document_error
        draft = read.document if read.document is not None else _draft(cda, read.raw, message.flags)
        parent = cda.replaces
        if message.action is Action.REPLACE and parent is None:
            raise FeedMessageError(
                "A replacement's CDA must name the replaced document (relatedDocument typeCode RPLC).",
                hl7_code="101",
                location=where,
            )
        return _Placed(where=where, patient_id=patient_id, draft=draft, parent=parent, checked=read.checked)

    def _write(
        self,
        session: StoreSession,
        records: Records,
        feed: Feed,
        message: DocumentMessage,
        placed: _Placed,
        *,
        told: bool = False,
    ) -> tuple[str, str | None]:
        """Write one checked document; its outcome and DocumentReference id (none while it waits).

        ``told``: an earlier document of the message gave the patient its new-document notice.

        Raises:
            FeedMessageError: the write was refused (ERR-2 the document's OBX); the patient
                refuses the feed (no dead letter).
        """
        try:
            if placed.unique is not None:
                return "deleted", records.withdraw(
                    placed.patient_id, placed.unique["system"], placed.unique["value"]
                )
            # A copy whose top-level elements are set anew: the unit may run twice (group commit).
            document = {**(placed.draft or {}), "subject": {"reference": f"Patient/{placed.patient_id}"}}
            _add_authors(document, feed, message.sender)
            if placed.parent is not None and message.action is Action.REPLACE:
                document["relatesTo"] = [
                    {"code": "replaces", "target": {"identifier": master_identifier_for(placed.parent)}}
                ]
            checked = placed.checked and _additions_valid(document)
            try:
                result = records.publish(document, already_told=told, checked=checked)
            except AccessDenied as exc:
                if "feed-ask-patient" in exc.reasons:
                    # "Ask me first": the document waits, sealed, for the patient's decision.
                    self._inbox.offer(
                        feed, placed.patient_id, document, message=message.header, session=session
                    )
                    return "pending", None
                if "feed-refused" in exc.reasons:
                    raise FeedMessageError(
                        "The patient refuses this feed's documents; nothing was kept.",
                        dead_letter=False,
                        location=placed.where,
                    ) from None
                raise
        except FeedMessageError:
            raise
        except (Unauthenticated, AccessDenied, InvalidRequest, Conflict, NotFound) as exc:
            raise _located(exc, placed.where) from exc
        return ("replaced" if message.action is Action.REPLACE else "stored"), result.stored.resource_id

    @staticmethod
    def _journal_refusal(session: StoreSession, write: Callable[[], object]) -> None:
        """Try a refused document's write again, alone, so that the journal keeps its refusal.

        The message's savepoint undid, with the other documents' writes, the entry the policy
        journaled when it refused this one. The policy decides on the document alone, so the
        write is refused again and the gate journals it (in a savepoint of its own, which stays);
        should it pass this time, it is undone.
        """
        try:
            with session.savepoint():
                try:
                    write()
                except CarnetError:
                    return
                raise _Undone
        except _Undone:
            pass


class _Undone(Exception):
    """Undoes a write that was only tried again for its refusal's journal entry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Placed:
    """One document checked and placed in its record: what to publish (``draft``, replacing
    ``parent``) or the uniqueId to delete (``unique``)."""

    where: str
    patient_id: str
    draft: dict[str, Any] | None = None
    parent: Any = None
    unique: dict[str, str] | None = None
    #: ``check_publishable`` accepted the draft before the transaction (:class:`_ReadDocument`).
    checked: bool = False


def _additions_valid(document: Mapping[str, Any]) -> bool:
    """Whether what the transaction added to a checked draft is valid R4: its authors, what it replaces.

    Checked alone, in a DocumentReference holding only them (and its required elements): the
    draft's other elements were accepted before, and the subject set here is a reference to a
    record's id. A False lets :func:`check_publishable` judge the whole document as before.
    """
    added = {k: document[k] for k in ("author", "relatesTo") if k in document}
    try:
        validate(
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "content": [{"attachment": {"contentType": "text/xml"}}],
                **added,
            }
        )
    except CarnetError:
        return False
    return True


def _located(exc: CarnetError, where: str) -> FeedMessageError:
    """A document's error as the ACK's ERR, at its OBX."""
    if isinstance(exc, FeedMessageError):
        return exc
    return _application_error(exc, "901" if isinstance(exc, (Unauthenticated, AccessDenied)) else None, where)


#: Where the documents service says that the document a replacement names is not in the record.
_REPLACED = "DocumentReference.relatesTo.target.identifier"


def _application_error(exc: CarnetError, application_code: str | None, where: str = "") -> FeedMessageError:
    """An error of the store or the policy as the ACK's ERR: 204 (unknown key) for a document not
    found, else 207; ERR-2 the document's OBX (``where``) when it concerns one."""
    # The document a deletion (NotFound) or a replacement (relatesTo unresolved) names is not in the record.
    if isinstance(exc, NotFound) or _REPLACED in exc.expression:
        return FeedMessageError(
            exc.message, hl7_code="204", application_code=application_code, location=where or "OBX^1^5"
        )
    return FeedMessageError(exc.message, hl7_code="207", application_code=application_code, location=where)


def _label(document: dict[str, Any], flags: Flags) -> None:
    """Apply the metadata OBXs to the document: visibility labels and the minor's secret."""
    labels = [
        code
        for code, on in (
            ("MASQUE_PS", flags.masked_from_professionals),
            ("INVISIBLE_PATIENT", flags.invisible_to_patient),
            ("INVISIBLE_REPRESENTANTS_LEGAUX", flags.invisible_to_representatives),
        )
        if on
    ]
    for code in labels:
        document.setdefault("securityLabel", []).append(
            {"coding": [{"system": VISIBILITY_SYSTEM, "code": code}]}
        )
    if flags.secret_connection:
        meta = document.setdefault("meta", {})
        meta.setdefault("tag", []).append({"system": FLAG_SYSTEM, "code": "minor-secret"})


def _add_authors(document: dict[str, Any], feed: Feed, sender: Sender | None) -> None:
    """Name the feed among the authors (it may then replace and delete its documents), and PRT SB."""
    authors: list[dict[str, Any]] = list(document.get("author") or [])
    authors.append(
        {"type": "Device", "identifier": {"system": FEED_SYSTEM, "value": feed.feed_id}, "display": feed.name}
    )
    if sender is not None:
        known = {str((a.get("identifier") or {}).get("value")) for a in authors}
        if sender.national_id and sender.national_id not in known:
            display = " ".join(p for p in (sender.given_name, sender.family_name) if p)
            person: dict[str, Any] = {
                "type": "Practitioner",
                "identifier": {"system": f"urn:oid:{PS_NATIONAL_ID_ROOT}", "value": sender.national_id},
            }
            if display:
                person["display"] = display
            authors.append(person)
        if sender.organisation_id and sender.organisation_id not in known:
            organisation: dict[str, Any] = {
                "type": "Organization",
                "identifier": {"system": STRUCTURE_SYSTEM, "value": sender.organisation_id},
            }
            if sender.organisation:
                organisation["display"] = sender.organisation
            authors.append(organisation)
    document["author"] = authors
