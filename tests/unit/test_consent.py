"""The patient's choices as FHIR R4 Consents: building them and reading them back into grants."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carnet.domain.consent import (
    FEED_KINDS,
    FEED_SYSTEM,
    IDNPS_SYSTEM,
    KIND_SYSTEM,
    ConsentKind,
    consent_for,
    grants_from_consents,
)
from carnet.domain.errors import InvalidResource
from carnet.domain.policy import NO_GRANTS, Authorisation, AuthorisationStatus, Grants
from carnet.domain.validation import validate

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
DAY = timedelta(days=1)
GP = "810001"


def _consent(kind: ConsentKind, **options: Any) -> dict[str, Any]:
    if kind in FEED_KINDS and "feed_id" not in options and "class_code" not in options:
        options["feed_id"] = "cnam"
    if kind is ConsentKind.APP_GRANT:
        options.update(app_id="tensio", scopes=("patient/Observation.cs",))
    return consent_for(kind, "p1", GP, now=NOW, **options)


@pytest.mark.parametrize("kind", list(ConsentKind))
def test_every_kind_is_valid_r4(kind: ConsentKind) -> None:
    """Each kind of choice builds a Consent that validates as FHIR R4, with and without an end."""
    validate(_consent(kind))
    validate(_consent(kind, until=NOW + DAY))


def test_convention() -> None:
    """A Consent of the convention names its kind, patient, rule, provision type and actor."""
    consent = _consent(ConsentKind.BLOCK, until=NOW + DAY)
    assert consent["status"] == "active"
    assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
    assert consent["category"][0]["coding"][0]["system"] == KIND_SYSTEM
    assert consent["category"][0]["coding"][0]["code"] == "block"
    assert consent["patient"] == {"reference": "Patient/p1"}
    assert consent["dateTime"] == "2026-11-28T12:00:00Z"
    assert consent["policyRule"]["coding"][0]["code"] == "OPTOUT"
    assert consent["provision"]["type"] == "deny"
    assert consent["provision"]["period"] == {"end": "2026-11-29T12:00:00Z"}
    assert consent["provision"]["actor"][0]["reference"] == {
        "identifier": {"system": IDNPS_SYSTEM, "value": GP}
    }


def test_feed_choice_by_class() -> None:
    """A feed choice may name a DMP classCode instead of (or besides) a feed."""
    consent = _consent(ConsentKind.FEED_REFUSAL, class_code="60")
    assert "actor" not in consent["provision"]
    assert consent["provision"]["code"][0]["coding"][0]["code"] == "60"
    both = _consent(ConsentKind.FEED_ACCEPTANCE, feed_id="lab", class_code="10")
    assert both["provision"]["actor"][0]["reference"]["identifier"] == {"system": FEED_SYSTEM, "value": "lab"}
    assert both["policyRule"]["coding"][0]["code"] == "OPTIN"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ConsentKind.AUTHORISATION, Grants(authorisations={GP: Authorisation()})),
        (ConsentKind.BLOCK, Grants(blocked=frozenset({GP}))),
        (ConsentKind.TREATING_PHYSICIAN, Grants(treating=frozenset({GP}))),
        (ConsentKind.OPPOSITION_BREAK_GLASS, Grants(opposes_break_glass=True)),
        (ConsentKind.OPPOSITION_REGULATION, Grants(opposes_regulation=True)),
        (ConsentKind.FEED_REFUSAL, Grants(refused_feeds=frozenset({"cnam"}))),
        (ConsentKind.FEED_ACCEPTANCE, Grants(accepted_feeds=frozenset({"cnam"}))),
        (ConsentKind.OCCUPATIONAL_CONSENT, Grants(occupational_consent=frozenset({GP}))),
        (ConsentKind.RESEARCH_OPT_OUT, Grants(research_opt_out=True)),
        (ConsentKind.RESEARCH_OPT_IN, Grants(research_opt_in=True)),
    ],
)
def test_round_trip(kind: ConsentKind, expected: Grants) -> None:
    """Each kind of Consent reads back as the one grant it records."""
    grants = grants_from_consents([_consent(kind)], NOW)
    assert grants == expected


def test_feed_refusal_reads_ids_and_classes() -> None:
    """A feed refusal counts its feed and its classCodes, not codes of other systems."""
    consent = _consent(ConsentKind.FEED_REFUSAL, feed_id="lab", class_code="10")
    consent["provision"]["code"][0]["coding"].append({"system": "http://loinc.org", "code": "11502-2"})
    assert grants_from_consents([consent], NOW).refused_feeds == {"lab", "10"}


def test_authorisation_until() -> None:
    """An authorisation keeps its end (inclusive, to the precision given); once past, it reads as expired."""
    later = grants_from_consents([_consent(ConsentKind.AUTHORISATION, until=NOW + DAY)], NOW)
    until = later.authorisations[GP].until
    assert until is not None
    assert NOW + DAY <= until < NOW + DAY + timedelta(seconds=1)
    assert later.authorisations[GP].is_valid(NOW)
    past = grants_from_consents([_consent(ConsentKind.AUTHORISATION, until=NOW - DAY)], NOW)
    assert past.authorisations[GP].status is AuthorisationStatus.EXPIRED
    assert not past.authorisations[GP].is_valid(NOW)


def test_date_end_covers_the_whole_day() -> None:
    """A date-only end lasts until the end of that day."""
    consent = _consent(ConsentKind.AUTHORISATION)
    consent["provision"]["period"] = {"end": "2026-11-28"}
    authorisation = grants_from_consents([consent], NOW).authorisations[GP]
    assert authorisation.until == datetime(2026, 11, 28, 23, 59, 59, 999999, tzinfo=UTC)
    assert authorisation.is_valid(NOW)


def test_ended_choices_do_not_count() -> None:
    """A block, opposition or treating choice whose period ended does not count."""
    consents = [
        _consent(kind, until=NOW - DAY)
        for kind in (ConsentKind.BLOCK, ConsentKind.OPPOSITION_BREAK_GLASS, ConsentKind.TREATING_PHYSICIAN)
    ]
    assert grants_from_consents(consents, NOW) == NO_GRANTS


def test_future_choices_do_not_count_yet() -> None:
    """A choice whose period starts later does not count yet."""
    consent = _consent(ConsentKind.BLOCK)
    consent["provision"]["period"] = {"start": "2026-12-01"}
    assert grants_from_consents([consent], NOW) == NO_GRANTS
    consent["provision"]["period"] = {"start": "2026-11-01"}
    assert grants_from_consents([consent], NOW).blocked == {GP}


def test_ignored_resources() -> None:
    """Inactive Consents, Consents of other conventions and other resources are ignored."""
    inactive = {**_consent(ConsentKind.BLOCK), "status": "inactive"}
    advance_directive = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}, "not a concept"],
    }
    not_a_consent = {**_consent(ConsentKind.BLOCK), "resourceType": "Basic"}
    no_category = {"resourceType": "Consent", "status": "active"}
    assert grants_from_consents([inactive, advance_directive, not_a_consent, no_category], NOW) == NO_GRANTS


def test_strongest_authorisation_wins() -> None:
    """Among several authorisations of one professional, a valid one wins, then no end, then the last end."""
    expired = _consent(ConsentKind.AUTHORISATION, until=NOW - DAY)
    short = _consent(ConsentKind.AUTHORISATION, until=NOW + DAY)
    long = _consent(ConsentKind.AUTHORISATION, until=NOW + 2 * DAY)
    endless = _consent(ConsentKind.AUTHORISATION)

    def until(consents: list[dict[str, Any]]) -> datetime | None:
        return grants_from_consents(consents, NOW).authorisations[GP].until

    assert grants_from_consents([short, expired], NOW).authorisations[GP].status is AuthorisationStatus.VALID
    assert grants_from_consents([expired, short], NOW).authorisations[GP].status is AuthorisationStatus.VALID
    assert until([short, long]) == until([long, short]) == until([long])
    assert until([long, endless]) is None
    assert until([endless, short]) is None


def test_several_professionals_in_one_consent() -> None:
    """One Consent may name several professionals; actors of other systems are not read."""
    consent = _consent(ConsentKind.BLOCK)
    actors = consent["provision"]["actor"]
    actors.append(copy.deepcopy(actors[0]))
    actors[1]["reference"]["identifier"]["value"] = "810002"
    actors.append({"reference": {"identifier": {"system": "https://rpps.esante.gouv.fr", "value": "10003"}}})
    assert grants_from_consents([consent], NOW).blocked == {GP, "810002"}


def _broken(change: str) -> dict[str, Any]:
    consent = _consent(ConsentKind.AUTHORISATION)
    if change == "kind":
        consent["category"][0]["coding"][0]["code"] = "everything"
    elif change == "actor":
        del consent["provision"]["actor"]
    elif change == "actor-system":
        consent["provision"]["actor"][0]["reference"]["identifier"]["system"] = "urn:oid:1.2.3"
    elif change == "end":
        consent["provision"]["period"] = {"end": "tomorrow"}
    elif change == "start-type":
        consent["provision"]["period"] = {"start": 20261128}
    else:
        consent = _consent(ConsentKind.FEED_REFUSAL)
        consent["provision"]["actor"] = []
    return consent


@pytest.mark.parametrize("change", ["kind", "actor", "actor-system", "end", "start-type", "feed"])
def test_broken_choice_is_refused(change: str) -> None:
    """A Carnet Consent with an unknown kind, a bad period or nobody named is an error, never skipped."""
    with pytest.raises(InvalidResource):
        grants_from_consents([_broken(change)], NOW)


@pytest.mark.parametrize("kind", [ConsentKind.AUTHORISATION, ConsentKind.FEED_REFUSAL])
def test_consent_for_needs_whom(kind: ConsentKind) -> None:
    """Building a choice about a professional or a feed without naming it is a programming error."""
    with pytest.raises(ValueError, match="names the"):
        consent_for(kind, "p1", now=NOW)


def test_research_choice_about_one_study() -> None:
    """A research choice naming a study counts for that study only; one naming none for every study."""
    out = consent_for(ConsentKind.RESEARCH_OPT_OUT, "p1", now=NOW, study_id="s1")
    in_ = consent_for(ConsentKind.RESEARCH_OPT_IN, "p1", now=NOW, study_id="s2")
    grants = grants_from_consents([out, in_], NOW)
    assert (grants.research_opted_out, grants.research_opted_in, grants.research_opt_out) == (
        frozenset({"s1"}),
        frozenset({"s2"}),
        False,
    )
