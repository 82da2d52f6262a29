"""A study's bulk export: pseudonymised, k-anonymous, on each patient's terms, journaled per patient.

:meth:`ResearchExports.start` checks the study (registered, approved, in its period, the caller
one of its researchers as the policy sees it) and the bulk-data parameters against the data the
study asked for, then records a queued job. :meth:`ResearchExports.run` makes two passes over
the records, by id in batches (memory bounded by the batch and the number of classes, never by
the number of patients):

1. **cohort** — for each record the policy lets into the study (rule ``research-study``: the
   patient's choice), count its quasi-identifiers at every level of the generalisation ladder
   (only its Patient and Consents are opened), whence the generalisation level (the finest
   that suppresses at most the study's share); then, over the patients that level releases,
   count the codes they hold at every level of each code's hierarchy
   (:mod:`carnet.research.codes`), whence what each rare code (held by fewer than k of them)
   becomes: a coarser code, or removed. This pass reads only to count, writes nothing and
   discloses nothing.
2. **export** — one call of the record access per batch (mode ``research``, action ``$export``,
   the study and the export named in the call's query): the policy decides each record again
   (a choice made since pass 1 is honoured), the record's resources are de-identified
   (:mod:`carnet.research.deidentify`) and written as sealed NDJSON parts, and each record the
   call touched gets one journal entry naming the study — with the resources that left, or
   with the reason ``k-anonymity-suppressed`` when the patient was suppressed.

Before release, the classes and the codes actually written are checked (every class, and every
code's holders, ≥ k); an export that fails the check keeps no output and is marked failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carnet.domain import fhirjson
from carnet.domain.consent import grants_from_consents
from carnet.domain.errors import AccessDenied, CarnetError, InvalidRequest, RecordShredded
from carnet.domain.policy import AccessMode, AccessRequest, Action, Target, decide
from carnet.domain.principal import Principal
from carnet.domain.smart import parse_scopes, permits
from carnet.research import codes, kanon
from carnet.research.deidentify import NEVER, Deidentifier, concept_tokens
from carnet.research.pseudonyms import date_shift
from carnet.research.study import Study
from carnet.services._call import Call
from carnet.services.export_jobs import ExportJobs, ExportRequest, PartWriter, parse_request
from carnet.services.ports import StoredVersion, StoreSession
from carnet.services.record_types import Stored
from carnet.services.records import RecordService
from carnet.services.research_ports import ExportJob
from carnet.services.research_studies import StudyRegistry, study_key_id

Clock = Callable[[], datetime]


def check_pipeline(actor: Principal, study_id: str, types: Iterable[str] = ()) -> None:
    """Hold a research pipeline (a SMART backend service) to its study and its token's scopes.

    A researcher signed in as a person (no ``study_id``) is left to the policy. A pipeline
    exports for the one study it was registered for, and only types its token's ``system/``
    scopes both read and search (``system/*.rs``, ``system/Observation.rs``; v1 ``.read``).

    Raises:
        AccessDenied: another study (``app-other-study``) or a type outside the token's scopes
            (``app-scope-not-granted``).
    """
    if actor.study_id is None:
        return
    if actor.study_id != study_id:
        raise AccessDenied(
            f"This token is a pipeline's for study {actor.study_id}, not for {study_id}.",
            reasons=("app-other-study",),
        )
    try:
        scopes = parse_scopes(actor.app_scopes)
    except InvalidRequest:
        scopes = ()  # a scope the server no longer knows grants nothing
    missing = sorted(
        t
        for t in types
        if not all(permits(scopes, a, t, context="system") for a in (Action.READ, Action.SEARCH))
    )
    if missing:
        raise AccessDenied(
            f"The token's scopes do not read {', '.join(missing)[:200]} (ask for system/*.rs).",
            reasons=("app-scope-not-granted",),
        )


@dataclass(slots=True)
class Cohort:
    """What pass 1 learnt: the generalisation level, and the codes the released patients hold."""

    ladder: kanon.Ladder
    level: int = 0
    code_counts: codes.CodeCounts = field(default_factory=codes.CodeCounts)


def _patient(opened: list[Stored] | None) -> dict[str, Any] | None:
    """The Patient resource of an opened record (None for a batch marker or a record without one)."""
    if opened is None:
        return None
    return next((s.resource for s in opened if s.resource_type == "Patient" and s.resource), None)


class ResearchExports:
    """Exports for registered studies (see the module docstring)."""

    def __init__(
        self, *, service: RecordService, registry: StudyRegistry, jobs: ExportJobs, clock: Clock
    ) -> None:
        self._svc = service
        self._registry = registry
        self._jobs = jobs
        self._clock = clock

    def start(
        self,
        actor: Principal,
        study_id: str,
        *,
        types: str | None = None,
        since: str | None = None,
        type_filters: Sequence[str] = (),
        output_format: str | None = None,
    ) -> ExportJob:
        """Kick off a study's export.

        Raises:
            NotFound: no such study. AccessDenied: not approved, outside its period, or the
                caller is not a researcher in research mode. InvalidRequest: a parameter outside
                the study's scope (types, codes) or malformed. Nothing is recorded on a refusal.
        """
        study = self._registry.get(study_id)
        study.check_open(self._clock().date())
        self.admit(actor, study)
        request = parse_request(
            study.types,
            types=types,
            since=since,
            type_filters=type_filters,
            output_format=output_format,
            allowed_codes=study.codes,
        )
        check_pipeline(actor, study.study_id, request.types | {"Patient"})
        return self._jobs.create(actor.subject, study.study_id, request)

    def admit(self, actor: Principal, study: Study) -> None:
        """Ask the policy whether this caller may export for the study at all (no record named yet).

        A research pipeline must be the study's own (:func:`check_pipeline`).
        """
        check_pipeline(actor, study.study_id)
        request = AccessRequest(
            actor=actor,
            action=Action.EXPORT,
            target=Target(patient_id=None, resource_type="Patient", research=study.use),
            mode=AccessMode.RESEARCH,
        )
        decision = decide(request, grants_from_consents((), self._clock()), self._svc.profile, self._clock())
        if not decision.allowed:
            raise AccessDenied("Only a researcher exports for a study.", reasons=decision.reasons)

    def run(self, actor: Principal, export_id: str) -> ExportJob:
        """Run a queued study export to its end (or until it is cancelled); return its final state.

        Raises:
            NotFound: no such export of this caller.
        """
        job = self._jobs.status(actor, export_id)
        try:
            if job.study_id is None:
                raise AccessDenied("This export is not a study's.", reasons=("no-study",))
            study = self._registry.get(job.study_id)
            study.check_open(self._clock().date())
            request = ExportRequest.from_json(job.request)
            with self._svc.store.session() as session:
                study_key = self._svc.vault.key(session, study_key_id(study.study_id), self._clock())
            cohort = self._cohort(actor, study, request, export_id)
            if cohort is None:
                return self._jobs.status(actor, export_id)
            return self._export(actor, study, study_key, request, export_id, cohort)
        except CarnetError as error:
            self._jobs.fail(export_id, error)
            return self._jobs.status(actor, export_id)

    # -- pass 1: the cohort -------------------------------------------------------------------

    def _cohort(
        self, actor: Principal, study: Study, request: ExportRequest, export_id: str
    ) -> Cohort | None:
        """Count the cohort's classes, then its released patients' codes (None if cancelled meanwhile).

        First the quasi-identifier classes of every record the policy lets in (their Patient
        and Consents only are opened), whence the generalisation level; then, over the patients
        that level releases, how many hold each level of each code the export would write.
        """
        cohort = Cohort(ladder=kanon.Ladder(today=self._clock().date()))
        for seen, opened in self.cohort(actor, study, types=("Patient", "Consent")):
            patient = _patient(opened)
            if patient is not None:
                cohort.ladder.add(kanon.traits_of(patient))
            if seen and not self._jobs.progress(export_id, f"cohort: {seen} records"):
                return None
        k = study.privacy.k
        cohort.level = cohort.ladder.level(k, study.privacy.max_suppression)
        for seen, opened in self.cohort(actor, study):
            patient = _patient(opened)
            if patient is not None and opened is not None:
                qi = kanon.generalise(kanon.traits_of(patient), cohort.level, cohort.ladder.today)
                if cohort.ladder.releasable(qi, cohort.level, k):
                    cohort.code_counts.add(
                        token
                        for stored in opened
                        if stored.resource is not None
                        and stored.resource_type not in NEVER
                        and request.wants(stored.resource, stored.last_updated)
                        and study.covers(stored.resource)
                        for token in concept_tokens(stored.resource)
                    )
            if seen and not self._jobs.progress(export_id, f"codes: {seen} records"):
                return None
        return cohort

    def cohort(
        self, actor: Principal, study: Study, *, types: tuple[str, ...] | None = None
    ) -> Iterator[tuple[int, list[Stored] | None]]:
        """Walk the records by id; yield each record the policy lets into the study, opened.

        Yields ``(0, resources)`` for each such record and ``(records seen, None)`` after each
        batch; ``types`` (with ``Consent``, which the policy reads) limits what is opened. This
        walk only counts (pass 1, aggregate questions): it discloses nothing.
        """
        seen = 0
        for batch in self._jobs.records():
            with self._svc.store.session() as session:
                for patient_id in batch:
                    opened = self._permitted(session, actor, study, patient_id, types)
                    if opened is not None:
                        yield 0, opened
            seen += len(batch)
            yield seen, None

    def _permitted(
        self,
        session: StoreSession,
        actor: Principal,
        study: Study,
        patient_id: str,
        types: tuple[str, ...] | None = None,
    ) -> list[Stored] | None:
        """Open a record's current resources (of ``types``) if the policy lets it into the study."""
        now = self._clock()
        try:
            key = self._svc.vault.key(session, patient_id, now)
        except RecordShredded:
            return None
        versions = session.search(patient_id, None, (), ())
        if types is not None:
            versions = [v for v in versions if v.resource_type in types]
        opened = [self._svc.gate.open(key, v) for v in versions]
        consents = [s.resource for s in opened if s.resource_type == "Consent" and s.resource is not None]
        request = AccessRequest(
            actor=actor,
            action=Action.EXPORT,
            target=Target(patient_id=patient_id, resource_type="Patient", research=study.use),
            mode=AccessMode.RESEARCH,
        )
        decision = decide(request, grants_from_consents(consents, now), self._svc.profile, now)
        return opened if decision.allowed else None

    # -- pass 2: the export -------------------------------------------------------------------

    def _export(
        self,
        actor: Principal,
        study: Study,
        study_key: bytes,
        request: ExportRequest,
        export_id: str,
        cohort: Cohort,
    ) -> ExportJob:
        k, level = study.privacy.k, cohort.level
        generalised = cohort.code_counts.released(k)
        gate = self._svc.gate
        writer = PartWriter(self._svc, export_id, self._jobs.key(export_id))
        released: Counter[tuple[str, str, str]] = Counter()
        released_codes: Counter[str] = Counter()
        suppressed = seen = 0
        query = [("study", study.study_id), ("export", export_id)]
        for batch in self._jobs.records():
            with gate.transaction(
                actor, "$export", "ResearchStudy", write=True, mode=AccessMode.RESEARCH, query=query
            ) as call:
                for patient_id in batch:
                    target = Target(patient_id=patient_id, resource_type="Patient", research=study.use)
                    if not gate.decide(call, Action.EXPORT, target).allowed:
                        continue
                    try:
                        key = gate.key(call, patient_id)
                    except RecordShredded:
                        continue
                    versions: list[StoredVersion] = call.session.search(patient_id, None, (), ())
                    opened = [gate.open(key, v) for v in versions]
                    patient = next((s for s in opened if s.resource_type == "Patient" and s.resource), None)
                    if patient is None or patient.resource is None:
                        continue
                    qi = kanon.generalise(kanon.traits_of(patient.resource), level, cohort.ladder.today)
                    trail = gate.trail_of(call, patient_id)
                    if not cohort.ladder.releasable(qi, level, k):
                        suppressed += 1
                        if trail is not None:
                            trail.allowed_reasons.add("k-anonymity-suppressed")
                        continue
                    shift = date_shift(study_key, patient_id, study.privacy.date_shift_days)
                    deidentifier = Deidentifier(study_key=study_key, shift_days=shift, codes=generalised)
                    writer.add("Patient", fhirjson.dumps(deidentifier.patient(patient_id, qi)))
                    gate.disclose(call, patient_id, patient)
                    released[qi.key] += 1
                    held: set[str] = set()
                    for stored in opened:
                        if stored.resource is not None and study.covers(stored.resource):
                            held |= self._add(call, patient_id, writer, deidentifier, request, stored)
                    released_codes.update(held)
                writer.flush(call.session)
            seen += len(batch)
            if not self._jobs.progress(export_id, f"export: {seen} records"):
                return self._jobs.status(actor, export_id)
        kanon.check(released, k)
        codes.check(released_codes, k)
        with self._svc.store.session(write=True) as session:
            writer.flush(session, everything=True)
        summary: dict[str, Any] = {
            "types": writer.counts,
            "patients": sum(released.values()),
            "suppressed": suppressed,
            "k": kanon.k_of(released.values()),
            "level": level,
            "codesGeneralised": sum(1 for c in generalised.values() if c is not None),
            "codesRemoved": sum(1 for c in generalised.values() if c is None),
        }
        return self._jobs.finish(export_id, summary)

    def _add(
        self,
        call: Call,
        patient_id: str,
        writer: PartWriter,
        deidentifier: Deidentifier,
        request: ExportRequest,
        stored: Stored,
    ) -> set[str]:
        """Write one resource of a record, de-identified, if the export wants it; note it in the journal entry.

        Returns the clinical codes that left with it.
        """
        resource = stored.resource
        if resource is None or stored.resource_type == "Patient":
            return set()
        if not request.wants(resource, stored.last_updated):
            return set()
        out = deidentifier.resource(resource)
        if out is None:
            return set()
        writer.add(stored.resource_type, fhirjson.dumps(out))
        self._svc.gate.disclose(call, patient_id, stored)
        return concept_tokens(out)
