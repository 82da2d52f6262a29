"""The policy engine against its reference model, and the properties every decision keeps.

Cases come from ``strategies.policy_cases``: plain-valued requests that the reference model
(``tests/reference_policy.py``) reads directly and ``strategies.engine_inputs`` translates for
``carnet.domain.policy.decide``. The differential test checks 10,000 cases per ``make test``
(1,000 Hypothesis examples of 10 cases each: an example costs about a millisecond, a case far less);
``make test-long`` checks 10⁶ (10,000 examples of 100 cases).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnet.domain.policy import ADMITTED, RULES, Decision, admit, decide
from reference_policy import Case, Choices, Verdict, reference_admit, reference_decide, scope_allows
from strategies import engine_inputs, policy_case_batches, policy_cases, policy_restrictions, policy_tables

TABLES = policy_tables()
DIFFERENTIAL_EXAMPLES = 1_000
CASES_PER_EXAMPLE = 10
PROPERTY_EXAMPLES = 1_500
LONG_EXAMPLES = 10_000
LONG_CASES_PER_EXAMPLE = 100
FORBIDDEN = ("employer", "complementary_insurer", "bank", "contract_assessor")


def _engine(case: Case) -> Decision:
    return decide(*engine_inputs(case))


def _as_verdict(decision: Decision) -> Verdict:
    return Verdict(decision.allowed, frozenset(str(o) for o in decision.obligations), decision.needs_facts)


def _admission(case: Case) -> Decision:
    request, _, profile, now = engine_inputs(case)
    return admit(request, profile, now)


#: Every reason a verdict may give: those the rules declare, and the two of the engine itself.
DECLARED_REASONS = frozenset().union(*(spec.reasons for spec in RULES.values())) | {
    "default-deny",
    "admitted",
}


@settings(
    max_examples=DIFFERENTIAL_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(policy_case_batches(CASES_PER_EXAMPLE))
def test_engine_agrees_with_reference(cases: list[Case]) -> None:
    """On any request, the engine and the reference model agree on the verdict and the obligations."""
    for case in cases:
        decision = _engine(case)
        assert _as_verdict(decision) == reference_decide(case, TABLES), (case, decision.reasons)


@settings(max_examples=DIFFERENTIAL_EXAMPLES, deadline=None, database=None)
@given(policy_case_batches(CASES_PER_EXAMPLE))
def test_admission_agrees_with_reference(cases: list[Case]) -> None:
    """Before any record is named, the engine's admission and the reference model's agree on every request."""
    for case in cases:
        assert _as_verdict(_admission(case)) == reference_admit(case), case


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(policy_cases())
def test_an_admission_refusal_refuses_every_record(case: Case) -> None:
    """An actor refused on who they are is refused on any target too, with the same reasons."""
    admission = _admission(case)
    if not admission.allowed:
        assert _engine(case) == admission
    else:
        assert admission == ADMITTED


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(policy_cases())
def test_every_reason_is_declared_by_a_rule(case: Case) -> None:
    """A decision only gives reasons its rules declare (so docs/policy.md, tested against them, names it)."""
    assert set(_engine(case).reasons) <= DECLARED_REASONS


@pytest.mark.slow
@settings(
    max_examples=LONG_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy_case_batches(LONG_CASES_PER_EXAMPLE))
def test_engine_agrees_with_reference_a_million_times(cases: list[Case]) -> None:
    """On 10⁶ generated requests, the engine and the reference model agree on verdicts and obligations."""
    for case in cases:
        decision = _engine(case)
        assert _as_verdict(decision) == reference_decide(case, TABLES), (case, decision.reasons)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(policy_cases(kinds=("professional",)))
def test_no_grant_means_deny_for_professionals(case: Case) -> None:
    """Without any grant a professional gets nothing from a record, but through break-glass or regulation."""
    case = dataclasses.replace(case, choices=Choices())
    decision = _engine(case)
    on_record = case.patient_id is not None and not case.in_directory
    if on_record and case.mode not in ("break_glass", "regulation"):
        assert decision.allowed is False
    if decision.allowed and on_record:
        assert case.mode in ("break_glass", "regulation")
        assert {"notify_patient", "show_mode_banner"} <= {str(o) for o in decision.obligations}


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_restriction_never_widens_access(data: st.DataObject) -> None:
    """Blocking, opposing, masking, refusing, withdrawing or closing never turns a refusal into access."""
    case = data.draw(policy_cases())
    restricted = data.draw(policy_restrictions(case))
    if _engine(restricted).allowed:
        assert _engine(case).allowed
    if reference_decide(restricted, TABLES).allowed:
        assert reference_decide(case, TABLES).allowed


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(policy_cases(kinds=FORBIDDEN))
def test_forbidden_kinds_are_always_denied(case: Case) -> None:
    """Employers, complementary insurers, banks and assessors are refused, whatever the grants, mode or target."""
    assert _engine(case) == Decision(allowed=False, reasons=("forbidden-kind",))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(policy_cases(kinds=("professional",)))
def test_a_blocked_professional_gets_nothing(case: Case) -> None:
    """A professional the patient blocked is refused on the record, in every mode."""
    who = case.actor.professional_id
    if who is None or case.patient_id is None or case.in_directory:
        return
    blocked = dataclasses.replace(case, choices=dataclasses.replace(case.choices, blocked=frozenset({who})))
    assert _engine(blocked).allowed is False


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(policy_cases(kinds=("patient",)))
def test_an_app_reaches_no_more_than_its_token_its_grant_and_its_patient(case: Case) -> None:
    """An app is allowed only where its token's scopes, the patient's grant and the patient's own access all allow."""
    actor = dataclasses.replace(
        case.actor, app_id="tensio", patient_id=case.patient_id or case.actor.patient_id
    )
    app_case = dataclasses.replace(case, actor=actor)
    allowed = _engine(app_case).allowed
    assert allowed == reference_decide(app_case, TABLES).allowed, app_case
    if not allowed:
        return
    as_patient = dataclasses.replace(
        app_case, actor=dataclasses.replace(actor, app_id=None, app_scopes=frozenset())
    )
    assert _engine(as_patient).allowed
    granted, _until = app_case.choices.apps["tensio"]
    assert any(scope_allows(s, app_case) for s in granted)
    assert any(scope_allows(s, app_case) for s in actor.app_scopes)
    no_token = dataclasses.replace(app_case, actor=dataclasses.replace(actor, app_scopes=frozenset()))
    assert not _engine(no_token).allowed
    no_grant = dataclasses.replace(
        app_case,
        choices=dataclasses.replace(app_case.choices, apps={"glyco": app_case.choices.apps["tensio"]}),
    )
    assert not _engine(no_grant).allowed
