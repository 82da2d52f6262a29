"""The access journal as its readers see it: AuditEvent search and read, inclusion proofs.

The patient, their representatives and the DPO (rule ``journal-readers``) read a record's
entries as IHE BALP-shaped AuditEvents; reading the journal is itself journaled.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from carnet.domain import fhirjson
from carnet.domain.audit_event import audit_event
from carnet.domain.documents import attachments, document_facts
from carnet.domain.errors import (
    AccessDenied,
    Gone,
    InvalidRequest,
    NotFound,
    RecordShredded,
    UnsupportedSearch,
)
from carnet.domain.journal import StoredEntry
from carnet.domain.policy import NO_RECORD, Action, Decision, Obligation, Target, Visibility
from carnet.domain.principal import ActorKind
from carnet.domain.search import (
    DateClause,
    SearchQuery,
    matches_dates,
    parse_search,
)
from carnet.services._call import Call
from carnet.services.gate import Gate
from carnet.services.journal import Journal, parse_event_id
from carnet.services.record_types import SearchResult, Stored

_JOURNAL_LIMIT = 10_000
#: The target of a search of every record's journal at once (the DPO's).
_ALL_RECORDS = Target(patient_id=None, resource_type="AuditEvent", all_records=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _recorded(row: StoredEntry) -> dict[str, Any]:
    """The part of an entry's AuditEvent its date is read from (``recorded``, as the event says it)."""
    return {"resourceType": "AuditEvent", "recorded": row.recorded_at.isoformat().replace("+00:00", "Z")}


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


class JournalView:
    """AuditEvent search and read, and inclusion proofs, each in its call's transaction.

    Open a call for them as ``("journal", "AuditEvent")``: reading the journal is journaled too.
    """

    def __init__(self, *, gate: Gate, journal: Journal) -> None:
        self._gate = gate
        self._journal = journal

    def search(self, call: Call, params: Sequence[tuple[str, str]], *, lenient: bool = False) -> SearchResult:
        """Search the access journal: one record's (patient, representative, DPO) or all (DPO).

        Raises:
            AccessDenied: a forbidden kind, or not this caller's record. InvalidRequest: no
                ``patient`` (for any but the DPO). UnsupportedSearch: a parameter other than patient and date.
        """
        self._gate.admit(call, Action.SEARCH, "AuditEvent")
        return self._search(call, parse_search("AuditEvent", params, lenient=lenient))

    def _stored(self, call: Call, row: StoredEntry, decision: Decision) -> Stored | None:
        """Open one journal entry as an AuditEvent, as ``decision`` lets the caller see it (None: erased).

        Under ``withhold_content`` (the DPO) the event keeps who, when, how and the decision, and
        drops what was read or written.
        """
        try:
            key = self._gate.key(call, row.patient_id)
        except RecordShredded:
            return None
        opened = self._journal.open(key, row)
        event = audit_event(
            opened.event_id,
            opened.entry,
            clinical=Obligation.WITHHOLD_CONTENT not in decision.obligations,
            server=self._journal.base_origin,
        )
        hidden = self._hidden(call, row.patient_id)
        if hidden and isinstance(event.get("entity"), list):
            # The entry stays (who, when, how), without naming what the reader may not see yet.
            event["entity"] = [
                e
                for e in event["entity"]
                if str((e.get("what") or {}).get("reference")).split("/_history/")[0] not in hidden
            ]
        stored = Stored(
            resource_type="AuditEvent",
            resource_id=opened.event_id,
            version_id=1,
            last_updated=row.recorded_at,
            raw=fhirjson.dumps(event),
        )
        self._gate.disclose(call, row.patient_id, stored)
        return stored

    def _hidden(self, call: Call, patient_id: str) -> frozenset[str]:
        """The documents of a record its patient (or representative) may not see yet, by reference.

        ``INVISIBLE_PATIENT`` hides a document from both until a professional lifts it;
        ``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret from the representatives. Once
        lifted, the journal names the document again.
        """
        kind = call.principal.kind
        if kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
            return frozenset()
        cached = call.hidden_targets.get(patient_id)
        if cached is not None:
            return cached
        labels = {Visibility.INVISIBLE_TO_PATIENT}
        if kind is ActorKind.REPRESENTATIVE:
            labels.add(Visibility.INVISIBLE_TO_REPRESENTATIVES)
        hidden: set[str] = set()
        for stored in self._gate.matches(call, patient_id, parse_search("DocumentReference", [])):
            if stored.resource is None:
                continue
            facts = document_facts(stored.resource)
            if facts.visibility & labels or (kind is ActorKind.REPRESENTATIVE and facts.minor_secret):
                hidden.add(f"DocumentReference/{stored.resource_id}")
                hidden.update(
                    str(a["url"]) for _, a in attachments(stored.resource) if isinstance(a.get("url"), str)
                )
        call.hidden_targets[patient_id] = frozenset(hidden)
        return call.hidden_targets[patient_id]

    def _search(self, call: Call, query: SearchQuery) -> SearchResult:
        gate = self._gate
        if query.tokens or query.ids:
            raise UnsupportedSearch("AuditEvent is searched by patient and date only.")
        since, until = _date_bounds(query.dates)
        if query.patient_id is not None:
            decision = gate.check(
                call, Action.JOURNAL, gate.target(call, query.patient_id, "AuditEvent"), hide=False
            )
        else:
            decision = gate.decide(call, Action.JOURNAL, _ALL_RECORDS)
            if NO_RECORD in decision.reasons:
                raise InvalidRequest(
                    "The access journal is read one record at a time: add patient=Patient/<id>."
                )
            if not decision.allowed:
                raise AccessDenied("Access to the access journal is not allowed.", reasons=decision.reasons)
        # A record's entries are all in its own log (and, on a store converted to Citus, its
        # earlier log): read those only, on Citus the record's shard group.
        logs = None if query.patient_id is None else self._journal.logs_of(call.session, query.patient_id)
        rows = call.session.journal_of(
            query.patient_id, since=since, until=until, limit=_JOURNAL_LIMIT, logs=logs
        )
        ascending = bool(query.sort) and not query.sort[0].descending
        if query.patient_id is not None:
            # One record: every entry has the same decision, and its date is its row's, so the
            # dates are checked and the page chosen before anything is unsealed; only the page's
            # entries are opened (not the 10,000 the store may return).
            kept = [r for r in rows if not query.dates or matches_dates(_recorded(r), query.dates)]
            kept.sort(key=lambda r: (r.recorded_at, f"{r.shard}-{r.seq}"), reverse=not ascending)
            chosen = [] if query.summary_count else kept[query.offset : query.offset + query.count]
            page = [s for s in (self._stored(call, r, decision) for r in chosen) if s is not None]
            return SearchResult(entries=page, total=len(kept), query=query)
        found: list[Stored] = []
        for row in rows:
            if query.patient_id is None:
                # Every record's journal at once: each entry is decided on its own record.
                decision = gate.decide(call, Action.JOURNAL, gate.target(call, row.patient_id, "AuditEvent"))
                if not decision.allowed:
                    continue
            stored = self._stored(call, row, decision)
            if stored is None or (query.dates and not matches_dates(stored.resource or {}, query.dates)):
                continue
            found.append(stored)
        found.sort(key=lambda s: (s.last_updated, s.resource_id), reverse=not ascending)
        page = [] if query.summary_count else found[query.offset : query.offset + query.count]
        return SearchResult(entries=page, total=len(found), query=query)

    def read(self, call: Call, event_id: str) -> Stored:
        """Read one entry of the access journal as an AuditEvent.

        Raises:
            NotFound: unknown, or not this caller's to see. Gone: the entry's record was erased.
        """
        gate = self._gate
        shard, seq = parse_event_id(event_id)
        row = call.session.journal_entry(shard, seq)
        if row is None:
            raise NotFound(f"AuditEvent/{event_id} is not known.")
        decision = gate.check(
            call, Action.JOURNAL, gate.target(call, row.patient_id, "AuditEvent"), hide=True
        )
        stored = self._stored(call, row, decision)
        if stored is None:
            raise Gone(f"AuditEvent/{event_id} belongs to an erased record.")
        return stored

    def audit_proof(self, call: Call, event_id: str) -> dict[str, Any]:
        """Return a journal entry's inclusion proof under a signed checkpoint, as FHIR Parameters.

        The patient (or a representative) also gets the entry's salt and content, so that anyone
        they show them to can check the commitment in the leaf; the DPO gets the proof only.

        Raises:
            NotFound: unknown entry, or not this caller's to see.
        """
        gate = self._gate
        shard, seq = parse_event_id(event_id)
        row = call.session.journal_entry(shard, seq)
        if row is None:
            raise NotFound(f"AuditEvent/{event_id} is not known.")
        decision = gate.check(
            call, Action.JOURNAL, gate.target(call, row.patient_id, "AuditEvent"), hide=True
        )
        proof = self._journal.prove(call.session, row)
        parameters: list[dict[str, Any]] = [
            {"name": "origin", "valueString": self._journal.origin(shard)},
            {"name": "leafIndex", "valueInteger": proof.index},
            {"name": "treeSize", "valueInteger": proof.size},
            {"name": "leafInput", "valueBase64Binary": _b64(proof.leaf_input)},
            *({"name": "path", "valueBase64Binary": _b64(h)} for h in proof.proof),
            {"name": "checkpoint", "valueString": proof.checkpoint.decode()},
            {"name": "verifierKey", "valueString": self._journal.signer.verifier_key},
        ]
        if Obligation.WITHHOLD_CONTENT not in decision.obligations:
            opened = self._journal.open(gate.key(call, row.patient_id), row)
            parameters += [
                {"name": "salt", "valueBase64Binary": _b64(opened.salt)},
                {"name": "content", "valueBase64Binary": _b64(opened.entry.content())},
            ]
        return {"resourceType": "Parameters", "parameter": parameters}
