"""The gate of the record access: the policy of each call, the keys, opening, and the journal.

:meth:`Gate.transaction` opens a call (:class:`carnet.services._call.Call`): its store
transaction, and, when it ends, one journal entry per record it touched (DESIGN §5) — in the
write's own transaction, or before a read's data is returned. In between, the collaborators ask
:meth:`Gate.decide` / :meth:`Gate.check` for each record and resource they touch, open what they
read with :meth:`Gate.open`, and note what they return with :meth:`Gate.disclose`.

The gate calls nothing above it: the policy (pure), the store, the vault, the journal.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlencode

from carnet.domain import fhirjson
from carnet.domain.consent import grants_from_consents
from carnet.domain.documents import attachments, document_facts
from carnet.domain.errors import (
    AccessDenied,
    AppAccessEnded,
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
    Profile,
    Target,
    admit,
    decide,
)
from carnet.domain.principal import ActorKind, Principal
from carnet.domain.resources import is_closed
from carnet.domain.search import SearchQuery, clause_keys, matches_dates, parse_search
from carnet.domain.smart import categories_of
from carnet.services._call import Call
from carnet.services.caller import current_caller
from carnet.services.group_commit import GroupCommit
from carnet.services.journal import Journal
from carnet.services.notifications import Notice, NoticeEvent, NotificationStore, Notifier
from carnet.services.ports import Store, StoredVersion, StoreSession
from carnet.services.record_types import Stored
from carnet.services.trail import Touch, outcome
from carnet.services.vault import DIRECTORY, Vault

log = logging.getLogger("carnet.records")

Clock = Callable[[], datetime]
#: The policy's reason when an app acts on its patient's record without a live grant.
APP_NOT_GRANTED = "app-not-granted"


class Gate:
    """The policy, keys, opening and journal of every call; holds no state of its own per call."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        profile: Profile,
        clock: Clock,
        journal: Journal,
        notifier: Notifier,
        group: GroupCommit | None = None,
    ) -> None:
        self.store = store
        #: Journal transactions of concurrent reads share one durable commit (each waits for its own).
        self.group = group or GroupCommit(store)
        #: Writing calls and feed messages share durable commits where one transaction writes at a
        #: time (SQLite: one ``BEGIN IMMEDIATE`` and one fsync for a burst); PostgreSQL runs them
        #: side by side and already shares the WAL flush of concurrent commits (its group commit).
        self.write_group = GroupCommit(store, shared=store.single_writer)
        self.vault = vault
        self.profile = profile
        self.clock = clock
        self.journal = journal
        self.notifier = notifier

    # -- the call ---------------------------------------------------------------------------

    @contextmanager
    def transaction(
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
        session: StoreSession | None = None,
    ) -> Iterator[Call]:
        """Open one call: its store transaction, then the journal of what it did with each record.

        A writing call journals in its own transaction, so the entry commits with the change or
        neither does; a reading call journals right after its read, before its caller gets the
        data; a call that fails after a decision about a record journals in a transaction of its
        own. If the journal cannot be written, the call fails (``JournalUnavailable``): nothing is
        returned and nothing is changed. ``query`` is a search's parameters, kept in its entries.

        ``session``: run the call within a writing transaction the caller holds (a unit of a
        :class:`GroupCommit`), see :meth:`_within`.
        """
        if session is not None:
            with self._within(
                session,
                Call(
                    principal=principal,
                    mode=mode,
                    justification=justification,
                    confirmed_by=confirmed_by,
                    session=session,
                    interaction=interaction,
                    resource_type=resource_type,
                    query=urlencode(list(query)) if query is not None else None,
                ),
            ) as shared:
                yield shared
            return
        call: Call | None = None
        try:
            with self.store.session(write=write) as session:
                call = Call(
                    principal=principal,
                    mode=mode,
                    justification=justification,
                    confirmed_by=confirmed_by,
                    session=session,
                    interaction=interaction,
                    resource_type=resource_type,
                    query=urlencode(list(query)) if query is not None else None,
                )
                yield call
                if write and call.trail:
                    self._journal(call, session, None)
        except JournalUnavailable:
            raise
        except CarnetError as error:
            if call is not None and call.trail:
                self._journal_apart(call, error)
            raise
        if not write and call is not None and call.trail:
            self._journal_apart(call, None)

    @contextmanager
    def _within(self, session: StoreSession, call: Call) -> Iterator[Call]:
        """Run a call in a savepoint of a writing transaction that its caller commits.

        Whatever the call did, read or write, is journaled in that transaction, so its entries
        are durable exactly when the caller's commit is, and the caller answers only after it.
        A call that fails has its writes undone (its savepoint) and its refusal journaled in the
        same transaction (a journal that cannot be written is logged; the call's error stands).
        """
        try:
            with session.savepoint():
                yield call
                if call.trail:
                    self._journal(call, session, None)
        except JournalUnavailable:
            raise
        except CarnetError as error:
            if call.trail:
                try:
                    with session.savepoint():
                        self._journal(call, session, error)
                except JournalUnavailable:
                    log.error("journal write of a failed request failed")
            raise

    # -- policy -------------------------------------------------------------------------------

    def target(
        self,
        call: Call,
        patient_id: str | None,
        resource_type: str,
        *,
        opens: bool = False,
        document: DocumentFacts | None = None,
        resource: Mapping[str, Any] | None = None,
    ) -> Target:
        """Describe what a request touches, for the policy (the directory, or one record).

        ``resource`` is the one resource read or written, whose categories an app's scopes
        may restrict (only an app's calls read them).
        """
        if patient_id == DIRECTORY:
            return Target(patient_id=None, resource_type=resource_type, in_directory=True)
        categories = None
        if call.principal.app_id is not None and resource is not None:
            categories = categories_of(resource)
        return Target(
            patient_id=patient_id,
            resource_type=resource_type,
            opens_own_record=opens,
            document=document,
            record_open=self._is_open(call, patient_id),
            categories=categories,
        )

    def _is_open(self, call: Call, patient_id: str | None) -> bool:
        """Whether a record is open, read from its Patient (once per call).

        Only professionals and feeds, whose access a closed record stops, pay for reading it. The
        record's Consents, which the policy reads for them next (:meth:`_grants_of`), come in the
        same query.
        """
        if patient_id is None:
            return True
        if call.principal.kind not in (ActorKind.PROFESSIONAL, ActorKind.FEED):
            return True
        if patient_id not in call.open_records:
            try:
                key = self.key(call, patient_id)
            except RecordShredded:
                return True  # nothing left to read; the key's absence answers
            types = ("Patient",) if patient_id in call.grants else ("Consent", "Patient")
            opened = [self.open(key, v) for v in call.session.current_of_types(patient_id, types)]
            patients = [s.resource for s in opened if s.resource_type == "Patient" and s.resource is not None]
            call.open_records[patient_id] = not any(is_closed(p) for p in patients)
            own = [s.resource for s in opened if s.resource_type == "Patient" and s.resource_id == patient_id]
            if len(own) == 1 and own[0] is not None:
                call.patients[patient_id] = own[0]
            if "Consent" in types:
                consents = [
                    s.resource for s in opened if s.resource_type == "Consent" and s.resource is not None
                ]
                call.grants[patient_id] = grants_from_consents(consents, self.clock())
        return call.open_records[patient_id]

    def _grants_of(self, call: Call, patient_id: str | None) -> Grants:
        """The patient's choices, read from the Consents of their record (once per call).

        Only the actors whose access depends on them (professionals, representatives, feeds,
        researchers) pay for reading them.
        """
        if patient_id is None or patient_id == DIRECTORY:
            return NO_GRANTS
        reads_grants = call.principal.kind in (
            ActorKind.PROFESSIONAL,
            ActorKind.REPRESENTATIVE,
            ActorKind.FEED,
            ActorKind.RESEARCHER,
        )
        if not reads_grants and call.principal.app_id is None:
            return NO_GRANTS
        if patient_id not in call.grants:
            try:
                key = self.key(call, patient_id)
            except RecordShredded:
                return NO_GRANTS
            versions = call.session.search(patient_id, "Consent", (), ())
            consents = [r for r in (self.open(key, v).resource for v in versions) if r is not None]
            call.grants[patient_id] = grants_from_consents(consents, self.clock())
        return call.grants[patient_id]

    @staticmethod
    def _request(call: Call, action: Action, target: Target) -> AccessRequest:
        return AccessRequest(
            actor=call.actor,
            action=action,
            target=target,
            mode=call.mode,
            justification=call.justification,
            confirmed_by=call.confirmed_by,
        )

    def decide(self, call: Call, action: Action, target: Target) -> Decision:
        """Ask the policy about one request of the call, and note the verdict for its journal.

        Raises:
            AppAccessEnded: an app on its own patient's record holds no grant any more (revoked,
                or its period ended): its token is worth nothing, whatever the request (401,
                not a 403 that would let the app believe only this request was refused).
        """
        request = self._request(call, action, target)
        decision = call.decisions.get(request)
        if decision is None:
            grants = self._grants_of(call, target.patient_id)
            decision = call.decisions[request] = decide(request, grants, self.profile, self.clock())
        if call.query is None and action is Action.CREATE and call.actor.kind is ActorKind.FEED:
            # The journal says which class (or measure type) a feed offered, never the content.
            call.query = f"class={self.profile.matrix.class_of(target) or ''}"
        trail = self.trail_of(call, target.patient_id)
        actor = call.principal
        if (
            not decision.allowed
            and APP_NOT_GRANTED in decision.reasons
            and actor.app_id is not None
            and target.patient_id == actor.patient_id
        ):
            if trail is not None:
                trail.denied_reasons.update(decision.reasons)
            raise AppAccessEnded(
                "The patient's grant to this app has ended or was revoked; the app must be authorised again.",
                reason=APP_NOT_GRANTED,
                client_id=actor.app_id,
                patient_id=actor.patient_id,
                journaled=trail is not None,
            )
        if decision.allowed:
            call.obligations |= decision.obligations
            if trail is not None:
                trail.allowed = True
                trail.allowed_reasons.update(decision.reasons)
                trail.notify |= Obligation.NOTIFY_PATIENT in decision.obligations
        elif trail is not None:
            trail.denied_reasons.update(decision.reasons)
        return decision

    def check(self, call: Call, action: Action, target: Target, *, hide: bool, what: str = "") -> Decision:
        """Decide, and refuse what is not allowed.

        Raises:
            NotFound: refused where the refusal would reveal what exists (``hide``), or the
                request names no record. AccessDenied: refused otherwise.
        """
        decision = self.decide(call, action, target)
        if not decision.allowed:
            if hide or NO_RECORD in decision.reasons:
                raise NotFound(f"{what or target.resource_type} is not known.")
            raise AccessDenied("Access to this record is not allowed.", reasons=decision.reasons)
        return decision

    def admission(self, call: Call, action: Action, resource_type: str) -> Decision:
        """Ask the policy what it decides on who asks alone, before any record is named (``admit``)."""
        target = Target(patient_id=None, resource_type=resource_type)
        return admit(self._request(call, action, target), self.profile, self.clock())

    def admit(
        self, call: Call, action: Action, resource_type: str, *, named: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Refuse with 403 an actor the policy refuses on who they are (rule ``forbidden-kind``).

        Such a refusal depends only on who asks, so unlike a per-record refusal it reveals nothing
        about what exists: the answer is the same for an unknown id. Each resource the request
        ``named`` (type, id) that exists makes the attempt an entry of its record's journal
        (decision ``deny``, with the reason ``decide`` gives), for the patient to see.

        Raises:
            AccessDenied: the policy's admission refused (an employer, insurer, bank, assessor).
        """
        admission = self.admission(call, action, resource_type)
        if admission.allowed:
            return
        for named_type, named_id in named:
            patient_id = call.session.locate(named_type, named_id)
            if patient_id is not None and patient_id != DIRECTORY:
                self.decide(call, action, self.target(call, patient_id, resource_type))
        raise AccessDenied("Access to this record is not allowed.", reasons=admission.reasons)

    # -- keys, opening, document facts ----------------------------------------------------------

    def key(self, call: Call, patient_id: str) -> bytes:
        """Return a record's key, unwrapped once per call.

        Raises:
            RecordShredded: the record was erased (or never existed).
        """
        if patient_id not in call.keys:
            call.keys[patient_id] = self.vault.key(call.session, patient_id, self.clock())
        return call.keys[patient_id]

    def open(self, key: bytes, version: StoredVersion, *, lazy: bool = False) -> Stored:
        """Open a stored version (a deletion opens to no resource).

        ``lazy`` defers the unsealing to the first use of its content: the caller must use it,
        or drop the version, within the call (``RecordSearch.run`` unseals its page).
        """
        opener = None
        if version.sealed is not None:
            opener = functools.partial(
                self.vault.open_resource,
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
            raw=None if opener is None or lazy else opener(),
            opener=opener if lazy else None,
        )

    def matches(self, call: Call, patient_id: str, query: SearchQuery, *, lazy: bool = False) -> list[Stored]:
        """Open every current resource of a record that matches the query, before any visibility check.

        Token clauses are answered by the blind indexes in SQL; date clauses on the opened
        resources. An erased record matches nothing. ``lazy``: see :meth:`open`.
        """
        try:
            key = self.key(call, patient_id)
        except RecordShredded:
            return []
        filters = [
            (c.param, [self.vault.token_hash(key, c.param, clause_keys(v)) for v in c.values])
            for c in query.tokens
        ]
        versions = call.session.search(patient_id, query.resource_type, query.ids, filters)
        out: list[Stored] = []
        for version in versions:
            stored = self.open(key, version, lazy=lazy and not query.dates)
            if query.dates:
                # Dates are strings: a lossy parse (floats) reads them without keeping a resource.
                raw = stored.json
                if raw is None or not matches_dates(fhirjson.loads_lossy(raw), query.dates):
                    continue
            out.append(stored)
        return out

    def facts(self, call: Call, patient_id: str, stored: Stored) -> DocumentFacts | None:
        """The document facts the policy needs for one opened resource (None if not a document).

        A Binary takes the facts of the current DocumentReference of its record that points to it.
        """
        if stored.resource_type == "DocumentReference" and stored.resource is not None:
            facts = document_facts(stored.resource)
            if stored.resource.get("status") == "current":
                # A Binary read in the same call takes these facts without another query.
                for _, attachment in attachments(stored.resource):
                    if isinstance(attachment.get("url"), str):
                        call.binary_facts.setdefault(attachment["url"], facts)
            return facts
        if stored.resource_type != "Binary":
            return None
        cached = call.binary_facts.get(f"Binary/{stored.resource_id}")
        if cached is not None:
            return cached
        query = parse_search("DocumentReference", [("binary", f"Binary/{stored.resource_id}")])
        documents = [d for d in self.matches(call, patient_id, query) if d.resource]
        return document_facts(documents[0].resource or {}) if documents else None

    def stored_facts(self, call: Call, patient_id: str, version: StoredVersion) -> DocumentFacts | None:
        """The document facts of a stored version (its authors decide who may change it)."""
        if version.deleted or version.resource_type not in ("DocumentReference", "Binary"):
            return None
        try:
            return self.facts(call, patient_id, self.open(self.key(call, patient_id), version))
        except RecordShredded:
            return None

    def visible(self, call: Call, patient_id: str, stored: Stored, *, disclose: bool = True) -> bool:
        """Tell whether the caller may see one opened resource (its facts decided, per resource).

        A visible resource is noted as disclosed unless ``disclose`` is False (a paged answer
        discloses only the page it returns, with :meth:`disclose`).
        """
        if stored.deleted:  # known without unsealing: a lazily opened version stays sealed here
            return True
        target = self.target(
            call,
            patient_id,
            stored.resource_type,
            document=self.facts(call, patient_id, stored),
            # Only an app's scopes look into the resource: others leave its JSON unparsed.
            resource=stored.resource if call.principal.app_id is not None else None,
        )
        if not self.decide(call, Action.READ, target).allowed:
            return False
        if disclose:
            self.disclose(call, patient_id, stored)
        return True

    def shown(self, call: Call, patient_id: str, stored: Stored) -> Stored:
        """Return an opened resource if the caller may see it.

        Raises:
            NotFound: not for this caller, answered exactly as a missing resource.
        """
        if not self.visible(call, patient_id, stored):
            raise NotFound(f"{stored.resource_type}/{stored.resource_id} is not known.")
        return stored

    # -- the journal ----------------------------------------------------------------------------

    def trail_of(self, call: Call, patient_id: str | None) -> Touch | None:
        """What the call did with one record so far (None for the directory or no record)."""
        if patient_id is None or patient_id == DIRECTORY:
            return None
        if patient_id not in call.trail:
            call.trail[patient_id] = Touch()
        return call.trail[patient_id]

    def disclose(self, call: Call, patient_id: str, stored: Stored) -> None:
        """Note a resource version the call returns or writes (the entry's targets)."""
        trail = self.trail_of(call, patient_id)
        if trail is not None:
            trail.targets[f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"] = None

    def _entries(
        self, call: Call, session: StoreSession, error: CarnetError | None
    ) -> list[tuple[bytes, Entry]]:
        """Build the journal entries of a call, one per record it touched."""
        actor, now = call.actor, self.clock()
        caller = current_caller()
        actor_id = actor.app_id or actor.professional_id or actor.feed_id or actor.subject
        # An app acting for its patient is journaled under its own name (« application »).
        actor_kind = "app" if actor.app_id is not None else actor.kind.value
        out: list[tuple[bytes, Entry]] = []
        for patient_id, trail in call.trail.items():
            try:
                key = self._journal_key(call, session, patient_id)
            except RecordShredded:
                continue  # an erased record has nothing left to disclose, and no key to seal with
            refused = not trail.allowed or (
                isinstance(error, (AccessDenied, NotFound, AppAccessEnded)) and bool(trail.denied_reasons)
            )
            reasons = trail.denied_reasons if refused else trail.allowed_reasons
            notified = (
                () if refused or error is not None else self._notify(call, session, key, patient_id, trail)
            )
            entry = Entry(
                recorded=now,
                patient_id=patient_id,
                actor_kind=actor_kind,
                actor_id=actor_id,
                actor_display=actor.display,
                actor_profession=actor.profession,
                actor_specialty=actor.specialty,
                actor_structure=actor.structure,
                actor_structure_name=actor.structure_name,
                action=call.interaction,
                resource_type=call.resource_type,
                targets=tuple(trail.targets) if error is None else (),
                mode=call.mode.value,
                decision="deny" if refused else "permit",
                outcome=outcome(error),
                reasons=tuple(sorted(reasons)),
                justification=call.justification,
                confirmed_by=call.confirmed_by,
                notified=notified,
                client=caller.client if caller is not None else None,
                client_address=caller.address if caller is not None else None,
                query=call.query,
            )
            out.append((key, entry))
        return out

    def _journal_key(self, call: Call, session: StoreSession, patient_id: str) -> bytes:
        """A record's key for sealing its entry: the call's, or unwrapped in the journal's transaction."""
        if patient_id not in call.keys:
            call.keys[patient_id] = self.vault.key(session, patient_id, self.clock())
        return call.keys[patient_id]

    def _events(
        self, call: Call, session: StoreSession, key: bytes, patient_id: str, trail: Touch
    ) -> list[NoticeEvent]:
        """The notices an allowed access gives the patient (DESIGN §9); at most one per access."""
        actor, mode = call.actor, call.mode
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
                patient_id, self.vault.token_hash(key, "journal-actor", (actor_id,))
            )
            if first or trail.notify:
                events.append(NoticeEvent.NEW_PROFESSIONAL)
        if trail.new_document and actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
            events.append(NoticeEvent.NEW_DOCUMENT)
        if trail.new_message and actor.kind is ActorKind.PROFESSIONAL:
            events.append(NoticeEvent.NEW_MESSAGE)
        return events

    def _notify(
        self, call: Call, session: StoreSession, key: bytes, patient_id: str, trail: Touch
    ) -> tuple[str, ...]:
        """Enqueue, in ``session``, the notices of one allowed access; return those enqueued."""
        sent: list[str] = []
        for event in self._events(call, session, key, patient_id, trail):
            notice = Notice.of(event, call.actor, patient_id=patient_id, at=self.clock(), mode=call.mode)
            if self.notifier.notify(
                cast(NotificationStore, session), key, notice, patient=call.patients.get(patient_id)
            ):
                sent.append(event.value)
        return tuple(sent)

    def _journal(self, call: Call, session: StoreSession, error: CarnetError | None) -> None:
        """Append a call's journal entries in ``session`` (fail closed)."""
        try:
            entries = self._entries(call, session, error)
            if entries:
                self.journal.append(session, entries)
        except Exception as exc:
            log.error("journal write failed: %s", type(exc).__name__)
            raise _unavailable() from exc

    def _journal_apart(self, call: Call, error: CarnetError | None) -> None:
        """Journal a call in a transaction of its own (reads, and calls that failed).

        That transaction is shared with the journal entries of concurrent calls (group commit:
        one durable commit for all); the call goes on only once its own entry is committed.
        For a call that failed, nothing is returned whatever happens here, so a journal that
        cannot be written (or a key that cannot be unwrapped to seal the entry) is logged and
        the call's own error is reported.
        """
        try:
            # No savepoint: a journal unit raises only when the journal cannot be written at all.
            self.group.run(lambda session: self._journal(call, session, error), isolate=False)
        except Exception as exc:
            if error is not None:
                log.error("journal write of a failed request failed: %s", type(exc.__cause__ or exc).__name__)
                return
            if isinstance(exc, JournalUnavailable):
                raise
            log.error("journal write failed: %s", type(exc).__name__)
            raise _unavailable() from exc


def _unavailable() -> JournalUnavailable:
    return JournalUnavailable(
        "The access journal could not be written, so the request was not carried out; retry later."
    )
