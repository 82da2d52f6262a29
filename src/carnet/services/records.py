"""The record service: every read and write of FHIR resources, for one principal.

:class:`RecordService` holds the shared adapters and the collaborators of the record access,
built once and holding no per-call state:

- the gate (:mod:`carnet.services.gate`): the policy of each call, keys, opening, the journal;
- reads and writes (:mod:`carnet.services.reads`, :mod:`carnet.services.writes`);
- search (:mod:`carnet.services.record_search`): searches, ``$everything``, matching;
- documents (:mod:`carnet.services.documents`, :mod:`carnet.services.document_checks`): MHD;
- the journal view (:mod:`carnet.services.journal_view`): AuditEvents and proofs;
- Bundles (:mod:`carnet.services.bundles`).

Each of their methods takes the per-call context (:class:`carnet.services._call.Call`) that the
gate's :meth:`~carnet.services.gate.Gate.transaction` creates: principal, access mode,
transaction, journal trail, unwrapped keys. A request reads top to bottom: route → use case →
:class:`Records` (or :meth:`RecordService.call`) → gate (policy) → store → open → journal.

Two ways in:

- ``service.records(principal, mode=…)`` returns :class:`Records`, the facade the API and the
  portals use: each method is one call (one transaction, journaled);
- a use case that needs several reads and writes in **one** transaction opens the call itself::

      with service.call(principal, "update", "Patient", write=True) as call:
          patient = call.reads.read("Patient", patient_id)
          call.writes.update("Patient", patient_id, {**patient.resource, "active": False})

  ``call.reads``, ``call.writes``, ``call.search``, ``call.documents``, ``call.journal`` and
  ``call.bundles`` are the collaborators bound to that call; it is journaled once, like any
  call, under the interaction and type it was opened with. If the block raises, nothing is
  written (the journal still records a refusal).

Routes never touch storage; they call this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

from carnet.domain.errors import CarnetError, InvalidRequest, PreconditionFailed
from carnet.domain.patch import apply_patch
from carnet.domain.policy import AccessMode, Obligation, Profile
from carnet.domain.principal import ActorKind, Principal
from carnet.services import deadline
from carnet.services._call import Call
from carnet.services.bundles import Bundles
from carnet.services.document_checks import DocumentChecks
from carnet.services.documents import Documents, check_publishable
from carnet.services.gate import Gate
from carnet.services.journal import Journal
from carnet.services.journal_view import JournalView
from carnet.services.notifications import Notifier
from carnet.services.ports import Store, StoreSession
from carnet.services.reads import Reads
from carnet.services.record_search import Search
from carnet.services.record_types import (
    EntryRequest,
    EntryResponse,
    EverythingPage,
    SearchResult,
    Stored,
    WriteResult,
    instant,
    parse_etag,
)
from carnet.services.vault import Vault
from carnet.services.writes import Writes, serialise_criteria

T = TypeVar("T")
Clock = Callable[[], datetime]
NewId = Callable[[], str]

__all__ = [
    "EntryRequest",
    "EntryResponse",
    "EverythingPage",
    "RecordCall",
    "RecordService",
    "Records",
    "SearchResult",
    "Stored",
    "WriteResult",
    "instant",
    "parse_etag",
]


class RecordService:
    """Builds the per-principal record access; holds the shared adapters and the collaborators."""

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
        group_writes: bool = True,
    ) -> None:
        self.store = store
        #: The writing calls of :class:`Records` share durable commits (``Gate.group``).
        self.group_writes = group_writes
        self.vault = vault
        self.profile = profile
        self.clock = clock
        self.new_id = new_id
        self.journal = journal
        self.notifier = notifier or Notifier(vault=vault, clock=clock, new_id=new_id)
        self.gate = Gate(
            store=store, vault=vault, profile=profile, clock=clock, journal=journal, notifier=self.notifier
        )
        self.search = Search(gate=self.gate, vault=vault, clock=clock)
        self.reads = Reads(gate=self.gate)
        self.document_checks = DocumentChecks(gate=self.gate, search=self.search)
        self.writes = Writes(
            gate=self.gate,
            search=self.search,
            documents=self.document_checks,
            vault=vault,
            clock=clock,
            new_id=new_id,
        )
        self.documents = Documents(
            gate=self.gate, reads=self.reads, writes=self.writes, checks=self.document_checks, clock=clock
        )
        self.journal_view = JournalView(gate=self.gate, journal=journal)
        self.bundles = Bundles(reads=self.reads, writes=self.writes, search=self.search, new_id=new_id)

    @staticmethod
    def needs_resolving(principal: Principal) -> bool:
        """Tell whether :meth:`resolve` has a record to look up (a patient known by identifier only)."""
        return (
            principal.kind is ActorKind.PATIENT
            and not principal.patient_id
            and principal.identifier is not None
        )

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

    def record_with(self, system: str, value: str, *, session: StoreSession | None = None) -> str | None:
        """Return the id of the one live record carrying an identifier (an INS), or None.

        This is how a feed finds the record it writes into: by the identity index alone, without
        reading anything of it (feeds never read); the write itself is then decided by the policy.
        ``session``: look in a transaction the caller holds.
        """
        if session is not None:
            found = session.find_identities(
                self.vault.identity_hash(session, "sc", system, value, now=self.clock())
            )
            return found[0] if len(found) == 1 else None
        with self.store.session() as own:
            return self.record_with(system, value, session=own)

    def records(
        self,
        principal: Principal,
        *,
        mode: AccessMode = AccessMode.NORMAL,
        justification: str | None = None,
        confirmed_by: str | None = None,
        session: StoreSession | None = None,
    ) -> Records:
        """Return the record access of one principal, in one access mode.

        ``session``: every call runs within this writing transaction, which the caller commits
        (a unit of a :class:`carnet.services.group_commit.GroupCommit`: a feed's message).
        """
        return Records(
            self,
            principal,
            mode=mode,
            justification=justification,
            confirmed_by=confirmed_by,
            session=session,
        )

    @contextmanager
    def call(
        self,
        principal: Principal,
        interaction: str,
        resource_type: str,
        *,
        write: bool = False,
        mode: AccessMode = AccessMode.NORMAL,
        justification: str | None = None,
        confirmed_by: str | None = None,
        query: Sequence[tuple[str, str]] | None = None,
    ) -> Iterator[RecordCall]:
        """Open one call for a use case: several reads and writes in one transaction, journaled once.

        ``interaction`` and ``resource_type`` name the call in its journal entries (a FHIR
        interaction code or an operation name such as ``$close``); ``write`` opens a writing
        transaction. See the module docstring for an example.
        """
        with self.gate.transaction(
            principal,
            interaction,
            resource_type,
            write=write,
            mode=mode,
            justification=justification,
            confirmed_by=confirmed_by,
            query=query,
        ) as call:
            yield RecordCall(self, call)


class Records:
    """Everything one principal may do with records; each method is one call (one transaction)."""

    def __init__(
        self,
        service: RecordService,
        principal: Principal,
        *,
        mode: AccessMode = AccessMode.NORMAL,
        justification: str | None = None,
        confirmed_by: str | None = None,
        session: StoreSession | None = None,
    ) -> None:
        self._svc = service
        self._session = session
        self.actor = principal
        self.mode = mode
        self.justification = justification
        self.confirmed_by = confirmed_by
        #: Obligations of the decisions that allowed this principal's requests (DESIGN §3).
        self.obligations: set[Obligation] = set()

    @contextmanager
    def _call(
        self,
        interaction: str,
        resource_type: str,
        *,
        write: bool = False,
        query: Sequence[tuple[str, str]] | None = None,
        session: StoreSession | None = None,
    ) -> Iterator[Call]:
        with self._svc.gate.transaction(
            self.actor,
            interaction,
            resource_type,
            write=write,
            mode=self.mode,
            justification=self.justification,
            confirmed_by=self.confirmed_by,
            query=query,
            session=session or self._session,
        ) as call:
            try:
                yield call
            finally:
                self.obligations |= call.obligations

    def _write(
        self,
        interaction: str,
        resource_type: str,
        work: Callable[[Call], T],
        *,
        query: Sequence[tuple[str, str]] | None = None,
    ) -> T:
        """Run one writing call; on SQLite concurrent ones share a durable commit (``Gate.write_group``).

        The call returns (or raises its own error) only once its writes and journal entries, or
        its refusal's entry, are committed. Its work runs in a savepoint of the shared
        transaction, and may run a second time, alone, if that transaction fails to commit.
        """
        group = self._svc.gate.write_group
        if self._session is not None or not self._svc.group_writes or not group.shared:
            # Within the caller's transaction, or (PostgreSQL) a transaction of its own as before.
            with self._call(interaction, resource_type, write=True, query=query) as call:
                return work(call)

        def unit(session: StoreSession) -> tuple[T | None, CarnetError | None]:
            try:
                with self._call(interaction, resource_type, write=True, query=query, session=session) as call:
                    return work(call), None
            except CarnetError as error:  # the refusal's journal entry commits with the batch
                return None, error

        # No savepoint of the group's: the call runs in one of its own (``Gate._within``) and
        # hands its refusal back as a value.
        result, error = group.run(unit, isolate=False)
        if error is not None:
            raise error
        return cast(T, result)

    def record_with(self, system: str, value: str) -> str | None:
        """Return the record carrying an identifier, for a feed about to write into it (see
        :meth:`RecordService.record_with`); None for any other caller, who searches instead."""
        if self.actor.kind is not ActorKind.FEED or self.mode is not AccessMode.FEED:
            return None
        return self._svc.record_with(system, value, session=self._session)

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """Read the current version of a resource, or an AuditEvent of the journal.

        Raises:
            NotFound: unknown, or not for this caller. Gone: deleted, or the record was erased.
        """
        if resource_type == "AuditEvent":
            with self._call("journal", "AuditEvent") as call:
                return self._svc.journal_view.read(call, resource_id)
        with self._call("read", resource_type) as call:
            return self._svc.reads.read(call, resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> Stored:
        """Read one version of a resource."""
        with self._call("vread", resource_type) as call:
            return self._svc.reads.vread(call, resource_type, resource_id, version_id)

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
        with self._call("history", resource_type) as call:
            return self._svc.reads.history(call, resource_type, resource_id, patient_id, since)

    def create(
        self, resource: Mapping[str, Any], *, if_none_exist: str | None = None, accepted_offer: bool = False
    ) -> WriteResult:
        """Create a resource with a server-assigned id (conditionally, with ``If-None-Exist``).

        ``accepted_offer``: a feed's resource the patient accepted from their inbox.

        Raises:
            InvalidResource: not valid R4, or a clinical resource without its patient.
            AccessDenied: the policy refused. PreconditionFailed: several matches.
        """

        def work(call: Call) -> WriteResult:
            call.accepted_offer = accepted_offer
            return self._svc.writes.create(call, resource, if_none_exist=if_none_exist)

        return self._write("create", str(resource.get("resourceType")), work)

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
        return self._write(
            "update",
            resource_type,
            lambda call: self._svc.writes.update(
                call, resource_type, resource_id, resource, if_match=if_match
            ),
        )

    def delete(self, resource_type: str, resource_id: str) -> None:
        """Delete a resource logically (its history stays; a deleted resource reads as Gone)."""
        self._write(
            "delete", resource_type, lambda call: self._svc.writes.delete(call, resource_type, resource_id)
        )

    def patch(
        self, resource_type: str, resource_id: str, body: Any, *, if_match: str | None = None
    ) -> WriteResult:
        """Apply a JSON Patch, FHIRPath Patch or JSON Merge Patch (``domain.patch``) as an update.

        The current version is read, patched and written in one transaction, under the same
        policy as an update.

        Raises:
            NotFound, Gone: as a read. InvalidRequest: the patch does not apply.
            InvalidResource: the result is not valid R4. PreconditionFailed: stale ``If-Match``.
        """

        def work(call: Call) -> WriteResult:
            current = self._svc.reads.read(call, resource_type, resource_id)
            patched = apply_patch(current.resource or {}, body)
            return self._svc.writes.update(
                call, resource_type, resource_id, patched, if_match=if_match or current.etag
            )

        return self._write("patch", resource_type, work)

    def conditional_update(
        self, resource_type: str, params: Sequence[tuple[str, str]], resource: Mapping[str, Any]
    ) -> WriteResult:
        """``PUT [type]?criteria``: update the one match, create when none, 412 when several.

        Raises:
            PreconditionFailed: several matches. InvalidRequest: the body's id is another match's.
        """

        def work(call: Call) -> WriteResult:
            serialise_criteria(call, resource_type, params)
            found = self._svc.search.search(call, resource_type, params)
            if found.total > 1:
                raise PreconditionFailed(
                    f"The criteria match {found.total} resources; make them selective (one at most)."
                )
            if found.total == 0:
                if resource.get("id") is not None:
                    raise InvalidRequest(
                        "Nothing matches the criteria; to create, send the body without an id."
                    )
                return self._svc.writes.create(call, resource)
            match = found.entries[0]
            if resource.get("id") not in (None, match.resource_id):
                raise InvalidRequest(
                    f"The body's id is not that of the resource matching the criteria ({match.resource_id})."
                )
            body = {**resource, "id": match.resource_id}
            return self._svc.writes.update(call, resource_type, match.resource_id, body)

        return self._write("update", resource_type, work, query=params)

    def conditional_delete(self, resource_type: str, params: Sequence[tuple[str, str]]) -> int:
        """``DELETE [type]?criteria``: delete the one match (none: nothing to do); return how many.

        Raises:
            PreconditionFailed: several matches (Carnet deletes one resource at a time).
        """

        def work(call: Call) -> int:
            serialise_criteria(call, resource_type, params)
            found = self._svc.search.search(call, resource_type, params)
            if found.total > 1:
                raise PreconditionFailed(
                    f"The criteria match {found.total} resources; a conditional delete removes one at most."
                )
            for match in found.entries:
                self._svc.writes.delete(call, resource_type, match.resource_id)
            return found.total

        return self._write("delete", resource_type, work, query=params)

    def search(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
    ) -> SearchResult:
        """Search one record (or the directory, or Patients by identifier), or a record's journal.

        Raises:
            InvalidRequest: a cross-patient search or a malformed parameter.
            UnsupportedSearch: an unknown parameter (unless ``lenient``). AccessDenied: not this caller's record.
        """
        if resource_type == "AuditEvent":
            with self._call("journal", "AuditEvent", query=params) as call:
                return self._svc.journal_view.search(call, params, lenient=lenient)
        with self._call("search-type", resource_type, query=params) as call:
            return self._svc.search.search(call, resource_type, params, lenient=lenient)

    def everything(self, patient_id: str) -> list[Stored]:
        """Return the whole record of a patient, the Patient first, then the directory entries it cites."""
        return self.everything_page(patient_id)[0]

    def everything_page(
        self, patient_id: str, page: EverythingPage | None = None
    ) -> tuple[list[Stored], int]:
        """Return one page of a patient's whole record (``_type``, ``_since``, ``_count``) and its size."""
        with self._call("$everything", "Patient") as call:
            return self._svc.search.everything(call, patient_id, page)

    def transaction(self, entries: Sequence[EntryRequest]) -> list[EntryResponse]:
        """Process a transaction Bundle atomically: every entry succeeds or nothing is written."""
        bundles = self._svc.bundles
        # On SQLite, when this call opens its own transaction (a unit of the group commit), the
        # entries get their ids, references, validation and index before it: not in the writer
        # lock, and giving way to this process's thread in it (Store.writer_first).
        single = self._session is None and self._svc.store.single_writer
        prepared = bundles.prepare(entries, pause=self._svc.store.writer_first) if single else None
        return self._write(
            "transaction", "Bundle", lambda call: bundles.process(call, entries, prepared=prepared)
        )

    def batch(self, entries: Sequence[EntryRequest]) -> list[EntryResponse]:
        """Process a batch Bundle: each entry on its own; failures are reported per entry."""
        responses: list[EntryResponse] = []
        for position, entry in enumerate(entries):
            deadline.check()  # outside the try: running out of time ends the batch, not one entry
            try:
                with self._call("batch", "Bundle", write=entry.method != "GET") as call:
                    responses.append(self._svc.bundles.process(call, [entry], first=position)[0])
            except CarnetError as error:
                responses.append(EntryResponse(status=0, error=error))
        return responses

    def archive(self, document_id: str, *, archived: bool) -> WriteResult:
        """Archive (or unarchive) a document: a new version tagged ``archived``, content untouched."""
        return self._write(
            "$archive",
            "DocumentReference",
            lambda call: self._svc.documents.archive(call, document_id, archived=archived),
        )

    def publish(
        self,
        document: Mapping[str, Any],
        *,
        accepted_offer: bool = False,
        already_told: bool = False,
        checked: bool = False,
    ) -> WriteResult:
        """Simplified Publish (IHE MHD ITI-105): store a DocumentReference carrying its document inline.

        ``accepted_offer``: a feed's document the patient accepted from their inbox (used by
        :class:`carnet.services.feed_inbox.FeedInbox` only). ``already_told``: the patient gets
        no new-document notice for it, another document of the same message told them
        (:class:`carnet.services.feed_intake.HL7v2Intake`). ``checked``: the caller made sure
        that :func:`check_publishable` accepts this document (the HL7 v2 intake, before its
        transaction), so it is not checked again.

        Raises:
            InvalidResource: no inline document, bad base64, size or hash mismatch, no patient.
        """
        # Checked before the transaction when this call opens its own (a unit of the group
        # commit on SQLite: not inside the writer lock), as it would be first thing inside it.
        if not checked and self._session is None:
            check_publishable(document)
            checked = True

        def work(call: Call) -> WriteResult:
            call.accepted_offer = accepted_offer
            call.already_told = already_told
            return self._svc.documents.publish(call, document, checked=checked)

        return self._write("create", "DocumentReference", work)

    def withdraw(self, patient_id: str, system: str, value: str) -> str:
        """Delete the current document of a record with the uniqueId ``system|value`` (a feed's delete).

        Raises:
            NotFound: no such current document. AccessDenied: not the caller's to delete.
        """
        return self._write(
            "delete",
            "DocumentReference",
            lambda call: self._svc.documents.withdraw(call, patient_id, system, value),
        )

    def audit_proof(self, event_id: str) -> dict[str, Any]:
        """Return a journal entry's inclusion proof under a signed checkpoint, as FHIR Parameters.

        Raises:
            NotFound: unknown entry, or not this caller's to see.
        """
        with self._call("journal", "AuditEvent", write=True) as call:
            return self._svc.journal_view.audit_proof(call, event_id)


# -- One call opened by a use case: the collaborators bound to it ----------------------------------


class RecordCall:
    """One open call of :meth:`RecordService.call`: the collaborators bound to it."""

    def __init__(self, service: RecordService, call: Call) -> None:
        self.context = call
        self.reads = BoundReads(service.reads, call)
        self.writes = BoundWrites(service.writes, call)
        self.search = BoundSearch(service.search, call)
        self.documents = BoundDocuments(service.documents, call)
        self.journal = BoundJournal(service.journal_view, call)
        self.bundles = BoundBundles(service.bundles, call)

    @property
    def principal(self) -> Principal:
        """Who asks."""
        return self.context.principal

    @property
    def obligations(self) -> set[Obligation]:
        """The obligations of the decisions that allowed this call so far."""
        return self.context.obligations


@dataclasses.dataclass(frozen=True, slots=True)
class BoundReads:
    """:class:`carnet.services.reads.Reads` within one call."""

    reads: Reads
    call: Call

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """Read the current version of a resource (see :meth:`Records.read`)."""
        return self.reads.read(self.call, resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> Stored:
        """Read one version of a resource."""
        return self.reads.vread(self.call, resource_type, resource_id, version_id)

    def history(
        self,
        resource_type: str,
        resource_id: str | None,
        patient_id: str | None,
        since: datetime | None = None,
    ) -> list[Stored]:
        """Return the versions of a resource, or of a type within one record, newest first."""
        return self.reads.history(self.call, resource_type, resource_id, patient_id, since)


@dataclasses.dataclass(frozen=True, slots=True)
class BoundWrites:
    """:class:`carnet.services.writes.Writes` within one call."""

    writes: Writes
    call: Call

    def create(self, resource: Mapping[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Create a resource (see :meth:`Records.create`)."""
        return self.writes.create(self.call, resource, if_none_exist=if_none_exist)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: Mapping[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """Write a new version of an existing resource (see :meth:`Records.update`)."""
        return self.writes.update(self.call, resource_type, resource_id, resource, if_match=if_match)

    def delete(self, resource_type: str, resource_id: str) -> None:
        """Delete a resource logically."""
        self.writes.delete(self.call, resource_type, resource_id)


@dataclasses.dataclass(frozen=True, slots=True)
class BoundSearch:
    """:class:`carnet.services.record_search.Search` within one call."""

    searcher: Search
    call: Call

    def search(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
    ) -> SearchResult:
        """Search one record, the directory, or Patients by identifier (see :meth:`Records.search`)."""
        return self.searcher.search(self.call, resource_type, params, lenient=lenient)

    def everything(self, patient_id: str) -> list[Stored]:
        """Return the whole record of a patient."""
        return self.searcher.everything(self.call, patient_id)[0]


@dataclasses.dataclass(frozen=True, slots=True)
class BoundDocuments:
    """:class:`carnet.services.documents.Documents` within one call."""

    documents: Documents
    call: Call

    def archive(self, document_id: str, *, archived: bool) -> WriteResult:
        """Archive (or unarchive) a document."""
        return self.documents.archive(self.call, document_id, archived=archived)

    def publish(self, document: Mapping[str, Any]) -> WriteResult:
        """Simplified Publish of a document carried inline."""
        return self.documents.publish(self.call, document)


@dataclasses.dataclass(frozen=True, slots=True)
class BoundJournal:
    """:class:`carnet.services.journal_view.JournalView` within one call."""

    view: JournalView
    call: Call

    def read(self, event_id: str) -> Stored:
        """Read one AuditEvent of the access journal."""
        return self.view.read(self.call, event_id)

    def search(self, params: Sequence[tuple[str, str]], *, lenient: bool = False) -> SearchResult:
        """Search the access journal (AuditEvent)."""
        return self.view.search(self.call, params, lenient=lenient)

    def audit_proof(self, event_id: str) -> dict[str, Any]:
        """Return a journal entry's inclusion proof (the call must be a writing one)."""
        return self.view.audit_proof(self.call, event_id)


@dataclasses.dataclass(frozen=True, slots=True)
class BoundBundles:
    """:class:`carnet.services.bundles.Bundles` within one call."""

    bundles: Bundles
    call: Call

    def process(self, entries: Sequence[EntryRequest]) -> list[EntryResponse]:
        """Process Bundle entries within this call (all or nothing, as a transaction)."""
        return self.bundles.process(self.call, entries)
