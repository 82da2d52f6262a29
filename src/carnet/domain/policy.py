"""The access policy: one pure function deciding every request (DESIGN §3).

``decide(request, grants, profile, now)`` returns a :class:`Decision` naming the rules that
produced it. The default is **deny**. A profile is data: an ordered list of rule names; a
rule either abstains (returns ``None``) or returns a verdict. Deny rules listed before allow
rules win because the first verdict is final.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from carnet.domain.principal import FORBIDDEN_KINDS, ActorKind, Principal


class Action(StrEnum):
    """What is asked: FHIR interaction codes and named operations."""

    READ = "read"
    VREAD = "vread"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    HISTORY = "history"
    SEARCH = "search-type"
    EVERYTHING = "$everything"
    KEYS_ROTATE = "keys-rotate"
    PATIENT_SHRED = "patient-shred"


CLINICAL_ACTIONS = frozenset(
    {
        Action.READ,
        Action.VREAD,
        Action.CREATE,
        Action.UPDATE,
        Action.DELETE,
        Action.HISTORY,
        Action.SEARCH,
        Action.EVERYTHING,
    }
)
KEY_ACTIONS = frozenset({Action.KEYS_ROTATE, Action.PATIENT_SHRED})
DIRECTORY_ACTIONS = frozenset({Action.READ, Action.VREAD, Action.HISTORY, Action.SEARCH, Action.CREATE})


class AccessMode(StrEnum):
    """How the actor reaches the record."""

    NORMAL = "normal"
    TREATING = "treating"
    BREAK_GLASS = "break_glass"
    REGULATION = "regulation"
    PATIENT = "patient"
    REPRESENTATIVE = "representative"
    FEED = "feed"
    RESEARCH = "research"
    ADMIN = "admin"


class Obligation(StrEnum):
    """What the caller must do when the decision allows."""

    AUDIT = "audit"
    NOTIFY_PATIENT = "notify_patient"
    SHOW_MODE_BANNER = "show_mode_banner"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the request touches.

    ``patient_id`` is the record (None for the shared directory); ``opens_own_record`` is True
    when a patient creates the Patient resource that carries their own identifier.
    """

    patient_id: str | None
    resource_type: str
    in_directory: bool = False
    opens_own_record: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    """One question to the policy."""

    actor: Principal
    action: Action
    target: Target
    mode: AccessMode = AccessMode.NORMAL
    justification: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Grants:
    """The patient's choices, read from their Consent resources (filled by the DMP-rules work)."""

    authorised: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()
    treating: frozenset[str] = frozenset()


NO_GRANTS = Grants()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The verdict with the rules that produced it."""

    allowed: bool
    reasons: tuple[str, ...]
    obligations: frozenset[Obligation] = field(default_factory=frozenset)


Rule = Callable[[AccessRequest, Grants, datetime], Decision | None]


def _deny(reason: str) -> Decision:
    return Decision(allowed=False, reasons=(reason,))


def _allow(reason: str) -> Decision:
    return Decision(allowed=True, reasons=(reason,), obligations=frozenset({Obligation.AUDIT}))


def forbidden_kinds(request: AccessRequest, grants: Grants, now: datetime) -> Decision | None:
    """Employers, complementary insurers, banks never get in (CSP L1111-18)."""
    if request.actor.kind in FORBIDDEN_KINDS:
        return _deny("forbidden-kind")
    return None


def admin_keys_only(request: AccessRequest, grants: Grants, now: datetime) -> Decision | None:
    """Administrators manage keys and never read clinical content."""
    if request.actor.kind not in (ActorKind.ADMIN, ActorKind.DPO):
        return None
    if request.action in KEY_ACTIONS and request.actor.kind is ActorKind.ADMIN:
        return _allow("admin-manages-keys")
    return _deny("admin-never-reads-content")


def patient_own_record(request: AccessRequest, grants: Grants, now: datetime) -> Decision | None:
    """A patient (titulaire) reads and writes their own record."""
    actor = request.actor
    if actor.kind is not ActorKind.PATIENT or request.action not in CLINICAL_ACTIONS:
        return None
    if request.target.in_directory:
        return None
    if actor.patient_id is not None and request.target.patient_id == actor.patient_id:
        return _allow("patient-own-record")
    return None


def patient_opens_record(request: AccessRequest, grants: Grants, now: datetime) -> Decision | None:
    """A patient without a record may open one carrying their own identifier."""
    actor = request.actor
    if (
        actor.kind is ActorKind.PATIENT
        and actor.patient_id is None
        and request.action is Action.CREATE
        and request.target.resource_type == "Patient"
        and request.target.opens_own_record
    ):
        return _allow("patient-opens-record")
    return None


def shared_directory(request: AccessRequest, grants: Grants, now: datetime) -> Decision | None:
    """Patients and professionals read and add directory entries (practitioners, organisations…)."""
    if not request.target.in_directory or request.action not in DIRECTORY_ACTIONS:
        return None
    if request.actor.kind in (ActorKind.PATIENT, ActorKind.PROFESSIONAL):
        return _allow("shared-directory")
    return None


RULES: Mapping[str, Rule] = {
    "forbidden-kind": forbidden_kinds,
    "admin-keys-only": admin_keys_only,
    "patient-own-record": patient_own_record,
    "patient-opens-record": patient_opens_record,
    "shared-directory": shared_directory,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A policy profile: the ordered rule names it applies (data, not code)."""

    name: str
    rules: tuple[str, ...]


PROFILES: Mapping[str, Profile] = {
    "fr-dmp": Profile(
        name="fr-dmp",
        rules=(
            "forbidden-kind",
            "admin-keys-only",
            "patient-own-record",
            "patient-opens-record",
            "shared-directory",
        ),
    ),
    "sovereign": Profile(
        name="sovereign",
        rules=(
            "forbidden-kind",
            "admin-keys-only",
            "patient-own-record",
            "patient-opens-record",
            "shared-directory",
        ),
    ),
}


def decide(request: AccessRequest, grants: Grants, profile: Profile, now: datetime) -> Decision:
    """Decide one request: the first rule of the profile with a verdict wins; otherwise deny."""
    for name in profile.rules:
        verdict = RULES[name](request, grants, now)
        if verdict is not None:
            return verdict
    return _deny("default-deny")
