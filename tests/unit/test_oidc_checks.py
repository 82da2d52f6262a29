"""The relying party's checks and the claim mapping, on their own (no provider needed)."""

from __future__ import annotations

import pytest

from carnet.auth.claims import ClaimMapping, parse_mapping, professional
from carnet.auth.oidc import check_acr, check_audience, check_times
from carnet.domain.errors import ConfigurationError, SignInRefused
from carnet.settings import load

NOW = 1_800_000_000


def _reason(call: object) -> str:
    with pytest.raises(SignInRefused) as refused:
        call()  # type: ignore[operator]
    return refused.value.reason


def test_times_refuse_expired_future_and_missing() -> None:
    """exp past (beyond leeway), iat or nbf in the future, or no exp/iat: refused with the reason."""
    check_times({"exp": NOW + 10, "iat": NOW - 10}, now=NOW, leeway=0)
    check_times({"exp": NOW - 30, "iat": NOW - 100}, now=NOW, leeway=60)  # within the leeway
    assert _reason(lambda: check_times({"exp": NOW - 1, "iat": NOW - 100}, now=NOW, leeway=0)) == "expired"
    assert (
        _reason(lambda: check_times({"exp": NOW + 100, "iat": NOW + 90}, now=NOW, leeway=60))
        == "not-yet-valid"
    )
    assert _reason(
        lambda: check_times({"exp": NOW + 100, "iat": NOW, "nbf": NOW + 90}, now=NOW, leeway=0)
    ) == ("not-yet-valid")
    assert _reason(lambda: check_times({"exp": NOW + 100}, now=NOW, leeway=0)) == "expired"


def test_audience_and_acr() -> None:
    """aud must name Carnet; acr must reach the level asked on the eIDAS ladder."""
    check_audience({"aud": ["other", "carnet"]}, "carnet")
    assert _reason(lambda: check_audience({"aud": "other"}, "carnet")) == "audience"
    check_acr({"acr": "eidas2"}, "eidas1")
    for acr in ("eidas0", None, "urn:password"):
        assert _reason(lambda acr=acr: check_acr({"acr": acr}, "eidas1")) == "acr"
    assert _reason(lambda: check_acr({"acr": "eidas1"}, "eidas2")) == "acr"


def test_psc_claims_become_a_professional_with_structures() -> None:
    """SubjectNameID, SubjectRole and SubjectRefPro's activities map to idnps, profession and structures."""
    claims = {
        "SubjectNameID": "810001234567",
        "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
        "given_name": "Claire",
        "family_name": "MARTIN",
        "SubjectRefPro": {
            "exercices": [
                {
                    "codeProfession": "10",
                    "codeSavoirFaire": "SM54",
                    "activities": [
                        {"ancienIdentifiantDeLaStructure": "4997001", "raisonSocialeSite": "CABINET"},
                        {"numeroFinessSite": "750000001", "raisonSocialeSite": "HÔPITAL"},
                        {"raisonSocialeSite": "no identifier: skipped"},
                    ],
                }
            ]
        },
    }
    signed_in = professional(claims, ClaimMapping())
    assert signed_in.claims["idnps"] == "810001234567"
    assert signed_in.claims["profession"] == "10"
    assert signed_in.claims["specialty"] == "SM54"
    assert signed_in.claims["name"] == "Claire MARTIN"
    assert [s.identifier for s in signed_in.structures] == ["4997001", "750000001"]
    assert signed_in.principal_claims(signed_in.structures[1])["structure_name"] == "HÔPITAL"
    assert _reason(lambda: professional({"SubjectRole": ["10^x"]}, ClaimMapping())) == "claims"
    assert _reason(lambda: professional({"SubjectNameID": "810001234567"}, ClaimMapping())) == "claims"


def test_a_generic_provider_is_described_by_a_mapping() -> None:
    """CARNET_OIDC_CLAIMS maps a provider's own claim names; bad mappings stop start-up."""
    mapping = parse_mapping("idnps=rpps,profession=prof,specialty=spec,structure=site")
    signed_in = professional({"rpps": "810001234567", "prof": "21", "site": "S1"}, mapping)
    assert (signed_in.claims["idnps"], signed_in.claims["profession"]) == ("810001234567", "21")
    assert [s.identifier for s in signed_in.structures] == ["S1"]
    for bad in ("profession=prof", "idnps", "colour=blue,idnps=x"):
        with pytest.raises(ConfigurationError):
            parse_mapping(bad)


def test_sign_in_settings_go_together() -> None:
    """A client id needs its secret and issuer; the scope needs openid; patient settings come as a set."""
    for env in (
        {"CARNET_OIDC_CLIENT_ID": "c"},
        {"CARNET_OIDC_ISSUER": "https://i", "CARNET_OIDC_CLIENT_ID": "c"},
        {"CARNET_OIDC_SCOPE": "scope_all"},
        {"CARNET_PATIENT_OIDC_ISSUER": "https://i"},
        {"CARNET_OIDC_CLAIMS": "nope"},
    ):
        with pytest.raises(ConfigurationError):
            load(env)
    settings = load(
        {"CARNET_OIDC_ISSUER": "https://i", "CARNET_OIDC_CLIENT_ID": "c", "CARNET_OIDC_CLIENT_SECRET": "s"}
    )
    assert settings.oidc_sign_in_enabled
    assert settings.effective_redirect_uri == "http://127.0.0.1:8000/login/oidc/callback"
