"""Carnet's SMART App Launch 2.x authorization server: authlib's OAuth 2, Carnet's state and screens.

=====================================  ==============================================================
``GET  /auth/authorize``               the patient's consent screen (signed in first, then back here)
``POST /auth/authorize``               the patient's answer: a code to the app, or ``access_denied``
``POST /auth/token``                   ``authorization_code`` (PKCE S256), ``refresh_token``,
                                       ``client_credentials`` (``private_key_jwt``, backend services)
``POST /auth/revoke``                  RFC 7009 revocation (a refresh token revokes its whole grant)
``POST /auth/introspect``              RFC 7662 introspection (an app introspects its own tokens)
``GET  /auth/jwks``                    the public key of the ID tokens (``openid fhirUser``)
=====================================  ==============================================================

The protocol is authlib's (grants, PKCE, client authentication, error responses); this module
adapts Starlette requests to it and keeps state through :class:`carnet.services.apps.AppService`.
Every error of these endpoints is an OAuth error JSON with a 4xx status, or, on the consent
screen, a redirect to the app with ``error=`` once its redirect URI is known to be registered
(a wrong redirect URI is answered here, never redirected to). PKCE with ``S256`` is required of
every app, public or confidential (SMART 2.x); ``plain`` is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2 import rfc6749, rfc7009, rfc7636, rfc7662
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oidc.core.grants import OpenIDCode
from fastapi import APIRouter
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from carnet.domain.errors import CarnetError
from carnet.domain.principal import Principal
from carnet.domain.smart import split_scopes
from carnet.offload import offload
from carnet.services.apps import AppClient, AppCode, AppKind, AppService, AppToken, digest

__all__ = ["ASSERTION_ALGORITHMS", "SmartServer", "router", "server_of"]

log = logging.getLogger("carnet.smart")
router = APIRouter(include_in_schema=False)
#: The signature algorithms of backend services' client assertions (SMART: RS384, ES384).
ASSERTION_ALGORITHMS = ("RS384", "ES384")


class _Payload(rfc6749.OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: Mapping[str, str], lists: Mapping[str, list[str]]) -> None:
        self._data = dict(values)
        self._lists = defaultdict(list, {k: list(v) for k, v in lists.items()})

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._lists


class OAuthRequest(rfc6749.OAuth2Request):  # type: ignore[misc]
    """A Starlette request, read in full (query and form), as authlib sees it."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=dict(headers))
        self._args = dict(query)
        self._form = dict(form)
        lists: dict[str, list[str]] = defaultdict(list)
        for key, value in [*query, *form]:
            lists[key].append(value)
        self.payload = _Payload({**self._args, **self._form}, lists)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


async def read_request(request: Request, *, form: bool = True) -> OAuthRequest:
    """Read a request for authlib: its query, and its urlencoded form when ``form``.

    Raises:
        InsecureTransportError: the request came over plain HTTP to a host other than the
            loopback (OAuth 2 requires TLS; behind a TLS proxy, serve with ``--proxy-headers``).
    """
    fields: list[tuple[str, str]] = []
    if form and request.method == "POST":
        data = await request.form()
        fields = [(k, v) for k, v in data.multi_items() if isinstance(v, str)]
    query = list(request.query_params.multi_items())
    headers = {k.lower(): v for k, v in request.headers.items()}
    return OAuthRequest(request.method, str(request.url), headers, query, fields)


@dataclass(frozen=True, slots=True)
class Client(rfc6749.ClientMixin):  # type: ignore[misc]
    """A registered app as authlib's client model."""

    app: AppClient

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.app.redirect_uris[0] if len(self.app.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        # Everything the app asks for must be registered: a scope outside is refused
        # (invalid_scope), not silently dropped, so the app knows.
        wanted = split_scopes(scope)
        try:
            from carnet.domain.smart import covers

            if all(covers(self.app.scopes, s) for s in wanted):
                return " ".join(wanted)
        except CarnetError:
            pass
        raise InvalidScopeError(description="The app asked for a scope it is not registered for.")

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.app.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(AppService.check_secret(self.app, str(client_secret)))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        kind = self.app.kind
        if kind is AppKind.PUBLIC:
            return method == "none"
        if kind is AppKind.CONFIDENTIAL:
            return method in ("client_secret_basic", "client_secret_post")
        return bool(method == JWTBearerClientAssertion.CLIENT_AUTH_METHOD)

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and self.app.kind is not AppKind.BACKEND

    def check_grant_type(self, grant_type: str) -> bool:
        if self.app.kind is AppKind.BACKEND:
            return grant_type == "client_credentials"
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True, slots=True)
class Code(rfc6749.AuthorizationCodeMixin):  # type: ignore[misc]
    """A stored authorization code as authlib's model."""

    code: AppCode

    def get_redirect_uri(self) -> str:
        return self.code.redirect_uri

    def get_scope(self) -> str:
        return self.code.scope

    def get_nonce(self) -> str | None:
        return self.code.nonce

    def get_auth_time(self) -> int | None:
        return None

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None

    @property
    def code_challenge(self) -> str | None:
        """The PKCE challenge (authlib's CodeChallenge reads it by this name)."""
        return self.code.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        """The PKCE method (``S256``)."""
        return self.code.code_challenge_method


@dataclass(frozen=True, slots=True)
class Token(rfc6749.TokenMixin):  # type: ignore[misc]
    """A stored token as authlib's model."""

    token: AppToken
    now: datetime

    def check_client(self, client: Client) -> bool:
        return client.get_client_id() == self.token.client_id

    def get_scope(self) -> str:
        return self.token.scope

    def get_expires_in(self) -> int:
        return max(0, int((self.token.expires_at - self.now).total_seconds()))

    def is_expired(self) -> bool:
        return self.now >= self.token.expires_at

    def is_revoked(self) -> bool:
        return self.token.revoked_at is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Grantee:
    """Who a token is issued for: a patient's record (None for a backend service), its grant family and end."""

    subject: str
    patient_id: str | None
    family: str
    until: datetime | None = None


class SmartServer(rfc6749.AuthorizationServer):  # type: ignore[misc]
    """authlib's authorization server over Carnet's app service."""

    def __init__(self, apps: AppService, *, base_url: str, clock: Any, key_dir: Path) -> None:
        super().__init__(scopes_supported=None)
        self.apps = apps
        self.base_url = base_url
        self.clock = clock
        self.id_token_key = id_token_key(key_dir)
        self.register_token_generator("default", self._generate)
        assertion = _PrivateKeyJWT(self)
        self.register_client_auth_method(assertion.CLIENT_AUTH_METHOD, assertion)
        self.register_grant(_CodeGrant, [rfc7636.CodeChallenge(required=True), _OpenID(self)])
        self.register_grant(_RefreshGrant)
        self.register_grant(_BackendGrant)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    # -- authlib's hooks ---------------------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        found = self.apps.client(client_id) if isinstance(client_id, str) else None
        return Client(found) if found is not None else None

    def save_token(self, token: dict[str, Any], request: rfc6749.OAuth2Request) -> None:
        """Tokens are stored as they are generated (:meth:`_generate`)."""

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def create_json_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("oauth signal %s", name)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        named = dict(headers)
        if status == 302 and "Location" in named:
            return RedirectResponse(named["Location"], status_code=302)
        content = body if isinstance(body, dict) else {}
        named.pop("Content-Type", None)
        named.setdefault("Cache-Control", "no-store")
        return JSONResponse(content, status_code=status, headers=named)

    def _generate(
        self,
        grant_type: str,
        client: Client,
        user: Grantee | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        grantee = user or Grantee(subject=f"app:{client.get_client_id()}", patient_id=None, family="")
        family = grantee.family or digest(f"{client.get_client_id()}:{time.time_ns()}")
        refresh = (include_refresh_token and "offline_access" in split_scopes(scope)) or (
            include_refresh_token and "online_access" in split_scopes(scope)
        )
        return self.apps.issue(
            client_id=client.get_client_id(),
            patient_id=grantee.patient_id,
            subject=grantee.subject,
            scope=scope or "",
            family=family,
            refresh=refresh,
            until=grantee.until,
        )

    # -- what the routes call ----------------------------------------------------------------

    def consent_request(self, request: OAuthRequest, principal: Principal) -> grants.AuthorizationCodeGrant:
        """Validate an authorization request before the consent screen.

        Raises:
            OAuth2Error: the request is not acceptable (``redirect_uri`` on the error is set
                only once the app's redirect URI is known to be registered).
        """
        grant = self.get_consent_grant(request, end_user=principal)
        data = request.payload.data
        if data.get("code_challenge_method") != "S256" or not data.get("code_challenge"):
            raise InvalidRequestError(
                description="PKCE is required: send code_challenge with code_challenge_method=S256.",
                redirect_uri=data.get("redirect_uri") or grant.client.get_default_redirect_uri(),
                state=data.get("state"),
            )
        audience = data.get("aud")
        if audience is not None and audience.rstrip("/") != self.base_url:
            raise InvalidRequestError(
                description=f"aud must be this FHIR server's base URL, {self.base_url}.",
                redirect_uri=data.get("redirect_uri") or grant.client.get_default_redirect_uri(),
                state=data.get("state"),
            )
        return grant

    def answer(
        self,
        request: OAuthRequest,
        principal: Principal,
        scope: str | None,
        until: datetime | None = None,
    ) -> Response:
        """Send the patient's answer to the app: a code for ``scope`` (granted until ``until``), or ``access_denied`` (None)."""
        grant = self.consent_request(request, principal)
        redirect_uri = grant.validate_authorization_request()
        if scope is None:
            return self.handle_response(*grant.create_authorization_response(redirect_uri, None))
        request.scope = scope
        user = Grantee(subject=principal.subject, patient_id=principal.patient_id, family="", until=until)
        return self.handle_response(*grant.create_authorization_response(redirect_uri, user))

    def error_response(self, request: OAuthRequest, error: OAuth2Error) -> Response:
        """Answer an OAuth error: JSON with its status (or the redirect authlib chose)."""
        response: Response = self.handle_error_response(request, error)
        return response


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012
    AUTHORIZATION_CODE_LENGTH = 43

    def save_authorization_code(self, code: str, request: OAuthRequest) -> None:
        user: Grantee = request.user
        data = request.payload.data
        self.server.apps.new_code(
            code,
            client_id=request.client.get_client_id(),
            patient_id=user.patient_id,
            subject=user.subject,
            redirect_uri=data.get("redirect_uri") or request.client.get_default_redirect_uri() or "",
            scope=request.scope,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            nonce=data.get("nonce"),
            grant_until=user.until,
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = self.server.apps.code(code, client.get_client_id())
        return Code(found) if found is not None else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """A code is marked used, not deleted: presenting it again revokes what it gave (a replay)."""

    def authenticate_user(self, authorization_code: Code) -> Grantee | None:
        code = authorization_code.code
        if not self.server.apps.use_code(code):
            return None
        return Grantee(
            subject=code.subject, patient_id=code.patient_id, family=code.code_hash, until=code.grant_until
        )

    def get_authorization_code_challenge(self, authorization_code: Code) -> str | None:  # used by PKCE
        return authorization_code.code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: Code) -> str | None:
        return authorization_code.code.code_challenge_method


class _OpenID(OpenIDCode):  # type: ignore[misc]
    """OpenID Connect on the code flow (SMART ``openid fhirUser``): an ID token naming the patient.

    Signed RS256 with the server's key (:func:`id_token_key`, published at ``/auth/jwks``);
    ``sub`` is the patient's subject, ``fhirUser`` the URL of their Patient resource.
    """

    def __init__(self, server: SmartServer) -> None:
        super().__init__(require_nonce=False)
        self._server = server

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self._server.id_token_key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": _root(self._server.base_url), "aud": [client.get_client_id()]}

    def get_encode_header(self, client: Client) -> dict[str, Any]:
        return {"alg": "RS256", "kid": self._server.id_token_key.kid}

    def exists_nonce(self, nonce: str, request: OAuthRequest) -> bool:
        return False  # a nonce is the app's to check in the ID token; codes are single-use here

    def generate_user_info(self, user: Grantee, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.subject}
        if "fhirUser" in split_scopes(scope) and user.patient_id is not None:
            info["fhirUser"] = f"{self._server.base_url}/Patient/{user.patient_id}"
        return info


def id_token_key(key_dir: Path) -> RSAKey:
    """The server's RSA key for ID tokens: ``<key dir>/smart-id-token.jwk`` (0600), made on first use."""
    path = key_dir / "smart-id-token.jwk"
    if not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        made = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it at the same moment: read theirs
        else:
            with os.fdopen(descriptor, "w", encoding="ascii") as out:
                out.write(json.dumps(made.as_dict(private=True)))
    return RSAKey.import_key(json.loads(path.read_text("ascii")))


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        found = self.server.apps.token(refresh_token, kind="refresh")
        return Token(found, self.server.clock()) if found is not None else None

    def authenticate_user(self, refresh_token: Token) -> Grantee:
        token = refresh_token.token
        return Grantee(
            subject=token.subject, patient_id=token.patient_id, family=token.family, until=token.grant_until
        )

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """The used refresh token is revoked (rotation); the new one replaces it."""
        self.server.apps.revoke_one(refresh_token.token)


class _BackendGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [JWTBearerClientAssertion.CLIENT_AUTH_METHOD]  # noqa: RUF012


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` (RFC 7523) for backend services: RS384 or ES384 with the registered JWK Set.

    A ``jti`` is accepted once while its assertion could verify, across every process serving
    the same store (:meth:`AppService.take_assertion`).
    """

    def __init__(self, server: SmartServer) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self._server = server

    def get_audiences(self) -> list[str]:
        return [f"{_root(self._server.base_url)}/auth/token"]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify the assertion with the algorithms SMART backend services use (RS384, ES384) only."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as error:
            raise InvalidClientError(description=error.description) from error
        self.verify_claims(token.claims)
        claims: dict[str, Any] = token.claims
        return claims

    def resolve_client_public_key(self, client: Client) -> KeySet:
        return KeySet.import_key_set(json.loads(client.app.jwks or '{"keys": []}'))

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        # Kept until the assertion could no longer verify: its exp plus the leeway allowed.
        exp = claims.get("exp")
        seconds = float(exp) if isinstance(exp, int | float) else time.time() + 300
        expires = datetime.fromtimestamp(seconds + 60, UTC)
        return self._server.apps.take_assertion(str(claims.get("sub")), str(jti), expires)


class _Revocation(rfc7009.RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        found = self.server.apps.any_token(token_string)
        return Token(found, self.server.clock()) if found is not None else None

    def revoke_token(self, token: Token, request: OAuthRequest) -> None:
        # Revoking a refresh token ends the whole grant (RFC 7009 §2.1), an access token only itself.
        if token.token.kind == "refresh":
            self.server.apps.revoke(token.token, whole_family=True)
        else:
            self.server.apps.revoke_one(token.token)


class _Introspection(rfc7662.IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        found = self.server.apps.any_token(token_string)
        return Token(found, self.server.clock()) if found is not None else None

    def check_permission(self, token: Token, client: Client, request: OAuthRequest) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        stored = token.token
        payload: dict[str, Any] = {
            "active": True,
            "client_id": stored.client_id,
            "scope": stored.scope,
            "token_type": "Bearer" if stored.kind == "access" else "refresh_token",
            "exp": int(stored.expires_at.timestamp()),
            "iat": int(stored.issued_at.timestamp()),
            "sub": stored.subject,
            "iss": _root(self.server.base_url),
        }
        if stored.patient_id is not None:
            payload["patient"] = stored.patient_id
        return payload


def _root(base_url: str) -> str:
    """The server's root URL, from the FHIR base URL (``…/fhir``)."""
    return base_url.removesuffix("/fhir")


def server_of(request: Request) -> SmartServer:
    """The authorization server of the running app (built by :func:`carnet.web.mount_web`)."""
    server: SmartServer = request.app.state.smart
    return server


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def _endpoint(request: Request, name: str | None) -> Response:
    """Run one of authlib's token-side endpoints in a worker thread; never a 500."""
    server = server_of(request)
    try:
        oauth = await read_request(request)
    except OAuth2Error as error:  # plain HTTP: authlib's insecure_transport
        return _oauth_error(error.status_code, error.error, error.get_error_description())
    except Exception:  # a body that is not a form
        return _oauth_error(
            400, "invalid_request", "Send the parameters as application/x-www-form-urlencoded."
        )

    def run() -> Response:
        try:
            if name is None:
                response: Response = server.create_token_response(oauth)
            else:
                response = server.create_endpoint_response(name, oauth)
            return response
        except OAuth2Error as error:
            return server.error_response(oauth, error)
        except CarnetError as error:
            return _oauth_error(400, "invalid_request", error.message)

    return await offload(run)


@router.get("/auth/jwks")
def jwks_endpoint(request: Request) -> Response:
    """The public key of the ID tokens (SMART ``jwks_uri``)."""
    key = server_of(request).id_token_key
    return JSONResponse({"keys": [key.as_dict(private=False)]})


@router.post("/auth/token")
async def token_endpoint(request: Request) -> Response:
    """The token endpoint: authorization_code + PKCE, refresh_token, client_credentials."""
    return await _endpoint(request, None)


@router.post("/auth/revoke")
async def revoke_endpoint(request: Request) -> Response:
    """RFC 7009: revoke an access or refresh token."""
    return await _endpoint(request, "revocation")


@router.post("/auth/introspect")
async def introspect_endpoint(request: Request) -> Response:
    """RFC 7662: is this token active, for whom, with which scopes."""
    return await _endpoint(request, "introspection")


def authorize_url(request: Request) -> str:
    """The path and query of the current authorization request (to come back to after signing in)."""
    query = urlencode(list(request.query_params.multi_items()))
    return f"/auth/authorize?{query}" if query else "/auth/authorize"
