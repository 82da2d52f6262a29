"""Searching a record, the directory or the Patients by identifier, and ``$everything``.

Each search runs in one store transaction through the same gate as every other access: the
policy decides per record, results the caller may not see are dropped before counts and pages,
and each record touched gets its journal entry (DESIGN §5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from carnet.domain.errors import CarnetError, InvalidRequest
from carnet.domain.policy import Action
from carnet.domain.principal import FORBIDDEN_KINDS
from carnet.domain.resources import is_directory_type
from carnet.domain.search import SearchQuery, SortKey, parse_search, sort_value
from carnet.services.ports import StoreSession
from carnet.services.record_core import RecordCore, _check_id, _check_type
from carnet.services.record_types import SearchResult, Stored
from carnet.services.vault import DIRECTORY


class RecordSearch(RecordCore):
    """Searches and ``$everything`` over the core record access."""

    def search(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
    ) -> SearchResult:
        """Search one record (or the directory, or Patients by identifier); sorted, paged.

        Raises:
            InvalidRequest: a cross-patient search or a malformed parameter.
            UnsupportedSearch: an unknown parameter (unless ``lenient``). AccessDenied: not this caller's record.
        """
        _check_type(resource_type)
        if self.actor.kind in FORBIDDEN_KINDS:
            self._refuse_forbidden_search(resource_type, params)
        query = parse_search(resource_type, params, lenient=lenient)
        with self._session("search-type", resource_type, query=params) as session:
            return self._search(session, query)

    def _refuse_forbidden_search(self, resource_type: str, params: Sequence[tuple[str, str]]) -> None:
        """Refuse an employer's, insurer's… search with 403, journaled in each existing record it names.

        The answer is the same whether the search names a record, an unknown one, or is malformed;
        a record it names (``patient=``, or ``Patient?identifier=`` / ``_id``) gets a ``deny`` entry.

        Raises:
            AccessDenied: always.
        """
        with self._session("search-type", resource_type, query=params) as session:
            named: list[str] = []
            try:
                query = parse_search(resource_type, params, lenient=True)
                if query.resource_type == "Patient":
                    named = self._patients_named(session, query)
                elif query.patient_id is not None:
                    named = [query.patient_id]
            except CarnetError:
                named = []
            self._refuse_forbidden_kind(
                Action.SEARCH, resource_type, session=session, named=[("Patient", r) for r in named]
            )

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
        with self._session("$everything", "Patient") as session:
            self._refuse_forbidden_kind(
                Action.EVERYTHING, "Patient", session=session, named=[("Patient", patient_id)]
            )
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
        present = [r for r in out if _sort_key(r, key.param)[0] == 0]
        missing = [r for r in out if _sort_key(r, key.param)[0] != 0]
        present.sort(key=lambda r, p=key.param: _sort_key(r, p)[1], reverse=key.descending)  # type: ignore[misc]
        out = present + missing
    return out
