"""Settings come from CARNET_* variables and refuse what they do not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from carnet.domain.errors import ConfigurationError
from carnet.settings import Mode, load


def test_defaults() -> None:
    """An empty environment gives development mode and SQLite in ./var/data."""
    settings = load({})
    assert settings.mode is Mode.DEVELOPMENT
    assert settings.effective_database_url == "sqlite:///var/data/carnet.sqlite3"


def test_the_api_address_follows_the_port_unless_set() -> None:
    """Without CARNET_BASE_URL the links name the host and port served (`carnet demo` prints them)."""
    assert load({}).base_url == "http://127.0.0.1:8000/fhir"
    assert load({"CARNET_PORT": "8765"}).base_url == "http://127.0.0.1:8765/fhir"
    wildcard = {"CARNET_HOST": "0.0.0.0", "CARNET_PORT": "9000"}  # noqa: S104 (a setting, nothing bound)
    assert load(wildcard).base_url == "http://127.0.0.1:9000/fhir"
    assert load({"CARNET_HOST": "::1"}).base_url == "http://[::1]:8000/fhir"
    public = {"CARNET_PORT": "8765", "CARNET_BASE_URL": "https://carnet.example.fr/fhir/"}
    assert load(public).base_url == "https://carnet.example.fr/fhir"


def test_unknown_key_stops_start_up() -> None:
    """A typo in a CARNET_* name is an error naming it."""
    with pytest.raises(ConfigurationError, match="CARNET_DATABSE_URL"):
        load({"CARNET_DATABSE_URL": "x"})


def test_test_keys_are_ignored() -> None:
    """CARNET_TEST_* belongs to the test suite."""
    assert load({"CARNET_TEST_PG_URL": "postgresql://x"}).mode is Mode.DEVELOPMENT


def test_production_needs_an_issuer(tmp_path: Path) -> None:
    """Production mode refuses to start without OpenID Connect settings, and with keys inside the data."""
    with pytest.raises(ConfigurationError, match="OIDC"):
        load({"CARNET_MODE": "production"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with pytest.raises(ConfigurationError, match="KEY_DIR"):
        load(
            {
                "CARNET_MODE": "production",
                "CARNET_OIDC_ISSUER": "https://idp",
                "CARNET_OIDC_JWKS_FILE": str(jwks),
                "CARNET_DATA_DIR": str(tmp_path),
                "CARNET_KEY_DIR": str(tmp_path / "keys"),
            }
        )


def test_pin_is_never_shown() -> None:
    """The settings' repr never contains the PKCS#11 PIN."""
    settings = load(
        {
            "CARNET_KEY_PROVIDER": "pkcs11",
            "CARNET_PKCS11_MODULE": "/m.so",
            "CARNET_PKCS11_TOKEN": "t",
            "CARNET_PKCS11_PIN": "s3cret-pin",
        }
    )
    assert "s3cret-pin" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"), [("CARNET_MODE", "test"), ("CARNET_PORT", "eighty"), ("CARNET_POLICY_PROFILE", "x")]
)
def test_bad_values(name: str, value: str) -> None:
    """Bad values are refused with the variable's name."""
    with pytest.raises(ConfigurationError, match=name):
        load({name: value})


def test_witnesses_and_their_quorum() -> None:
    """CARNET_WITNESSES gives URL and key pairs; the quorum defaults to all and cannot exceed them."""
    one = "witness1.test/carnet+0a1b2c3d+BAAA"
    two = "witness2.test/carnet+0a1b2c3e+BAAB"
    settings = load({"CARNET_WITNESSES": f"http://w1.test:8100/ {one}, https://w2.test {two}"})
    assert settings.witnesses == (("http://w1.test:8100", one), ("https://w2.test", two))
    assert settings.effective_witness_quorum == 2
    assert (
        load({"CARNET_WITNESSES": f"http://w1.test {one}", "CARNET_WITNESS_QUORUM": "1"}).witness_quorum == 1
    )
    assert load({}).witnesses == ()
    for bad in (
        {"CARNET_WITNESSES": one},
        {"CARNET_WITNESSES": f"ftp://w1.test {one}"},
        {"CARNET_WITNESSES": f"http://w1.test {one}, http://w2.test {one}"},
        {"CARNET_WITNESSES": f"http://w1.test {one}", "CARNET_WITNESS_QUORUM": "2"},
    ):
        with pytest.raises(ConfigurationError):
            load(bad)
