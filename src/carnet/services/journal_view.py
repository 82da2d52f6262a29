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
from carnet.domain.errors import (
    Gone,
    InvalidRequest,
    NotFound,
    RecordShredded,
    UnsupportedSearch,
)
from carnet.domain.journal import StoredEntry
from carnet.domain.policy import (
    Action,
)
from carnet.domain.principal import ActorKind
from carnet.domain.search import (
    DateClause,
    SearchQuery,
    matches_dates,
    parse_search,
)
from carnet.services.journal import parse_event_id
from carnet.services.ports import StoreSession
from carnet.services.record_search import RecordSearch
from carnet.services.record_types import SearchResult, Stored

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


class JournalView(RecordSearch):
    """AuditEvent search and read, and inclusion proofs, over the core record access."""

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """Read a resource, or an AuditEvent of the journal."""
        if resource_type == "AuditEvent":
            return self._journal_read(resource_id)
        return super().read(resource_type, resource_id)

    def search(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
    ) -> SearchResult:
        """Search one record, or a record's access journal (AuditEvent)."""
        if resource_type != "AuditEvent":
            return super().search(resource_type, params, lenient=lenient)
        self._refuse_forbidden_kind(Action.SEARCH, resource_type)
        return self._journal_search(parse_search(resource_type, params, lenient=lenient), params)

    def _journal_stored(self, session: StoreSession, row: StoredEntry) -> Stored | None:
        """Open one journal entry as an AuditEvent (None: the record was erased)."""
        try:
            key = self._key(session, row.patient_id)
        except RecordShredded:
            return None
        opened = self._svc.journal.open(key, row)
        event = audit_event(
            opened.event_id,
            opened.entry,
            clinical=self.actor.kind is not ActorKind.DPO,
            server=self._svc.journal.base_origin,
        )
        stored = Stored(
            resource_type="AuditEvent",
            resource_id=opened.event_id,
            version_id=1,
            last_updated=row.recorded_at,
            raw=fhirjson.dumps(event),
        )
        self._disclose(row.patient_id, stored)
        return stored

    def _journal_search(self, query: SearchQuery, params: Sequence[tuple[str, str]]) -> SearchResult:
        """Search the access journal: one record's (patient, representative, DPO) or all (DPO)."""
        if query.tokens or query.ids:
            raise UnsupportedSearch("AuditEvent is searched by patient and date only.")
        since, until = _date_bounds(query.dates)
        with self._session("journal", "AuditEvent", query=params) as session:
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
        return {"resourceType": "Parameters", "parameter": parameters}
