"""Production tokens must expire (issue 11, item 2): exp and iat required, lifetime capped, skew bounded.

Tokens here are signed by a stand-in OpenID Connect issuer whose JWKS the production server trusts;
each case goes through the real app and must be refused with 401 and an OperationOutcome.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.api.auth import TokenVerifier
from carnet.domain.errors import ConfigurationError, Unauthenticated
from carnet.settings import Mode, Settings, load
from outcomes import assert_outcome

ISSUER = "https://psc.example"


def now() -> datetime:
    """The current time (read at each use: tests run minutes after this module is imported)."""
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Issuer:
    """The stand-in identity provider: signs tokens the production server trusts."""

    key: Ed25519PrivateKey
    settings: Settings

    def token(self, *, drop: tuple[str, ...] = (), **times: datetime) -> str:
        """Sign a professional's token; ``times`` set iat/exp/nbf (default: issued now, one hour)."""
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": "carnet",
            "sub": "psc:810001234567",
            "kind": "professional",
            "idnps": "810001234567",
            "profession": "10",
            "iat": now(),
            "exp": now() + timedelta(hours=1),
        }
        claims.update(times)
        for name in drop:
            claims.pop(name)
        encoded = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
        return jwt.encode(encoded, self.key, algorithm="EdDSA", headers={"kid": "psc-1"})

    def verify(self, token: str) -> str:
        """Verify ``token`` as the production server does; return its subject."""
        return TokenVerifier(self.settings).verify(f"Bearer {token}").subject


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    """A production configuration trusting a fresh Ed25519 key (kid psc-1)."""
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "psc-1"}]}))
    settings = Settings(
        mode=Mode.PRODUCTION,
        key_dir=tmp_path / "keys",
        data_dir=tmp_path / "data",
        oidc_issuer=ISSUER,
        oidc_jwks_file=jwks,
    )
    return Issuer(key, settings)


@pytest.fixture
def production_client(issuer: Issuer, settings: Settings, services: Services) -> Iterator[TestClient]:
    """The real app in production mode, trusting the stand-in issuer."""
    production = dataclasses.replace(
        settings, mode=Mode.PRODUCTION, oidc_issuer=ISSUER, oidc_jwks_file=issuer.settings.oidc_jwks_file
    )
    app = create_app(production, dataclasses.replace(services, settings=production), background=False)
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def test_a_one_hour_token_verifies(issuer: Issuer) -> None:
    """A token issued now for one hour, with exp and iat, is accepted."""
    assert issuer.verify(issuer.token()) == "psc:810001234567"


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_a_token_without_exp_or_iat_is_refused(issuer: Issuer, claim: str) -> None:
    """A production token lacking exp, or lacking iat, is refused naming the claim."""
    with pytest.raises(Unauthenticated, match=f"'{claim}'"):
        issuer.verify(issuer.token(drop=(claim,)))


def test_a_ten_year_token_is_refused(issuer: Issuer) -> None:
    """A token valid for ten years is refused though it has not expired."""
    with pytest.raises(Unauthenticated, match="CARNET_TOKEN_MAX_SECONDS"):
        issuer.verify(issuer.token(exp=now() + timedelta(days=3650)))


def test_the_lifetime_cap_is_configurable(issuer: Issuer) -> None:
    """CARNET_TOKEN_MAX_SECONDS moves the cap: a two-hour token passes a 3 h cap, fails the 1 h default."""
    two_hours = issuer.token(exp=now() + timedelta(hours=2))
    with pytest.raises(Unauthenticated):
        issuer.verify(two_hours)
    relaxed = Issuer(issuer.key, dataclasses.replace(issuer.settings, token_max_seconds=3 * 3600))
    assert relaxed.verify(two_hours) == "psc:810001234567"


def test_an_expired_token_is_refused(issuer: Issuer) -> None:
    """A token that expired two minutes ago (beyond the 60 s skew) is refused."""
    with pytest.raises(Unauthenticated, match="expired"):
        issuer.verify(issuer.token(iat=now() - timedelta(minutes=30), exp=now() - timedelta(minutes=2)))


def test_a_token_expired_within_the_skew_is_accepted(issuer: Issuer) -> None:
    """A token that expired 20 s ago is still accepted: clocks may differ by up to 60 s."""
    assert issuer.verify(issuer.token(iat=now() - timedelta(minutes=30), exp=now() - timedelta(seconds=20)))


def test_a_token_issued_in_the_future_is_refused(issuer: Issuer) -> None:
    """A token whose iat is ten minutes ahead is refused; 20 s ahead is within the skew."""
    with pytest.raises(Unauthenticated, match="not valid yet"):
        issuer.verify(issuer.token(iat=now() + timedelta(minutes=10), exp=now() + timedelta(minutes=40)))
    assert issuer.verify(issuer.token(iat=now() + timedelta(seconds=20), exp=now() + timedelta(minutes=40)))


def test_nbf_is_honoured(issuer: Issuer) -> None:
    """A token not valid before ten minutes from now is refused; one whose nbf has passed is accepted."""
    with pytest.raises(Unauthenticated, match="not valid yet"):
        issuer.verify(issuer.token(nbf=now() + timedelta(minutes=10)))
    assert issuer.verify(issuer.token(nbf=now() - timedelta(minutes=1)))


def test_the_skew_is_configurable(issuer: Issuer) -> None:
    """CARNET_TOKEN_LEEWAY_SECONDS=0 refuses a token that expired 20 s ago."""
    strict = Issuer(issuer.key, dataclasses.replace(issuer.settings, token_leeway_seconds=0))
    with pytest.raises(Unauthenticated, match="expired"):
        strict.verify(issuer.token(iat=now() - timedelta(minutes=30), exp=now() - timedelta(seconds=20)))


def test_token_settings_come_from_the_environment() -> None:
    """The cap and the skew are read from CARNET_TOKEN_MAX_SECONDS and CARNET_TOKEN_LEEWAY_SECONDS."""
    loaded = load({"CARNET_TOKEN_MAX_SECONDS": "900", "CARNET_TOKEN_LEEWAY_SECONDS": "5"})
    assert (loaded.token_max_seconds, loaded.token_leeway_seconds) == (900, 5)
    assert (load({}).token_max_seconds, load({}).token_leeway_seconds) == (3600, 60)
    with pytest.raises(ConfigurationError, match="CARNET_TOKEN_MAX_SECONDS"):
        load({"CARNET_TOKEN_MAX_SECONDS": "0"})
    with pytest.raises(ConfigurationError, match="CARNET_TOKEN_LEEWAY_SECONDS"):
        load({"CARNET_TOKEN_LEEWAY_SECONDS": "3600"})


@pytest.mark.parametrize(
    "case",
    ["no-exp", "no-iat", "ten-years", "expired", "future", "not-before"],
)
def test_the_api_answers_401_with_an_outcome(
    issuer: Issuer, production_client: TestClient, case: str
) -> None:
    """Through the production app, each refused token gets 401, WWW-Authenticate and an OperationOutcome."""
    token = {
        "no-exp": lambda: issuer.token(drop=("exp",)),
        "no-iat": lambda: issuer.token(drop=("iat",)),
        "ten-years": lambda: issuer.token(exp=now() + timedelta(days=3650)),
        "expired": lambda: issuer.token(iat=now() - timedelta(hours=2), exp=now() - timedelta(hours=1)),
        "future": lambda: issuer.token(iat=now() + timedelta(hours=1), exp=now() + timedelta(hours=2)),
        "not-before": lambda: issuer.token(nbf=now() + timedelta(minutes=30)),
    }[case]()
    response = production_client.get(
        "/fhir/Practitioner?name=x", headers={"Authorization": f"Bearer {token}"}
    )
    issue = assert_outcome(response, 401)
    assert issue["code"] == "login"
    assert response.headers["www-authenticate"].startswith("Bearer")
