"""Bearer tokens: the embedded development issuer and verification into a ``Principal``.

Development tokens are EdDSA JWTs signed with a key in the key directory (``carnet token``).
They are refused in production mode, where tokens must come from the configured OpenID
Connect issuer (Pro Santé Connect-compatible claims) and verify against its JWKS.

Every token must carry ``exp`` and ``iat``; ``nbf`` is honoured when present; each is checked
with ``CARNET_TOKEN_LEEWAY_SECONDS`` of clock skew (60 s by default), and a token issued in the
future is refused. A token of the configured issuer may live at most ``CARNET_TOKEN_MAX_SECONDS``
(``exp - iat``, one hour by default): a token meant to last ten years is refused even while valid.
Development tokens (``carnet token --hours``) are exempt from that cap only.

Opaque bearer tokens (not JWTs) are the access tokens Carnet's SMART authorization server issued
to apps; they are looked up, not verified, by the function handed in (``carnet.services.apps``),
on every request and in the store every process shares: a token revoked by any worker is refused
by all at their next request. An app's token that was revoked or expired, or whose patient's grant
ended, is answered ``401`` with ``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750 §3)
and the attempt is journaled on that patient's record (:func:`settle_app_refusal`).

Claims: ``sub``; ``kind`` (an ``ActorKind``); ``patient`` (record id, optional);
``identifier`` (``system|value``, e.g. the INS); ``name``; for professionals (Pro Santé
Connect-style) ``idnps`` (idNat_PS, e.g. ``810001234567``), ``profession`` (TRE_G15),
``specialty`` (TRE_R38), ``samu`` (true for a SAMU regulating physician), ``occupational``
(true for an occupational physician); ``represents`` (record ids, legal representatives);
``feed`` and ``feed_categories`` (feed systems).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import jwt
from jwt.types import Options

from carnet.api.token_cache import VerifiedTokens
from carnet.auth.claims import parse_mapping, professional
from carnet.auth.oidc import AccessTokenVerifier
from carnet.crypto.signing import dev_issuer_keys
from carnet.domain.errors import AppAccessEnded, ConfigurationError, Unauthenticated
from carnet.domain.principal import Principal, principal_from_claims
from carnet.services.apps import AppService
from carnet.settings import Settings

DEV_ISSUER = "carnet-dev"
_REQUIRED: Options = {"require": ["exp", "iat"]}


def issue_token(settings: Settings, claims: Mapping[str, Any], *, now: datetime, lifetime: timedelta) -> str:
    """Sign a development token.

    Raises:
        Unauthenticated: in production mode (the development issuer does not exist there).
    """
    if not settings.development_issuer_enabled:
        raise Unauthenticated("The development token issuer is disabled in production mode.")
    private_pem, _ = dev_issuer_keys(settings.key_dir)
    payload = {
        **claims,
        "iss": DEV_ISSUER,
        "aud": settings.oidc_audience,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(payload, private_pem, algorithm="EdDSA")


class TokenVerifier:
    """Verifies bearer tokens and turns their claims into a principal."""

    def __init__(
        self,
        settings: Settings,
        *,
        access_tokens: AccessTokenVerifier | None = None,
        opaque: Callable[[str], Principal] | None = None,
    ) -> None:
        self._settings = settings
        #: The configured issuer's JWT access tokens, verified against its fetched JWKS (carnet.auth.oidc).
        self._access_tokens = access_tokens
        # Opaque tokens (no dots: not a JWT) are the apps' access tokens (carnet.services.apps),
        # looked up on every request and never cached: revoking one takes effect at once.
        self._opaque = opaque
        self._dev_public: bytes | None = None
        self._jwks: jwt.PyJWKSet | None = None
        #: Tokens that verified lately: their signature is not checked again (api/token_cache.py).
        self.verified = VerifiedTokens()
        if settings.development_issuer_enabled:
            self._dev_public = dev_issuer_keys(settings.key_dir)[1]
        if settings.oidc_jwks_file is not None:
            try:
                self._jwks = jwt.PyJWKSet.from_dict(json.loads(settings.oidc_jwks_file.read_text()))
            except (OSError, ValueError, jwt.PyJWTError):
                raise ConfigurationError(
                    "CARNET_OIDC_JWKS_FILE is not a readable JSON Web Key Set with at least one key."
                ) from None

    def verify(self, authorization: str | None) -> Principal:
        """Verify an ``Authorization`` header value.

        Raises:
            Unauthenticated: missing, malformed, expired, wrong issuer or audience, bad signature.
        """
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("Send a bearer token: Authorization: Bearer <token>.", bearer_error=None)
        token = authorization[7:].strip()
        if self._opaque is not None and token and "." not in token:
            return self._opaque(token)
        cached = self.verified.get(token)
        if cached is not None:
            return cached
        principal, expires = self._verify(token)
        self.verified.put(token, principal, expires)
        return principal

    def known(self, authorization: str | None) -> Principal | None:
        """The principal of a bearer JWT verified lately (``verified``), without blocking; else None.

        None means "call :meth:`verify`" (off the event loop: an app's opaque token is looked up
        in the store, a JWT of the configured issuer may need its JWKS fetched). Opaque tokens
        are never known here: they are looked up at every request.
        """
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        if "." not in token:
            return None
        return self.verified.get(token)

    def _verify(self, token: str) -> tuple[Principal, float]:
        """Verify a token's signature and claims; return its principal and its ``exp``.

        Raises:
            Unauthenticated: as :meth:`verify`.
        """
        try:
            header = jwt.get_unverified_header(token)
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            if issuer == DEV_ISSUER and self._dev_public is not None:
                claims = jwt.decode(
                    token,
                    self._dev_public,
                    algorithms=["EdDSA"],
                    audience=self._settings.oidc_audience,
                    issuer=DEV_ISSUER,
                    options=_REQUIRED,
                    leeway=self._settings.token_leeway_seconds,
                )
            elif self._access_tokens is not None and issuer == self._settings.oidc_issuer:
                return self._issuer_principal(self._access_tokens, token)
            elif self._jwks is not None and issuer == self._settings.oidc_issuer:
                key = self._jwks[str(header.get("kid"))]
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256", "ES256", "EdDSA", "PS256"],
                    audience=self._settings.oidc_audience,
                    issuer=self._settings.oidc_issuer,
                    options=_REQUIRED,
                    leeway=self._settings.token_leeway_seconds,
                )
                self._check_lifetime(claims)
            else:
                raise Unauthenticated("The token's issuer is not trusted by this server.")
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(
                f"The bearer token has no '{exc.claim}' claim; tokens must carry exp and iat."
            ) from None
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The bearer token has expired; get a new one.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("The bearer token is not valid yet (nbf or iat in the future).") from None
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"The bearer token does not verify ({type(exc).__name__}).") from None
        return principal_from_claims(claims), float(claims["exp"])

    def _issuer_principal(self, verifier: AccessTokenVerifier, token: str) -> tuple[Principal, float]:
        """Verify a token of the configured issuer and map its claims (``CARNET_OIDC_CLAIMS``).

        Raises:
            Unauthenticated: it does not verify, or names no professional Carnet can map.
        """
        claims = verifier.verify(token, now=time.time())
        expires = float(claims["exp"])
        if claims.get("kind") is not None:
            return principal_from_claims(claims), expires
        signed_in = professional(claims, parse_mapping(self._settings.oidc_claims))
        only = signed_in.structures[0] if len(signed_in.structures) == 1 else None
        return principal_from_claims(signed_in.principal_claims(only)), expires

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        """Refuse a token whose lifetime (``exp - iat``) exceeds ``CARNET_TOKEN_MAX_SECONDS``.

        Raises:
            Unauthenticated: the lifetime is over the cap.
        """
        cap = self._settings.token_max_seconds
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > cap:
            raise Unauthenticated(
                f"The bearer token lives {int(lifetime)} s, over the {cap} s this server accepts "
                "(CARNET_TOKEN_MAX_SECONDS); ask the issuer for a shorter-lived token."
            )


#: What RFC 6750 allows inside a quoted ``error_description``: printable ASCII but ``"`` and ``\``.
_UNQUOTABLE = re.compile(r"[^ !#-\[\]-~]")
#: The FHIR interaction a refused request tried, by HTTP method (for its journal entry).
_INTERACTION = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "PATCH": "patch"}
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def bearer_challenge(error: Unauthenticated) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 6750 §3): the error code once a token was sent."""
    if error.bearer_error is None:
        return 'Bearer realm="carnet"'
    description = _UNQUOTABLE.sub("", error.message.replace('"', "'"))[:200]
    return f'Bearer realm="carnet", error="{error.bearer_error}", error_description="{description}"'


def tried(method: str, path: str) -> tuple[str, str]:
    """The FHIR interaction and resource type a request under ``/fhir`` tried (for the journal)."""
    parts = [part for part in path.split("/") if part][1:]
    typed = bool(parts) and _RESOURCE_TYPE.fullmatch(parts[0]) is not None
    resource_type = parts[0] if typed else "Bundle"
    if method == "DELETE":
        return "delete", resource_type
    if method == "POST" and not parts:
        return "transaction", resource_type
    if method in ("GET", "HEAD") and typed and len(parts) == 1:
        return "search-type", resource_type
    return _INTERACTION.get(method, "read"), resource_type


def settle_app_refusal(apps: AppService, error: AppAccessEnded, method: str, path: str) -> None:
    """Journal an app's refused attempt on its patient's record, and end a grant found gone.

    A grant the policy found gone (its period ended, or withdrawn elsewhere) takes every token
    of the app on that record with it, refresh tokens included. The gate journals the refusals
    it decides itself (``error.journaled``); a revoked or expired token is journaled here, under
    the app's name, with the interaction the request tried.
    """
    if error.patient_id is None:
        return
    if error.reason == "app-not-granted":
        apps.end_grant(error.client_id, error.patient_id)
    if not error.journaled:
        interaction, resource_type = tried(method, path)
        apps.journal_refusal(error.client_id, error.patient_id, interaction, error.reason, resource_type)
