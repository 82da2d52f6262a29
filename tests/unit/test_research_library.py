"""The research library: studies, keyed pseudonyms, date shifts, de-identification, k-anonymity, DP."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from datetime import date
from typing import Any

import pytest

from carnet.domain.errors import AccessDenied, InvalidRequest
from carnet.research import privacy
from carnet.research.codes import CodeCounts, ladder
from carnet.research.codes import check as check_codes
from carnet.research.deidentify import Deidentifier, shift_date, wanted
from carnet.research.kanon import Ladder, Traits, check, generalise, traits_of
from carnet.research.pseudonyms import date_shift, pseudonym
from carnet.research.study import LegalBasis, StudyStatus, parse_study, research_study, study_json

TODAY = date(2026, 12, 6)
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def registration(**changes: Any) -> dict[str, Any]:
    """A valid registration, with some fields changed."""
    data: dict[str, Any] = {
        "title": "Diabète et tension",
        "sponsor": "CHU de Nantes",
        "purpose": "Measure blood pressure control in diabetic adults.",
        "legalBasis": "public-interest",
        "approvalReference": "CNIL DR-2026-123",
        "period": {"start": "2026-01-01", "end": "2027-12-31"},
        "data": {"types": ["Condition", "Observation"], "codes": []},
        "privacy": {"k": 5, "epsilon": 2.0, "dateShiftDays": 30},
    }
    data.update(changes)
    return data


def test_study_round_trips_and_is_a_research_study() -> None:
    """A registration reads into a study, writes back the same, and renders as a FHIR ResearchStudy."""
    study = parse_study(registration(), study_id="s1", registered_by="admin")
    again = parse_study(study_json(study), study_id="s1", registered_by="admin")
    fhir = research_study(study)
    assert (again, study.types, study.legal_basis, fhir["status"], fhir["resourceType"]) == (
        study,
        frozenset({"Patient", "Condition", "Observation"}),
        LegalBasis.PUBLIC_INTEREST,
        "in-review",
        "ResearchStudy",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"legalBasis": "because"},
        {"title": ""},
        {"period": {"start": "2027-01-01", "end": "2026-01-01"}},
        {"period": {"start": "soon", "end": "2026-01-01"}},
        {"data": {"types": ["Binary"]}},
        {"data": {"types": []}},
        {"data": {"types": ["Condition"], "codes": ["no-bar"]}},
        {"privacy": {"k": 1}},
        {"privacy": {"epsilon": -1}},
        {"privacy": {"k": 5.5}},
        {"privacy": "high"},
    ],
)
def test_bad_registration_is_refused(changes: dict[str, Any]) -> None:
    """A registration with a missing, malformed or out-of-bounds field is an InvalidRequest."""
    with pytest.raises(InvalidRequest):
        parse_study(registration(**changes), study_id="s1", registered_by="admin")


def test_only_an_approved_study_in_its_period_is_open() -> None:
    """A registered study is refused; an approved one opens in its period only; approval happens once."""
    study = parse_study(registration(), study_id="s1", registered_by="admin")
    with pytest.raises(AccessDenied) as unapproved:
        study.check_open(TODAY)
    approved = study.approved("dpo")
    approved.check_open(TODAY)
    with pytest.raises(AccessDenied) as expired:
        approved.check_open(date(2028, 1, 1))
    with pytest.raises(InvalidRequest):
        approved.approved("dpo")
    assert (unapproved.value.reasons, expired.value.reasons, approved.status) == (
        ("study-not-approved",),
        ("study-out-of-period",),
        StudyStatus.APPROVED,
    )


def test_pseudonyms_are_keyed_and_do_not_link_across_studies() -> None:
    """A pseudonym is stable under one key, differs under another, and is no plain hash of the value."""
    nir = "1850375123456"
    plain = {hashlib.sha1(nir.encode()).hexdigest(), hashlib.sha256(nir.encode()).hexdigest()}  # noqa: S324
    a, b = pseudonym(KEY_A, nir), pseudonym(KEY_B, nir)
    assert (a == pseudonym(KEY_A, nir), a == b, a in plain, len(a)) == (True, False, False, 32)


def test_date_shift_is_bounded_stable_and_varies() -> None:
    """Each patient's shift stays within the bound, is the same every time, and differs between patients."""
    shifts = [date_shift(KEY_A, f"p{i}", 30) for i in range(200)]
    assert all(-30 <= s <= 30 for s in shifts)
    assert (shifts[7] == date_shift(KEY_A, "p7", 30), len(set(shifts)) > 20, date_shift(KEY_A, "p", 0)) == (
        True,
        True,
        0,
    )


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("2020-02-28", 2, "2020-03-01"),
        ("2020-02", 40, "2020-03"),
        ("2020", -1, "2019"),
        ("2020-01-01T10:00:00Z", -1, "2019-12-31T10:00:00Z"),
        ("2020-01-01T10:00:00+01:00", 1, "2020-01-02T10:00:00+01:00"),
        ("final", 3, None),
    ],
)
def test_shift_date_keeps_precision(value: str, days: int, expected: str | None) -> None:
    """Dates move by whole days and keep their precision; other strings are not dates."""
    assert shift_date(value, days) == expected


def test_deidentified_resource_keeps_codes_and_loses_identity() -> None:
    """Identifiers, free text, people and extensions go; references become pseudonyms; dates move."""
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {"versionId": "2"},
        "identifier": [{"system": "urn:x", "value": "LAB-42"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Poids de M. Martin"},
        "subject": {"reference": "Patient/p1", "display": "Jean Martin"},
        "performer": [{"reference": "Practitioner/pr1"}],
        "effectiveDateTime": "2024-03-10",
        "valueQuantity": {"value": 72.5, "unit": "kg"},
        "note": [{"text": "Vit au 3 rue des Lilas"}],
        "extension": [{"url": "urn:x", "valueString": "secret"}],
    }
    out = Deidentifier(study_key=KEY_A, shift_days=-3).resource(observation)
    assert out == {
        "resourceType": "Observation",
        "id": pseudonym(KEY_A, "Observation/o1"),
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{pseudonym(KEY_A, 'Patient/p1')}"},
        "effectiveDateTime": "2024-03-07",
        "valueQuantity": {"value": 72.5, "unit": "kg"},
    }


def test_document_bodies_and_people_never_leave() -> None:
    """Binary, RelatedPerson, Consent and the Patient itself are not exported as resources."""
    deidentifier = Deidentifier(study_key=KEY_A, shift_days=0)
    kinds = ["Binary", "RelatedPerson", "Consent", "Patient", "Practitioner"]
    assert [deidentifier.resource({"resourceType": kind, "id": "x"}) for kind in kinds] == [None] * 5


ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"


def test_code_ladders_follow_each_system_hierarchy() -> None:
    """ICD-10 goes to its 3-character category, ATC up its five levels; other systems stay as they are."""
    assert ladder(f"{ICD10}|E11.65") == (f"{ICD10}|E11.65", f"{ICD10}|E11")
    assert ladder(f"{ICD10}|E11") == (f"{ICD10}|E11",)
    assert ladder(f"{ATC}|A10BA02") == tuple(f"{ATC}|{c}" for c in ("A10BA02", "A10BA", "A10B", "A10", "A"))
    assert ladder(f"{SNOMED}|91934008") == (f"{SNOMED}|91934008",)


def test_rare_codes_are_generalised_or_take_the_resource_out() -> None:
    """A code fewer than k patients hold leaves at the finest level k of them hold, else its resource stays home."""
    counts = CodeCounts()
    for _ in range(6):
        counts.add([f"{ICD10}|E11.9", f"{ATC}|A10BA02"])
    counts.add([f"{ICD10}|E11.65", f"{ATC}|A10BX16", f"{SNOMED}|91934008", f"{ICD10}|Q87.4"])
    released = counts.released(5)
    # The rare code's category is a collapse point: the common code under it leaves as it too,
    # so that "E11" is held by all seven patients, not by the rare one alone.
    assert released == {
        f"{ICD10}|E11.65": f"{ICD10}|E11",
        f"{ICD10}|E11.9": f"{ICD10}|E11",
        f"{ATC}|A10BX16": f"{ATC}|A10B",
        f"{ATC}|A10BA02": f"{ATC}|A10B",
        f"{SNOMED}|91934008": None,
        f"{ICD10}|Q87.4": None,
    }
    deidentifier = Deidentifier(study_key=KEY_A, shift_days=0, codes=released)

    def condition(system: str, code: str) -> dict[str, Any]:
        coding = {"system": system, "code": code, "display": "Marfan"}
        return {"resourceType": "Condition", "id": "c", "code": {"coding": [coding]}}

    generalised = deidentifier.resource(condition(ICD10, "E11.65"))
    assert generalised is not None
    assert generalised["code"] == {"coding": [{"system": ICD10, "code": "E11"}]}
    assert deidentifier.resource(condition(ICD10, "Q87.4")) is None
    assert deidentifier.resource(condition(SNOMED, "91934008")) is None
    both = condition(ICD10, "Q87.4")
    both["code"]["coding"].append({"system": "http://loinc.org", "code": "1"})
    kept = deidentifier.resource(both)  # the rare coding goes, the concept's other coding stays
    assert kept is not None
    assert kept["code"] == {"coding": [{"system": "http://loinc.org", "code": "1"}]}
    untouched = Deidentifier(study_key=KEY_A, shift_days=0, codes={}).resource(condition(ICD10, "E11.9"))
    assert untouched is not None
    assert untouched["code"]["coding"][0]["code"] == "E11.9"
    counts.add([f"{ICD10}|I10"] * 3)
    assert f"{ICD10}|I10" not in counts.released(1)
    with pytest.raises(AccessDenied):
        check_codes({f"{ICD10}|E11": 6, f"{ICD10}|Q87": 1}, 5)
    check_codes({f"{ICD10}|E11": 6}, 5)


def test_wanted_filters_types_and_codes() -> None:
    """Only the study's types, and with codes asked only resources carrying one, are wanted."""
    code = {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}
    observation = {"resourceType": "Observation", "code": code}
    assert [
        wanted(observation, types={"Observation"}, codes=frozenset()),
        wanted(observation, types={"Condition"}, codes=frozenset()),
        wanted(observation, types={"Observation"}, codes=frozenset({"http://loinc.org|1"})),
        wanted(observation, types={"Observation"}, codes=frozenset({"http://loinc.org|29463-7"})),
        wanted({"resourceType": "Patient"}, types={"Patient"}, codes=frozenset({"x|y"})),
    ] == [True, False, False, True, True]


def test_traits_and_generalisation_ladder() -> None:
    """Traits are read from a Patient; each level of the ladder is coarser than the one before."""
    traits = traits_of({"birthDate": "1980-06-15", "gender": "female", "address": [{"postalCode": "44000"}]})
    levels = [generalise(traits, level, TODAY).key for level in range(6)]
    assert levels == [
        ("45-49", "female", "44"),
        ("40-49", "female", "44"),
        ("40-49", "female", "4"),
        ("40-59", "female", "*"),
        ("40-59", "*", "*"),
        ("*", "*", "*"),
    ]


def test_a_rare_patient_is_generalised_or_suppressed() -> None:
    """One centenarian among forty similar patients is suppressed at the finest level that keeps k = 5."""
    ladder = Ladder(today=TODAY)
    crowd = [Traits(birth_date=date(1980, 1 + i % 12, 1), sex="female", postcode="44000") for i in range(40)]
    rare = Traits(birth_date=date(1920, 1, 1), sex="male", postcode="97300")
    for traits in [*crowd, rare]:
        ladder.add(traits)
    level = ladder.level(5, 0.05)
    released = Counter(
        generalise(t, level, TODAY).key
        for t in [*crowd, rare]
        if ladder.releasable(generalise(t, level, TODAY), level, 5)
    )
    check(released, 5)
    assert (level, ladder.releasable(generalise(rare, level, TODAY), level, 5), sum(released.values())) == (
        0,
        False,
        40,
    )
    # With no suppression allowed, the ladder climbs until the centenarian hides in a class of k.
    assert ladder.level(5, 0.0) == 5


def test_check_refuses_a_class_below_k() -> None:
    """An export with a class smaller than k is refused before release."""
    with pytest.raises(AccessDenied) as refused:
        check(Counter({("40-44", "female", "44"): 7, ("95-99", "male", "97"): 1}), 5)
    assert refused.value.reasons == ("k-anonymity-not-met",)


def test_budget_is_spent_then_refused() -> None:
    """Questions spend the budget; one that would go past it is refused; ε must be positive."""
    spent = privacy.spend(0.0, 1.0, 0.4)
    spent = privacy.spend(spent, 1.0, 0.6)
    with pytest.raises(AccessDenied) as refused:
        privacy.spend(spent, 1.0, 0.01)
    with pytest.raises(InvalidRequest):
        privacy.spend(0.0, 1.0, 0.0)
    assert (spent, refused.value.reasons) == (1.0, ("privacy-budget-spent",))


def test_counts_are_noisy_and_spend_their_epsilon() -> None:
    """A DP count spends exactly its ε and, over repeated releases, is not always the true count."""
    rows = [os.urandom(4).hex() for _ in range(300)]
    answers = [privacy.count(rows, 0.1) for _ in range(20)]
    histogram = privacy.histogram(["a"] * 50 + ["b"] * 20 + ["c"], ["a", "b"], 0.5)
    assert {a.epsilon for a in answers} == {0.1}
    assert any(a.counts[0] != 300 for a in answers)
    assert all(abs(a.counts[0] - 300) < 200 for a in answers)
    assert (histogram.categories, histogram.epsilon, len(histogram.counts)) == (("a", "b", "*"), 0.5, 3)
