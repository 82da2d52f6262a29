"""SMART scopes: grammar, narrowing, categories, and the patient's grant to an app as a Consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carnet.domain.consent import ConsentKind, consent_for, grants_from_consents
from carnet.domain.errors import InvalidRequest
from carnet.domain.grants import Grants
from carnet.domain.policy import Action
from carnet.domain.smart import categories_of, covers, narrow, parse_scope, permits

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def test_v2_and_v1_scopes_parse_to_letters() -> None:
    """``patient/Observation.cs`` is create+search; v1 ``read`` is ``rs``; context scopes give no data."""
    scope = parse_scope("patient/Observation.cs")
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions) == ("patient", "Observation", {"c", "s"})
    v1 = parse_scope("patient/*.read")
    assert v1 is not None
    assert v1.permissions == {"r", "s"}
    assert parse_scope("launch/patient") is None
    assert parse_scope("offline_access") is None


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sc",
        "patient/Observation.rr",
        "patient/Observation.x",
        "admin/*.r",
        "patient/Observation.rs?code=1",
    ],
)
def test_malformed_scopes_are_refused(text: str) -> None:
    """Letters out of order or repeated, unknown contexts, parameters other than category: refused."""
    with pytest.raises(InvalidRequest):
        parse_scope(text)


def test_category_scope_covers_only_that_category() -> None:
    """``patient/Observation.rs?category=…|vital-signs`` reads vital signs, not laboratory results."""
    scope = parse_scope(f"patient/Observation.rs?category={VITALS}")
    assert scope is not None
    vital = categories_of(
        {"category": [{"coding": [{"system": VITALS.split("|")[0], "code": "vital-signs"}]}]}
    )
    lab = categories_of({"category": [{"coding": [{"system": VITALS.split("|")[0], "code": "laboratory"}]}]})
    assert permits([scope], Action.READ, "Observation", vital)
    assert not permits([scope], Action.READ, "Observation", lab)
    assert permits([scope], Action.SEARCH, "Observation", None)
    assert not permits([scope], Action.CREATE, "Observation", vital)


def test_narrowing_keeps_only_what_the_registration_allows() -> None:
    """A requested scope within a registered one is kept; a wider one is dropped."""
    allowed = ("patient/Observation.crs", "launch/patient")
    assert narrow(
        ["patient/Observation.rs", "patient/Observation.cruds", "launch/patient", "openid"], allowed
    ) == (
        "patient/Observation.rs",
        "launch/patient",
    )
    assert covers(("patient/*.rs",), "patient/DocumentReference.r")
    assert not covers(("patient/*.rs",), "patient/DocumentReference.c")


def _grants(scopes: tuple[str, ...], until: datetime | None = None, status: str = "active") -> Grants:
    consent = consent_for(ConsentKind.APP_GRANT, "p1", until=until, now=NOW, app_id="tensio", scopes=scopes)
    consent["status"] = status
    return grants_from_consents([consent], NOW)


def test_grant_consent_round_trips_into_the_policy_grants() -> None:
    """An app-grant Consent becomes ``Grants.apps[client id]`` with its scopes and end."""
    grants = _grants(("patient/Observation.cs",), until=NOW + timedelta(days=30))
    app = grants.apps["tensio"]
    assert app.scopes == {"patient/Observation.cs"}
    assert app.is_valid(NOW)

    assert "tensio" not in _grants(("patient/Observation.cs",), status="inactive").apps
    assert not _grants(("patient/Observation.cs",), until=NOW - timedelta(seconds=1)).apps
