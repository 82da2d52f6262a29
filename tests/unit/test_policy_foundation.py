"""The foundation rules of the policy: default deny, own record, admin, forbidden kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carnet.domain.policy import NO_GRANTS, PROFILES, AccessRequest, Action, Target, decide
from carnet.domain.principal import ActorKind, Principal

NOW = datetime(2026, 11, 28, tzinfo=UTC)
OWN = Target(patient_id="p1", resource_type="Observation")


def _decide(
    kind: ActorKind, action: Action, target: Target, patient: str | None = "p1"
) -> tuple[bool, tuple[str, ...]]:
    actor = Principal(kind=kind, subject="s", patient_id=patient if kind is ActorKind.PATIENT else None)
    decision = decide(
        AccessRequest(actor=actor, action=action, target=target), NO_GRANTS, PROFILES["fr-dmp"], NOW
    )
    return decision.allowed, decision.reasons


@pytest.mark.parametrize("action", sorted(Action))
def test_patient_own_record(action: Action) -> None:
    """A patient may do every clinical action on their own record, and no key or study-registry action."""
    allowed, _ = _decide(ActorKind.PATIENT, action, OWN)
    assert allowed is (
        action not in (Action.KEYS_ROTATE, Action.PATIENT_SHRED, Action.STUDY_REGISTER, Action.STUDY_APPROVE)
    )


def test_patient_other_record_is_default_deny() -> None:
    """Another patient's record falls through to default deny."""
    assert _decide(ActorKind.PATIENT, Action.READ, Target(patient_id="p2", resource_type="Observation")) == (
        False,
        ("default-deny",),
    )


@pytest.mark.parametrize(
    "kind", [ActorKind.EMPLOYER, ActorKind.COMPLEMENTARY_INSURER, ActorKind.BANK, ActorKind.CONTRACT_ASSESSOR]
)
def test_forbidden_kinds_first(kind: ActorKind) -> None:
    """Forbidden kinds are denied by the first rule, even on the directory."""
    directory = Target(patient_id=None, resource_type="Practitioner", in_directory=True)
    assert _decide(kind, Action.READ, directory) == (False, ("forbidden-kind",))


def test_admin_manages_keys_never_content() -> None:
    """An administrator rotates keys but reads no record."""
    assert _decide(ActorKind.ADMIN, Action.KEYS_ROTATE, OWN)[0] is True
    assert _decide(ActorKind.ADMIN, Action.READ, OWN) == (False, ("admin-never-reads-content",))
    assert _decide(ActorKind.DPO, Action.KEYS_ROTATE, OWN)[0] is False


def test_professional_without_identifier_is_denied() -> None:
    """A professional without a national identifier gets nothing from a record (the DMP rules need it)."""
    assert _decide(ActorKind.PROFESSIONAL, Action.READ, OWN) == (False, ("professional-id-missing",))


def test_patient_opens_own_record_only() -> None:
    """A patient without a record may create only a Patient carrying their own identifier."""
    mine = Target(patient_id=None, resource_type="Patient", opens_own_record=True)
    theirs = Target(patient_id=None, resource_type="Patient", opens_own_record=False)
    assert _decide(ActorKind.PATIENT, Action.CREATE, mine, patient=None)[0] is True
    assert _decide(ActorKind.PATIENT, Action.CREATE, theirs, patient=None)[0] is False
    assert _decide(ActorKind.PATIENT, Action.CREATE, mine, patient="p1")[0] is False
