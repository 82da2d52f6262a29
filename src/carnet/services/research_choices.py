"""The patient's side of research: which studies could use or used the record, and one-click choices.

:func:`studies_of` lists every approved (or since withdrawn) study with, for this record: whether
it is in the study's cohort today (the policy's ``research-study`` rule on the patient's
Consents), the patient's own choice about it, and each export that used the record — when, and
which resources left — read from the record's access journal (one entry per export, naming the
study). :func:`choose_research` records the patient's opt-out (or opt-in) of one study as a
Consent, in one call: the previous choices about that study stop counting, so every later export
honours the new one.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from carnet.domain.consent import (
    RESEARCH_KINDS,
    STUDY_SYSTEM,
    ConsentKind,
    consent_for,
    consent_kind,
    grants_from_consents,
)
from carnet.domain.policy import Profile, is_research_allowed
from carnet.domain.principal import Principal
from carnet.research.study import Study, StudyStatus
from carnet.services.records import RecordService


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyUse:
    """One export of a study that touched the record: when, whether it took data, what left."""

    export_id: str
    at: datetime
    permitted: bool
    resources: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyForPatient:
    """A study as one patient sees it: the study, whether it may use the record, the choice, its uses."""

    study: Study
    included: bool
    choice: str
    uses: tuple[StudyUse, ...] = ()


def _study_of(consent: Mapping[str, Any]) -> str | None:
    for actor in (consent.get("provision") or {}).get("actor") or []:
        identifier = ((actor or {}).get("reference") or {}).get("identifier") or {}
        if identifier.get("system") == STUDY_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None


def _uses(events: Sequence[Mapping[str, Any]]) -> dict[str, list[StudyUse]]:
    """The exports in the record's journal (AuditEvents), by study."""
    found: dict[str, list[StudyUse]] = {}
    for event in events:
        for entity in event.get("entity") or []:
            raw = entity.get("query") if isinstance(entity, dict) else None
            if not isinstance(raw, str):
                continue
            try:
                query = parse_qs(base64.b64decode(raw).decode())
            except ValueError:
                continue
            if "study" not in query or "export" not in query:
                continue
            targets = Counter(
                str(e["what"]["reference"]).split("/", 1)[0]
                for e in event.get("entity") or []
                if isinstance(e, dict) and isinstance(e.get("what"), dict) and "reference" in e["what"]
            )
            at = datetime.fromisoformat(str(event.get("recorded")).replace("Z", "+00:00"))
            found.setdefault(query["study"][0], []).append(
                StudyUse(
                    export_id=query["export"][0],
                    at=at,
                    permitted=event.get("outcome") == "0",
                    resources=dict(targets),
                )
            )
    return found


def studies_of(
    studies: Sequence[Study],
    consents: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    profile: Profile,
    now: datetime,
) -> list[StudyForPatient]:
    """Every study that could use or used the record (approved, or withdrawn after using it), newest use first."""
    grants = grants_from_consents(consents, now)
    uses = _uses(events)
    out = []
    for study in studies:
        used = tuple(sorted(uses.get(study.study_id, []), key=lambda u: u.at, reverse=True))
        if study.status is StudyStatus.REGISTERED or (study.status is StudyStatus.WITHDRAWN and not used):
            continue
        if study.study_id in grants.research_opted_out:
            choice = "opted-out"
        elif study.study_id in grants.research_opted_in:
            choice = "opted-in"
        else:
            choice = "default"
        included = study.status is StudyStatus.APPROVED and is_research_allowed(grants, profile, study.use)
        out.append(StudyForPatient(study=study, included=included, choice=choice, uses=used))
    return out


def choose_research(
    service: RecordService, principal: Principal, patient_id: str, study_id: str, *, include: bool
) -> None:
    """Record the patient's choice about one study (a Consent), ending their earlier choices about it.

    Raises:
        AccessDenied: not the patient's (or representative's) record.
    """
    kind = ConsentKind.RESEARCH_OPT_IN if include else ConsentKind.RESEARCH_OPT_OUT
    with service.call(principal, "create", "Consent", write=True) as call:
        found = call.search.search("Consent", [("patient", f"Patient/{patient_id}"), ("_count", "1000")])
        for consent in found.resources:
            if consent.get("status") != "active" or consent_kind(consent) not in RESEARCH_KINDS:
                continue
            if _study_of(consent) == study_id:
                call.writes.update("Consent", str(consent["id"]), {**consent, "status": "inactive"})
        call.writes.create(consent_for(kind, patient_id, now=service.clock(), study_id=study_id))
