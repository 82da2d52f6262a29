"""Carnet as an OpenID Connect relying party, the way Pro Santé Connect expects one (SPECS.md §b1).

Sign-in (the portals, :class:`RelyingParty`)::

    start   -> the provider's authorization endpoint with response_type=code, scope
               (``openid scope_all``), acr_values (``eidas1``), a random state and nonce, and a
               PKCE S256 challenge; the state, nonce and verifier are kept by the caller
    finish  -> the code is exchanged at the token endpoint (client_secret_basic, the verifier);
               the ID token, a JWE when the provider encrypts it (Carnet's key decrypts it), is
               a JWS whose ``kid`` selects a key of the provider's JWKS; iss, aud (the client
               id), exp, iat, nonce are checked, and an ``acr`` below the one asked is refused;
               then userinfo: JSON, or a signed (possibly encrypted) JWT verified the same way,
               whose ``sub`` must be the ID token's

API bearer tokens of the same issuer (:class:`AccessTokenVerifier`): JWT access tokens (as
Keycloak issues them, identity claims included) verified on every request against the cached
JWKS: signature, iss, aud (``CARNET_OIDC_AUDIENCE``), exp and iat.

Discovery is fetched once (PSC's ``/.well-known/wallet-openid-configuration``, else the
standard ``openid-configuration``, or ``CARNET_OIDC_DISCOVERY_URL``); the JWKS is cached and
fetched again when a token names an unknown ``kid`` (key rotation), at most once every
:data:`JWKS_REFETCH_SECONDS`. The JOSE work is joserfc's; the OAuth requests are authlib's.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwe, jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from joserfc.registry import HeaderParameter

from carnet.domain.errors import IdentityProviderUnavailable, SignInRefused

#: eIDAS levels in increasing strength; an ``acr`` off this ladder counts as none.
ACR_LADDER = ("eidas1", "eidas2", "eidas3")
JWKS_REFETCH_SECONDS = 1.0
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256", "RS384", "RS512", "PS384", "ES384", "EdDSA")
ENCRYPTION_ALGORITHMS = (
    "RSA-OAEP",
    "RSA-OAEP-256",
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A256CBC-HS512",
)
#: Providers may copy ``iss`` and ``aud`` into the JWE header (RFC 7519 §5.3, oidc-provider does).
_JWE_REGISTRY = jwe.JWERegistry(
    header_registry={
        "iss": HeaderParameter("Issuer (replicated)", "str"),
        "aud": HeaderParameter("Audience (replicated)", "str"),
        "sub": HeaderParameter("Subject (replicated)", "str"),
    },
    algorithms=list(ENCRYPTION_ALGORITHMS),
)
ENCRYPTION_KEY_FILE = "oidc-encryption.jwk"
HTTP_SECONDS = 10.0


def encryption_key(key_dir: Path) -> RSAKey:
    """Return Carnet's RSA key for encrypted ID tokens, creating ``<key_dir>/oidc-encryption.jwk`` (0600).

    Its public half is what the provider encrypts to (``GET /oidc/jwks.json``).
    """
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / ENCRYPTION_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return RSAKey.import_key(json.loads(path.read_text(encoding="ascii")))
    key = RSAKey.generate_key(3072, parameters={"use": "enc", "alg": "RSA-OAEP-256"})
    key.ensure_kid()
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(json.dumps(key.as_dict(private=True)))
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """The JWKS to publish: the public half of the encryption key."""
    return {"keys": [key.as_dict(private=False)]}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderMetadata:
    """The endpoints of an OpenID provider, from its discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None
    jwks_uri: str
    end_session_endpoint: str | None = None


class OpenIDProvider:
    """One OpenID provider: its metadata and signing keys, fetched once and cached (thread-safe)."""

    def __init__(
        self,
        *,
        issuer: str,
        discovery_url: str | None = None,
        http: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._discovery = discovery_url
        self.http = http or httpx.Client(timeout=HTTP_SECONDS, follow_redirects=False)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._fetched_at = -1e9
        #: How many times the JWKS was fetched (the benchmark and the rotation test read it).
        self.jwks_fetches = 0

    def close(self) -> None:
        """Close the HTTP connections to the provider (at shutdown)."""
        self.http.close()

    def get(self, url: str, headers: Mapping[str, str]) -> httpx.Response:
        """GET from the provider, once more on a broken connection (a kept-alive one the provider closed).

        Raises:
            httpx.HTTPError: the provider cannot be reached.
        """
        try:
            return self.http.get(url, headers=dict(headers))
        except httpx.TransportError:
            return self.http.get(url, headers=dict(headers))

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self.get(url, {"Accept": "application/json"})
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            data = None
        if not isinstance(data, dict):
            raise IdentityProviderUnavailable(
                "The identity provider did not answer as expected; try again later."
            )
        return data

    def metadata(self) -> ProviderMetadata:
        """Return the provider's endpoints (discovery fetched on first use).

        Raises:
            IdentityProviderUnavailable: unreachable, or a document for another issuer.
        """
        if self._metadata is not None:
            return self._metadata
        base = self.issuer.rstrip("/")
        candidates = (
            [self._discovery]
            if self._discovery
            else [
                f"{base}/.well-known/wallet-openid-configuration",  # Pro Santé Connect's own name
                f"{base}/.well-known/openid-configuration",
            ]
        )
        last: IdentityProviderUnavailable | None = None
        for url in candidates:
            try:
                data = self._get_json(url)
            except IdentityProviderUnavailable as exc:
                last = exc
                continue
            if data.get("issuer") != self.issuer:
                raise IdentityProviderUnavailable(
                    "The identity provider's discovery document names another issuer; check CARNET_OIDC_ISSUER."
                )
            try:
                self._metadata = ProviderMetadata(
                    issuer=self.issuer,
                    authorization_endpoint=str(data["authorization_endpoint"]),
                    token_endpoint=str(data["token_endpoint"]),
                    userinfo_endpoint=data.get("userinfo_endpoint"),
                    jwks_uri=str(data["jwks_uri"]),
                    end_session_endpoint=data.get("end_session_endpoint"),
                )
            except KeyError:
                raise IdentityProviderUnavailable(
                    "The identity provider's discovery document lacks an endpoint Carnet needs."
                ) from None
            return self._metadata
        assert last is not None
        raise last

    def key_set(self, kid: str | None) -> KeySet:
        """Return the provider's signing keys, fetched again if ``kid`` is not among them.

        Raises:
            SignInRefused: ``unknown-kid``, the key is not published even after fetching again.
            IdentityProviderUnavailable: the JWKS cannot be fetched.
        """
        with self._lock:
            if self._keys is not None and self._has(self._keys, kid):
                return self._keys
            if self._keys is None or self._monotonic() - self._fetched_at >= JWKS_REFETCH_SECONDS:
                data = self._get_json(self.metadata().jwks_uri)
                try:
                    self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError):
                    raise IdentityProviderUnavailable("The identity provider's JWKS is unusable.") from None
                self._fetched_at = self._monotonic()
                self.jwks_fetches += 1
            if not self._has(self._keys, kid):
                raise SignInRefused(
                    "The token is signed with a key the identity provider does not publish.",
                    reason="unknown-kid",
                )
            return self._keys

    @staticmethod
    def _has(keys: KeySet, kid: str | None) -> bool:
        return kid is None or any(key.kid == kid for key in keys)

    def verify_signed(self, token: str) -> dict[str, Any]:
        """Verify a compact JWS with the provider's keys and return its claims (no claim checked yet).

        Raises:
            SignInRefused: not a JWS, unknown key, bad signature.
        """
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise SignInRefused("The token is not a signed JWT.", reason="signature") from None
        kid = header.get("kid")
        keys = self.key_set(str(kid) if kid is not None else None)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(SIGNING_ALGORITHMS))
        except (JoseError, ValueError):
            raise SignInRefused("The token's signature does not verify.", reason="signature") from None
        return dict(decoded.claims)


def check_times(claims: Mapping[str, Any], *, now: float, leeway: int) -> None:
    """Check ``exp`` (required), ``iat`` (required, not in the future) and ``nbf``.

    Raises:
        SignInRefused: ``expired`` or ``not-yet-valid``.
    """
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise SignInRefused("The token has no exp or iat claim.", reason="expired")
    if exp + leeway < now:
        raise SignInRefused("The token has expired; sign in again.", reason="expired")
    if iat - leeway > now or (isinstance(nbf, int | float) and nbf - leeway > now):
        raise SignInRefused("The token is not valid yet (issued in the future).", reason="not-yet-valid")


def check_audience(claims: Mapping[str, Any], audience: str) -> None:
    """Check that ``aud`` is, or contains, ``audience``.

    Raises:
        SignInRefused: ``audience``.
    """
    aud = claims.get("aud")
    ok = aud == audience or (isinstance(aud, list) and audience in aud)
    if not ok:
        raise SignInRefused("The token was issued for another audience.", reason="audience")


def check_acr(claims: Mapping[str, Any], required: str) -> None:
    """Refuse an authentication level below ``required`` on :data:`ACR_LADDER` (or off it).

    Raises:
        SignInRefused: ``acr``.
    """
    acr = claims.get("acr")
    if required not in ACR_LADDER:
        if acr != required:
            raise SignInRefused("The authentication level is not the one asked for.", reason="acr")
        return
    if acr not in ACR_LADDER or ACR_LADDER.index(str(acr)) < ACR_LADDER.index(required):
        raise SignInRefused(
            f"The authentication level is below {required}; sign in with your card or e-CPS app.",
            reason="acr",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingSignIn:
    """What the browser carries between the redirect to the provider and the callback."""

    state: str
    nonce: str
    verifier: str
    started: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON form kept in the sign-in cookie."""
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier, "started": self.started}

    @classmethod
    def from_dict(cls, data: Any) -> PendingSignIn:
        """Read the JSON form back.

        Raises:
            SignInRefused: ``state``, not a pending sign-in.
        """
        try:
            return cls(
                state=str(data["state"]),
                nonce=str(data["nonce"]),
                verifier=str(data["verifier"]),
                started=float(data["started"]),
            )
        except (KeyError, TypeError, ValueError):
            raise SignInRefused(
                "No sign-in is in progress in this browser; start again.", reason="state"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """How Carnet is registered at the provider."""

    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str = "openid scope_all"
    #: The level asked for and required; empty: none asked (a patients' provider, say).
    acr: str = "eidas1"
    leeway: int = 60
    #: How long a started sign-in may take before its callback is refused.
    pending_seconds: int = 600


class RelyingParty:
    """The authorization code flow with PKCE against one provider, ending in verified claims."""

    def __init__(self, provider: OpenIDProvider, client: ClientSettings, key: RSAKey) -> None:
        self.provider = provider
        self.client = client
        self._key = key

    def _oauth(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client.client_id,
            client_secret=self.client.client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            scope=self.client.scope,
            redirect_uri=self.client.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_SECONDS,
        )

    def start(self, *, now: float) -> tuple[str, PendingSignIn]:
        """Return the provider's authorization URL and what the callback will need."""
        pending = PendingSignIn(
            state=generate_token(32), nonce=generate_token(32), verifier=generate_token(64), started=now
        )
        with self._oauth() as oauth:
            extra = {"acr_values": self.client.acr} if self.client.acr else {}
            url, _ = oauth.create_authorization_url(
                self.provider.metadata().authorization_endpoint,
                state=pending.state,
                nonce=pending.nonce,
                code_verifier=pending.verifier,
                **extra,
            )
        return str(url), pending

    def finish(self, *, code: str, state: str, pending: PendingSignIn, now: float) -> dict[str, Any]:
        """Exchange the code and return the verified claims (ID token, then userinfo over it).

        Raises:
            SignInRefused: any check failed (its ``reason`` says which).
            IdentityProviderUnavailable: the provider could not be reached.
        """
        claims, _ = self.finish_signed(code=code, state=state, pending=pending, now=now)
        return claims

    def finish_signed(
        self, *, code: str, state: str, pending: PendingSignIn, now: float
    ) -> tuple[dict[str, Any], str]:
        """As :meth:`finish`, with the verified ID token as the provider signed it (a JWS, decrypted).

        The signed ID token is what RP-initiated logout sends back as ``id_token_hint``: the
        provider can verify its own signature, never open a JWE encrypted to Carnet.

        Raises:
            SignInRefused: any check failed (its ``reason`` says which).
            IdentityProviderUnavailable: the provider could not be reached.
        """
        if not state or state != pending.state:
            raise SignInRefused(
                "This sign-in answer does not match the one started here; start again.", reason="state"
            )
        if now - pending.started > self.client.pending_seconds:
            raise SignInRefused("The sign-in took too long; start again.", reason="state")
        metadata = self.provider.metadata()
        try:
            with self._oauth() as oauth:
                token = oauth.fetch_token(
                    metadata.token_endpoint,
                    code=code,
                    code_verifier=pending.verifier,
                    grant_type="authorization_code",
                )
        except httpx.HTTPError:
            raise IdentityProviderUnavailable(
                "The identity provider could not be reached; try again."
            ) from None
        except Exception as exc:  # authlib raises OAuthError (and others) for an error answer
            raise SignInRefused(
                f"The identity provider refused the sign-in code ({getattr(exc, 'error', type(exc).__name__)}).",
                reason="token",
            ) from None
        raw = token.get("id_token")
        if not isinstance(raw, str):
            raise SignInRefused("The identity provider sent no ID token.", reason="token")
        signed = self._decrypted(raw)
        # The provider issued the ID token during the exchange, after ``now`` (the answer's arrival)
        # was read: its iat may fall in the next second, which a zero leeway would call the future.
        claims = self._id_token_claims(signed, pending, max(now, time.time()))
        access_token = token.get("access_token")
        if metadata.userinfo_endpoint and isinstance(access_token, str):
            info = self._userinfo(metadata.userinfo_endpoint, access_token)
            if info.get("sub") != claims.get("sub"):
                raise SignInRefused("The userinfo answer is about someone else.", reason="userinfo")
            claims = {**info, **{k: v for k, v in claims.items() if k not in info}}
        return claims, signed

    def logout_url(self, *, id_token: str | None, post_logout_redirect_uri: str, state: str) -> str | None:
        """The provider's end-session URL (OpenID Connect RP-Initiated Logout 1.0), or None if it has none.

        ``id_token_hint`` names the session to end; ``post_logout_redirect_uri`` (registered at
        the provider) is where it sends the browser back, with ``state``. A provider that cannot
        be reached has no end-session URL either: the sign-out is then local only.
        """
        try:
            endpoint = self.provider.metadata().end_session_endpoint
        except IdentityProviderUnavailable:
            return None
        if not endpoint:
            return None
        params = {
            "client_id": self.client.client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "state": state,
            **({"id_token_hint": id_token} if id_token else {}),
        }
        return str(httpx.URL(endpoint, params=params))

    def _decrypted(self, token: str) -> str:
        """A JWE (five parts) opened with Carnet's key; a JWS is returned as it is."""
        if token.count(".") != 4:
            return token
        try:
            opened = jwe.decrypt_compact(token, self._key, registry=_JWE_REGISTRY)
        except (JoseError, ValueError):
            raise SignInRefused(
                "The encrypted token does not open with Carnet's key.", reason="signature"
            ) from None
        return (opened.plaintext or b"").decode("ascii", errors="replace")

    def _id_token_claims(self, raw: str, pending: PendingSignIn, now: float) -> dict[str, Any]:
        claims = self.provider.verify_signed(self._decrypted(raw))
        if claims.get("iss") != self.provider.issuer:
            raise SignInRefused("The ID token comes from another issuer.", reason="issuer")
        check_audience(claims, self.client.client_id)
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client.client_id:
            raise SignInRefused("The ID token was issued to another client.", reason="audience")
        check_times(claims, now=now, leeway=self.client.leeway)
        if claims.get("nonce") != pending.nonce:
            raise SignInRefused("The ID token answers another sign-in (nonce).", reason="nonce")
        if self.client.acr:
            check_acr(claims, self.client.acr)
        return claims

    def _userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            response = self.provider.get(endpoint, {"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError:
            raise IdentityProviderUnavailable(
                "The identity provider could not be reached; try again."
            ) from None
        if response.status_code != 200:
            raise SignInRefused("The identity provider refused the userinfo request.", reason="userinfo")
        media = response.headers.get("content-type", "").split(";", 1)[0].strip()
        if media == "application/jwt":
            claims = self.provider.verify_signed(self._decrypted(response.text.strip()))
            if "iss" in claims and claims["iss"] != self.provider.issuer:
                raise SignInRefused("The userinfo answer comes from another issuer.", reason="issuer")
            if "aud" in claims:
                check_audience(claims, self.client.client_id)
            return claims
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SignInRefused("The userinfo answer is not JSON nor a JWT.", reason="userinfo")
        return data


class AccessTokenVerifier:
    """Verify the provider's JWT access tokens for the API, on every request (JWKS cached)."""

    def __init__(self, provider: OpenIDProvider, *, audience: str, leeway: int, max_seconds: int) -> None:
        self.provider = provider
        self.audience = audience
        self.leeway = leeway
        self.max_seconds = max_seconds

    def verify(self, token: str, *, now: float) -> dict[str, Any]:
        """Return the verified claims of an access token.

        Raises:
            SignInRefused: signature, unknown key, issuer, audience, expiry, lifetime over the cap.
            IdentityProviderUnavailable: the JWKS cannot be fetched.
        """
        claims = self.provider.verify_signed(token)
        if claims.get("iss") != self.provider.issuer:
            raise SignInRefused("The token's issuer is not trusted by this server.", reason="issuer")
        check_audience(claims, self.audience)
        check_times(claims, now=now, leeway=self.leeway)
        if float(claims["exp"]) - float(claims["iat"]) > self.max_seconds:
            raise SignInRefused(
                f"The bearer token lives longer than the {self.max_seconds} s this server accepts "
                "(CARNET_TOKEN_MAX_SECONDS); ask the issuer for a shorter-lived token.",
                reason="expired",
            )
        return claims
