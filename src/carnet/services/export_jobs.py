"""Bulk export jobs (FHIR Bulk Data ``$export``): kick-off, status, output, cancellation.

An export is a row of ``exports`` (its state, what was asked, its progress, a summary) and its
output: NDJSON lines of one resource type per part of about :data:`PART_BYTES`, each part sealed
with AES-256-GCM under the export's own key, kept like a record key under ``_export-<id>``
(so a cancelled or deleted export is crypto-shredded). A job runs in batches of records, each
batch one call of the record access (policy, journal), so memory stays flat whatever the
number of patients, and records are walked by id (keyset pagination, never OFFSET).

Two kinds of job run here: a **study's** export (:mod:`carnet.services.research_export`,
pseudonymised, only for an approved study) and a **patient's own** export (portability: the
record as stored, what the patient may read of it). The bulk-data parameters are read by
:func:`parse_request`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    InvalidRequest,
    NotFound,
    RecordShredded,
    UnsupportedSearch,
)
from carnet.domain.policy import Action
from carnet.domain.principal import Principal
from carnet.domain.resources import COMPARTMENT_PATHS, is_valid_id
from carnet.domain.search import parse_date
from carnet.research.deidentify import clinical_tokens
from carnet.services.ports import StoreSession
from carnet.services.records import RecordService
from carnet.services.research_ports import ExportJob, ExportPart, ExportStatus, ResearchSession

log = logging.getLogger("carnet.export")

Clock = Callable[[], datetime]
NewId = Callable[[], str]

#: The size at which a part of the output is sealed and stored.
PART_BYTES = 1_000_000
#: Records per call of the record access (one transaction, one journal entry per record).
BATCH = 200
NDJSON = "application/fhir+ndjson"
_OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
#: What a patient's own export may hold: every type of the patient compartment.
RECORD_TYPES = frozenset({"Patient", *COMPARTMENT_PATHS})


def export_key_id(export_id: str) -> str:
    """The reserved record id under which an export's key is kept."""
    return f"_export-{export_id}"


def destroy_key(service: RecordService, session: StoreSession, key_id: str) -> None:
    """Crypto-shred a reserved key (an export's, a study's): its erasure share, then its wrapped row."""
    stored = session.get_key(key_id)
    if stored is not None and stored.wrapped is not None and stored.wrapped.share_id is not None:
        service.vault.shares.destroy(stored.wrapped.share_id)
    session.shred_key(key_id, service.clock())


def research(session: StoreSession) -> ResearchSession:
    """The research tables of a store transaction (the SQL session implements both interfaces)."""
    return cast(ResearchSession, session)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    """The bulk-data parameters of a kick-off, parsed: types, ``_since``, codes by type (``_typeFilter``)."""

    types: frozenset[str]
    since: datetime | None = None
    codes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The request as kept with the job."""
        return {
            "types": sorted(self.types),
            "since": self.since.isoformat() if self.since else None,
            "codes": {t: sorted(c) for t, c in sorted(self.codes.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportRequest:
        """Read a request kept with a job."""
        since = data.get("since")
        return cls(
            types=frozenset(data.get("types") or ()),
            since=datetime.fromisoformat(since) if isinstance(since, str) else None,
            codes={t: frozenset(c) for t, c in (data.get("codes") or {}).items()},
        )

    def wants(self, resource: Mapping[str, Any], last_updated: datetime) -> bool:
        """Tell whether a resource passes ``_type``, ``_since`` and ``_typeFilter`` (codes read only if filtered)."""
        resource_type = str(resource.get("resourceType"))
        if resource_type not in self.types:
            return False
        if self.since is not None and last_updated < self.since:
            return False
        codes = self.codes.get(resource_type)
        return codes is None or bool(clinical_tokens(resource) & codes)


def parse_request(
    scope: frozenset[str],
    *,
    types: str | None,
    since: str | None,
    type_filters: Sequence[str],
    output_format: str | None = None,
    allowed_codes: frozenset[str] = frozenset(),
) -> ExportRequest:
    """Read the bulk-data parameters against what the caller may export (``scope``: types).

    ``_typeFilter`` values are ``Type?code=system|code[,system|code]``; only ``code`` is
    supported. ``allowed_codes`` (a study's codes), when not empty, bounds the codes asked.

    Raises:
        InvalidRequest: a type or code outside the scope, a bad ``_since`` or ``_outputFormat``.
        UnsupportedSearch: a ``_typeFilter`` parameter other than ``code``.
    """
    if output_format is not None and output_format not in _OUTPUT_FORMATS:
        raise InvalidRequest(f"_outputFormat {output_format[:60]!r} is not supported; use {NDJSON}.")
    wanted = scope
    if types:
        asked = frozenset(t.strip() for t in types.split(",") if t.strip())
        outside = sorted(asked - scope)
        if outside:
            raise InvalidRequest(f"_type asks for {', '.join(outside)[:200]}, outside this export's scope.")
        wanted = asked
    moment = None
    if since:
        moment = parse_date(since).low
    codes: dict[str, frozenset[str]] = {}
    for raw in type_filters:
        resource_type, _, query = raw.partition("?")
        if resource_type not in wanted:
            raise InvalidRequest(f"_typeFilter names {resource_type[:60]!r}, outside this export's types.")
        found: set[str] = set()
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name != "code":
                raise UnsupportedSearch(f"_typeFilter supports only 'code', not {name[:40]!r}.")
            found.update(v for v in value.split(",") if v)
        if not found or not all("|" in c for c in found):
            raise InvalidRequest("_typeFilter codes are FHIR tokens 'system|code'.")
        outside = sorted(found - allowed_codes) if allowed_codes else []
        if outside:
            raise InvalidRequest(
                f"_typeFilter asks for codes outside the study's: {', '.join(outside)[:200]}."
            )
        codes[resource_type] = codes.get(resource_type, frozenset()) | frozenset(found)
    return ExportRequest(types=wanted, since=moment, codes=codes)


class PartWriter:
    """Buffers NDJSON lines by type and seals a part whenever a type's buffer reaches the part size."""

    def __init__(self, service: RecordService, export_id: str, key: bytes) -> None:
        self._vault = service.vault
        self._export_id = export_id
        self._key = key
        self._buffers: dict[str, list[bytes]] = {}
        self._sizes: dict[str, int] = {}
        self.parts = 0
        self.counts: dict[str, int] = {}

    def add(self, resource_type: str, line: bytes) -> None:
        """Add one resource (its JSON, one line)."""
        self._buffers.setdefault(resource_type, []).append(line)
        self._sizes[resource_type] = self._sizes.get(resource_type, 0) + len(line) + 1
        self.counts[resource_type] = self.counts.get(resource_type, 0) + 1

    def flush(self, session: StoreSession, *, everything: bool = False) -> None:
        """Seal and store the full buffers (every buffer if ``everything``)."""
        for resource_type in sorted(self._buffers):
            lines = self._buffers[resource_type]
            if not lines or (not everything and self._sizes[resource_type] < PART_BYTES):
                continue
            data = b"\n".join(lines) + b"\n"
            sealed = self._vault.cipher.seal(self._key, data, part_aad(self._export_id, self.parts))
            research(session).add_part(
                ExportPart(
                    export_id=self._export_id,
                    part=self.parts,
                    resource_type=resource_type,
                    lines=len(lines),
                    sealed=sealed,
                )
            )
            self.parts += 1
            self._buffers[resource_type], self._sizes[resource_type] = [], 0


def part_aad(export_id: str, part: int) -> bytes:
    """The associated data binding a sealed part to its export and place."""
    return f"export\x00{export_id}\x00{part}".encode()


class ExportJobs:
    """Kick-off, status, output and cancellation of bulk exports, and the patient's own export."""

    def __init__(self, *, service: RecordService, clock: Clock, new_id: NewId) -> None:
        self._svc = service
        self._clock = clock
        self._new_id = new_id

    # -- kick-off and the patient's own export ------------------------------------------------

    def create(self, owner: str, study_id: str | None, request: ExportRequest) -> ExportJob:
        """Record a queued export and create its key."""
        now = self._clock()
        job = ExportJob(
            export_id=self._new_id(),
            study_id=study_id,
            owner=owner,
            status=ExportStatus.QUEUED,
            request=request.as_json(),
            progress="queued",
            requested_at=now,
        )
        with self._svc.store.session(write=True) as session:
            research(session).add_export(job)
            self._svc.vault.create_key(session, export_key_id(job.export_id), now)
        return job

    def start_own(
        self, actor: Principal, *, types: str | None, since: str | None, type_filters: Sequence[str]
    ) -> ExportJob:
        """Kick off a patient's export of their own record (portability).

        Raises:
            AccessDenied: the caller holds no record. InvalidRequest: bad parameters.
        """
        request = parse_request(RECORD_TYPES, types=types, since=since, type_filters=type_filters)
        if actor.patient_id is None:
            raise AccessDenied("Only a patient holding a record exports it.", reasons=("no-record",))
        return self.create(actor.subject, None, request)

    def run_own(self, actor: Principal, export_id: str) -> ExportJob:
        """Run a patient's own export: every resource of the record the patient may read, as stored."""
        job = self.status(actor, export_id)
        request = ExportRequest.from_json(job.request)
        patient_id = actor.patient_id or ""
        gate = self._svc.gate
        self._mark(export_id, ExportStatus.RUNNING, "reading the record")
        try:
            key = self.key(export_id)
            writer = PartWriter(self._svc, export_id, key)
            with gate.transaction(
                actor, "$export", "Patient", write=True, query=[("export", export_id)]
            ) as call:
                gate.check(call, Action.EXPORT, gate.target(call, patient_id, "Patient"), hide=False)
                record_key = gate.key(call, patient_id)
                for version in call.session.search(patient_id, None, (), ()):
                    stored = gate.open(record_key, version)
                    resource = stored.resource
                    if resource is None or stored.json is None:
                        continue
                    if not request.wants(resource, stored.last_updated):
                        continue
                    if gate.visible(call, patient_id, stored):
                        writer.add(stored.resource_type, stored.json)
                writer.flush(call.session, everything=True)
            return self.finish(export_id, {"types": writer.counts, "patients": 1})
        except CarnetError as error:
            self.fail(export_id, error)
            raise

    # -- status, output, cancellation ---------------------------------------------------------

    def status(self, actor: Principal, export_id: str) -> ExportJob:
        """Return an export of this caller.

        Raises:
            NotFound: no such export, or another caller's (answered alike).
        """
        if not is_valid_id(export_id):
            raise NotFound("This export is not known.")
        with self._svc.store.session() as session:
            job = research(session).export(export_id)
        if job is None or job.owner != actor.subject:
            raise NotFound("This export is not known.")
        return job

    def index(self, actor: Principal, export_id: str) -> list[tuple[int, str, int]]:
        """Return ``(part, type, lines)`` of a finished export's output."""
        self.status(actor, export_id)
        with self._svc.store.session() as session:
            return research(session).part_index(export_id)

    def part(self, actor: Principal, export_id: str, part: int) -> bytes:
        """Return one part of a finished export's output, as NDJSON.

        Raises:
            NotFound: no such export or part, or the export is not done (or was cancelled).
        """
        job = self.status(actor, export_id)
        if job.status is not ExportStatus.DONE:
            raise NotFound("This export has no output (yet).")
        with self._svc.store.session() as session:
            stored = research(session).part(export_id, part)
            key = self._svc.vault.key(session, export_key_id(export_id), self._clock())
        if stored is None:
            raise NotFound("This part of the export is not known.")
        return self._svc.vault.cipher.unseal(key, stored.sealed, part_aad(export_id, part))

    def cancel(self, actor: Principal, export_id: str) -> None:
        """Cancel an export (or delete a finished one): its output and key are destroyed.

        Raises:
            NotFound: no such export of this caller.
        """
        self.status(actor, export_id)
        with self._svc.store.session(write=True) as session:
            research(session).update_export(export_id, status=ExportStatus.CANCELLED, progress="cancelled")
            research(session).delete_parts(export_id)
            destroy_key(self._svc, session, export_key_id(export_id))

    # -- shared by the runners ----------------------------------------------------------------

    def is_cancelled(self, export_id: str) -> bool:
        """Tell whether the export was cancelled (the runner checks between batches)."""
        with self._svc.store.session() as session:
            job = research(session).export(export_id)
        return job is None or job.status is ExportStatus.CANCELLED

    def key(self, export_id: str) -> bytes:
        """Return an export's key.

        Raises:
            NotFound: the export was cancelled (its key destroyed).
        """
        with self._svc.store.session() as session:
            try:
                return self._svc.vault.key(session, export_key_id(export_id), self._clock())
            except RecordShredded:
                raise NotFound("This export was cancelled.") from None

    def _mark(self, export_id: str, status: ExportStatus, progress: str) -> None:
        with self._svc.store.session(write=True) as session:
            research(session).update_export(export_id, status=status, progress=progress)

    def progress(self, export_id: str, progress: str) -> bool:
        """Note how far an export went; False once it was cancelled (and drop what it wrote meanwhile)."""
        with self._svc.store.session(write=True) as session:
            if research(session).update_export(export_id, progress=progress):
                return True
            research(session).delete_parts(export_id)
            return False

    def finish(self, export_id: str, summary: dict[str, Any]) -> ExportJob:
        """Mark an export done with its summary; return it."""
        with self._svc.store.session(write=True) as session:
            research(session).update_export(
                export_id,
                status=ExportStatus.DONE,
                progress="done",
                summary=summary,
                finished_at=self._clock(),
            )
            job = research(session).export(export_id)
        if job is None:
            raise NotFound("This export is not known.")
        return job

    def fail(self, export_id: str, error: CarnetError) -> None:
        """Mark an export failed with the error's message and drop its output."""
        log.warning("export %s failed: %s", export_id, type(error).__name__)
        with self._svc.store.session(write=True) as session:
            research(session).update_export(
                export_id,
                status=ExportStatus.FAILED,
                progress="failed",
                error=error.message,
                finished_at=self._clock(),
            )
            research(session).delete_parts(export_id)

    def records(self, after: str = "") -> Iterator[list[str]]:
        """Yield the ids of the live records in batches, by id (keyset pagination; reserved ids skipped)."""
        while True:
            with self._svc.store.session() as session:
                keys = session.live_keys(after, BATCH)
            if not keys:
                return
            after = keys[-1].patient_id
            batch = [k.patient_id for k in keys if not k.patient_id.startswith("_")]
            if batch:
                yield batch
