"""The 401 answer's WWW-Authenticate challenge (RFC 6750 §3) and the interaction a refused request tried."""

from __future__ import annotations

import pytest

from carnet.api.auth import bearer_challenge, tried
from carnet.domain.errors import AppAccessEnded, Unauthenticated


def test_no_token_gets_a_bare_challenge() -> None:
    """No credentials sent: no error code (RFC 6750 §3.1)."""
    assert (
        bearer_challenge(Unauthenticated("Send a bearer token.", bearer_error=None))
        == 'Bearer realm="carnet"'
    )


def test_a_token_that_does_not_hold_is_invalid_token_with_a_quotable_description() -> None:
    """A revoked token: invalid_token, the description stripped of what a quoted-string cannot hold."""
    error = AppAccessEnded(
        'The token "abc" was revoked \\ é\r\n', reason="app-token-revoked", client_id="tensio", patient_id="p"
    )
    challenge = bearer_challenge(error)
    assert challenge == (
        'Bearer realm="carnet", error="invalid_token", error_description="The token \'abc\' was revoked  "'
    )
    challenge.encode("ascii")  # a header value: never raises


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/fhir/Observation", ("search-type", "Observation")),
        ("GET", "/fhir/Observation/123", ("read", "Observation")),
        ("POST", "/fhir", ("transaction", "Bundle")),
        ("POST", "/fhir/Observation", ("create", "Observation")),
        ("PUT", "/fhir/Observation/1", ("update", "Observation")),
        ("DELETE", "/fhir/Device/1", ("delete", "Device")),
        ("GET", "/fhir/metadata", ("read", "Bundle")),
        ("GET", "/fhir/Patient/1/$everything", ("read", "Patient")),
    ],
)
def test_the_interaction_a_refused_request_tried(method: str, path: str, expected: tuple[str, str]) -> None:
    """The journal names what the app tried, from its method and path."""
    assert tried(method, path) == expected
