"""WebAuthn (passkeys) for built-in patient accounts, through the ``webauthn`` library (duo-labs).

Carnet is the relying party: its id is the host of ``CARNET_BASE_URL`` and the only origin it
accepts is that URL's scheme, host and port. Every ceremony has its own random challenge, kept
by the caller (the portal session) and used once; the library checks the challenge, origin,
relying-party id hash, user presence and signature. Any failure is one
:class:`~carnet.domain.errors.SignInRefused` with reason ``passkey``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from carnet.domain.errors import SignInRefused

RP_NAME = "Carnet"


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Carnet as a WebAuthn relying party, from its public URL."""

    rp_id: str
    origin: str

    @classmethod
    def of(cls, base_url: str) -> RelyingParty:
        """The relying party of ``CARNET_BASE_URL`` (its host; its scheme://host[:port])."""
        parts = urlsplit(base_url)
        return cls(rp_id=parts.hostname or "localhost", origin=f"{parts.scheme}://{parts.netloc}")

    def registration(self, user_handle: bytes, label: str) -> tuple[str, bytes]:
        """Return the creation options (JSON for ``navigator.credentials.create``) and their challenge."""
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=RP_NAME,
            user_id=user_handle,
            user_name=label,
            user_display_name=label,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        return options_to_json(options), options.challenge

    def registered(self, credential: str, challenge: bytes) -> tuple[str, bytes, int]:
        """Verify a new credential; return its id (base64url), its COSE public key and its counter."""
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise SignInRefused("The passkey could not be verified.", reason="passkey") from exc
        return (
            bytes_to_base64url(verified.credential_id),
            verified.credential_public_key,
            verified.sign_count,
        )

    def authentication(self) -> tuple[str, bytes]:
        """Return the request options (JSON for ``navigator.credentials.get``) and their challenge."""
        options = generate_authentication_options(
            rp_id=self.rp_id, user_verification=UserVerificationRequirement.PREFERRED
        )
        return options_to_json(options), options.challenge

    def authenticated(self, credential: str, challenge: bytes, public_key: bytes, sign_count: int) -> int:
        """Verify an assertion by a known passkey; return its new signature counter."""
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=public_key,
                credential_current_sign_count=sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise SignInRefused("The passkey could not be verified.", reason="passkey") from exc
        return int(verified.new_sign_count)


def credential_id_of(credential: str) -> str:
    """The ``id`` (base64url) a browser's assertion names, or "" when the JSON has none."""
    try:
        data: Any = json.loads(credential)
    except ValueError:
        return ""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and len(value) <= 1024 else ""
