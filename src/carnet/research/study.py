"""A research study as Carnet registers it: FHIR ``ResearchStudy`` plus what the law and privacy need.

A study names its sponsor, purpose, legal basis (``public-interest`` or ``consent``), the
reference of its ethics / CNIL approval, its period, the data it asks for (resource types,
codes, a date range) and its privacy parameters (k of k-anonymity, the ε budget of its
aggregate questions, the largest date shift, the largest share of records that may be
suppressed to reach k). An administrator registers it; the DPO approves it; only an approved
study inside its period exports anything (DESIGN §8).

Wire format of a registration (JSON, the API's body and the CLI's file)::

    {"title": "…", "sponsor": "…", "purpose": "…", "legalBasis": "public-interest" | "consent",
     "approvalReference": "CNIL DR-2026-123", "period": {"start": "2026-01-01", "end": "2027-12-31"},
     "data": {"types": ["Patient", "Condition", "Observation"], "codes": ["http://loinc.org|29463-7"],
              "since": "2020-01-01", "until": "2026-12-31"},
     "privacy": {"k": 5, "epsilon": 2.0, "dateShiftDays": 30, "maxSuppression": 0.1}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from carnet.domain.access import ResearchUse
from carnet.domain.errors import AccessDenied, InvalidRequest
from carnet.domain.resources import is_valid_id
from carnet.research.deidentify import clinical_tokens

STUDY_EXTENSION = "https://carnet.health/fhir/StructureDefinition/research-study"
"""The extension carrying Carnet's fields on a ``ResearchStudy``."""

#: The types a study may ask for: clinical data of the record, never the patient's choices,
#: the journal, the documents' bodies (``Binary``) or the people around the patient.
EXPORTABLE_TYPES = frozenset(
    {
        "Patient",
        "AllergyIntolerance",
        "Condition",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "ExplanationOfBenefit",
        "Immunization",
        "MedicationDispense",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
        "Procedure",
    }
)
MAX_K = 1000
MAX_STUDY_ID = 48
MAX_EPSILON = 100.0
MAX_SHIFT_DAYS = 3650


class LegalBasis(StrEnum):
    """Why a study may use records (RGPD art. 6 and 9): public interest (opt-out) or consent (opt-in)."""

    PUBLIC_INTEREST = "public-interest"
    CONSENT = "consent"


class StudyStatus(StrEnum):
    """Where a study stands in the registry."""

    REGISTERED = "registered"
    APPROVED = "approved"
    WITHDRAWN = "withdrawn"


#: The FHIR R4 ``ResearchStudy.status`` of each registry status.
_FHIR_STATUS = {
    StudyStatus.REGISTERED: "in-review",
    StudyStatus.APPROVED: "approved",
    StudyStatus.WITHDRAWN: "withdrawn",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Privacy:
    """A study's privacy parameters: ``k``, the ε budget, the date shift, the suppression limit."""

    k: int = 5
    epsilon: float = 1.0
    date_shift_days: int = 30
    max_suppression: float = 0.1


#: Where a resource's own clinical date is, in order (``a.b``: element ``b`` of ``a``).
_DATES = (
    "effectiveDateTime",
    "effectiveInstant",
    "effectivePeriod.start",
    "onsetDateTime",
    "onsetPeriod.start",
    "occurrenceDateTime",
    "performedDateTime",
    "performedPeriod.start",
    "recordedDate",
    "authoredOn",
    "dateAsserted",
    "issued",
    "date",
    "period.start",
)


def clinical_date(resource: Mapping[str, Any]) -> date | None:
    """The day a resource is about (when measured, began, was given or recorded), or None."""
    for path in _DATES:
        value: Any = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and len(value) >= 4:
            try:
                return date.fromisoformat(value[:10]) if len(value) >= 10 else date(int(value[:4]), 1, 1)
            except ValueError:
                continue
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    """One registered study (« étude »): the ResearchStudy and Carnet's fields.

    ``codes`` are FHIR tokens ``system|code``; a resource is exported if it carries one of them
    (or every resource of the asked types when ``codes`` is empty). ``since``/``until`` bound
    the resources' own dates (before the shift).
    """

    study_id: str
    title: str
    sponsor: str
    purpose: str
    legal_basis: LegalBasis
    approval_reference: str
    start: date
    end: date
    types: frozenset[str]
    codes: frozenset[str] = frozenset()
    since: date | None = None
    until: date | None = None
    privacy: Privacy = Privacy()
    status: StudyStatus = StudyStatus.REGISTERED
    registered_by: str = ""
    approved_by: str | None = None

    @property
    def use(self) -> ResearchUse:
        """What the policy is told about this study for each record."""
        return ResearchUse(study_id=self.study_id, consent_based=self.legal_basis is LegalBasis.CONSENT)

    def approved(self, by: str) -> Study:
        """Return the study approved by the DPO ``by``.

        Raises:
            InvalidRequest: the study is not waiting for approval.
        """
        if self.status is not StudyStatus.REGISTERED:
            raise InvalidRequest(
                f"Study {self.study_id} is {self.status}; only a registered study is approved."
            )
        return replace(self, status=StudyStatus.APPROVED, approved_by=by)

    def covers(self, resource: Mapping[str, Any]) -> bool:
        """Tell whether a resource is within the data the study asked for: its codes and dates.

        With ``codes``, the resource carries one of them (a Patient always passes). With
        ``since``/``until``, the resource's own clinical date (:func:`clinical_date`) is within
        them; a resource without one is left out.
        """
        if resource.get("resourceType") == "Patient":
            return True
        if self.codes and not clinical_tokens(resource) & self.codes:
            return False
        if self.since is None and self.until is None:
            return True
        day = clinical_date(resource)
        if day is None:
            return False
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)

    def check_open(self, today: date) -> None:
        """Refuse to use a study that is not approved or is outside its period.

        Raises:
            AccessDenied: not approved (``study-not-approved``), or its period is over or not
                begun (``study-out-of-period``).
        """
        if self.status is not StudyStatus.APPROVED:
            raise AccessDenied(
                f"Study {self.study_id} is {self.status}: the DPO must approve it before any export.",
                reasons=("study-not-approved",),
            )
        if not self.start <= today <= self.end:
            raise AccessDenied(
                f"Study {self.study_id} runs from {self.start} to {self.end}; nothing is exported outside that period.",
                reasons=("study-out-of-period",),
            )


def _text(data: Mapping[str, Any], name: str, *, limit: int = 2000) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidRequest(f"The study needs '{name}': a non-empty text of at most {limit} characters.")
    return value.strip()


def _date(value: object, name: str) -> date:
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a date YYYY-MM-DD.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date YYYY-MM-DD, not {value[:20]!r}.") from None


def _number(data: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidRequest(f"'privacy.{name}' must be a number between {low} and {high}.")
    return float(value)


def _dict(value: object, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{name}' must be a JSON object.")
    return value


def parse_study(data: object, *, study_id: str, registered_by: str) -> Study:
    """Read a registration (the wire format of the module docstring) into a :class:`Study`.

    Raises:
        InvalidRequest: a field is missing, of the wrong shape, or out of bounds.
    """
    if not isinstance(data, dict):
        raise InvalidRequest("A study registration is a JSON object.")
    if not is_valid_id(study_id) or len(study_id) > MAX_STUDY_ID:
        raise InvalidRequest(
            f"A study id is a FHIR id: letters, digits, '-' and '.', at most {MAX_STUDY_ID}."
        )
    try:
        basis = LegalBasis(str(data.get("legalBasis")))
    except ValueError:
        raise InvalidRequest("'legalBasis' must be 'public-interest' or 'consent'.") from None
    period = _dict(data.get("period"), "period")
    start, end = _date(period.get("start"), "period.start"), _date(period.get("end"), "period.end")
    if end < start:
        raise InvalidRequest("The study's period ends before it starts.")
    wanted = _dict(data.get("data"), "data")
    types = wanted.get("types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise InvalidRequest("'data.types' must list the resource types the study needs.")
    unknown = sorted(set(types) - EXPORTABLE_TYPES)
    if unknown:
        raise InvalidRequest(
            f"A study cannot ask for {', '.join(unknown)[:200]}; it may ask for {', '.join(sorted(EXPORTABLE_TYPES))}."
        )
    codes = wanted.get("codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) and "|" in c for c in codes):
        raise InvalidRequest("'data.codes' must list FHIR tokens 'system|code'.")
    since = _date(wanted["since"], "data.since") if wanted.get("since") is not None else None
    until = _date(wanted["until"], "data.until") if wanted.get("until") is not None else None
    privacy = _dict(data.get("privacy"), "privacy")
    k = _number(privacy, "k", 5, 2, MAX_K)
    shift = _number(privacy, "dateShiftDays", 30, 0, MAX_SHIFT_DAYS)
    if k != int(k) or shift != int(shift):
        raise InvalidRequest("'privacy.k' and 'privacy.dateShiftDays' are whole numbers.")
    return Study(
        study_id=study_id,
        title=_text(data, "title", limit=200),
        sponsor=_text(data, "sponsor", limit=200),
        purpose=_text(data, "purpose"),
        legal_basis=basis,
        approval_reference=_text(data, "approvalReference", limit=200),
        start=start,
        end=end,
        types=frozenset({"Patient", *types}),
        codes=frozenset(codes),
        since=since,
        until=until,
        privacy=Privacy(
            k=int(k),
            epsilon=_number(privacy, "epsilon", 1.0, 0.01, MAX_EPSILON),
            date_shift_days=int(shift),
            max_suppression=_number(privacy, "maxSuppression", 0.1, 0.0, 1.0),
        ),
        registered_by=registered_by,
    )


def study_json(study: Study) -> dict[str, Any]:
    """Return the registration of a study in the wire format (what :func:`parse_study` reads)."""
    return {
        "title": study.title,
        "sponsor": study.sponsor,
        "purpose": study.purpose,
        "legalBasis": str(study.legal_basis),
        "approvalReference": study.approval_reference,
        "period": {"start": study.start.isoformat(), "end": study.end.isoformat()},
        "data": {
            "types": sorted(study.types),
            "codes": sorted(study.codes),
            "since": study.since.isoformat() if study.since else None,
            "until": study.until.isoformat() if study.until else None,
        },
        "privacy": {
            "k": study.privacy.k,
            "epsilon": study.privacy.epsilon,
            "dateShiftDays": study.privacy.date_shift_days,
            "maxSuppression": study.privacy.max_suppression,
        },
    }


def research_study(study: Study) -> dict[str, Any]:
    """Return the study as a FHIR R4 ``ResearchStudy`` (Carnet's fields in one extension)."""
    fields = study_json(study)
    extension = [
        {"url": "legalBasis", "valueCode": str(study.legal_basis)},
        {"url": "approvalReference", "valueString": study.approval_reference},
        {"url": "purpose", "valueString": study.purpose},
        {"url": "registration", "valueString": _compact(fields)},
    ]
    return {
        "resourceType": "ResearchStudy",
        "id": study.study_id,
        "title": study.title,
        "status": _FHIR_STATUS[study.status],
        "description": study.purpose,
        "period": {"start": study.start.isoformat(), "end": study.end.isoformat()},
        "sponsor": {"display": study.sponsor},
        "extension": [{"url": STUDY_EXTENSION, "extension": extension}],
    }


def _compact(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def age_at(birth: date, day: date | datetime) -> int:
    """Return the age in whole years on ``day``."""
    day = day.date() if isinstance(day, datetime) else day
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
