"""Transaction and batch Bundles over the record access (FHIR R4 §3.1.0.11).

:meth:`Bundles.process` runs entries in one call: a transaction's entries all in one, a batch's
each in its own (the record access opens one call per batch entry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from carnet.domain.documents import (
    attachments,
)
from carnet.domain.errors import (
    CarnetError,
    InvalidRequest,
    NotSupported,
)
from carnet.domain.resources import (
    is_directory_type,
    patient_references,
    replace_strings,
)
from carnet.domain.search import (
    parse_search,
)
from carnet.domain.validation import validate
from carnet.services import deadline
from carnet.services._call import Call
from carnet.services._checks import check_type
from carnet.services.reads import Reads
from carnet.services.record_search import Search
from carnet.services.record_types import EntryRequest, EntryResponse
from carnet.services.vault import DIRECTORY
from carnet.services.writes import Derived, Writes

NewId = Callable[[], str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A Bundle's entries ready to process: the POSTs' ids, the resolved resources, the valid POSTs.

    ``assigned`` maps an entry's position to its new id; ``resolved`` holds each entry's resource
    with the Bundle's references replaced (None without one); ``valid`` the positions of the POST
    entries already found valid (:meth:`Bundles.prepare`), not validated again.
    """

    assigned: dict[int, str]
    resolved: list[dict[str, Any] | None]
    valid: frozenset[int]
    #: What each valid POST entry's write derives from its resource alone, by position.
    derived: dict[int, Derived] = dataclasses.field(default_factory=dict)


class Bundles:
    """The entries of transactions (all or nothing) and batches (entry by entry)."""

    def __init__(self, *, reads: Reads, writes: Writes, search: Search, new_id: NewId) -> None:
        self._reads = reads
        self._writes = writes
        self._search = search
        self._new_id = new_id

    def prepare(
        self, entries: Sequence[EntryRequest], *, pause: Callable[[], None] | None = None
    ) -> Prepared:
        """Give a transaction's POST entries their ids, resolve its references and validate, before its call.

        For :meth:`process` on a store that writes one transaction at a time (SQLite): this work,
        a Bundle's largest after its writes, then runs before the write transaction instead of
        inside the writer lock every other writer waits for. Ids are drawn as :meth:`process`
        draws them where no record keys them (not on Citus, where it draws its own). Only
        validation's success is kept: an entry found invalid is validated again in the call,
        which reports it in its order and with its position, exactly as without this step.
        ``pause`` is called before each entry's work: the store's :meth:`Store.writer_first`.
        """
        prepared = self._resolve(entries)
        valid: list[tuple[int, dict[str, Any]]] = []
        for index, entry in enumerate(entries):
            resource = prepared.resolved[index]
            if entry.method != "POST" or resource is None:
                continue
            if pause is not None:
                pause()
            try:
                validate(resource)
            except CarnetError:
                continue
            valid.append((index, resource))
        # The new Patients first: the entries of their records are hashed under their new keys.
        index_keys: dict[str, bytes] = {}
        derived: dict[int, Derived] = {}
        for index, resource in sorted(valid, key=lambda item: item[1].get("resourceType") != "Patient"):
            if pause is not None:
                pause()
            derived[index] = self._writes.derive(resource, prepared.assigned.get(index), index_keys)
        return dataclasses.replace(prepared, valid=frozenset(i for i, _ in valid), derived=derived)

    def process(
        self,
        call: Call,
        entries: Sequence[EntryRequest],
        *,
        first: int = 0,
        prepared: Prepared | None = None,
    ) -> list[EntryResponse]:
        """Process Bundle entries in one call: POSTs get their ids first, then DELETE, POST, PUT, GET.

        ``first`` is the Bundle position of ``entries[0]`` (a batch processes one entry at a time);
        ``prepared``: what :meth:`prepare` made of these entries (not used where ids are keyed).

        Raises:
            CarnetError: the first entry that failed, its message prefixed with its position.
        """
        # Only where ids carry a key (Citus; the directory's answer is remembered): a second walk
        # of each resource is not spent elsewhere.
        keyed = bool(call.session.id_prefix(DIRECTORY))
        if prepared is None or keyed:
            prepared = self._resolve(entries, keyed_in=call if keyed else None)
        assigned, resolved, validated = prepared.assigned, prepared.resolved, prepared.valid
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
        hints = self._binary_hints(r for r in resolved if r is not None)
        responses: dict[int, EntryResponse] = {}
        for index in order:
            entry = entries[index]
            resource = resolved[index]
            try:
                deadline.check()
                hint = hints.get(f"Binary/{assigned.get(index)}")
                responses[index] = self._entry(
                    call,
                    entry,
                    resource,
                    assigned.get(index),
                    hint,
                    validated=index in validated,
                    derived=prepared.derived.get(index),
                )
            except CarnetError as error:
                error.message = f"Entry {first + index}: {error.message}"
                error.args = (error.message,)
                raise
        return [responses[i] for i in range(len(entries))]

    def _resolve(self, entries: Sequence[EntryRequest], *, keyed_in: Call | None = None) -> Prepared:
        """Give the POST entries their ids and resolve the Bundle's references (none validated).

        ``keyed_in``: the call whose store keys ids by record (Citus), which draws them there.
        """
        mapping: dict[str, str] = {}
        assigned: dict[int, str] = {}
        posted = [
            i for i, e in enumerate(entries) if e.method == "POST" and e.full_url and e.resource is not None
        ]
        # The Patients' ids first (a record's id is its Patient's): each other resource's id is
        # drawn for the record it names (on Citus it carries that record's shard, docs/scale.md).
        patients = [i for i in posted if (entries[i].resource or {}).get("resourceType") == "Patient"]
        for index in patients:
            self._assign(entries[index], self._new_id(), index, mapping, assigned)
        others = [i for i in posted if i not in assigned]
        owners = self._owners(entries, others, mapping) if keyed_in is not None else {}
        for index in others:
            owner = owners.get(index)
            new_id = (
                self._new_id() if keyed_in is None or owner is None else self._writes.new_id(keyed_in, owner)
            )
            self._assign(entries[index], new_id, index, mapping, assigned)
        resolved = [replace_strings(e.resource, mapping) if e.resource is not None else None for e in entries]
        return Prepared(assigned=assigned, resolved=resolved, valid=frozenset())

    @staticmethod
    def _assign(
        entry: EntryRequest, new_id: str, index: int, mapping: dict[str, str], assigned: dict[int, str]
    ) -> None:
        """Give a POST entry its id: its fullUrl now means ``<type>/<id>`` in this Bundle."""
        assigned[index] = new_id
        local = f"{(entry.resource or {}).get('resourceType')}/{new_id}"
        full_url = str(entry.full_url)
        mapping[full_url] = local
        # An absolute fullUrl (http://…/Patient/a2) is also what "Patient/a2" means in
        # this Bundle (FHIR R4 §3.1.1.4.1 reference resolution).
        tail = "/".join(full_url.rstrip("/").split("/")[-2:])
        if full_url.startswith(("http://", "https://")) and tail.count("/") == 1:
            mapping.setdefault(tail, local)

    @staticmethod
    def _owners(
        entries: Sequence[EntryRequest], indices: Sequence[int], patients: Mapping[str, str]
    ) -> dict[int, str]:
        """Guess the record of each of these POST entries, by position (to draw its id only).

        As :meth:`Writes.place` will find it: the directory, the first Patient named (the
        Bundle's new Patients resolved), or, for a Binary, the Patient of its securityContext or
        of the DocumentReference pointing to it. A wrong or missing guess costs only a location
        outside the record's shard group (the id still says where the location is).
        """
        resolved: dict[int, Mapping[str, Any]] = {
            i: replace_strings(entries[i].resource, patients) for i in indices
        }
        by_url: dict[str, str] = {}
        for resource in resolved.values():
            owner = next(patient_references(resource), None)
            if resource.get("resourceType") != "DocumentReference" or owner is None:
                continue
            for _, attachment in attachments(resource):
                url = attachment.get("url")
                if isinstance(url, str):
                    by_url.setdefault(url, owner)
        owners: dict[int, str] = {}
        for index, resource in resolved.items():
            resource_type = str(resource.get("resourceType"))
            owner = next(patient_references(resource), None)
            context = resource.get("securityContext")
            context = context.get("reference") if isinstance(context, dict) else None
            if is_directory_type(resource_type):
                owners[index] = DIRECTORY
            elif owner is not None:
                owners[index] = owner
            elif resource_type == "Binary" and isinstance(context, str) and context.startswith("Patient/"):
                owners[index] = context.removeprefix("Patient/")
            elif resource_type == "Binary" and str(entries[index].full_url) in by_url:
                owners[index] = by_url[str(entries[index].full_url)]
        return owners

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
        call: Call,
        entry: EntryRequest,
        resource: dict[str, Any] | None,
        assigned_id: str | None,
        hint: str | None = None,
        *,
        validated: bool = False,
        derived: Derived | None = None,
    ) -> EntryResponse:
        path, _, query_string = entry.url.partition("?")
        parts = [p for p in path.strip("/").split("/") if p]
        if parts[:1] == ["AuditEvent"]:
            raise NotSupported(
                "AuditEvent is not offered inside a Bundle: read the access journal with "
                "GET /fhir/AuditEvent (search or read), one request at a time; only the server writes it."
            )
        if entry.method == "POST":
            if resource is None or len(parts) != 1 or parts[0] != resource.get("resourceType"):
                raise InvalidRequest("A POST entry needs request.url = its resource type and a resource.")
            result = self._writes.create(
                call,
                resource,
                if_none_exist=entry.if_none_exist,
                assigned_id=assigned_id,
                hint=hint,
                validated=validated,
                derived=derived,
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
            result = self._writes.update(call, parts[0], parts[1], resource, if_match=entry.if_match)
            stored = result.stored
            return EntryResponse(
                status=200,
                location=f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}",
                stored=stored,
            )
        if entry.method == "DELETE":
            if len(parts) != 2 or query_string:
                raise InvalidRequest("A DELETE entry needs request.url = <type>/<id>.")
            self._writes.delete(call, parts[0], parts[1])
            return EntryResponse(status=204)
        if entry.method == "GET":
            if len(parts) == 1:
                check_type(parts[0])
                query = parse_search(parts[0], parse_qsl(query_string, keep_blank_values=True))
                return EntryResponse(status=200, search=self._search.run(call, query))
            if len(parts) == 2 and not query_string:
                return EntryResponse(status=200, stored=self._reads.read(call, parts[0], parts[1]))
            if len(parts) == 4 and parts[2] == "_history" and not query_string:
                return EntryResponse(status=200, stored=self._reads.vread(call, parts[0], parts[1], parts[3]))
            raise InvalidRequest(
                "A GET entry reads <type>/<id>[/_history/<vid>] or searches <type>?<params>."
            )
        raise InvalidRequest(
            f"Bundle entry method {entry.method!r} is not supported; use POST, PUT, DELETE or GET."
        )
