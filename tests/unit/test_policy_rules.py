"""Decision tables for every rule of the DMP profiles: who, in which mode, with which grants, on what.

Each row reads: actor, action and mode, the patient's grants, the target → allowed, the reasons,
the obligations (``audit`` alone when allowed and none given; none when refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from carnet.domain.errors import ConfigurationError
from carnet.domain.grants import AppGrant
from carnet.domain.policy import (
    ADMITTED,
    MATRIX,
    NO_GRANTS,
    PROFILES,
    RULES,
    AccessMode,
    AccessRequest,
    Action,
    Authorisation,
    AuthorisationStatus,
    Decision,
    DocumentFacts,
    Grants,
    Matrix,
    Obligation,
    Profile,
    ResearchUse,
    Target,
    Visibility,
    admit,
    decide,
    is_research_allowed,
    load_matrix,
)
from carnet.domain.principal import ActorKind, Principal

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)

MASQUE_PS = Visibility.MASKED_FROM_PROFESSIONALS
INVISIBLE_PATIENT = Visibility.INVISIBLE_TO_PATIENT
INVISIBLE_REPS = Visibility.INVISIBLE_TO_REPRESENTATIVES

AUDIT = frozenset({Obligation.AUDIT})
EMERGENCY = frozenset({Obligation.AUDIT, Obligation.NOTIFY_PATIENT, Obligation.SHOW_MODE_BANNER})
NOTIFY = frozenset({Obligation.AUDIT, Obligation.NOTIFY_PATIENT})
WITHHELD = frozenset({Obligation.AUDIT, Obligation.WITHHOLD_CONTENT})


def _professional(professional_id: str | None, profession: str | None = "10", **extra: Any) -> Principal:
    return Principal(
        kind=ActorKind.PROFESSIONAL,
        subject=f"ps:{professional_id}",
        professional_id=professional_id,
        profession=profession,
        **extra,
    )


GP = _professional("810001", specialty="SM54")
PHARMACIST = _professional("810002", "21")
REGULATOR = _professional("810003", samu_regulator=True)
OCCUPATIONAL = _professional("810004", occupational_physician=True)
NURSE = _professional("810005", "60")
CARDIOLOGIST = _professional("810006", specialty="SM26")
NO_ID = _professional(None)
UNKNOWN_PROFESSION = _professional("810007", "99")
NO_PROFESSION = _professional("810008", None)
PATIENT = Principal(kind=ActorKind.PATIENT, subject="pat:1", patient_id="p1")
NEWCOMER = Principal(kind=ActorKind.PATIENT, subject="pat:new")
PARENT = Principal(kind=ActorKind.REPRESENTATIVE, subject="rep:1", represents=frozenset({"p1"}))
PARENT_PATIENT = Principal(
    kind=ActorKind.PATIENT, subject="pat:2", patient_id="p2", represents=frozenset({"p1"})
)
FEED = Principal(kind=ActorKind.FEED, subject="feed:cnam", feed_id="cnam", feed_categories=frozenset({"60"}))
ANONYMOUS_FEED = Principal(kind=ActorKind.FEED, subject="feed:x", feed_categories=frozenset({"60"}))
ADMIN = Principal(kind=ActorKind.ADMIN, subject="admin")
DPO = Principal(kind=ActorKind.DPO, subject="dpo")
RESEARCHER = Principal(kind=ActorKind.RESEARCHER, subject="research")


def _kind(kind: ActorKind) -> Principal:
    return Principal(kind=kind, subject=f"{kind}:1", professional_id="810001")


RECORD = Target(patient_id="p1", resource_type="Observation")
OTHER_RECORD = Target(patient_id="p2", resource_type="Observation")
DIRECTORY = Target(patient_id=None, resource_type="Practitioner", in_directory=True)
NOWHERE = Target(patient_id=None, resource_type="Observation")
#: The DPO's search of every record's journal at once.
ALL_RECORDS = Target(patient_id=None, resource_type="AuditEvent", all_records=True)
CLAIMS = Target(patient_id="p1", resource_type="ExplanationOfBenefit")


def _doc(
    class_code: str | None = "10",
    *labels: Visibility,
    authors: tuple[str, ...] = (),
    masked_from: tuple[str, ...] = (),
    minor_secret: bool = False,
    patient_id: str = "p1",
    resource_type: str = "DocumentReference",
) -> Target:
    facts = DocumentFacts(
        class_code=class_code,
        visibility=frozenset(labels),
        author_ids=frozenset(authors),
        masked_from=frozenset(masked_from),
        minor_secret=minor_secret,
        document_id="doc-1",
    )
    return Target(patient_id=patient_id, resource_type=resource_type, document=facts)


def _authorised(*ids: str, **extra: Any) -> Grants:
    return Grants(authorisations={i: Authorisation() for i in ids}, **extra)


GP_AUTHORISED = _authorised("810001")
ALL_AUTHORISED = _authorised("810001", "810002", "810003", "810005", "810006", "810007", "810008")
GP_TREATING = Grants(treating=frozenset({"810001"}))


@dataclass(frozen=True, kw_only=True)
class Line:
    """One line of a decision table."""

    label: str
    actor: Principal
    target: Target
    allowed: bool
    reasons: tuple[str, ...]
    obligations: frozenset[Obligation] | None = None
    action: Action = Action.READ
    mode: AccessMode = AccessMode.NORMAL
    grants: Grants = NO_GRANTS
    profile: str = "fr-dmp"
    justification: str | None = None
    confirmed_by: str | None = None
    matrix: Matrix | None = None
    needs_facts: bool = False


def Row(  # noqa: N802 -- reads as the table's row constructor
    label: str,
    actor: Principal,
    target: Target,
    allowed: bool,
    reasons: tuple[str, ...],
    *extras: frozenset[Obligation] | Action | AccessMode,
    **options: Any,
) -> Line:
    """Build a table line; after the reasons, obligations, an action and a mode may come in any order."""
    for extra in extras:
        if isinstance(extra, Action):
            options["action"] = extra
        elif isinstance(extra, AccessMode):
            options["mode"] = extra
        else:
            options["obligations"] = extra
    return Line(label=label, actor=actor, target=target, allowed=allowed, reasons=reasons, **options)


def _check(row: Line) -> None:
    profile = PROFILES[row.profile]
    if row.matrix is not None:
        profile = replace(profile, matrix=row.matrix)
    request = AccessRequest(
        actor=row.actor,
        action=row.action,
        target=row.target,
        mode=row.mode,
        justification=row.justification,
        confirmed_by=row.confirmed_by,
    )
    decision = decide(request, row.grants, profile, NOW)
    expected = row.obligations if row.obligations is not None else (AUDIT if row.allowed else frozenset())
    assert (decision.allowed, decision.reasons, decision.obligations, decision.needs_facts) == (
        row.allowed,
        row.reasons,
        expected,
        row.needs_facts,
    )


def _table(*rows: Line) -> Any:
    return pytest.mark.parametrize("row", rows, ids=[row.label for row in rows])


@_table(
    Row("employer", _kind(ActorKind.EMPLOYER), RECORD, False, ("forbidden-kind",)),
    Row("bank-directory", _kind(ActorKind.BANK), DIRECTORY, False, ("forbidden-kind",)),
    Row(
        "insurer-even-authorised",
        _kind(ActorKind.COMPLEMENTARY_INSURER),
        RECORD,
        False,
        ("forbidden-kind",),
        grants=GP_AUTHORISED,
    ),
    Row(
        "assessor-break-glass",
        _kind(ActorKind.CONTRACT_ASSESSOR),
        RECORD,
        False,
        ("forbidden-kind",),
        mode=AccessMode.BREAK_GLASS,
        justification="urgence",
    ),
)
def test_forbidden_kind(row: Line) -> None:
    """Employers, complementary insurers, banks and assessors are refused before anything else."""
    _check(row)


@_table(
    Row(
        "authorised",
        GP,
        RECORD,
        False,
        ("blocked",),
        grants=_authorised("810001", blocked=frozenset({"810001"})),
    ),
    Row(
        "treating",
        GP,
        RECORD,
        False,
        ("blocked",),
        mode=AccessMode.TREATING,
        grants=Grants(treating=frozenset({"810001"}), blocked=frozenset({"810001"})),
    ),
    Row(
        "break-glass",
        GP,
        RECORD,
        False,
        ("blocked",),
        mode=AccessMode.BREAK_GLASS,
        justification="urgence",
        grants=Grants(blocked=frozenset({"810001"})),
    ),
    Row(
        "wrong-mode-still-blocked",
        GP,
        RECORD,
        False,
        ("blocked",),
        mode=AccessMode.PATIENT,
        grants=Grants(blocked=frozenset({"810001"})),
    ),
    Row(
        "occupational-told-no-record",
        OCCUPATIONAL,
        RECORD,
        False,
        ("no-record",),
        grants=Grants(blocked=frozenset({"810004"}), occupational_consent=frozenset({"810004"})),
    ),
    Row(
        "directory-still-open",
        GP,
        DIRECTORY,
        True,
        ("shared-directory",),
        grants=Grants(blocked=frozenset({"810001"})),
    ),
)
def test_blocked(row: Line) -> None:
    """A professional the patient blocked gets nothing from the record, whatever the mode."""
    _check(row)


@_table(
    Row("patient-break-glass", PATIENT, RECORD, False, ("mode-not-for-actor",), mode=AccessMode.BREAK_GLASS),
    Row("professional-as-patient", GP, RECORD, False, ("mode-not-for-actor",), mode=AccessMode.PATIENT),
    Row("feed-treating", FEED, CLAIMS, False, ("mode-not-for-actor",), Action.CREATE, AccessMode.TREATING),
    Row(
        "admin-break-glass",
        ADMIN,
        RECORD,
        False,
        ("mode-not-for-actor",),
        action=Action.KEYS_ROTATE,
        mode=AccessMode.BREAK_GLASS,
    ),
    Row("representative-as-patient", PARENT, RECORD, False, ("mode-not-for-actor",), mode=AccessMode.PATIENT),
)
def test_mode_for_actor(row: Line) -> None:
    """An access mode that the actor's kind never uses is refused."""
    _check(row)


CLOSED_RECORD = replace(RECORD, record_open=False)


@_table(
    Row("gp-authorised", GP, CLOSED_RECORD, False, ("record-closed",), grants=GP_AUTHORISED),
    Row(
        "break-glass",
        GP,
        CLOSED_RECORD,
        False,
        ("record-closed",),
        mode=AccessMode.BREAK_GLASS,
        justification="urgence",
    ),
    Row(
        "occupational",
        _professional("810009", occupational_physician=True),
        CLOSED_RECORD,
        False,
        ("no-record",),
    ),
    Row("patient-reads", PATIENT, CLOSED_RECORD, True, ("patient-own-record",)),
)
def test_record_closed(row: Line) -> None:
    """A closed record is out of every professional's reach; its patient still reads it."""
    _check(row)


@_table(
    Row("patient-own", PATIENT, RECORD, True, ("journal-reader",), Action.JOURNAL),
    Row("patient-other", PATIENT, OTHER_RECORD, False, ("journal-not-for-actor",), Action.JOURNAL),
    Row("representative", PARENT, RECORD, True, ("journal-reader",), Action.JOURNAL),
    Row("representative-other", PARENT, OTHER_RECORD, False, ("journal-not-for-actor",), Action.JOURNAL),
    Row("dpo", DPO, RECORD, True, ("journal-reader",), WITHHELD, Action.JOURNAL, AccessMode.ADMIN),
    Row("dpo-every-record", DPO, ALL_RECORDS, True, ("journal-reader",), WITHHELD, Action.JOURNAL),
    Row("patient-every-record", PATIENT, ALL_RECORDS, False, ("no-record",), Action.JOURNAL),
    Row("dpo-every-record-reads", DPO, ALL_RECORDS, False, ("admin-never-reads-content",)),
    Row("professional", GP, RECORD, False, ("journal-not-for-actor",), Action.JOURNAL, grants=GP_AUTHORISED),
    Row("admin", ADMIN, RECORD, False, ("journal-not-for-actor",), Action.JOURNAL),
    Row("nowhere", DPO, NOWHERE, False, ("no-record",), Action.JOURNAL),
)
def test_journal_readers(row: Line) -> None:
    """The journal is read by the patient, their representatives and the DPO; nobody else."""
    _check(row)


@_table(
    Row("admin-rotates", ADMIN, NOWHERE, True, ("admin-manages-keys",), Action.KEYS_ROTATE, AccessMode.ADMIN),
    Row("admin-shreds", ADMIN, RECORD, True, ("admin-manages-keys",), Action.PATIENT_SHRED),
    Row("admin-reads", ADMIN, RECORD, False, ("admin-never-reads-content",)),
    Row("dpo-reads", DPO, RECORD, False, ("admin-never-reads-content",), mode=AccessMode.ADMIN),
    Row("dpo-shreds", DPO, RECORD, False, ("admin-never-reads-content",), Action.PATIENT_SHRED),
)
def test_admin_keys_only(row: Line) -> None:
    """Administrators manage keys; neither they nor the DPO read clinical content."""
    _check(row)


@_table(
    Row("reads", RESEARCHER, RECORD, False, ("researcher-never-reads-identities",)),
    Row(
        "everything",
        RESEARCHER,
        RECORD,
        False,
        ("researcher-never-reads-identities",),
        Action.EVERYTHING,
        AccessMode.RESEARCH,
    ),
    Row("directory", RESEARCHER, DIRECTORY, False, ("researcher-never-reads-identities",)),
)
def test_researcher_no_identities(row: Line) -> None:
    """Researchers never read a record or the directory: they receive pseudonymised extracts."""
    _check(row)


PUBLIC_STUDY = ResearchUse(study_id="s1", consent_based=False)
CONSENT_STUDY = ResearchUse(study_id="s2", consent_based=True)
STUDY_RECORD = Target(patient_id="p1", resource_type="Patient", research=PUBLIC_STUDY)
CONSENT_RECORD = Target(patient_id="p1", resource_type="Patient", research=CONSENT_STUDY)
STUDY_DIRECTORY = Target(patient_id=None, resource_type="Patient", in_directory=True, research=PUBLIC_STUDY)
STUDY_NOWHERE = Target(patient_id=None, resource_type="Patient", research=PUBLIC_STUDY)
EXPORT = Action.EXPORT
RESEARCH = AccessMode.RESEARCH


@_table(
    Row("public-default", RESEARCHER, STUDY_RECORD, True, ("research-study",), EXPORT, RESEARCH),
    Row(
        "public-opted-out-of-study",
        RESEARCHER,
        STUDY_RECORD,
        False,
        ("research-opted-out",),
        EXPORT,
        RESEARCH,
        grants=Grants(research_opted_out=frozenset({"s1"})),
    ),
    Row(
        "public-opted-out-of-all",
        RESEARCHER,
        STUDY_RECORD,
        False,
        ("research-opted-out",),
        EXPORT,
        RESEARCH,
        grants=Grants(research_opt_out=True),
    ),
    Row(
        "study-opt-in-beats-global-opt-out",
        RESEARCHER,
        STUDY_RECORD,
        True,
        ("research-study",),
        EXPORT,
        RESEARCH,
        grants=Grants(research_opt_out=True, research_opted_in=frozenset({"s1"})),
    ),
    Row(
        "other-study-opt-out",
        RESEARCHER,
        STUDY_RECORD,
        True,
        ("research-study",),
        EXPORT,
        RESEARCH,
        grants=Grants(research_opted_out=frozenset({"s9"})),
    ),
    Row("consent-default", RESEARCHER, CONSENT_RECORD, False, ("research-opted-out",), EXPORT, RESEARCH),
    Row(
        "consent-opted-in",
        RESEARCHER,
        CONSENT_RECORD,
        True,
        ("research-study",),
        EXPORT,
        RESEARCH,
        grants=Grants(research_opted_in=frozenset({"s2"})),
    ),
    Row(
        "consent-global-opt-in",
        RESEARCHER,
        CONSENT_RECORD,
        True,
        ("research-study",),
        EXPORT,
        RESEARCH,
        grants=Grants(research_opt_in=True),
    ),
    Row(
        "sovereign-public-default",
        RESEARCHER,
        STUDY_RECORD,
        False,
        ("research-opted-out",),
        EXPORT,
        RESEARCH,
        profile="sovereign",
    ),
    Row("normal-mode", RESEARCHER, STUDY_RECORD, False, ("researcher-never-reads-identities",), EXPORT),
    Row(
        "read-not-export",
        RESEARCHER,
        STUDY_RECORD,
        False,
        ("researcher-never-reads-identities",),
        Action.READ,
        RESEARCH,
    ),
    Row(
        "no-study",
        RESEARCHER,
        RECORD,
        False,
        ("researcher-never-reads-identities",),
        EXPORT,
        RESEARCH,
    ),
    Row(
        "directory",
        RESEARCHER,
        STUDY_DIRECTORY,
        False,
        ("researcher-never-reads-identities",),
        EXPORT,
        RESEARCH,
    ),
    Row("kick-off-names-no-record", RESEARCHER, STUDY_NOWHERE, True, ("research-study",), EXPORT, RESEARCH),
    Row("professional", GP, STUDY_RECORD, False, ("default-deny",), EXPORT, grants=GP_AUTHORISED),
)
def test_research_study_rows(row: Line) -> None:
    """A research export serves an approved study, researcher in research mode, on the patient's terms."""
    _check(row)


REGISTRY = Target(patient_id=None, resource_type="ResearchStudy")


@_table(
    Row("admin-registers", ADMIN, REGISTRY, True, ("admin-registers-studies",), Action.STUDY_REGISTER),
    Row("dpo-approves", DPO, REGISTRY, True, ("dpo-approves-studies",), Action.STUDY_APPROVE),
    Row("admin-approves", ADMIN, REGISTRY, False, ("study-registry-not-for-actor",), Action.STUDY_APPROVE),
    Row("dpo-registers", DPO, REGISTRY, False, ("study-registry-not-for-actor",), Action.STUDY_REGISTER),
    Row(
        "researcher-registers",
        RESEARCHER,
        REGISTRY,
        False,
        ("study-registry-not-for-actor",),
        Action.STUDY_REGISTER,
    ),
)
def test_study_registry(row: Line) -> None:
    """Administrators register studies, the DPO approves them, nobody else does either."""
    _check(row)


@_table(
    Row("professional", GP, NOWHERE, False, ("no-record",), grants=GP_AUTHORISED),
    Row(
        "professional-opening",
        GP,
        Target(patient_id=None, resource_type="Patient", opens_own_record=True),
        False,
        ("no-record",),
        Action.CREATE,
    ),
    Row(
        "feed", FEED, replace(CLAIMS, patient_id=None), False, ("no-record",), Action.CREATE, AccessMode.FEED
    ),
    Row("patient-with-record", PATIENT, NOWHERE, False, ("no-record",)),
)
def test_no_record(row: Line) -> None:
    """A request that names no record is refused as ``no-record``."""
    _check(row)


@_table(
    Row("patient-reads", PATIENT, DIRECTORY, True, ("shared-directory",)),
    Row("professional-adds", GP, DIRECTORY, True, ("shared-directory",), Action.CREATE),
    Row("professional-searches", NO_ID, DIRECTORY, True, ("shared-directory",), Action.SEARCH),
    Row("patient-deletes", PATIENT, DIRECTORY, False, ("directory-not-for-actor",), Action.DELETE),
    Row("feed-adds", FEED, DIRECTORY, False, ("directory-not-for-actor",), Action.CREATE, AccessMode.FEED),
    Row("representative-reads", PARENT, DIRECTORY, False, ("directory-not-for-actor",)),
)
def test_shared_directory(row: Line) -> None:
    """Patients and professionals read and add directory entries; nobody else, nothing more."""
    _check(row)


_CLOSED_CLAIMS = replace(CLAIMS, record_open=False)
_LAB_REPORT = _doc("10", resource_type="DiagnosticReport")


@_table(
    Row("normal-mode", FEED, CLAIMS, False, ("mode-not-for-actor",), Action.CREATE),
    Row(
        "registered-feed-mode",
        FEED,
        CLAIMS,
        True,
        ("feed-registered-category",),
        Action.CREATE,
        AccessMode.FEED,
    ),
    Row("reads", FEED, CLAIMS, False, ("feed-never-reads",), AccessMode.FEED),
    Row("updates", FEED, CLAIMS, False, ("feed-never-reads",), Action.UPDATE, AccessMode.FEED),
    Row("closed-record", FEED, _CLOSED_CLAIMS, False, ("record-closed",), Action.CREATE, AccessMode.FEED),
    Row(
        "other-class",
        FEED,
        _LAB_REPORT,
        False,
        ("feed-category-not-registered",),
        Action.CREATE,
        AccessMode.FEED,
    ),
    Row("no-class", FEED, RECORD, False, ("feed-category-not-registered",), Action.CREATE, AccessMode.FEED),
    Row(
        "refused-by-id",
        FEED,
        CLAIMS,
        False,
        ("feed-refused",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(refused_feeds=frozenset({"cnam"})),
    ),
    Row(
        "refused-by-class",
        FEED,
        CLAIMS,
        False,
        ("feed-refused",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(refused_feeds=frozenset({"60"})),
    ),
    Row(
        "other-feed-refused",
        FEED,
        CLAIMS,
        True,
        ("feed-registered-category",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(refused_feeds=frozenset({"lab", "43"})),
    ),
    Row(
        "no-feed-id",
        ANONYMOUS_FEED,
        CLAIMS,
        True,
        ("feed-registered-category",),
        Action.CREATE,
        AccessMode.FEED,
    ),
    Row(
        "no-feed-id-refused-class",
        ANONYMOUS_FEED,
        CLAIMS,
        False,
        ("feed-refused",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(refused_feeds=frozenset({"60"})),
    ),
    Row(
        "sovereign-not-accepted",
        FEED,
        CLAIMS,
        False,
        ("feed-ask-patient",),
        Action.CREATE,
        AccessMode.FEED,
        profile="sovereign",
    ),
    Row(
        "sovereign-accepted-by-id",
        FEED,
        CLAIMS,
        True,
        ("feed-registered-category",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(accepted_feeds=frozenset({"cnam"})),
        profile="sovereign",
    ),
    Row(
        "sovereign-accepted-by-class",
        FEED,
        CLAIMS,
        True,
        ("feed-registered-category",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(accepted_feeds=frozenset({"60"})),
        profile="sovereign",
    ),
    Row(
        "sovereign-accepted-then-refused",
        FEED,
        CLAIMS,
        False,
        ("feed-refused",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(accepted_feeds=frozenset({"cnam"}), refused_feeds=frozenset({"cnam"})),
        profile="sovereign",
    ),
    Row(
        "replaces-own",
        FEED,
        _doc("60", authors=("cnam",)),
        True,
        ("feed-own-document",),
        Action.UPDATE,
        AccessMode.FEED,
    ),
    Row(
        "deletes-own",
        FEED,
        _doc("60", authors=("cnam",)),
        True,
        ("feed-own-document",),
        Action.DELETE,
        AccessMode.FEED,
    ),
    Row(
        "deletes-another-feeds",
        FEED,
        _doc("60", authors=("lab",)),
        False,
        ("feed-never-reads",),
        Action.DELETE,
        AccessMode.FEED,
    ),
    Row(
        "own-but-refused",
        FEED,
        _doc("60", authors=("cnam",)),
        False,
        ("feed-refused",),
        Action.UPDATE,
        AccessMode.FEED,
        grants=Grants(refused_feeds=frozenset({"cnam"})),
    ),
    Row(
        "asked-first",
        FEED,
        CLAIMS,
        False,
        ("feed-ask-patient",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(asked_feeds=frozenset({"cnam"})),
    ),
    Row(
        "asked-first-then-accepted-offer",
        FEED,
        replace(_doc("60"), document=replace(_doc("60").document, accepted_by_patient=True)),
        True,
        ("feed-registered-category",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(asked_feeds=frozenset({"cnam"})),
    ),
    Row(
        "refusal-beats-accepted-offer",
        FEED,
        replace(_doc("60"), document=replace(_doc("60").document, accepted_by_patient=True)),
        False,
        ("feed-refused",),
        Action.CREATE,
        AccessMode.FEED,
        grants=Grants(asked_feeds=frozenset({"cnam"}), refused_feeds=frozenset({"60"})),
    ),
)
def test_feed_writes_registered(row: Line) -> None:
    """Feeds create only their registered categories, in open records, while the patient lets them."""
    _check(row)


_OCCUPATIONAL_CONSENT = Grants(occupational_consent=frozenset({"810004"}))


@_table(
    Row("consent", OCCUPATIONAL, _doc("10"), True, ("occupational-consent",), grants=_OCCUPATIONAL_CONSENT),
    Row("no-consent", OCCUPATIONAL, _doc("10"), False, ("no-record",)),
    Row(
        "authorised-is-not-consent",
        OCCUPATIONAL,
        _doc("10"),
        False,
        ("no-record",),
        grants=_authorised("810004"),
    ),
    Row(
        "treating-mode",
        OCCUPATIONAL,
        RECORD,
        False,
        ("no-record",),
        mode=AccessMode.TREATING,
        grants=replace(_OCCUPATIONAL_CONSENT, treating=frozenset({"810004"})),
    ),
    Row(
        "break-glass",
        OCCUPATIONAL,
        RECORD,
        False,
        ("no-record",),
        mode=AccessMode.BREAK_GLASS,
        justification="malaise",
        grants=_OCCUPATIONAL_CONSENT,
    ),
    Row(
        "masked",
        OCCUPATIONAL,
        _doc("10", MASQUE_PS),
        False,
        ("masked-from-professionals",),
        grants=_OCCUPATIONAL_CONSENT,
    ),
)
def test_occupational_consent(row: Line) -> None:
    """The occupational physician reads only with express consent; a refusal reads as no record."""
    _check(row)


def _until(delta: timedelta, status: AuthorisationStatus = AuthorisationStatus.VALID) -> Grants:
    return Grants(authorisations={"810001": Authorisation(status=status, until=NOW + delta)})


_OPPOSED_BREAK_GLASS = Grants(opposes_break_glass=True)
_OPPOSED_REGULATION = Grants(opposes_regulation=True)


@_table(
    Row("authorised", GP, RECORD, True, ("authorised",), grants=GP_AUTHORISED),
    Row("authorised-until-later", GP, RECORD, True, ("authorised",), grants=_until(HOUR)),
    Row("authorised-until-now", GP, RECORD, True, ("authorised",), grants=_until(timedelta(0))),
    Row("authorised-until-past", GP, RECORD, False, ("authorisation-expired",), grants=_until(-HOUR)),
    Row(
        "authorisation-expired",
        GP,
        RECORD,
        False,
        ("authorisation-expired",),
        grants=_until(HOUR, AuthorisationStatus.EXPIRED),
    ),
    Row("nothing", GP, RECORD, False, ("not-authorised",)),
    Row("someone-else-authorised", GP, RECORD, False, ("not-authorised",), grants=_authorised("810002")),
    Row("no-identifier", NO_ID, RECORD, False, ("professional-id-missing",), grants=GP_AUTHORISED),
    Row("treating", GP, RECORD, True, ("treating-physician",), mode=AccessMode.TREATING, grants=GP_TREATING),
    Row(
        "treating-mode-not-treating",
        GP,
        RECORD,
        False,
        ("not-treating-physician",),
        mode=AccessMode.TREATING,
        grants=GP_AUTHORISED,
    ),
    Row("treating-in-normal-mode", GP, RECORD, False, ("not-authorised",), grants=GP_TREATING),
    Row(
        "break-glass",
        GP,
        RECORD,
        True,
        ("break-glass",),
        EMERGENCY,
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
    ),
    Row(
        "break-glass-no-justification",
        GP,
        RECORD,
        False,
        ("break-glass-justification-missing",),
        mode=AccessMode.BREAK_GLASS,
    ),
    Row(
        "break-glass-blank-justification",
        GP,
        RECORD,
        False,
        ("break-glass-justification-missing",),
        mode=AccessMode.BREAK_GLASS,
        justification="  ",
    ),
    Row(
        "break-glass-opposed",
        GP,
        RECORD,
        False,
        ("break-glass-opposed",),
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
        grants=_OPPOSED_BREAK_GLASS,
    ),
    Row(
        "break-glass-despite-regulation-opposition",
        GP,
        RECORD,
        True,
        ("break-glass",),
        EMERGENCY,
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
        grants=_OPPOSED_REGULATION,
    ),
    Row(
        "break-glass-writes",
        GP,
        RECORD,
        False,
        ("emergency-reads-only",),
        Action.CREATE,
        AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
    ),
    Row(
        "sovereign-break-glass-unconfirmed",
        GP,
        RECORD,
        False,
        ("break-glass-confirmation-missing",),
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
        profile="sovereign",
    ),
    Row(
        "sovereign-break-glass-self-confirmed",
        GP,
        RECORD,
        False,
        ("break-glass-confirmation-missing",),
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
        confirmed_by="810001",
        profile="sovereign",
    ),
    Row(
        "sovereign-break-glass-confirmed",
        GP,
        RECORD,
        True,
        ("break-glass",),
        EMERGENCY,
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
        confirmed_by="810006",
        profile="sovereign",
    ),
    Row("regulation", REGULATOR, RECORD, True, ("regulation",), EMERGENCY, mode=AccessMode.REGULATION),
    Row("regulation-not-regulator", GP, RECORD, False, ("not-a-regulator",), mode=AccessMode.REGULATION),
    Row(
        "regulation-opposed",
        REGULATOR,
        RECORD,
        False,
        ("regulation-opposed",),
        mode=AccessMode.REGULATION,
        grants=_OPPOSED_REGULATION,
    ),
    Row(
        "regulation-despite-break-glass-opposition",
        REGULATOR,
        RECORD,
        True,
        ("regulation",),
        EMERGENCY,
        mode=AccessMode.REGULATION,
        grants=_OPPOSED_BREAK_GLASS,
    ),
    Row(
        "regulation-writes",
        REGULATOR,
        RECORD,
        False,
        ("emergency-reads-only",),
        Action.UPDATE,
        AccessMode.REGULATION,
    ),
)
def test_professional_basis(row: Line) -> None:
    """A professional enters only if authorised (valid), treating, in break-glass or in regulation."""
    _check(row)


@_table(
    Row("not-represented", PARENT, OTHER_RECORD, False, ("not-a-representative",)),
    Row(
        "patient-as-parent",
        PARENT_PATIENT,
        RECORD,
        True,
        ("representative-record",),
        mode=AccessMode.REPRESENTATIVE,
    ),
    Row(
        "patient-as-parent-own-record",
        PARENT_PATIENT,
        OTHER_RECORD,
        False,
        ("not-a-representative",),
        mode=AccessMode.REPRESENTATIVE,
    ),
    Row("patient-as-self-child-record", PARENT_PATIENT, RECORD, False, ("default-deny",)),
)
def test_representative_basis(row: Line) -> None:
    """A legal representative acts only for the patients they represent, and only in that capacity."""
    _check(row)


_BARE_DOCUMENT = Target(patient_id="p1", resource_type="DocumentReference")
_BARE_BINARY = Target(patient_id="p1", resource_type="Binary")


@_table(
    Row(
        "professional",
        GP,
        _BARE_DOCUMENT,
        False,
        ("document-facts-missing",),
        grants=GP_AUTHORISED,
        needs_facts=True,
    ),
    Row(
        "binary",
        GP,
        _BARE_BINARY,
        False,
        ("document-facts-missing",),
        Action.VREAD,
        grants=GP_AUTHORISED,
        needs_facts=True,
    ),
    Row(
        "no-class", GP, _doc(None), False, ("document-facts-missing",), grants=GP_AUTHORISED, needs_facts=True
    ),
    Row(
        "search-is-type-level", GP, _BARE_DOCUMENT, True, ("authorised",), Action.SEARCH, grants=GP_AUTHORISED
    ),
    Row("representative", PARENT, _BARE_DOCUMENT, False, ("document-facts-missing",), needs_facts=True),
    Row("patient-not-yet", PATIENT, _BARE_DOCUMENT, True, ("patient-own-record",)),
)
def test_document_facts_required(row: Line) -> None:
    """Reading one document needs its metadata (at least its classCode); the refusal says the facts are needed."""
    _check(row)


def test_only_missing_facts_are_pending() -> None:
    """A refusal for another reason than the facts (a professional not authorised) never says facts are needed."""
    request = AccessRequest(actor=GP, action=Action.READ, target=_BARE_DOCUMENT)
    assert decide(request, NO_GRANTS, PROFILES["fr-dmp"], NOW) == Decision(
        allowed=False, reasons=("not-authorised",)
    )


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        (_kind(ActorKind.EMPLOYER), Decision(allowed=False, reasons=("forbidden-kind",))),
        (_kind(ActorKind.BANK), Decision(allowed=False, reasons=("forbidden-kind",))),
        (GP, ADMITTED),
        (PATIENT, ADMITTED),
        (DPO, ADMITTED),
    ],
    ids=["employer", "bank", "professional", "patient", "dpo"],
)
def test_admission_decides_on_who_asks(actor: Principal, expected: Decision) -> None:
    """Before any record is named, only the forbidden kinds are refused; anyone else goes on to per-record decisions."""
    request = AccessRequest(actor=actor, action=Action.READ, target=NOWHERE)
    assert admit(request, PROFILES["fr-dmp"], NOW) == expected


def test_a_profile_admits_only_by_rules_it_applies() -> None:
    """A profile whose admission names a rule outside its rules stops start-up."""
    with pytest.raises(ConfigurationError, match="blocked"):
        Profile(name="odd", rules=("forbidden-kind",), admission=("blocked",))


@_table(
    Row("authorised", GP, _doc("10", MASQUE_PS), False, ("masked-from-professionals",), grants=GP_AUTHORISED),
    Row(
        "author", GP, _doc("10", MASQUE_PS, authors=("810001",)), True, ("authorised",), grants=GP_AUTHORISED
    ),
    Row(
        "treating",
        GP,
        _doc("10", MASQUE_PS),
        True,
        ("treating-physician",),
        NOTIFY,
        mode=AccessMode.TREATING,
        grants=GP_TREATING,
    ),
    Row(
        "break-glass",
        GP,
        _doc("10", MASQUE_PS),
        False,
        ("masked-from-professionals",),
        mode=AccessMode.BREAK_GLASS,
        justification="arrêt cardiaque",
    ),
    Row(
        "regulation",
        REGULATOR,
        _doc("10", MASQUE_PS),
        False,
        ("masked-from-professionals",),
        mode=AccessMode.REGULATION,
    ),
    Row(
        "named",
        GP,
        _doc("10", masked_from=("810001",)),
        False,
        ("masked-from-professionals",),
        grants=GP_AUTHORISED,
    ),
    Row(
        "named-someone-else",
        GP,
        _doc("10", masked_from=("810006",)),
        True,
        ("authorised",),
        grants=GP_AUTHORISED,
    ),
    Row(
        "named-treating",
        GP,
        _doc("10", masked_from=("810001",)),
        True,
        ("treating-physician",),
        NOTIFY,
        mode=AccessMode.TREATING,
        grants=GP_TREATING,
    ),
    Row(
        "invisible-to-patient-only",
        GP,
        _doc("10", INVISIBLE_PATIENT, INVISIBLE_REPS),
        True,
        ("authorised",),
        grants=GP_AUTHORISED,
    ),
    Row(
        "sovereign-treating",
        GP,
        _doc("10", MASQUE_PS),
        False,
        ("masked-from-professionals",),
        mode=AccessMode.TREATING,
        grants=GP_TREATING,
        profile="sovereign",
    ),
    Row(
        "sovereign-named-treating",
        GP,
        _doc("10", masked_from=("810001",)),
        False,
        ("masked-from-professionals",),
        mode=AccessMode.TREATING,
        grants=GP_TREATING,
        profile="sovereign",
    ),
    Row(
        "sovereign-author-treating",
        GP,
        _doc("10", MASQUE_PS, authors=("810001",)),
        True,
        ("treating-physician",),
        NOTIFY,
        mode=AccessMode.TREATING,
        grants=GP_TREATING,
        profile="sovereign",
    ),
)
def test_masked_from_professionals(row: Line) -> None:
    """``MASQUE_PS`` (or a mask by name) hides from professionals but the author and treating physicians."""
    _check(row)


_SPECIALTY_MATRIX = Matrix(
    version="test",
    source="test",
    rows=MappingProxyType({"10": frozenset({"10"}), "10/SM26": frozenset({"10", "31"})}),
)


@_table(
    Row("pharmacist-prescription", PHARMACIST, _doc("42"), True, ("authorised",), grants=ALL_AUTHORISED),
    Row(
        "pharmacist-certificate",
        PHARMACIST,
        _doc("52"),
        False,
        ("matrix-denies-class",),
        grants=ALL_AUTHORISED,
    ),
    Row("nurse-claims", NURSE, CLAIMS, False, ("matrix-denies-class",), Action.SEARCH, grants=ALL_AUTHORISED),
    Row("pharmacist-claims", PHARMACIST, CLAIMS, True, ("authorised",), Action.SEARCH, grants=ALL_AUTHORISED),
    Row("physician-management", GP, _doc("95"), True, ("authorised",), grants=ALL_AUTHORISED),
    Row(
        "unknown-profession",
        UNKNOWN_PROFESSION,
        _doc("10"),
        False,
        ("matrix-denies-class",),
        grants=ALL_AUTHORISED,
    ),
    Row("no-profession", NO_PROFESSION, _doc("10"), False, ("matrix-denies-class",), grants=ALL_AUTHORISED),
    Row("unclassed-resource", NURSE, RECORD, True, ("authorised",), grants=ALL_AUTHORISED),
    Row(
        "break-glass-still-bound",
        NURSE,
        _doc("60"),
        False,
        ("matrix-denies-class",),
        mode=AccessMode.BREAK_GLASS,
        justification="chute",
    ),
    Row(
        "writes-not-bound",
        PHARMACIST,
        _doc("52", authors=("810002",)),
        True,
        ("authorised",),
        Action.CREATE,
        grants=ALL_AUTHORISED,
    ),
    Row(
        "specialty-row",
        CARDIOLOGIST,
        _doc("31"),
        True,
        ("authorised",),
        grants=ALL_AUTHORISED,
        matrix=_SPECIALTY_MATRIX,
    ),
    Row(
        "profession-row",
        GP,
        _doc("31"),
        False,
        ("matrix-denies-class",),
        grants=ALL_AUTHORISED,
        matrix=_SPECIALTY_MATRIX,
    ),
    Row(
        "no-specialty",
        _professional("810001"),
        _doc("10"),
        True,
        ("authorised",),
        grants=ALL_AUTHORISED,
        matrix=_SPECIALTY_MATRIX,
    ),
)
def test_authorisation_matrix(row: Line) -> None:
    """A professional reads only the classCodes the matrix gives their profession or specialty."""
    _check(row)


@_table(
    Row(
        "author-updates",
        GP,
        _doc("10", authors=("810001",)),
        True,
        ("authorised",),
        Action.UPDATE,
        grants=GP_AUTHORISED,
    ),
    Row(
        "author-deletes",
        GP,
        _doc("10", authors=("810001",)),
        True,
        ("authorised",),
        Action.DELETE,
        grants=GP_AUTHORISED,
    ),
    Row(
        "other-updates",
        GP,
        _doc("10", authors=("810002",)),
        False,
        ("author-only",),
        Action.UPDATE,
        grants=GP_AUTHORISED,
    ),
    Row("no-facts", GP, RECORD, False, ("author-only",), Action.DELETE, grants=GP_AUTHORISED),
    Row(
        "treating-not-author",
        GP,
        _doc("10"),
        False,
        ("author-only",),
        Action.DELETE,
        AccessMode.TREATING,
        grants=GP_TREATING,
    ),
    Row(
        "treating-author-masked-update",
        GP,
        _doc("10", MASQUE_PS, authors=("810001",)),
        True,
        ("treating-physician",),
        AUDIT,
        Action.UPDATE,
        AccessMode.TREATING,
        grants=GP_TREATING,
    ),
)
def test_author_changes_own(row: Line) -> None:
    """Among professionals, only a document's author updates or deletes it."""
    _check(row)


@_table(
    Row("creates", GP, RECORD, True, ("authorised",), Action.CREATE, grants=GP_AUTHORISED),
    Row("everything", GP, RECORD, True, ("authorised",), Action.EVERYTHING, grants=GP_AUTHORISED),
    Row("no-key-actions", GP, RECORD, False, ("default-deny",), Action.KEYS_ROTATE, grants=GP_AUTHORISED),
    Row(
        "treating-unmasked",
        GP,
        _doc("10"),
        True,
        ("treating-physician",),
        AUDIT,
        mode=AccessMode.TREATING,
        grants=GP_TREATING,
    ),
)
def test_professional_access(row: Line) -> None:
    """A professional who passed every check is allowed, with the obligations of the mode."""
    _check(row)


@_table(
    Row("own-record", PATIENT, _doc("10", INVISIBLE_PATIENT), False, ("invisible-to-patient",)),
    Row("representative", PARENT, _doc("10", INVISIBLE_PATIENT), False, ("invisible-to-patient",)),
    Row("other-record", PATIENT, _doc("10", INVISIBLE_PATIENT, patient_id="p2"), False, ("default-deny",)),
    Row("lifted", PATIENT, _doc("10"), True, ("patient-own-record",)),
    Row("masked-from-professionals", PATIENT, _doc("10", MASQUE_PS), True, ("patient-own-record",)),
)
def test_invisible_to_patient(row: Line) -> None:
    """``INVISIBLE_PATIENT`` hides a document from the patient and the representatives until lifted."""
    _check(row)


@_table(
    Row("label", PARENT, _doc("10", INVISIBLE_REPS), False, ("invisible-to-representatives",)),
    Row("minor-secret", PARENT, _doc("10", minor_secret=True), False, ("invisible-to-representatives",)),
    Row(
        "patient-as-parent",
        PARENT_PATIENT,
        _doc("10", INVISIBLE_REPS),
        False,
        ("invisible-to-representatives",),
        mode=AccessMode.REPRESENTATIVE,
    ),
    Row(
        "patient-sees-own",
        PATIENT,
        _doc("10", INVISIBLE_REPS, minor_secret=True),
        True,
        ("patient-own-record",),
    ),
    Row("parent-sees-masked", PARENT, _doc("10", MASQUE_PS), True, ("representative-record",)),
)
def test_invisible_to_representatives(row: Line) -> None:
    """``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret mode hide a document from representatives."""
    _check(row)


@_table(
    Row("reads", PATIENT, RECORD, True, ("patient-own-record",), mode=AccessMode.PATIENT),
    Row("deletes", PATIENT, _doc("10", authors=("810001",)), True, ("patient-own-record",), Action.DELETE),
    Row("other-record", PATIENT, OTHER_RECORD, False, ("default-deny",)),
    Row("no-key-actions", PATIENT, RECORD, False, ("default-deny",), Action.PATIENT_SHRED),
)
def test_patient_own_record(row: Line) -> None:
    """A patient reads and writes their own record, and nobody else's."""
    _check(row)


_OPENING = Target(patient_id=None, resource_type="Patient", opens_own_record=True)


@_table(
    Row("opens", NEWCOMER, _OPENING, True, ("patient-opens-record",), Action.CREATE),
    Row(
        "into-a-record", NEWCOMER, replace(_OPENING, patient_id="p1"), False, ("default-deny",), Action.CREATE
    ),
    Row("reads", NEWCOMER, _OPENING, False, ("default-deny",)),
    Row(
        "other-type",
        NEWCOMER,
        replace(_OPENING, resource_type="Observation"),
        False,
        ("default-deny",),
        Action.CREATE,
    ),
)
def test_patient_opens_record(row: Line) -> None:
    """A patient without a record opens one, by creating the Patient that carries their identifier."""
    _check(row)


@_table(
    Row("reads", PARENT, RECORD, True, ("representative-record",)),
    Row("writes", PARENT, RECORD, True, ("representative-record",), Action.UPDATE, AccessMode.REPRESENTATIVE),
    Row("no-key-actions", PARENT, RECORD, False, ("default-deny",), Action.KEYS_ROTATE),
)
def test_representative_record(row: Line) -> None:
    """A legal representative reads and writes the record of the patient they represent."""
    _check(row)


def test_profiles_are_data() -> None:
    """Both profiles name only known rules, in the same order; they differ only by their parameters."""
    fr, sovereign = PROFILES["fr-dmp"], PROFILES["sovereign"]
    assert set(fr.rules) == set(RULES)
    assert fr.rules == sovereign.rules
    assert (
        fr.masks_bind_treating,
        fr.break_glass_needs_confirmation,
        fr.feeds_opt_in,
        fr.research_opt_in,
    ) == (
        False,
        False,
        False,
        False,
    )
    assert (
        sovereign.masks_bind_treating,
        sovereign.break_glass_needs_confirmation,
        sovereign.feeds_opt_in,
        sovereign.research_opt_in,
    ) == (True, True, True, True)


def test_profile_with_unknown_rule_is_refused() -> None:
    """A profile naming a rule that does not exist stops start-up instead of failing at the first request."""
    with pytest.raises(ConfigurationError, match="forbiden-kind"):
        Profile(name="typo", rules=("forbiden-kind",))


def test_forbidden_kind_comes_first_then_blocked() -> None:
    """The profile lists the forbidden kinds first and the blocks second, before any allow."""
    assert PROFILES["fr-dmp"].rules[:2] == ("forbidden-kind", "blocked")


@pytest.mark.parametrize(
    ("profile", "grants", "expected"),
    [
        ("fr-dmp", NO_GRANTS, True),
        ("fr-dmp", Grants(research_opt_out=True), False),
        ("sovereign", NO_GRANTS, False),
        ("sovereign", Grants(research_opt_in=True), True),
        ("sovereign", Grants(research_opt_in=True, research_opt_out=True), False),
    ],
)
def test_research_choice(profile: str, grants: Grants, expected: bool) -> None:
    """Research is opt-out in fr-dmp and opt-in in sovereign; an opt-out always wins."""
    assert is_research_allowed(grants, PROFILES[profile]) is expected


def test_shipped_matrix() -> None:
    """The shipped matrix is versioned, sourced, and gives physicians every class but nobody unknown anything."""
    assert MATRIX.version.startswith("arrete-2023-10-26")
    assert "26 octobre 2023" in MATRIX.source
    assert MATRIX.classes_for("10", "SM54") >= {"10", "11", "31", "42", "43", "60", "90"}
    assert MATRIX.classes_for("21", None) == {"10", "11", "31", "42", "43", "44", "45", "60", "90"}
    assert MATRIX.classes_for("99", None) == frozenset()
    assert MATRIX.classes_for(None, None) == frozenset()
    assert MATRIX.class_of(CLAIMS) == "60"
    assert MATRIX.class_of(_doc("43")) == "43"
    assert MATRIX.class_of(RECORD) is None
    assert MATRIX.document_types == {"DocumentReference", "Binary"}


_VALID_MATRIX = {"version": "v", "source": "s", "rows": {"10": {"classes": ["10"]}}}


@pytest.mark.parametrize(
    "broken",
    [
        {"source": "s", "rows": {}},
        {**_VALID_MATRIX, "version": 1},
        {**_VALID_MATRIX, "source": None},
        {**_VALID_MATRIX, "rows": []},
        {**_VALID_MATRIX, "rows": {"10": ["10"]}},
        {**_VALID_MATRIX, "rows": {"10": {"classes": ["77"]}}},
        {**_VALID_MATRIX, "rows": {"10": {}}},
        {**_VALID_MATRIX, "resource_classes": []},
        {**_VALID_MATRIX, "resource_classes": {"Observation": "77"}},
        {**_VALID_MATRIX, "document_types": "DocumentReference"},
        {**_VALID_MATRIX, "document_types": [1]},
    ],
)
def test_broken_matrix_is_refused(broken: dict[str, Any]) -> None:
    """A matrix with a missing member, a wrong shape or an unknown classCode stops start-up."""
    with pytest.raises(ConfigurationError):
        load_matrix(broken)


def test_minimal_matrix_loads() -> None:
    """A matrix without resource classes or document types loads with empty ones."""
    matrix = load_matrix(_VALID_MATRIX)
    assert (matrix.rows, dict(matrix.resource_classes), matrix.document_types) == (
        {"10": frozenset({"10"})},
        {},
        frozenset(),
    )


def test_authorisation_validity() -> None:
    """An authorisation holds while valid and until its end (inclusive); an expired one never does."""
    assert Authorisation().is_valid(NOW)
    assert Authorisation(until=NOW).is_valid(NOW)
    assert not Authorisation(until=NOW - HOUR).is_valid(NOW)
    assert not Authorisation(status=AuthorisationStatus.EXPIRED).is_valid(NOW)


HERE = Path(__file__).resolve().parent


def test_decision_tables_take_every_branch(tmp_path: Path) -> None:
    """The decision tables (and the rule-table check) take every branch of the policy's modules (coverage run --branch)."""
    pytest.importorskip("coverage")
    env = {**os.environ, "COVERAGE_FILE": str(tmp_path / "coverage.data")}
    tables = [
        str(HERE / name)
        for name in ("test_policy_rules.py", "test_policy_foundation.py", "test_policy_docs.py")
    ]
    sources = ",".join(f"carnet.domain.{m}" for m in ("policy", "access", "grants", "matrix", "rules"))
    run = [sys.executable, "-m", "coverage", "run", "--branch", f"--source={sources}"]
    inner = [
        *run,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--noconftest",
        "-k",
        "not take_every_branch",
        *tables,
    ]
    tested = subprocess.run(inner, env=env, cwd=HERE.parents[1], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout[-2000:]
    report = [sys.executable, "-m", "coverage", "report", "--fail-under=100", "--show-missing"]
    covered = subprocess.run(report, env=env, capture_output=True, text=True, check=False)
    assert covered.returncode == 0, covered.stdout


def test_matrix_table_in_docs_is_the_data() -> None:
    """docs/policy.md shows the shipped matrix cell by cell; a confirmed cell is always an allowed one."""
    data = json.loads((HERE.parents[1] / "src" / "carnet" / "domain" / "matrix.json").read_text("utf-8"))
    doc = (HERE.parents[1] / "docs" / "policy.md").read_text("utf-8")
    header = "| TRE_G15 | profession | 10 | 11 | 31 | 42 | 43 | 44 | 45 | 52 | 60 | 90 | 95 |"
    columns = header.strip("|").split("|")[2:]
    shown = {}
    for line in doc[doc.index(header) :].splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        shown[cells[0].strip("`")] = (cells[1], cells[2:])
    expected = {
        key: (
            row["label"],
            [
                "✔" if c.strip() in row["confirmed"] else "●" if c.strip() in row["classes"] else "·"
                for c in columns
            ],
        )
        for key, row in data["rows"].items()
    }
    assert shown == expected
    assert [
        key for key, row in data["rows"].items() if not set(row["confirmed"]) <= set(row["classes"])
    ] == []


_DECLARATION = Target(patient_id="p1", resource_type="Consent", declares_own_consent=True)


@_table(
    Row(
        "declares-consent",
        GP,
        _DECLARATION,
        True,
        ("professional-declares-consent",),
        NOTIFY,
        Action.CREATE,
    ),
    Row(
        "declares-blocked",
        GP,
        _DECLARATION,
        False,
        ("blocked",),
        Action.CREATE,
        grants=Grants(blocked=frozenset({"810001"})),
    ),
    Row("declares-read", GP, _DECLARATION, False, ("declaration-not-allowed",), Action.READ),
    Row(
        "declares-in-break-glass",
        GP,
        _DECLARATION,
        False,
        ("declaration-not-allowed",),
        Action.CREATE,
        AccessMode.BREAK_GLASS,
        justification="x",
    ),
    Row(
        "declares-occupational",
        _professional("810002", occupational_physician=True),
        _DECLARATION,
        False,
        ("no-record",),
        Action.CREATE,
    ),
)
def test_professional_declares_consent(row: Line) -> None:
    """A professional records the present patient's agreement to their own access (and nothing else)."""
    _check(row)


@_table(
    Row(
        "authorised-writes-consent",
        GP,
        Target(patient_id="p1", resource_type="Consent"),
        False,
        ("choices-belong-to-patient",),
        Action.CREATE,
        grants=GP_AUTHORISED,
    ),
    Row(
        "authorised-reads-consent",
        GP,
        Target(patient_id="p1", resource_type="Consent"),
        True,
        ("authorised",),
        Action.READ,
        grants=GP_AUTHORISED,
    ),
)
def test_choices_belong_to_the_patient(row: Line) -> None:
    """A professional never writes the patient's choices, even when authorised."""
    _check(row)


# -- apps (SMART on FHIR): app-within-grant -----------------------------------------------------


def _app(scopes: str, patient: str = "p1") -> Principal:
    return Principal(
        kind=ActorKind.PATIENT,
        subject="app:tensio",
        patient_id=patient,
        app_id="tensio",
        app_scopes=frozenset(scopes.split()),
    )


def _app_grants(*scopes: str, until: datetime | None = None) -> Grants:
    return Grants(apps=MappingProxyType({"tensio": AppGrant(scopes=frozenset(scopes), until=until)}))


def _app_decides(
    principal: Principal, grants: Grants, action: Action, resource_type: str, **target: Any
) -> tuple[bool, tuple[str, ...]]:
    patient = target.pop("patient", "p1")
    request = AccessRequest(
        actor=principal,
        action=action,
        target=Target(patient_id=patient, resource_type=resource_type, **target),
    )
    decision = decide(request, grants, PROFILES["fr-dmp"], NOW)
    return decision.allowed, decision.reasons


def test_an_app_needs_the_grant_and_the_token_then_the_patients_rules() -> None:
    """Allowed only when the patient's grant and the token's scopes both cover it; each alone refuses."""
    granted = _app_grants("patient/Observation.cs")
    assert _app_decides(_app("patient/Observation.cs"), granted, Action.CREATE, "Observation") == (
        True,
        ("patient-own-record",),
    )
    assert _app_decides(_app("patient/Observation.crs"), granted, Action.READ, "Observation") == (
        False,
        ("app-scope-not-granted",),
    )
    wider = _app_grants("patient/*.cruds")
    assert _app_decides(_app("patient/Observation.cs"), wider, Action.READ, "DocumentReference") == (
        False,
        ("app-scope-not-granted",),
    )
    assert _app_decides(_app("patient/Observation.cs"), NO_GRANTS, Action.CREATE, "Observation") == (
        False,
        ("app-not-granted",),
    )
    ended = _app_grants("patient/Observation.cs", until=NOW - HOUR)
    assert _app_decides(_app("patient/Observation.cs"), ended, Action.CREATE, "Observation") == (
        False,
        ("app-not-granted",),
    )
    lasting = _app_grants("patient/Observation.cs", until=NOW + HOUR)
    assert _app_decides(_app("patient/Observation.cs"), lasting, Action.CREATE, "Observation")[0] is True
    unknown = _app_grants("patient/Observation.zz")
    assert _app_decides(_app("patient/Observation.cs"), unknown, Action.CREATE, "Observation") == (
        False,
        ("app-scope-not-granted",),
    )


def test_an_app_exports_its_patients_record_only_when_grant_and_token_read_something() -> None:
    """Patient/$export through an app: the kick-off needs a read both give; each resource is then a READ."""
    reads = _app_grants("patient/Observation.rs")
    assert _app_decides(_app("patient/Observation.rs"), reads, Action.EXPORT, "Patient") == (
        True,
        ("patient-own-record",),
    )
    assert _app_decides(_app("launch/patient patient/Observation.cs"), reads, Action.EXPORT, "Patient") == (
        False,
        ("app-scope-not-granted",),
    )
    writes = _app_grants("patient/Observation.cs")
    assert _app_decides(_app("patient/Observation.rs"), writes, Action.EXPORT, "Patient") == (
        False,
        ("app-scope-not-granted",),
    )
    assert _app_decides(_app("patient/Observation.rs"), reads, Action.EXPORT, "Patient", patient="p2")[1] == (
        "app-outside-record",
    )


def test_an_app_stays_in_its_patients_record_and_never_writes_choices() -> None:
    """Another record, the directory, a non-patient app principal and Consent writes are refused."""
    granted = _app_grants("patient/*.cruds")
    app = _app("patient/*.cruds")
    assert _app_decides(app, granted, Action.READ, "Observation", patient="p2")[1] == ("app-outside-record",)
    assert _app_decides(app, granted, Action.READ, "Practitioner", patient=None, in_directory=True)[1] == (
        "app-outside-record",
    )
    professional = replace(app, kind=ActorKind.PROFESSIONAL)
    assert _app_decides(professional, granted, Action.READ, "Observation")[1] == ("app-outside-record",)
    assert _app_decides(app, granted, Action.CREATE, "Consent")[1] == ("app-no-choices",)
    assert _app_decides(app, granted, Action.READ, "Consent")[0] is True
    hidden = DocumentFacts(class_code="11", visibility=frozenset({Visibility.INVISIBLE_TO_PATIENT}))
    assert _app_decides(app, granted, Action.READ, "DocumentReference", document=hidden)[1] == (
        "invisible-to-patient",
    )
