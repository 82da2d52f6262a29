"""The record service: every read and write of FHIR resources, for one principal.

Each operation follows the same path: load what the policy needs → ``decide`` → act →
seal/open, inside one store transaction. Routes never touch storage; they call this.
A refusal on something the caller may not know exists is reported as ``NotFound``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from carnet.domain import fhirjson
from carnet.domain.audit_event import audit_event
from carnet.domain.consent import declares_for, grants_from_consents
from carnet.domain.documents import (
    FLAG_SYSTEM,
    SUBMISSION_SET_CODE,
    attachments,
    binary_content,
    check_attachment,
    content_fingerprint,
    decode_base64,
    document_facts,
    master_identifier,
    replaced_ids,
    sha1_base64,
)
from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    Conflict,
    Gone,
    InvalidRequest,
    InvalidResource,
    JournalUnavailable,
    NotFound,
    NotSupported,
    PreconditionFailed,
    RecordShredded,
    UnsupportedSearch,
)
from carnet.domain.journal import Entry, StoredEntry
from carnet.domain.policy import (
    NO_GRANTS,
    NO_RECORD,
    AccessMode,
    AccessRequest,
    Action,
    Decision,
    DocumentFacts,
    Grants,
    Obligation,
    Profile,
    Target,
    decide,
)
from carnet.domain.principal import FORBIDDEN_KINDS, ActorKind, Principal
from carnet.domain.resources import (
    SUPPORTED_TYPES,
    is_closed,
    is_directory_type,
    is_valid_id,
    patient_references,
    replace_strings,
)
from carnet.domain.search import (
    DateClause,
    SearchQuery,
    SortKey,
    clause_keys,
    index_tokens,
    matches_dates,
    parse_search,
    sort_value,
    token_keys,
)
from carnet.domain.validation import validate
from carnet.services.journal import Journal, parse_event_id
from carnet.services.notifications import Notice, NoticeEvent, NotificationStore, Notifier
from carnet.services.ports import Store, StoredVersion, StoreSession
from carnet.services.vault import DIRECTORY, Vault

Clock = Callable[[], datetime]
NewId = Callable[[], str]
log = logging.getLogger("carnet.records")

#: How a failed request ends, as the journal records it.
_OUTCOMES: tuple[tuple[type[CarnetError], str], ...] = (
    (Gone, "gone"),
    (NotFound, "not-found"),
    (AccessDenied, "denied"),
    (PreconditionFailed, "precondition-failed"),
    (Conflict, "conflict"),
    (InvalidResource, "invalid"),
    (InvalidRequest, "invalid-request"),
    (RecordShredded, "erased"),
)


def _outcome(error: CarnetError | None) -> str:
    if error is None:
        return "ok"
    return next((name for kind, name in _OUTCOMES if isinstance(error, kind)), "error")


@dataclass(slots=True)
class _Trail:
    """What one call did with one record: the journal entry it will write."""

    allowed: bool = False
    allowed_reasons: set[str] = dataclasses.field(default_factory=set)
    denied_reasons: set[str] = dataclasses.field(default_factory=set)
    targets: dict[str, None] = dataclasses.field(default_factory=dict)
    notify: bool = False
    new_document: bool = False


class Stored:
    """A resource version as returned to a caller; ``resource`` is None for a deletion.

    Opened versions keep the stored JSON bytes and parse them only when asked: a page of
    search results or a whole record goes back to the client without a parse/serialise round.
    """

    __slots__ = ("_parsed", "_raw", "last_updated", "resource_id", "resource_type", "version_id")

    def __init__(
        self,
        *,
        resource_type: str,
        resource_id: str,
        version_id: int,
        last_updated: datetime,
        resource: dict[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version_id = version_id
        self.last_updated = last_updated
        self._parsed = resource
        self._raw = raw

    @property
    def resource(self) -> dict[str, Any] | None:
        """The resource as JSON values (parsed on first use)."""
        if self._parsed is None and self._raw is not None:
            self._parsed = fhirjson.loads_stored(self._raw)
        return self._parsed

    @property
    def json(self) -> bytes | None:
        """The resource as JSON bytes, exactly as stored."""
        if self._raw is None and self._parsed is not None:
            self._raw = fhirjson.dumps(self._parsed)
        return self._raw

    @property
    def etag(self) -> str:
        """The weak ETag of this version."""
        return f'W/"{self.version_id}"'


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    """The outcome of a create or update; ``created`` is False when a conditional create matched."""

    stored: Stored
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """One page of search results."""

    entries: list[Stored]
    total: int
    query: SearchQuery

    @property
    def resources(self) -> list[dict[str, Any]]:
        """The page's resources as JSON values."""
        return [r for r in (e.resource for e in self.entries) if r is not None]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRequest:
    """One entry of a transaction or batch Bundle, parsed at the edge."""

    method: str
    url: str
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_match: str | None = None
    if_none_exist: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryResponse:
    """The result of one Bundle entry (``error`` set when a batch entry failed)."""

    status: int
    location: str | None = None
    stored: Stored | None = None
    search: SearchResult | None = None
    error: CarnetError | None = None


def instant(moment: datetime) -> str:
    """Render a FHIR instant in UTC with milliseconds."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_etag(value: str) -> int:
    """Read a version number from an ``If-Match`` value (``W/"3"`` or ``3``).

    Raises:
        InvalidRequest: not a version ETag.
    """
    number = _version_number(value.strip().removeprefix("W/").strip('"'))
    if number is None:
        raise InvalidRequest(f'If-Match {value[:30]!r} is not a version ETag; send W/"<versionId>".')
    return number


#: Version numbers are stored as 32-bit integers; a larger one cannot exist.
_MAX_VERSION = 2**31 - 1


def _version_number(text: str) -> int | None:
    """Return the version number spelled by ``text`` in ASCII digits, or None if it spells none."""
    # isdigit() alone admits "²" and other digits that int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 10:
        return None
    number = int(text)
    return number if number <= _MAX_VERSION else None


def _check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type {resource_type[:64]!r} is not served here; see /fhir/metadata.")


def _check_writable(resource_type: str) -> None:
    """Refuse writing the types Carnet writes itself.

    Raises:
        NotSupported: an AuditEvent (the journal is written by Carnet, never by a client).
    """
    if resource_type == "AuditEvent":
        raise NotSupported("AuditEvents are written by Carnet's access journal, never by a client.")


def _check_id(resource_type: str, resource_id: str) -> None:
    _check_type(resource_type)
    if not is_valid_id(resource_id):
        raise InvalidRequest(f"{resource_id[:70]!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).")


class RecordService:
    """Builds the per-principal record access; holds the shared adapters."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        profile: Profile,
        clock: Clock,
        new_id: NewId,
        journal: Journal,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.profile = profile
        self.clock = clock
        self.new_id = new_id
        self.journal = journal
        self.notifier = notifier or Notifier(vault=vault, clock=clock, new_id=new_id)

    def resolve(self, principal: Principal) -> Principal:
        """Attach the record a patient holds, found by the identifier in their token."""
        if principal.kind is not ActorKind.PATIENT or principal.patient_id or principal.identifier is None:
            return principal
        with self.store.session() as session:
            ident = principal.identifier
            found = session.find_identities(
                self.vault.identity_hash(session, "sc", ident.system, ident.value, now=self.clock())
            )
        return dataclasses.replace(principal, patient_id=found[0]) if found else principal

    def records(
        self,
        principal: Principal,
        *,
        mode: AccessMode = AccessMode.NORMAL,
        justification: str | None = None,
        confirmed_by: str | None = None,
    ) -> Records:
        """Return the record access of one principal, in one access mode."""
        return Records(self, principal, mode=mode, justification=justification, confirmed_by=confirmed_by)


class Records:
    """Everything one principal may do with records; each call is one transaction."""

    def __init__(
        self,
        service: RecordService,
        principal: Principal,
        *,
        mode: AccessMode = AccessMode.NORMAL,
        justification: str | None = None,
        confirmed_by: str | None = None,
    ) -> None:
        self._svc = service
        self._vault = service.vault
        self.actor = principal
        self.mode = mode
        self.justification = justification
        self.confirmed_by = confirmed_by
        #: Obligations of the decisions that allowed this principal's requests (DESIGN §3).
        self.obligations: set[Obligation] = set()
        self._active: StoreSession | None = None
        self._grants: dict[str, Grants] = {}
        self._open_records: dict[str, bool] = {}
        self._binary_facts: dict[str, DocumentFacts] = {}
        # Record keys unwrapped during this principal's request (one unwrap per record, not per row).
        self._keys: dict[str, bytes] = {}
        # Binaries written by this request, so a DocumentReference in the same transaction is
        # checked against its content without reading it back.
        self._written_binaries: dict[tuple[str, str], Mapping[str, Any]] = {}
        # What the current call did with each record it touched: one journal entry each.
        self._trail: dict[str, _Trail] = {}
        self._call: tuple[str, str] = ("", "")

    # -- policy -------------------------------------------------------------------------

    def _target(
        self,
        patient_id: str | None,
        resource_type: str,
        *,
        opens: bool = False,
        document: DocumentFacts | None = None,
    ) -> Target:
        if patient_id == DIRECTORY:
            return Target(patient_id=None, resource_type=resource_type, in_directory=True)
        return Target(
            patient_id=patient_id,
            resource_type=resource_type,
            opens_own_record=opens,
            document=document,
            record_open=self._is_open(patient_id),
        )

    def _is_open(self, patient_id: str | None) -> bool:
        """Whether a record is open, read from its Patient (once per request).

        Only professionals and feeds, whose access a closed record stops, pay for reading it.
        """
        if patient_id is None or self._active is None:
            return True
        if self.actor.kind not in (ActorKind.PROFESSIONAL, ActorKind.FEED):
            return True
        if patient_id not in self._open_records:
            try:
                key = self._key(self._active, patient_id)
            except RecordShredded:
                return True  # nothing left to read; the key's absence answers
            versions = self._active.search(patient_id, "Patient", (), ())
            patients = [r for r in (self._open(key, v).resource for v in versions) if r is not None]
            self._open_records[patient_id] = not any(is_closed(p) for p in patients)
        return self._open_records[patient_id]

    @contextmanager
    def _session(
        self, interaction: str, resource_type: str, *, write: bool = False
    ) -> Iterator[StoreSession]:
        """Open the store transaction of one call, and journal what it did with each record.

        A writing call journals in its own transaction, so the entry commits with the change or
        neither does; a reading call journals right after its read, before its caller gets the
        data; a call that fails after a decision about a record journals in a transaction of its
        own. If the journal cannot be written, the call fails (``JournalUnavailable``): nothing is
        returned and nothing is changed.
        """
        self._trail = {}
        self._call = (interaction, resource_type)
        try:
            with self._svc.store.session(write=write) as session:
                self._active = session
                try:
                    yield session
                    if write and self._trail:
                        self._record(session, None)
                finally:
                    self._active = None
        except JournalUnavailable:
            raise
        except CarnetError as error:
            if self._trail:
                self._record_apart(error)
            raise
        if not write and self._trail:
            self._record_apart(None)

    def _grants_of(self, patient_id: str | None) -> Grants:
        """The patient's choices, read from the Consents of their record (once per request).

        Only the actors whose access depends on them (professionals, representatives, feeds)
        pay for reading them.
        """
        if patient_id is None or patient_id == DIRECTORY or self._active is None:
            return NO_GRANTS
        if self.actor.kind not in (ActorKind.PROFESSIONAL, ActorKind.REPRESENTATIVE, ActorKind.FEED):
            return NO_GRANTS
        if patient_id not in self._grants:
            try:
                key = self._key(self._active, patient_id)
            except RecordShredded:
                return NO_GRANTS
            versions = self._active.search(patient_id, "Consent", (), ())
            consents = [r for r in (self._open(key, v).resource for v in versions) if r is not None]
            self._grants[patient_id] = grants_from_consents(consents, self._svc.clock())
        return self._grants[patient_id]

    def _decide(self, action: Action, target: Target) -> Decision:
        request = AccessRequest(
            actor=self.actor,
            action=action,
            target=target,
            mode=self.mode,
            justification=self.justification,
            confirmed_by=self.confirmed_by,
        )
        decision = decide(request, self._grants_of(target.patient_id), self._svc.profile, self._svc.clock())
        trail = self._trail_of(target.patient_id)
        if decision.allowed:
            self.obligations |= decision.obligations
            if trail is not None:
                trail.allowed = True
                trail.allowed_reasons.update(decision.reasons)
                trail.notify |= Obligation.NOTIFY_PATIENT in decision.obligations
        elif trail is not None:
            trail.denied_reasons.update(decision.reasons)
        return decision

    # -- the journal ----------------------------------------------------------------------

    def _trail_of(self, patient_id: str | None) -> _Trail | None:
        if patient_id is None or patient_id == DIRECTORY:
            return None
        if patient_id not in self._trail:
            self._trail[patient_id] = _Trail()
        return self._trail[patient_id]

    def _disclose(self, patient_id: str, stored: Stored) -> None:
        """Note a resource version this call returns or writes (the entry's targets)."""
        trail = self._trail_of(patient_id)
        if trail is not None:
            trail.targets[f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"] = None

    def _entries(self, session: StoreSession, error: CarnetError | None) -> list[tuple[bytes, Entry]]:
        """Build the journal entries of this call, one per record it touched."""
        actor, now = self.actor, self._svc.clock()
        interaction, resource_type = self._call
        actor_id = actor.professional_id or actor.feed_id or actor.subject
        out: list[tuple[bytes, Entry]] = []
        for patient_id, trail in self._trail.items():
            try:
                key = self._key(session, patient_id)
            except RecordShredded:
                continue  # an erased record has nothing left to disclose, and no key to seal with
            refused = not trail.allowed or (
                isinstance(error, (AccessDenied, NotFound)) and bool(trail.denied_reasons)
            )
            reasons = trail.denied_reasons if refused else trail.allowed_reasons
            notified = () if refused or error is not None else self._notify(session, key, patient_id, trail)
            entry = Entry(
                recorded=now,
                patient_id=patient_id,
                actor_kind=actor.kind.value,
                actor_id=actor_id,
                actor_display=actor.display,
                actor_profession=actor.profession,
                actor_specialty=actor.specialty,
                action=interaction,
                resource_type=resource_type,
                targets=tuple(trail.targets) if error is None else (),
                mode=self.mode.value,
                decision="deny" if refused else "permit",
                outcome=_outcome(error),
                reasons=tuple(sorted(reasons)),
                justification=self.justification,
                confirmed_by=self.confirmed_by,
                notified=notified,
            )
            out.append((key, entry))
        return out

    def _events(self, session: StoreSession, key: bytes, patient_id: str, trail: _Trail) -> list[NoticeEvent]:
        """The notices an allowed access gives the patient (DESIGN §9); at most one per access."""
        actor, mode = self.actor, self.mode
        if mode is AccessMode.BREAK_GLASS:
            return [NoticeEvent.BREAK_GLASS]
        if mode is AccessMode.REGULATION:
            return [NoticeEvent.REGULATION]
        if trail.notify and mode is AccessMode.TREATING:
            return [NoticeEvent.MASKED_ACCESS]
        events: list[NoticeEvent] = []
        if actor.kind is ActorKind.PROFESSIONAL:
            actor_id = actor.professional_id or actor.subject
            first = session.add_journal_actor(
                patient_id, self._vault.token_hash(key, "journal-actor", (actor_id,))
            )
            if first or trail.notify:
                events.append(NoticeEvent.NEW_PROFESSIONAL)
        if trail.new_document and actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
            events.append(NoticeEvent.NEW_DOCUMENT)
        return events

    def _notify(self, session: StoreSession, key: bytes, patient_id: str, trail: _Trail) -> tuple[str, ...]:
        """Enqueue, in ``session``, the notices of one allowed access; return those enqueued."""
        sent: list[str] = []
        for event in self._events(session, key, patient_id, trail):
            notice = Notice.of(event, self.actor, patient_id=patient_id, at=self._svc.clock(), mode=self.mode)
            if self._svc.notifier.notify(cast(NotificationStore, session), key, notice):
                sent.append(event.value)
        return tuple(sent)

    def _record(self, session: StoreSession, error: CarnetError | None) -> None:
        """Append this call's journal entries in ``session`` (fail closed)."""
        try:
            entries = self._entries(session, error)
            if entries:
                self._svc.journal.append(session, entries)
        except Exception as exc:
            log.error("journal write failed: %s", type(exc).__name__)
            raise JournalUnavailable(
                "The access journal could not be written, so the request was not carried out; retry later."
            ) from exc

    def _record_apart(self, error: CarnetError | None) -> None:
        """Journal this call in a transaction of its own (reads, and calls that failed).

        For a call that failed, nothing is returned whatever happens here, so a journal that
        cannot be written (or a key that cannot be unwrapped to seal the entry) is logged and
        the call's own error is reported.
        """
        try:
            with self._svc.store.session(write=True) as session:
                self._record(session, error)
        except Exception as exc:
            if error is not None:
                log.error("journal write of a failed request failed: %s", type(exc.__cause__ or exc).__name__)
                return
            if isinstance(exc, JournalUnavailable):
                raise
            log.error("journal write failed: %s", type(exc).__name__)
            raise JournalUnavailable(
                "The access journal could not be written, so the request was not carried out; retry later."
            ) from exc

    def _facts(self, patient_id: str, stored: Stored) -> DocumentFacts | None:
        """The document facts the policy needs for one opened resource (None if not a document).

        A Binary takes the facts of the current DocumentReference of its record that points to it.
        """
        if stored.resource_type == "DocumentReference" and stored.resource is not None:
            facts = document_facts(stored.resource)
            if stored.resource.get("status") == "current":
                # A Binary read in the same request takes these facts without another query.
                for _, attachment in attachments(stored.resource):
                    if isinstance(attachment.get("url"), str):
                        self._binary_facts.setdefault(attachment["url"], facts)
            return facts
        if stored.resource_type != "Binary" or self._active is None:
            return None
        cached = self._binary_facts.get(f"Binary/{stored.resource_id}")
        if cached is not None:
            return cached
        query = parse_search("DocumentReference", [("binary", f"Binary/{stored.resource_id}")])
        documents = [d for d in self._matching(self._active, patient_id, query, filtered=False) if d.resource]
        return document_facts(documents[0].resource or {}) if documents else None

    def _stored_facts(
        self, session: StoreSession, patient_id: str, version: StoredVersion
    ) -> DocumentFacts | None:
        """The document facts of a stored version (its authors decide who may change it)."""
        if version.deleted or version.resource_type not in ("DocumentReference", "Binary"):
            return None
        try:
            return self._facts(patient_id, self._open(self._key(session, patient_id), version))
        except RecordShredded:
            return None

    def _visible(self, patient_id: str, stored: Stored) -> bool:
        """Tell whether the caller may see one opened resource (its facts decided, per resource)."""
        if stored.json is None:  # a deletion; ``json`` does not parse, ``resource`` would
            return True
        target = self._target(patient_id, stored.resource_type, document=self._facts(patient_id, stored))
        if not self._decide(Action.READ, target).allowed:
            return False
        self._disclose(patient_id, stored)
        return True

    def _check(self, action: Action, target: Target, *, hide: bool, what: str = "") -> Decision:
        decision = self._decide(action, target)
        if not decision.allowed:
            if hide or NO_RECORD in decision.reasons:
                raise NotFound(f"{what or target.resource_type} is not known.")
            raise AccessDenied("Access to this record is not allowed.", reasons=decision.reasons)
        return decision

    # -- reading --------------------------------------------------------------------------

    def _open(self, key: bytes, version: StoredVersion) -> Stored:
        raw = None
        if version.sealed is not None:
            raw = self._vault.open_resource(
                key,
                version.patient_id,
                version.resource_type,
                version.resource_id,
                version.version_id,
                version.sealed,
            )
        return Stored(
            resource_type=version.resource_type,
            resource_id=version.resource_id,
            version_id=version.version_id,
            last_updated=version.last_updated,
            raw=raw,
        )

    def _key(self, session: StoreSession, patient_id: str) -> bytes:
        if patient_id not in self._keys:
            self._keys[patient_id] = self._vault.key(session, patient_id, self._svc.clock())
        return self._keys[patient_id]

    def _refuse_forbidden_kind(self, action: Action, resource_type: str) -> None:
        """Refuse with 403, before anything is looked up, the kinds of actor that never get in.

        Such a refusal depends only on who asks, so unlike a per-record refusal it reveals nothing
        about what exists.

        Raises:
            AccessDenied: the actor is an employer, complementary insurer, bank or contract assessor.
        """
        if self.actor.kind in FORBIDDEN_KINDS:
            self._check(action, self._target(None, resource_type), hide=False)

    def _locate(self, session: StoreSession, resource_type: str, resource_id: str, action: Action) -> str:
        _check_id(resource_type, resource_id)
        self._refuse_forbidden_kind(action, resource_type)
        what = f"{resource_type}/{resource_id}"
        patient_id = session.locate(resource_type, resource_id)
        if patient_id is None:
            raise NotFound(f"{what} is not known.")
        decision = self._decide(action, self._target(patient_id, resource_type))
        # A document's facts are only known once it is opened: that check follows in ``_shown``.
        if not decision.allowed and decision.reasons != ("document-facts-missing",):
            raise NotFound(f"{what} is not known.")
        return patient_id

    def _shown(self, patient_id: str, stored: Stored) -> Stored:
        """Return an opened resource if the caller may see it, else the same NotFound as a missing one."""
        if not self._visible(patient_id, stored):
            raise NotFound(f"{stored.resource_type}/{stored.resource_id} is not known.")
        return stored

    def _read(self, session: StoreSession, resource_type: str, resource_id: str) -> Stored:
        patient_id = self._locate(session, resource_type, resource_id, Action.READ)
        version = session.current(patient_id, resource_type, resource_id)
        if version is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        if version.deleted:
            self._hide_deleted(session, patient_id, version)
            raise Gone(f"{resource_type}/{resource_id} was deleted.")
        return self._shown(patient_id, self._open(self._key(session, patient_id), version))

    def _hide_deleted(self, session: StoreSession, patient_id: str, deletion: StoredVersion) -> None:
        """Answer "unknown" for a deleted resource whose last live version the caller could not see."""
        if deletion.version_id <= 1:
            return
        last = session.version(
            patient_id, deletion.resource_type, deletion.resource_id, deletion.version_id - 1
        )
        if last is not None and last.sealed is not None:
            self._shown(patient_id, self._open(self._key(session, patient_id), last))

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """Read the current version of a resource.

        Raises:
            NotFound: unknown, or not for this caller. Gone: deleted, or the record was erased.
        """
        if resource_type == "AuditEvent":
            return self._journal_read(resource_id)
        with self._session("read", resource_type) as session:
            return self._read(session, resource_type, resource_id)

    def _vread(self, session: StoreSession, resource_type: str, resource_id: str, version_id: str) -> Stored:
        patient_id = self._locate(session, resource_type, resource_id, Action.VREAD)
        number = _version_number(version_id)
        if number is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id[:20]!r}.")
        version = session.version(patient_id, resource_type, resource_id, number)
        if version is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}.")
        if version.deleted:
            raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion.")
        return self._shown(patient_id, self._open(self._key(session, patient_id), version))

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> Stored:
        """Read one version of a resource."""
        with self._session("vread", resource_type) as session:
            return self._vread(session, resource_type, resource_id, version_id)

    def history(
        self,
        resource_type: str,
        resource_id: str | None,
        patient_id: str | None,
        since: datetime | None = None,
    ) -> list[Stored]:
        """Return the versions of a resource, or of a type within one record, newest first.

        Raises:
            InvalidRequest: a type history without a patient (records are patient-centred).
        """
        with self._session("history", resource_type) as session:
            if resource_id is not None:
                owner = self._locate(session, resource_type, resource_id, Action.HISTORY)
            else:
                _check_type(resource_type)
                if is_directory_type(resource_type):
                    owner = DIRECTORY
                elif patient_id is None:
                    raise InvalidRequest(
                        f"History of {resource_type} covers one record: add ?patient=Patient/<id>."
                    )
                elif not is_valid_id(patient_id):
                    raise InvalidRequest(
                        f"patient={patient_id[:70]!r} is not a Patient id; give Patient/<id>."
                    )
                else:
                    owner = patient_id
                self._check(Action.HISTORY, self._target(owner, resource_type), hide=False)
            try:
                key = self._key(session, owner)
            except RecordShredded:
                if resource_id is not None:
                    raise
                return []
            versions = session.history(owner, resource_type, resource_id)
            if since is not None:
                versions = [v for v in versions if v.last_updated >= since]
            opened = [self._open(key, v) for v in versions]
            shown = [stored for stored in opened if self._visible(owner, stored)]
            if resource_id is not None and opened and not any(s.resource is not None for s in shown):
                # Every version is hidden from the caller: answer as for an unknown id.
                raise NotFound(f"{resource_type}/{resource_id} is not known.")
            return shown

    # -- writing --------------------------------------------------------------------------

    def _place(self, session: StoreSession, resource: Mapping[str, Any], hint: str | None = None) -> str:
        """Return the record a new resource belongs to.

        A Binary names its record through ``securityContext`` (the Patient, or the resource it
        belongs to); inside a transaction, the DocumentReference that points to it gives the hint.
        """
        resource_type = str(resource["resourceType"])
        if is_directory_type(resource_type):
            return DIRECTORY
        candidates = list(dict.fromkeys(patient_references(resource)))
        if candidates:
            return candidates[0]
        if resource_type == "Binary":
            context = (resource.get("securityContext") or {}).get("reference")
            if isinstance(context, str) and context.count("/") == 1:
                owner = session.locate(*context.split("/"))
                if owner is not None and owner != DIRECTORY:
                    return owner
            if hint is not None:
                return hint
            raise InvalidResource(
                "A Binary names its record through securityContext (Patient/<id> or the resource it belongs to).",
                expression=("securityContext",),
            )
        raise InvalidResource(
            f"{resource_type} must reference its patient (e.g. subject or patient = Patient/<id>): "
            "every clinical resource belongs to one record."
        )

    def _ensure_record(self, session: StoreSession, patient_id: str) -> bytes:
        try:
            return self._key(session, patient_id)
        except RecordShredded:
            raise InvalidResource(f"Patient/{patient_id} is not a record on this server.") from None

    def _write(
        self,
        session: StoreSession,
        *,
        patient_id: str,
        key: bytes,
        resource_type: str,
        resource_id: str,
        version_id: int,
        resource: Mapping[str, Any] | None,
    ) -> Stored:
        now = self._svc.clock()
        body: dict[str, Any] | None = None
        sealed = None
        if resource is not None:
            if resource_type == "Consent":
                # A patient's choice that the policy could not read later would lock the record:
                # refuse it now (InvalidResource, 422), like any other invalid resource.
                grants_from_consents([resource], now)
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version_id)
            meta["lastUpdated"] = instant(now)
            body = {"resourceType": resource_type, "id": resource_id, "meta": meta}
            body.update({k: v for k, v in resource.items() if k not in body})
            sealed = self._vault.seal_resource(
                key, patient_id, resource_type, resource_id, version_id, fhirjson.dumps(body)
            )
        session.write_version(
            StoredVersion(
                patient_id=patient_id,
                resource_type=resource_type,
                resource_id=resource_id,
                version_id=version_id,
                last_updated=now,
                deleted=resource is None,
                sealed=sealed,
            )
        )
        if resource_type == "Binary" and body is not None:
            self._written_binaries[(patient_id, resource_id)] = body
        tokens = index_tokens(body) if body is not None else set()
        session.set_tokens(
            patient_id, resource_type, resource_id, self._vault.token_hashes(key, tokens), new=version_id == 1
        )
        if resource_type == "Patient":
            session.set_identities(patient_id, self._identity_hashes(session, body))
        written = Stored(
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=version_id,
            last_updated=now,
            resource=body,
        )
        self._disclose(patient_id, written)
        trail = self._trail_of(patient_id)
        if trail is not None:
            trail.allowed = True
            trail.new_document |= resource_type == "DocumentReference" and body is not None
        return written

    def _identity_hashes(self, session: StoreSession, patient: Mapping[str, Any] | None) -> set[bytes]:
        if patient is None:
            return set()
        out: set[bytes] = set()
        for ident in patient.get("identifier") or []:
            for parts in token_keys(ident):
                if parts[0] != "s":  # a system alone would link every patient of that system
                    out.add(self._vault.identity_hash(session, *parts, now=self._svc.clock()))
        return out

    def _opens_own_record(self, resource: Mapping[str, Any]) -> bool:
        ident = self.actor.identifier
        if ident is None:
            return False
        return any(
            isinstance(i, dict) and i.get("system") == ident.system and i.get("value") == ident.value
            for i in resource.get("identifier") or []
        )

    def _create(
        self,
        session: StoreSession,
        resource: Mapping[str, Any],
        *,
        if_none_exist: str | None = None,
        assigned_id: str | None = None,
        hint: str | None = None,
    ) -> WriteResult:
        _check_type(str(resource.get("resourceType")))
        _check_writable(str(resource.get("resourceType")))
        validate(resource)
        resource_type = str(resource["resourceType"])
        if resource_type == "Patient":
            target = self._target(None, "Patient", opens=self._opens_own_record(resource))
            self._check(Action.CREATE, target, hide=False)
            if if_none_exist is not None:
                existing = self._conditional(session, "Patient", if_none_exist, None)
                if existing is not None:
                    return WriteResult(stored=existing, created=False)
            patient_id = assigned_id or self._svc.new_id()
            key = self._vault.create_key(session, patient_id, self._svc.clock())
            self._keys[patient_id] = key
            stored = self._write(
                session,
                patient_id=patient_id,
                key=key,
                resource_type="Patient",
                resource_id=patient_id,
                version_id=1,
                resource=resource,
            )
            if self.actor.kind is ActorKind.PATIENT and self.actor.patient_id is None:
                # The patient now holds this record for the rest of the transaction.
                self.actor = dataclasses.replace(self.actor, patient_id=patient_id)
            return WriteResult(stored=stored, created=True)
        patient_id = self._place(session, resource, hint)
        # Feeds and professionals write by classCode (registered categories, the matrix).
        writes_by_class = self.actor.kind in (ActorKind.FEED, ActorKind.PROFESSIONAL)
        facts = document_facts(resource) if resource_type == "DocumentReference" and writes_by_class else None
        target = self._target(patient_id, resource_type, document=facts)
        if resource_type == "Consent" and self.actor.kind is ActorKind.PROFESSIONAL:
            target = dataclasses.replace(
                target, declares_own_consent=declares_for(resource, self.actor.professional_id)
            )
        self._check(Action.CREATE, target, hide=False)
        key = self._ensure_record(session, patient_id)
        if if_none_exist is not None:
            existing = self._conditional(session, resource_type, if_none_exist, patient_id)
            if existing is not None:
                return WriteResult(stored=existing, created=False)
        if resource_type == "DocumentReference":
            self._check_contents(session, resource, patient_id)
            same = self._same_unique_id(session, resource, patient_id)
            if same is not None:
                return WriteResult(stored=same, created=False)
        resource_id = assigned_id or self._svc.new_id()
        stored = self._write(
            session,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=1,
            resource=resource,
        )
        if resource_type == "DocumentReference":
            self._supersede(session, resource, patient_id, resource_id)
        return WriteResult(stored=stored, created=True)

    # -- documents (IHE MHD) ----------------------------------------------------------------

    def archive(self, document_id: str, *, archived: bool) -> WriteResult:
        """Archive (or unarchive) a document: a new version tagged ``archived``, content untouched.

        An archived document stays readable and in its history; ITI-67 finds the archived ones
        with ``_tag=https://carnet.health/fhir/CodeSystem/document-flag|archived``. Decided like
        an update (the patient, or the authoring professional).
        """
        with self._session("$archive", "DocumentReference", write=True) as session:
            current = self._read(session, "DocumentReference", document_id)
            resource = dict(current.resource or {})
            meta = dict(resource.get("meta") or {})
            tags = [
                t
                for t in meta.get("tag") or []
                if not (t.get("system") == FLAG_SYSTEM and t.get("code") == "archived")
            ]
            if archived:
                tags.append({"system": FLAG_SYSTEM, "code": "archived", "display": "Document archivé"})
            if tags:
                meta["tag"] = tags
            else:
                meta.pop("tag", None)
            resource["meta"] = meta
            return self._update(
                session, "DocumentReference", document_id, resource, f'W/"{current.version_id}"'
            )

    def publish(self, document: Mapping[str, Any]) -> WriteResult:
        """Simplified Publish (IHE MHD ITI-105): store a DocumentReference carrying its document inline.

        As a Document Recipient does: validate, extract each ``attachment.data`` into a Binary of
        the same record, point the attachment at it (size and hash filled in), and record the
        SubmissionSet (a ``List``), all in one transaction.

        Raises:
            InvalidResource: no inline document, bad base64, size or hash mismatch, no patient.
        """
        validate(document)
        if not any(isinstance(a.get("data"), str) for _, a in attachments(document)):
            raise InvalidResource("Simplified Publish carries the document in content.attachment.data.")
        with self._session("create", "DocumentReference", write=True) as session:
            patient_id = self._place(session, document)
            revised = copy.deepcopy(dict(document))
            inline: list[tuple[dict[str, Any], str]] = []
            for index, attachment in attachments(revised):
                data = attachment.get("data")
                if not isinstance(data, str):
                    continue
                where = f"DocumentReference.content[{index}].attachment"
                content = decode_base64(data, f"{where}.data")
                check_attachment(attachment, content, where)
                attachment["size"] = len(content)
                attachment["hash"] = sha1_base64(content)
                inline.append((attachment, data))
            # A resubmission (same uniqueId, same content) is answered before any Binary is made,
            # so that resending a document leaves nothing behind.
            self._check(Action.CREATE, self._target(patient_id, "DocumentReference"), hide=False)
            self._ensure_record(session, patient_id)
            same = self._same_unique_id(session, revised, patient_id)
            if same is not None:
                return WriteResult(stored=same, created=False)
            for attachment, data in inline:
                binary: dict[str, Any] = {
                    "resourceType": "Binary",
                    "contentType": attachment.get("contentType", "application/octet-stream"),
                    "securityContext": {"reference": f"Patient/{patient_id}"},
                    "data": data,
                }
                made = self._create(session, binary).stored
                del attachment["data"]
                attachment["url"] = f"Binary/{made.resource_id}"
            result = self._create(session, revised)
            if result.created:
                submission = {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "code": {
                        "coding": [
                            {
                                "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                                "code": SUBMISSION_SET_CODE,
                            }
                        ]
                    },
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "date": instant(self._svc.clock()),
                    "entry": [{"item": {"reference": f"DocumentReference/{result.stored.resource_id}"}}],
                }
                self._create(session, submission)
            return result

    def _check_contents(self, session: StoreSession, document: Mapping[str, Any], patient_id: str) -> None:
        """Check each attachment's size and hash against its content (inline or in a Binary)."""
        for index, attachment in attachments(document):
            where = f"DocumentReference.content[{index}].attachment"
            if isinstance(attachment.get("data"), str):
                check_attachment(attachment, decode_base64(attachment["data"], f"{where}.data"), where)
                continue
            url = attachment.get("url")
            if not isinstance(url, str) or not url.startswith("Binary/"):
                continue
            binary_id = url.removeprefix("Binary/")
            fresh = self._written_binaries.get((patient_id, binary_id))
            if fresh is not None:
                check_attachment(attachment, binary_content(fresh), where)
                continue
            owner = session.locate("Binary", binary_id) if is_valid_id(binary_id) else None
            version = session.current(patient_id, "Binary", binary_id) if owner == patient_id else None
            if version is None or version.deleted:
                raise InvalidResource(f"{where}.url points to {url[:80]}, which is not in this record.")
            binary = self._open(self._key(session, patient_id), version).resource or {}
            check_attachment(attachment, binary_content(binary), where)

    def _same_unique_id(
        self, session: StoreSession, document: Mapping[str, Any], patient_id: str
    ) -> Stored | None:
        """Return the stored document with the same uniqueId and content (idempotent resubmission).

        Raises:
            Conflict: the same uniqueId was submitted before with other content.
        """
        unique = master_identifier(document)
        if unique is None:
            return None
        query = parse_search("DocumentReference", [("identifier", f"{unique[0]}|{unique[1]}")])
        for stored in self._matching(session, patient_id, query):
            existing = stored.resource or {}
            if master_identifier(existing) != unique:
                continue
            if content_fingerprint(existing) != content_fingerprint(document):
                raise Conflict(
                    f"A document with uniqueId {unique[1][:80]} already exists with other content; "
                    "a new version needs a new uniqueId and relatesTo = replaces."
                )
            return stored
        return None

    def _supersede(
        self, session: StoreSession, document: Mapping[str, Any], patient_id: str, new_id: str
    ) -> None:
        """Mark the documents a new one replaces as superseded (a new version of each)."""
        for old_id in replaced_ids(document):
            if old_id == new_id or session.locate("DocumentReference", old_id) != patient_id:
                raise InvalidResource(
                    f"relatesTo replaces DocumentReference/{old_id[:64]}, which is not in this record."
                )
            self._check(Action.UPDATE, self._target(patient_id, "DocumentReference"), hide=False)
            current = session.current(patient_id, "DocumentReference", old_id)
            if current is None or current.deleted:
                raise InvalidResource(f"DocumentReference/{old_id} was deleted and cannot be replaced.")
            old = self._open(self._key(session, patient_id), current).resource or {}
            if old.get("status") == "superseded":
                raise Conflict(
                    f"DocumentReference/{old_id} was already replaced; replace its newest version."
                )
            self._write(
                session,
                patient_id=patient_id,
                key=self._key(session, patient_id),
                resource_type="DocumentReference",
                resource_id=old_id,
                version_id=current.version_id + 1,
                resource={**old, "status": "superseded"},
            )

    def _conditional(
        self, session: StoreSession, resource_type: str, criteria: str, patient_id: str | None
    ) -> Stored | None:
        # "identifier=…", "?identifier=…" and "Observation?identifier=…" all mean the same criteria.
        _, _, after = criteria.rpartition("?")
        params = parse_qsl(after, keep_blank_values=True)
        if not params:
            raise InvalidRequest(
                "If-None-Exist is empty; give search criteria such as identifier=<system>|<value>."
            )
        query = parse_search(resource_type, params)
        if resource_type == "Patient":
            found = self._search_patients(session, query)
        else:
            found = self._matching(
                session, patient_id or DIRECTORY, dataclasses.replace(query, patient_id=None)
            )
        if len(found) > 1:
            raise PreconditionFailed(
                f"If-None-Exist matched {len(found)} resources; make the criteria selective."
            )
        if not found:
            return None
        return found[0]

    def create(self, resource: Mapping[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Create a resource with a server-assigned id (conditionally, with ``If-None-Exist``).

        Raises:
            InvalidResource: not valid R4, or a clinical resource without its patient.
            AccessDenied: the policy refused. PreconditionFailed: several matches.
        """
        with self._session("create", str(resource.get("resourceType")), write=True) as session:
            return self._create(session, resource, if_none_exist=if_none_exist)

    def _update(
        self,
        session: StoreSession,
        resource_type: str,
        resource_id: str,
        resource: Mapping[str, Any],
        if_match: str | None,
    ) -> WriteResult:
        # The URL before the body: an unknown type is 404, a type or id mismatch 400 (FHIR RESTful update).
        _check_id(resource_type, resource_id)
        _check_writable(resource_type)
        if resource.get("resourceType") != resource_type:
            raise InvalidRequest(
                f"The body is a {str(resource.get('resourceType'))[:64]}, not a {resource_type}."
            )
        if resource.get("id") != resource_id:
            raise InvalidRequest(
                f"The body's id must be {resource_id!r}, the id in the URL.", expression=("id",)
            )
        validate(resource)
        self._refuse_forbidden_kind(Action.UPDATE, resource_type)
        patient_id = session.locate(resource_type, resource_id)
        if patient_id is None:
            raise NotFound(
                f"{resource_type}/{resource_id} does not exist; ids are assigned by the server, "
                f"so create it with POST /fhir/{resource_type}."
            )
        current = session.current(patient_id, resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        self._check(
            Action.UPDATE,
            self._target(
                patient_id, resource_type, document=self._stored_facts(session, patient_id, current)
            ),
            hide=True,
            what=f"{resource_type}/{resource_id}",
        )
        if if_match is not None and parse_etag(if_match) != current.version_id:
            raise PreconditionFailed(
                f"{resource_type}/{resource_id} is at version {current.version_id}, not {if_match}; "
                "read it again and reapply the change."
            )
        if (
            resource_type != "Patient"
            and patient_id != DIRECTORY
            and self._place(session, resource, patient_id) != patient_id
        ):
            raise InvalidResource(f"{resource_type}/{resource_id} cannot move to another patient's record.")
        if resource_type == "DocumentReference":
            self._check_contents(session, resource, patient_id)
        key = self._key(session, patient_id)
        stored = self._write(
            session,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=current.version_id + 1,
            resource=resource,
        )
        return WriteResult(stored=stored, created=False)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: Mapping[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """Write a new version of an existing resource.

        Raises:
            NotFound: no such resource (ids are server-assigned). PreconditionFailed: stale ``If-Match``.
        """
        with self._session("update", resource_type, write=True) as session:
            return self._update(session, resource_type, resource_id, resource, if_match)

    def _delete(self, session: StoreSession, resource_type: str, resource_id: str) -> None:
        _check_id(resource_type, resource_id)
        _check_writable(resource_type)
        self._refuse_forbidden_kind(Action.DELETE, resource_type)
        what = f"{resource_type}/{resource_id}"
        patient_id = session.locate(resource_type, resource_id)
        current = session.current(patient_id, resource_type, resource_id) if patient_id is not None else None
        if patient_id is None or current is None:
            raise NotFound(f"{what} is not known.")
        facts = self._stored_facts(session, patient_id, current)
        self._check(
            Action.DELETE, self._target(patient_id, resource_type, document=facts), hide=True, what=what
        )
        if current.deleted:
            return
        key = self._key(session, patient_id)
        self._write(
            session,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=current.version_id + 1,
            resource=None,
        )

    def delete(self, resource_type: str, resource_id: str) -> None:
        """Delete a resource logically (its history stays; a deleted resource reads as Gone)."""
        with self._session("delete", resource_type, write=True) as session:
            self._delete(session, resource_type, resource_id)

    # -- searching ------------------------------------------------------------------------

    def _matching(
        self, session: StoreSession, patient_id: str, query: SearchQuery, *, filtered: bool = True
    ) -> list[Stored]:
        """Open every current resource of a record that matches the query (unsorted, unpaged).

        Token clauses are answered by the blind indexes in SQL; date clauses on the opened
        resources (parsed only when a date clause asks for it). Unless ``filtered`` is False
        (internal lookups), every result the caller may not see is dropped here, before counts
        and pages are computed, so totals and links reveal nothing either.
        """
        try:
            key = self._key(session, patient_id)
        except RecordShredded:
            return []
        filters = [
            (c.param, [self._vault.token_hash(key, c.param, clause_keys(v)) for v in c.values])
            for c in query.tokens
        ]
        versions = session.search(patient_id, query.resource_type, query.ids, filters)
        out: list[Stored] = []
        for version in versions:
            stored = self._open(key, version)
            if query.dates and (stored.resource is None or not matches_dates(stored.resource, query.dates)):
                continue
            if filtered and not self._visible(patient_id, stored):
                continue
            out.append(stored)
        return out

    def _search_patients(self, session: StoreSession, query: SearchQuery) -> list[Stored]:
        candidates: list[str] = list(query.ids)
        identifier_clauses = [c for c in query.tokens if c.param == "identifier"]
        if identifier_clauses:
            for clause in identifier_clauses:
                ids: set[str] = set()
                for value in clause.values:
                    parts = clause_keys(value)
                    if parts[0] == "s":
                        raise InvalidRequest("Patient?identifier= needs a value, not only a system.")
                    ids.update(
                        session.find_identities(
                            self._vault.identity_hash(session, *parts, now=self._svc.clock())
                        )
                    )
                candidates = [c for c in candidates if c in ids] if query.ids else sorted(ids)
        elif not query.ids:
            raise InvalidRequest(
                "Patients are found by identifier only (e.g. Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|<INS>); "
                "the record is patient-centred."
            )
        found: list[Stored] = []
        for patient_id in dict.fromkeys(candidates):
            if not self._decide(Action.READ, self._target(patient_id, "Patient")).allowed:
                continue
            found.extend(self._matching(session, patient_id, dataclasses.replace(query, ids=(patient_id,))))
        return found

    def search(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
    ) -> SearchResult:
        """Search one record (or the directory, or Patients by identifier); sorted, paged.

        Raises:
            InvalidRequest: a cross-patient search or a malformed parameter.
            UnsupportedSearch: an unknown parameter (unless ``lenient``). AccessDenied: not this caller's record.
        """
        _check_type(resource_type)
        self._refuse_forbidden_kind(Action.SEARCH, resource_type)
        query = parse_search(resource_type, params, lenient=lenient)
        if resource_type == "AuditEvent":
            return self._journal_search(query)
        with self._session("search-type", resource_type) as session:
            return self._search(session, query)

    # -- the access journal, as the patient reads it -------------------------------------------

    def _journal_stored(self, session: StoreSession, row: StoredEntry) -> Stored | None:
        """Open one journal entry as an AuditEvent (None: the record was erased)."""
        try:
            key = self._key(session, row.patient_id)
        except RecordShredded:
            return None
        opened = self._svc.journal.open(key, row)
        event = audit_event(opened.event_id, opened.entry, clinical=self.actor.kind is not ActorKind.DPO)
        stored = Stored(
            resource_type="AuditEvent",
            resource_id=opened.event_id,
            version_id=1,
            last_updated=row.recorded_at,
            raw=fhirjson.dumps(event),
        )
        self._disclose(row.patient_id, stored)
        return stored

    def _journal_search(self, query: SearchQuery) -> SearchResult:
        """Search the access journal: one record's (patient, representative, DPO) or all (DPO)."""
        if query.tokens or query.ids:
            raise UnsupportedSearch("AuditEvent is searched by patient and date only.")
        since, until = _date_bounds(query.dates)
        with self._session("journal", "AuditEvent") as session:
            if query.patient_id is not None:
                self._check(Action.JOURNAL, self._target(query.patient_id, "AuditEvent"), hide=False)
            elif self.actor.kind is not ActorKind.DPO:
                raise InvalidRequest(
                    "The access journal is read one record at a time: add patient=Patient/<id>."
                )
            rows = session.journal_of(query.patient_id, since=since, until=until, limit=_JOURNAL_LIMIT)
            found: list[Stored] = []
            for row in rows:
                if (
                    query.patient_id is None
                    and not self._decide(Action.JOURNAL, self._target(row.patient_id, "AuditEvent")).allowed
                ):
                    continue
                stored = self._journal_stored(session, row)
                if stored is None or (query.dates and not matches_dates(stored.resource or {}, query.dates)):
                    continue
                found.append(stored)
        ascending = bool(query.sort) and not query.sort[0].descending
        found.sort(key=lambda s: (s.last_updated, s.resource_id), reverse=not ascending)
        page = [] if query.summary_count else found[query.offset : query.offset + query.count]
        return SearchResult(entries=page, total=len(found), query=query)

    def _journal_read(self, event_id: str) -> Stored:
        shard, seq = parse_event_id(event_id)
        with self._session("journal", "AuditEvent") as session:
            row = session.journal_entry(shard, seq)
            if row is None:
                raise NotFound(f"AuditEvent/{event_id} is not known.")
            self._check(Action.JOURNAL, self._target(row.patient_id, "AuditEvent"), hide=True)
            stored = self._journal_stored(session, row)
            if stored is None:
                raise Gone(f"AuditEvent/{event_id} belongs to an erased record.")
            return stored

    def audit_proof(self, event_id: str) -> dict[str, Any]:
        """Return a journal entry's inclusion proof under a signed checkpoint, as FHIR Parameters.

        The patient (or a representative) also gets the entry's salt and content, so that anyone
        they show them to can check the commitment in the leaf; the DPO gets the proof only.

        Raises:
            NotFound: unknown entry, or not this caller's to see.
        """
        shard, seq = parse_event_id(event_id)
        with self._session("journal", "AuditEvent", write=True) as session:
            row = session.journal_entry(shard, seq)
            if row is None:
                raise NotFound(f"AuditEvent/{event_id} is not known.")
            self._check(Action.JOURNAL, self._target(row.patient_id, "AuditEvent"), hide=True)
            proof = self._svc.journal.prove(session, row)
            parameters: list[dict[str, Any]] = [
                {"name": "origin", "valueString": self._svc.journal.origin(shard)},
                {"name": "leafIndex", "valueInteger": proof.index},
                {"name": "treeSize", "valueInteger": proof.size},
                {"name": "leafInput", "valueBase64Binary": _b64(proof.leaf_input)},
                *({"name": "path", "valueBase64Binary": _b64(h)} for h in proof.proof),
                {"name": "checkpoint", "valueString": proof.checkpoint.decode()},
                {"name": "verifierKey", "valueString": self._svc.journal.signer.verifier_key},
            ]
            if self.actor.kind is not ActorKind.DPO:
                opened = self._svc.journal.open(self._key(session, row.patient_id), row)
                parameters += [
                    {"name": "salt", "valueBase64Binary": _b64(opened.salt)},
                    {"name": "content", "valueBase64Binary": _b64(opened.entry.content())},
                ]
        return {"resourceType": "Parameters", "parameters": parameters}

    def _search(self, session: StoreSession, query: SearchQuery) -> SearchResult:
        resource_type = query.resource_type
        if resource_type == "Patient":
            found = self._search_patients(session, query)
        else:
            if is_directory_type(resource_type):
                owner = DIRECTORY
            elif query.patient_id is None:
                raise InvalidRequest(
                    f"Searching {resource_type} across patients is not offered: the record is patient-centred. "
                    "Add patient=Patient/<id>, or find the patient with Patient?identifier=<system>|<value>."
                )
            else:
                owner = query.patient_id
            self._check(Action.SEARCH, self._target(owner, resource_type), hide=False)
            found = self._matching(session, owner, query)
        found = _sorted(found, query.sort or (SortKey(param="_lastUpdated", descending=True),))
        page = [] if query.summary_count else found[query.offset : query.offset + query.count]
        return SearchResult(entries=page, total=len(found), query=query)

    def everything(self, patient_id: str) -> list[Stored]:
        """Return the whole record of a patient, the Patient first, then the directory entries it cites."""
        _check_id("Patient", patient_id)
        self._refuse_forbidden_kind(Action.EVERYTHING, "Patient")
        with self._session("$everything", "Patient") as session:
            self._check(
                Action.EVERYTHING,
                self._target(patient_id, "Patient"),
                hide=True,
                what=f"Patient/{patient_id}",
            )
            key = self._key(session, patient_id)
            versions = session.search(patient_id, None, (), ())
            opened = [self._open(key, v) for v in versions]
            # Documents first, so each Binary takes its document's facts without another query.
            opened.sort(key=lambda r: r.resource_type != "DocumentReference")
            record = [stored for stored in opened if self._visible(patient_id, stored)]
            record.sort(key=lambda r: (r.resource_type != "Patient", r.resource_type, r.resource_id))
            cited: dict[tuple[str, str], None] = {}
            for stored in record:
                for match in _REFERENCE.finditer(stored.json or b""):
                    rtype, rid = match.group(1).decode(), match.group(2).decode()
                    if is_directory_type(rtype):
                        cited[(rtype, rid)] = None
            wanted = [
                (t, i) for t, i in cited if self._decide(Action.READ, self._target(DIRECTORY, t)).allowed
            ]
            found = session.current_many(DIRECTORY, wanted) if wanted else []
            if found:
                directory_key = self._key(session, DIRECTORY)
                record.extend(self._open(directory_key, version) for version in found)
            return record

    # -- bundles --------------------------------------------------------------------------

    def transaction(self, entries: Sequence[EntryRequest]) -> list[EntryResponse]:
        """Process a transaction Bundle atomically: every entry succeeds or nothing is written."""
        with self._session("transaction", "Bundle", write=True) as session:
            return self._process(session, entries)

    def batch(self, entries: Sequence[EntryRequest]) -> list[EntryResponse]:
        """Process a batch Bundle: each entry on its own; failures are reported per entry."""
        responses: list[EntryResponse] = []
        for position, entry in enumerate(entries):
            try:
                with self._session("batch", "Bundle", write=entry.method != "GET") as session:
                    responses.append(self._process(session, [entry], first=position)[0])
            except CarnetError as error:
                responses.append(EntryResponse(status=0, error=error))
        return responses

    def _process(
        self, session: StoreSession, entries: Sequence[EntryRequest], *, first: int = 0
    ) -> list[EntryResponse]:
        # ``first`` is the Bundle position of ``entries[0]`` (a batch processes one entry at a time).
        mapping: dict[str, str] = {}
        assigned: dict[int, str] = {}
        for index, entry in enumerate(entries):
            if entry.method == "POST" and entry.full_url and entry.resource is not None:
                new_id = self._svc.new_id()
                assigned[index] = new_id
                local = f"{entry.resource.get('resourceType')}/{new_id}"
                mapping[entry.full_url] = local
                # An absolute fullUrl (http://…/Patient/a2) is also what "Patient/a2" means in
                # this Bundle (FHIR R4 §3.1.1.4.1 reference resolution).
                tail = "/".join(entry.full_url.rstrip("/").split("/")[-2:])
                if entry.full_url.startswith(("http://", "https://")) and tail.count("/") == 1:
                    mapping.setdefault(tail, local)
        rank = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
        # Within POSTs: the Patient (the record) first, then Binaries (so that the
        # DocumentReferences pointing to them can check their hash and size), then the rest.
        type_rank = {"Patient": 0, "Binary": 1}
        order = sorted(
            range(len(entries)),
            key=lambda i: (
                rank[entries[i].method],
                type_rank.get(str((entries[i].resource or {}).get("resourceType")), 2),
                i,
            ),
        )
        resolved = [replace_strings(e.resource, mapping) if e.resource is not None else None for e in entries]
        hints = self._binary_hints(r for r in resolved if r is not None)
        responses: dict[int, EntryResponse] = {}
        for index in order:
            entry = entries[index]
            resource = resolved[index]
            try:
                hint = hints.get(f"Binary/{assigned.get(index)}")
                responses[index] = self._entry(session, entry, resource, assigned.get(index), hint)
            except CarnetError as error:
                error.message = f"Entry {first + index}: {error.message}"
                error.args = (error.message,)
                raise
        return [responses[i] for i in range(len(entries))]

    @staticmethod
    def _binary_hints(resources: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        """Map ``Binary/<id>`` to the record of the DocumentReference whose attachment points to it."""
        hints: dict[str, str] = {}
        for resource in resources:
            if resource.get("resourceType") != "DocumentReference":
                continue
            owner = next(patient_references(resource), None)
            if owner is None:
                continue
            for _, attachment in attachments(resource):
                url = attachment.get("url")
                if isinstance(url, str) and url.startswith("Binary/"):
                    hints.setdefault(url, owner)
        return hints

    def _entry(
        self,
        session: StoreSession,
        entry: EntryRequest,
        resource: dict[str, Any] | None,
        assigned_id: str | None,
        hint: str | None = None,
    ) -> EntryResponse:
        path, _, query_string = entry.url.partition("?")
        parts = [p for p in path.strip("/").split("/") if p]
        if entry.method == "POST":
            if resource is None or len(parts) != 1 or parts[0] != resource.get("resourceType"):
                raise InvalidRequest("A POST entry needs request.url = its resource type and a resource.")
            result = self._create(
                session, resource, if_none_exist=entry.if_none_exist, assigned_id=assigned_id, hint=hint
            )
            stored = result.stored
            return EntryResponse(
                status=201 if result.created else 200,
                location=f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}",
                stored=stored,
            )
        if entry.method == "PUT":
            if resource is None or len(parts) != 2 or query_string:
                raise InvalidRequest("A PUT entry needs request.url = <type>/<id> and a resource.")
            result = self._update(session, parts[0], parts[1], resource, entry.if_match)
            stored = result.stored
            return EntryResponse(
                status=200,
                location=f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}",
                stored=stored,
            )
        if entry.method == "DELETE":
            if len(parts) != 2 or query_string:
                raise InvalidRequest("A DELETE entry needs request.url = <type>/<id>.")
            self._delete(session, parts[0], parts[1])
            return EntryResponse(status=204)
        if entry.method == "GET":
            if len(parts) == 1:
                _check_type(parts[0])
                query = parse_search(parts[0], parse_qsl(query_string, keep_blank_values=True))
                return EntryResponse(status=200, search=self._search(session, query))
            if len(parts) == 2 and not query_string:
                return EntryResponse(status=200, stored=self._read(session, parts[0], parts[1]))
            if len(parts) == 4 and parts[2] == "_history" and not query_string:
                return EntryResponse(status=200, stored=self._vread(session, parts[0], parts[1], parts[3]))
            raise InvalidRequest(
                "A GET entry reads <type>/<id>[/_history/<vid>] or searches <type>?<params>."
            )
        raise InvalidRequest(
            f"Bundle entry method {entry.method!r} is not supported; use POST, PUT, DELETE or GET."
        )


_REFERENCE = re.compile(rb'"reference":"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})"')


_JOURNAL_LIMIT = 10_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _date_bounds(clauses: Sequence[DateClause]) -> tuple[datetime | None, datetime | None]:
    """Return loose ``(since, until)`` bounds for a SQL prefilter; the clauses are checked exactly after."""
    since: datetime | None = None
    until: datetime | None = None
    for clause in clauses:
        if clause.prefix in ("ge", "gt", "sa", "eq") and (since is None or clause.value.low > since):
            since = clause.value.low
        if clause.prefix in ("le", "lt", "eb", "eq") and (until is None or clause.value.high < until):
            until = clause.value.high
    return since, until


def _sort_key(stored: Stored, param: str) -> tuple[int, str]:
    """Sort value of one result; ``_lastUpdated`` and ``_id`` come from the row, no parse needed."""
    if param == "_lastUpdated":
        return (0, stored.last_updated.isoformat())
    if param == "_id":
        return (0, stored.resource_id)
    return sort_value(stored.resource or {}, param)


def _sorted(results: Iterable[Stored], keys: Sequence[SortKey]) -> list[Stored]:
    out = sorted(results, key=lambda r: r.resource_id)
    for key in reversed(keys):
        present = [r for r in out if _sort_key(r, key.param)[0] == 0]
        missing = [r for r in out if _sort_key(r, key.param)[0] != 0]
        present.sort(key=lambda r, p=key.param: _sort_key(r, p)[1], reverse=key.descending)  # type: ignore[misc]
        out = present + missing
    return out
