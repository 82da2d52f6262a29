"""The gate of the record access: one principal's state, the policy, and the journal of each call.

Every call opens its transaction with :meth:`RecordGate._session`, asks :meth:`RecordGate._decide`
for each record and resource it touches, and leaves one journal entry per record touched
(DESIGN §5): in the write's own transaction, or before a read's data is returned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from carnet.domain.consent import grants_from_consents
from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    JournalUnavailable,
    NotFound,
    RecordShredded,
)
from carnet.domain.journal import Entry
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
    Target,
    decide,
)
from carnet.domain.principal import FORBIDDEN_KINDS, ActorKind, Principal
from carnet.domain.resources import (
    is_closed,
)
from carnet.services.caller import current_caller
from carnet.services.notifications import Notice, NoticeEvent, NotificationStore
from carnet.services.ports import StoredVersion, StoreSession
from carnet.services.record_types import (
    Stored,
)
from carnet.services.trail import Touch, outcome
from carnet.services.vault import DIRECTORY

if TYPE_CHECKING:
    from carnet.services.records import RecordService

log = logging.getLogger("carnet.records")


class RecordGate:
    """One principal's access state, the policy gate and the journal of each call."""

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
        self._trail: dict[str, Touch] = {}
        self._call: tuple[str, str] = ("", "")
        self._query: str | None = None

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
        self,
        interaction: str,
        resource_type: str,
        *,
        write: bool = False,
        query: Sequence[tuple[str, str]] | None = None,
    ) -> Iterator[StoreSession]:
        """Open the store transaction of one call, and journal what it did with each record.

        A writing call journals in its own transaction, so the entry commits with the change or
        neither does; a reading call journals right after its read, before its caller gets the
        data; a call that fails after a decision about a record journals in a transaction of its
        own. If the journal cannot be written, the call fails (``JournalUnavailable``): nothing is
        returned and nothing is changed. ``query`` is a search's parameters, kept in its entries.
        """
        self._trail = {}
        self._call = (interaction, resource_type)
        self._query = urlencode(list(query)) if query is not None else None
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

    def _trail_of(self, patient_id: str | None) -> Touch | None:
        if patient_id is None or patient_id == DIRECTORY:
            return None
        if patient_id not in self._trail:
            self._trail[patient_id] = Touch()
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
        caller = current_caller()
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
                outcome=outcome(error),
                reasons=tuple(sorted(reasons)),
                justification=self.justification,
                confirmed_by=self.confirmed_by,
                notified=notified,
                client=caller.client if caller is not None else None,
                client_address=caller.address if caller is not None else None,
                query=self._query,
            )
            out.append((key, entry))
        return out

    def _events(self, session: StoreSession, key: bytes, patient_id: str, trail: Touch) -> list[NoticeEvent]:
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

    def _notify(self, session: StoreSession, key: bytes, patient_id: str, trail: Touch) -> tuple[str, ...]:
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
            raise _unavailable() from exc

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
            raise _unavailable() from exc

    def _check(self, action: Action, target: Target, *, hide: bool, what: str = "") -> Decision:
        decision = self._decide(action, target)
        if not decision.allowed:
            if hide or NO_RECORD in decision.reasons:
                raise NotFound(f"{what or target.resource_type} is not known.")
            raise AccessDenied("Access to this record is not allowed.", reasons=decision.reasons)
        return decision

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

    def _refuse_forbidden_kind(
        self,
        action: Action,
        resource_type: str,
        *,
        session: StoreSession | None = None,
        named: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Refuse with 403 the kinds of actor that never get in.

        Such a refusal depends only on who asks, so unlike a per-record refusal it reveals nothing
        about what exists: the answer is the same for an unknown id. Each resource the request
        ``named`` (type, id) that exists in ``session`` makes the attempt an entry of its record's
        journal (decision ``deny``, rule ``forbidden-kind``), for the patient to see.

        Raises:
            AccessDenied: the actor is an employer, complementary insurer, bank or contract assessor.
        """
        if self.actor.kind not in FORBIDDEN_KINDS:
            return
        if session is not None:
            for named_type, named_id in named:
                patient_id = session.locate(named_type, named_id)
                if patient_id is not None and patient_id != DIRECTORY:
                    self._decide(action, self._target(patient_id, resource_type))
        self._check(action, self._target(None, resource_type), hide=False)


def _unavailable() -> JournalUnavailable:
    return JournalUnavailable(
        "The access journal could not be written, so the request was not carried out; retry later."
    )
