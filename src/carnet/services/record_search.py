"""Searching a record, the directory or the Patients by identifier, and ``$everything``.

Each search runs in its call's transaction through the same gate as every other access: the
policy decides per record, results the caller may not see are dropped before counts and pages,
and each record touched gets its journal entry (DESIGN §5).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from carnet.domain.errors import CarnetError, InvalidRequest
from carnet.domain.policy import Action
from carnet.domain.resources import SUPPORTED_TYPES, is_directory_type, is_valid_id, values_at
from carnet.domain.search import (
    ITERATE_ROUNDS,
    PATIENT_PARAMS,
    Include,
    SearchQuery,
    SortKey,
    TokenClause,
    TokenValue,
    clause_keys,
    parse_search,
    reference_paths,
    sort_value,
)
from carnet.services._call import Call
from carnet.services._checks import check_id, check_type
from carnet.services.gate import Gate
from carnet.services.record_types import EverythingPage, SearchResult, Stored
from carnet.services.vault import DIRECTORY, Vault

Clock = Callable[[], datetime]


class Search:
    """Searches, ``$everything`` and the matching every lookup of a record goes through."""

    def __init__(self, *, gate: Gate, vault: Vault, clock: Clock) -> None:
        self._gate = gate
        self._vault = vault
        self._clock = clock

    def search(
        self, call: Call, resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
    ) -> SearchResult:
        """Search one record (or the directory, or Patients by identifier); sorted, paged.

        Raises:
            InvalidRequest: a cross-patient search or a malformed parameter.
            UnsupportedSearch: an unknown parameter (unless ``lenient``). AccessDenied: not this caller's record.
        """
        check_type(resource_type)
        if not self._gate.admission(call, Action.SEARCH, resource_type).allowed:
            self._refuse_forbidden(call, resource_type, params)
        return self.run(call, parse_search(resource_type, params, lenient=lenient))

    def _refuse_forbidden(self, call: Call, resource_type: str, params: Sequence[tuple[str, str]]) -> None:
        """Refuse a search the policy's admission refused with 403, journaled in each existing record it names.

        The answer is the same whether the search names a record, an unknown one, or is malformed;
        a record it names (``patient=``, or ``Patient?identifier=`` / ``_id``) gets a ``deny`` entry.

        Raises:
            AccessDenied: always.
        """
        named: list[str] = []
        try:
            query = parse_search(resource_type, params, lenient=True)
            if query.resource_type == "Patient":
                named = self.patients_named(call, query)
            elif query.patient_id is not None:
                named = [query.patient_id]
        except CarnetError:
            named = []
        self._gate.admit(call, Action.SEARCH, resource_type, named=[("Patient", r) for r in named])

    def run(self, call: Call, query: SearchQuery) -> SearchResult:
        """Answer a parsed search in the call's transaction (a search entry of a Bundle too)."""
        gate = self._gate
        resource_type = query.resource_type
        if resource_type == "Patient":
            found = self.search_patients(call, query)
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
            gate.check(call, Action.SEARCH, gate.target(call, owner, resource_type), hide=False)
            found = self.matching(call, owner, query, lazy=True)
        found = _sorted(found, query.sort or (SortKey(param="_lastUpdated", descending=True),))
        page = [] if query.summary_count else found[query.offset : query.offset + query.count]
        for stored in page:
            _ = stored.json  # unsealed here, in the call (the rest of the matches stay sealed)
        included = self._included(call, query, page) if query.includes or query.revincludes else ()
        return SearchResult(entries=page, total=len(found), query=query, included=tuple(included))

    def _included(self, call: Call, query: SearchQuery, page: Sequence[Stored]) -> list[Stored]:
        """The resources ``_include`` and ``_revinclude`` add to a page, within each match's record.

        Each is opened and checked by the policy like any other result (and journaled when shown);
        references outside the record are looked up in the directory only. The ``:iterate`` ones
        are applied again to what the previous round brought in, :data:`ITERATE_ROUNDS` times at
        most (and never past the record and the directory).
        """
        seen = {(s.resource_type, s.resource_id) for s in page}
        out: dict[tuple[str, str], Stored] = {}
        sources: Sequence[Stored] = page
        includes, revincludes = query.includes, query.revincludes
        for _ in range(1 + ITERATE_ROUNDS):
            found = self._include_round(call, query, sources, includes, revincludes, seen | out.keys())
            out.update(found)
            includes = tuple(i for i in query.includes if i.iterate)
            revincludes = tuple(i for i in query.revincludes if i.iterate)
            sources = list(found.values())
            if not sources or not (includes or revincludes):
                break
        return list(out.values())

    def _include_round(
        self,
        call: Call,
        query: SearchQuery,
        sources: Sequence[Stored],
        includes: Sequence[Include],
        revincludes: Sequence[Include],
        known: AbstractSet[tuple[str, str]],
    ) -> dict[tuple[str, str], Stored]:
        """What one round of includes and revincludes brings in from ``sources`` (not ``known``)."""
        out: dict[tuple[str, str], Stored] = {}
        for include in includes:
            paths = reference_paths(include.source, include.param) or ()
            for stored in sources:
                if stored.resource_type != include.source or stored.resource is None:
                    continue
                owner = self._owner(query, stored)
                for ref in _references(stored.resource, paths):
                    rtype, _, rid = ref.partition("/")
                    if (include.target and rtype != include.target) or (rtype, rid) in known | out.keys():
                        continue
                    if not (rtype in SUPPORTED_TYPES and is_valid_id(rid)):
                        continue
                    home = DIRECTORY if is_directory_type(rtype) else owner
                    if home == DIRECTORY and not is_directory_type(rtype):
                        continue  # a directory entry points into no record
                    lookup = SearchQuery(resource_type=rtype, patient_id=None, ids=(rid,))
                    out.update(
                        ((f.resource_type, f.resource_id), f) for f in self.matching(call, home, lookup)
                    )
        for include in revincludes:
            for stored in sources:
                owner = self._owner(query, stored)
                if (include.target and stored.resource_type != include.target) or owner == DIRECTORY:
                    continue
                if include.param in PATIENT_PARAMS:
                    if stored.resource_type != "Patient":
                        continue
                    lookup = SearchQuery(resource_type=include.source, patient_id=None)
                else:
                    value = TokenValue(system=None, code=f"{stored.resource_type}/{stored.resource_id}")
                    clause = TokenClause(param=include.param, values=(value,))
                    lookup = SearchQuery(resource_type=include.source, patient_id=None, tokens=(clause,))
                for found in self.matching(call, owner, lookup):
                    if (found.resource_type, found.resource_id) not in known:
                        out.setdefault((found.resource_type, found.resource_id), found)
        return out

    @staticmethod
    def _owner(query: SearchQuery, stored: Stored) -> str:
        """The record a result belongs to (a Patient is its own record; the directory otherwise)."""
        if stored.resource_type == "Patient":
            return stored.resource_id
        if is_directory_type(stored.resource_type):
            return DIRECTORY
        return query.patient_id or DIRECTORY

    def everything(
        self, call: Call, patient_id: str, page: EverythingPage | None = None
    ) -> tuple[list[Stored], int]:
        """Return one page of a patient's whole record and the size of the whole.

        The Patient first, then the record's resources by type and id, then the directory entries
        they cite; ``page`` narrows it to some types (``_type``), to what changed since an
        instant (``_since``), and to ``count`` resources from ``offset``. Only the page returned
        is noted as disclosed in the journal.
        """
        page = page or EverythingPage()
        gate = self._gate
        check_id("Patient", patient_id)
        gate.admit(call, Action.EVERYTHING, "Patient", named=[("Patient", patient_id)])
        gate.check(
            call,
            Action.EVERYTHING,
            gate.target(call, patient_id, "Patient"),
            hide=True,
            what=f"Patient/{patient_id}",
        )
        key = gate.key(call, patient_id)
        versions = call.session.search(patient_id, None, (), ())
        opened = [gate.open(key, v) for v in versions]
        # Documents first, so each Binary takes its document's facts without another query.
        opened.sort(key=lambda r: r.resource_type != "DocumentReference")
        record = [stored for stored in opened if gate.visible(call, patient_id, stored, disclose=False)]
        record.sort(key=lambda r: (r.resource_type != "Patient", r.resource_type, r.resource_id))
        cited: dict[tuple[str, str], None] = {}
        for stored in record:
            for match in _REFERENCE.finditer(stored.json or b""):
                rtype, rid = match.group(1).decode(), match.group(2).decode()
                if is_directory_type(rtype) and (page.types is None or rtype in page.types):
                    cited[(rtype, rid)] = None
        record = [s for s in record if page.keeps(s)]
        wanted = [
            (t, i)
            for t, i in cited
            if gate.decide(call, Action.READ, gate.target(call, DIRECTORY, t)).allowed
        ]
        found = call.session.current_many(DIRECTORY, wanted) if wanted else []
        own = len(record)
        if found:
            directory_key = gate.key(call, DIRECTORY)
            record.extend(s for s in (gate.open(directory_key, v) for v in found) if page.keeps(s))
        end = len(record) if page.count is None else min(len(record), page.offset + page.count)
        for index in range(page.offset, min(end, own)):  # the record's own resources, not the directory
            gate.disclose(call, patient_id, record[index])
        return record[page.offset : end], len(record)

    def matching(
        self, call: Call, patient_id: str, query: SearchQuery, *, lazy: bool = False
    ) -> list[Stored]:
        """Open every current resource of a record that matches the query and the caller may see.

        Unsorted and unpaged: every result the caller may not see is dropped here, before counts
        and pages are computed, so totals and links reveal nothing either. With ``lazy`` the
        resources the policy can judge without their content (by type, not a document, not for
        an app) stay sealed until used (``Gate.open``).
        """
        gate = self._gate
        found = gate.matches(call, patient_id, query, lazy=lazy)
        return [s for s in found if gate.visible(call, patient_id, s)]

    def search_patients(self, call: Call, query: SearchQuery) -> list[Stored]:
        """Find the Patients a search names, among the records the caller may read."""
        gate = self._gate
        found: list[Stored] = []
        for patient_id in self.patients_named(call, query):
            if not gate.decide(call, Action.READ, gate.target(call, patient_id, "Patient")).allowed:
                continue
            found.extend(self.matching(call, patient_id, dataclasses.replace(query, ids=(patient_id,))))
        return found

    def patients_named(self, call: Call, query: SearchQuery) -> list[str]:
        """The records a Patient search names (by ``_id`` and/or ``identifier``), before any rule.

        Raises:
            InvalidRequest: neither ``_id`` nor ``identifier``, or an identifier without a value.
        """
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
                        call.session.find_identities(
                            self._vault.identity_hash(call.session, *parts, now=self._clock())
                        )
                    )
                candidates = [c for c in candidates if c in ids] if query.ids else sorted(ids)
        elif not query.ids:
            raise InvalidRequest(
                "Patients are found by identifier only (e.g. Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|<INS>); "
                "the record is patient-centred."
            )
        return list(dict.fromkeys(candidates))


def _references(resource: dict[str, Any], paths: Sequence[str]) -> list[str]:
    """The ``Type/id`` references at some element paths of a resource."""
    out: list[str] = []
    for path in paths:
        for value in values_at(resource, path):
            ref = value.get("reference") if isinstance(value, dict) else value
            if isinstance(ref, str) and ref.count("/") == 1:
                out.append(ref)
    return out


_REFERENCE = re.compile(rb'"reference":"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})"')


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
        if key.param == "_lastUpdated":  # every version has one: the row's own instant
            out.sort(key=lambda r: r.last_updated, reverse=key.descending)
            continue
        keyed = [(_sort_key(r, key.param), r) for r in out]
        present = [(value, r) for (missing, value), r in keyed if missing == 0]
        present.sort(key=lambda pair: pair[0], reverse=key.descending)
        out = [r for _, r in present] + [r for (missing, _), r in keyed if missing != 0]
    return out
