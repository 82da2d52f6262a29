"""Use cases of the apps connected by SMART on FHIR: the registry, codes, tokens and the patient's grants.

« Applications et objets connectés »: an operator registers an app (``carnet apps add``) with
its redirect URIs, whether it is public, confidential or a backend service, and the scopes it
may ever ask for. A patient grants an app, on the consent screen, some of the scopes it asked
for, for a time; the grant is a Consent of the record (kind ``app-grant``,
:mod:`carnet.domain.consent`), so it travels with the record and the policy reads it on every
call: withdrawing it stops the app at once, whatever tokens it holds.

Codes and tokens are random 256-bit strings, stored only as their SHA-256; an access token
lives :data:`ACCESS_LIFETIME`, a refresh token :data:`REFRESH_LIFETIME` (never past the grant).
The OAuth 2 protocol itself (PKCE, client authentication, the token, revocation and
introspection endpoints) is authlib's, in :mod:`carnet.web.smart`; this module keeps state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from carnet.domain.consent import ConsentKind, consent_app, consent_for, consent_kind, consent_scopes
from carnet.domain.errors import AppAccessEnded, InvalidRequest, NotFound, Unauthenticated
from carnet.domain.principal import ActorKind, Principal
from carnet.domain.smart import CONTEXT_SCOPES, narrow, parse_scopes, split_scopes
from carnet.services.record_types import Stored
from carnet.services.records import RecordCall, RecordService

__all__ = [
    "ACCESS_LIFETIME",
    "CODE_LIFETIME",
    "REFRESH_LIFETIME",
    "AppClient",
    "AppCode",
    "AppKind",
    "AppService",
    "AppSession",
    "AppToken",
    "ConnectedApp",
]

ACCESS_LIFETIME = timedelta(hours=1)
REFRESH_LIFETIME = timedelta(days=90)
CODE_LIFETIME = timedelta(minutes=2)
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{3,64}")


class AppKind(StrEnum):
    """How an app authenticates: public (PKCE only), confidential (a secret), backend (a signed JWT)."""

    PUBLIC = "public"
    CONFIDENTIAL = "confidential"
    BACKEND = "backend"


@dataclass(frozen=True, slots=True, kw_only=True)
class AppClient:
    """A registered app. ``acts_as`` is, for a backend service, ``feed:<feed id>`` or ``researcher``."""

    client_id: str
    name: str
    kind: AppKind
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    secret_hash: str | None = None
    jwks: str | None = None
    acts_as: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCode:
    """An authorization code, by hash: what the patient granted, to whom, with the PKCE challenge."""

    code_hash: str
    client_id: str
    patient_id: str
    subject: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: datetime
    used_at: datetime | None = None
    #: The end of the patient's grant (None: until revoked); the tokens it gives never outlive it.
    grant_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppToken:
    """An access or refresh token, by hash. ``family`` ties the tokens of one grant of one code."""

    token_hash: str
    kind: str
    family: str
    client_id: str
    patient_id: str | None
    subject: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    #: The end of the patient's grant (None: until revoked); tokens issued on refresh keep it.
    grant_until: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        """Return True if the token is neither revoked nor expired at ``now``."""
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectedApp:
    """An app the patient granted: the app (None if it left the registry), its scopes, its end."""

    client_id: str
    client: AppClient | None
    consent_id: str
    scopes: tuple[str, ...]
    granted: str | None
    until: str | None


class AppSession(Protocol):
    """The store's part for apps (``carnet.store.apps``)."""

    def add_app_client(self, client: AppClient) -> None: ...
    def app_client(self, client_id: str) -> AppClient | None: ...
    def app_clients(self) -> list[AppClient]: ...
    def remove_app_client(self, client_id: str) -> bool: ...
    def add_app_code(self, code: AppCode) -> None: ...
    def app_code(self, code_hash: str) -> AppCode | None: ...
    def use_app_code(self, code_hash: str, at: datetime) -> bool: ...
    def add_app_token(self, token: AppToken) -> None: ...
    def app_token(self, token_hash: str) -> AppToken | None: ...
    def revoke_app_tokens(
        self,
        at: datetime,
        *,
        family: str | None = None,
        client_id: str | None = None,
        patient_id: str | None = None,
        token_hash: str | None = None,
    ) -> int: ...
    def take_app_assertion(self, jti_hash: str, expires_at: datetime, now: datetime) -> bool: ...


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a code, token or client secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AppService:
    """The app registry, the codes and tokens, and the patient's grants (one transaction each)."""

    def __init__(self, *, records: RecordService, clock: Callable[[], datetime]) -> None:
        self._records = records
        self._store = records.store
        self._clock = clock

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[AppSession]:
        with self._store.session(write=write) as session:
            yield cast(AppSession, session)

    # -- the registry ---------------------------------------------------------------------------

    def register(
        self,
        *,
        name: str,
        kind: AppKind,
        redirect_uris: tuple[str, ...] = (),
        scopes: tuple[str, ...],
        client_id: str | None = None,
        jwks: dict[str, Any] | None = None,
        acts_as: str | None = None,
        loopback_http: bool = False,
    ) -> tuple[AppClient, str | None]:
        """Register an app; return it and, for a confidential app, its secret (shown once).

        ``loopback_http`` lets a redirect URI be plain ``http`` on 127.0.0.1 or localhost
        (development, native apps); any other redirect URI must be ``https``.

        Raises:
            InvalidRequest: a bad name, client id, redirect URI, scope, key set or role.
        """
        if not _NAME.fullmatch(name):
            raise InvalidRequest("An app's name is 1 to 200 printable characters.")
        client_id = client_id or secrets.token_urlsafe(12)
        if not _CLIENT_ID.fullmatch(client_id):
            raise InvalidRequest("A client id is 3 to 64 letters, digits, dots, dashes or underscores.")
        wanted = tuple(dict.fromkeys(scopes))
        if not wanted:
            raise InvalidRequest(
                "Name the scopes the app may ask for (--scope), e.g. patient/Observation.cs."
            )
        parsed = parse_scopes(wanted)
        if kind is AppKind.BACKEND:
            if jwks is None or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
                raise InvalidRequest("A backend service authenticates with a signed JWT: give its JWK Set.")
            if any(s.context != "system" for s in parsed) or any(s in CONTEXT_SCOPES for s in wanted):
                raise InvalidRequest("A backend service asks for system/ scopes only.")
            if acts_as is None or not re.fullmatch(
                r"study:[A-Za-z0-9.-]{1,48}|feed:[A-Za-z0-9._-]{1,64}", acts_as
            ):
                raise InvalidRequest(
                    "A backend service acts for one study, 'study:<study id>' (a research pipeline), "
                    "or as a registered feed, 'feed:<feed id>'."
                )
            if redirect_uris:
                raise InvalidRequest("A backend service has no redirect URI.")
        else:
            if any(s.context != "patient" for s in parsed):
                raise InvalidRequest(
                    "A patient's app asks for patient/ scopes (and openid, launch/patient…)."
                )
            if not redirect_uris:
                raise InvalidRequest("An app the patient launches needs at least one redirect URI.")
            for uri in redirect_uris:
                _check_redirect_uri(uri, loopback_http=loopback_http)
            if jwks is not None or acts_as is not None:
                raise InvalidRequest("Only a backend service has a JWK Set and a role.")
        secret = secrets.token_urlsafe(32) if kind is AppKind.CONFIDENTIAL else None
        client = AppClient(
            client_id=client_id,
            name=name,
            kind=kind,
            redirect_uris=tuple(redirect_uris),
            scopes=wanted,
            created_at=self._clock(),
            secret_hash=digest(secret) if secret else None,
            jwks=json.dumps(jwks) if jwks is not None else None,
            acts_as=acts_as,
        )
        with self._session(write=True) as session:
            if session.app_client(client_id) is not None:
                raise InvalidRequest(f"The client id {client_id!r} is taken; choose another.")
            session.add_app_client(client)
        return client, secret

    def clients(self) -> list[AppClient]:
        """Return every registered app."""
        with self._session() as session:
            return session.app_clients()

    def client(self, client_id: str) -> AppClient | None:
        """Return one registered app, or None."""
        with self._session() as session:
            return session.app_client(client_id)

    def remove(self, client_id: str) -> None:
        """Remove an app from the registry and revoke every token it holds.

        Raises:
            NotFound: no such app.
        """
        with self._session(write=True) as session:
            if not session.remove_app_client(client_id):
                raise NotFound(f"No app {client_id!r} is registered (carnet apps list).")
            session.revoke_app_tokens(self._clock(), client_id=client_id)

    @staticmethod
    def check_secret(client: AppClient, secret: str) -> bool:
        """Tell whether ``secret`` is the confidential app's secret (compared in constant time)."""
        return client.secret_hash is not None and hmac.compare_digest(client.secret_hash, digest(secret))

    # -- codes and tokens -----------------------------------------------------------------------

    def new_code(self, code: str, **fields: Any) -> None:
        """Store an authorization code (by hash) with what the patient granted."""
        now = self._clock()
        with self._session(write=True) as session:
            session.add_app_code(AppCode(code_hash=digest(code), expires_at=now + CODE_LIFETIME, **fields))

    def code(self, code: str, client_id: str) -> AppCode | None:
        """Return a live, unused code of this app, or None (unknown, expired, used, another app's).

        A code presented again after its use is a replay: every token it gave is revoked
        (RFC 6749 §4.1.2), the attempt is journaled on the patient's record, and None is returned.
        """
        now = self._clock()
        with self._session(write=True) as session:
            found = session.app_code(digest(code))
            if found is None or found.client_id != client_id:
                return None
            replayed = found.used_at is not None
            if replayed:
                session.revoke_app_tokens(now, family=found.code_hash)
            elif now < found.expires_at:
                return found
        if replayed:
            self.journal_refusal(client_id, found.patient_id, "$token", "app-code-replayed")
        return None

    def use_code(self, code: AppCode) -> bool:
        """Mark a code used; return False if it was used meanwhile (a replay racing the first use)."""
        with self._session(write=True) as session:
            return session.use_app_code(code.code_hash, self._clock())

    def issue(
        self,
        *,
        client_id: str,
        patient_id: str | None,
        subject: str,
        scope: str,
        family: str,
        refresh: bool,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """Issue an access token (and a refresh token when ``refresh``); return the token response.

        ``until`` (the end of the patient's grant) caps both tokens' lifetimes, and is kept on
        them so that a refresh never reaches past it.
        """
        now = self._clock()
        access = secrets.token_urlsafe(32)
        access_end = min(now + ACCESS_LIFETIME, until) if until else now + ACCESS_LIFETIME
        rows = [
            AppToken(
                token_hash=digest(access),
                kind="access",
                family=family,
                client_id=client_id,
                patient_id=patient_id,
                subject=subject,
                scope=scope,
                issued_at=now,
                expires_at=access_end,
                grant_until=until,
            )
        ]
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": max(1, int((access_end - now).total_seconds())),
            "scope": scope,
        }
        if refresh:
            token = secrets.token_urlsafe(32)
            end = min(now + REFRESH_LIFETIME, until) if until else now + REFRESH_LIFETIME
            rows.append(
                AppToken(
                    token_hash=digest(token),
                    kind="refresh",
                    family=family,
                    client_id=client_id,
                    patient_id=patient_id,
                    subject=subject,
                    scope=scope,
                    issued_at=now,
                    expires_at=end,
                    grant_until=until,
                )
            )
            response["refresh_token"] = token
        if patient_id is not None:
            response["patient"] = patient_id
        with self._session(write=True) as session:
            for row in rows:
                session.add_app_token(row)
        return response

    def token(self, raw: str, *, kind: str | None = None) -> AppToken | None:
        """Return the live token ``raw`` (of ``kind`` if given), or None.

        A refresh token presented after it was revoked (the patient revoked the app, or the
        token was rotated and is replayed) is journaled on its record as a refused access.
        """
        with self._session() as session:
            found = session.app_token(digest(raw))
        if found is None or (kind is not None and found.kind != kind):
            return None
        if not found.is_live(self._clock()):
            if found.revoked_at is not None and found.kind == "refresh" and found.patient_id is not None:
                self.journal_refusal(found.client_id, found.patient_id, "$token", "app-token-revoked")
            return None
        return found

    def journal_refusal(
        self, client_id: str, patient_id: str, interaction: str, reason: str, resource_type: str = "Consent"
    ) -> None:
        """Journal, on the record concerned, an app's refused attempt (a replayed code, a revoked token).

        The entry is the app's (actor kind ``app``), decision ``deny`` with ``reason``, so the
        patient sees it in the access history. A record that no longer exists is left alone.
        """
        client = self.client(client_id)
        principal = Principal(
            kind=ActorKind.PATIENT,
            subject=f"app:{client_id}",
            patient_id=patient_id,
            display=client.name if client is not None else client_id,
            app_id=client_id,
        )
        with self._records.call(principal, interaction, resource_type, write=True) as call:
            trail = self._records.gate.trail_of(call.context, patient_id)
            if trail is not None:
                trail.denied_reasons.add(reason)

    def any_token(self, raw: str) -> AppToken | None:
        """Return the token ``raw`` whatever its state (revocation and introspection look it up)."""
        with self._session() as session:
            return session.app_token(digest(raw))

    def revoke(self, token: AppToken, *, whole_family: bool = False) -> None:
        """Revoke a token; with ``whole_family``, every token of its grant (a refresh token's revocation)."""
        with self._session(write=True) as session:
            if whole_family:
                session.revoke_app_tokens(self._clock(), family=token.family)
            else:
                session.revoke_app_tokens(self._clock(), token_hash=token.token_hash)

    def revoke_one(self, token: AppToken) -> None:
        """Revoke one token (a used refresh token, an access token the app gives up)."""
        self.revoke(token)

    def principal(self, raw: str) -> Principal:
        """Return the principal a live access token acts as.

        A patient's app acts as its patient, narrowed to its scopes (the policy's
        ``app-within-grant`` then checks the patient's grant on every call); a backend service
        acts as the feed (by its id in the feed registry, which gives its classes and may pause
        it), or as a researcher bound to the one study it was registered for (``study:<id>``),
        within its token's ``system/`` scopes (``carnet.services.research_export`` checks both).

        Raises:
            Unauthenticated: unknown token, or an app no longer registered.
            AppAccessEnded: a token revoked or expired, or whose grant ended (the caller journals
                the attempt on the record: :meth:`journal_refusal`).
        """
        now = self._clock()
        with self._session() as session:
            found = session.app_token(digest(raw))
            client = session.app_client(found.client_id) if found is not None else None
        if found is None or found.kind != "access" or client is None:
            raise Unauthenticated("The bearer token is not one this server issued; get a new one.")
        if found.revoked_at is not None:
            raise AppAccessEnded(
                "The bearer token was revoked; the app must be authorised again.",
                reason="app-token-revoked",
                client_id=client.client_id,
                patient_id=found.patient_id,
            )
        if now >= found.expires_at:
            ended = found.grant_until is not None and now >= found.grant_until
            raise AppAccessEnded(
                "The patient's grant to this app has ended; the app must be authorised again."
                if ended
                else "The bearer token has expired; get a new one.",
                reason="app-not-granted" if ended else "app-token-expired",
                client_id=client.client_id,
                patient_id=found.patient_id,
            )
        subject = f"app:{client.client_id}"
        if client.kind is AppKind.BACKEND:
            role = client.acts_as or ""
            if role.startswith("feed:"):
                return Principal(kind=ActorKind.FEED, subject=subject, display=client.name, feed_id=role[5:])
            if not role.startswith("study:"):
                raise Unauthenticated("This backend service is bound to no study; register it again.")
            return Principal(
                kind=ActorKind.RESEARCHER,
                subject=subject,
                display=client.name,
                study_id=role[6:],
                app_scopes=frozenset(split_scopes(found.scope)),
            )
        return Principal(
            kind=ActorKind.PATIENT,
            subject=subject,
            patient_id=found.patient_id,
            display=client.name,
            app_id=client.client_id,
            app_scopes=frozenset(split_scopes(found.scope)),
        )

    # -- the patient's grants -------------------------------------------------------------------

    def grant(
        self, principal: Principal, client_id: str, scopes: tuple[str, ...], until: datetime | None
    ) -> Stored:
        """Grant an app some scopes on the patient's own record, until ``until``; return the Consent.

        Only scopes the app is registered for are granted; a previous grant to the same app is
        withdrawn in the same transaction (one grant per app), and the tokens it gave are revoked.
        Journaled as ``$grant-app``.

        Raises:
            InvalidRequest: no such app, a backend service, or nothing left to grant.
            AccessDenied, NotFound: not the patient's own record.
        """
        client = self.client(client_id)
        if client is None or client.kind is AppKind.BACKEND:
            raise InvalidRequest(f"No app {client_id!r} is registered for patients.")
        granted = narrow(scopes, client.scopes)
        if not parse_scopes(granted):
            raise InvalidRequest("Choose at least one kind of data the app may read or write.")
        patient_id = principal.patient_id
        if patient_id is None:
            raise InvalidRequest("Open your record before you connect an app.")
        with self._records.call(principal, "$grant-app", "Consent", write=True) as call:
            previous = _grants_to(call, patient_id, client_id)
            for existing in previous:
                _withdraw(call, existing)
            if previous:
                # The tokens of the grant withdrawn end with it; the new grant gets its own.
                tokens = cast(AppSession, call.context.session)
                tokens.revoke_app_tokens(self._clock(), client_id=client_id, patient_id=patient_id)
            consent = consent_for(
                ConsentKind.APP_GRANT,
                patient_id,
                until=until,
                now=self._clock(),
                app_id=client_id,
                scopes=granted,
            )
            return call.writes.create(consent).stored

    def revoke_app(self, principal: Principal, client_id: str) -> int:
        """Withdraw every grant the patient gave an app and revoke its tokens; return the grants withdrawn.

        Effective at once: the policy reads the grants on every call. Journaled as ``$revoke-app``.

        Raises:
            NotFound: the app has no grant on this record.
        """
        patient_id = principal.patient_id
        if patient_id is None:
            raise NotFound("No app is connected to this record.")
        with self._records.call(principal, "$revoke-app", "Consent", write=True) as call:
            current = _grants_to(call, patient_id, client_id)
            if not current:
                raise NotFound(f"The app {client_id!r} has no access to this record.")
            for existing in current:
                _withdraw(call, existing)
            tokens = cast(AppSession, call.context.session)
            tokens.revoke_app_tokens(self._clock(), client_id=client_id, patient_id=patient_id)
            return len(current)

    def end_grant(self, client_id: str, patient_id: str) -> int:
        """Revoke every token of an app on a record whose grant no longer holds; return how many.

        Called when the policy finds the grant gone (its period ended, or it was withdrawn
        elsewhere than in « Mes applications »): its refresh tokens must not give new access tokens.
        """
        with self._session(write=True) as session:
            return session.revoke_app_tokens(self._clock(), client_id=client_id, patient_id=patient_id)

    def take_assertion(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Take a backend service's client assertion id once; return False if it was taken before.

        Shared by every process through the store (``private_key_jwt`` replay protection,
        RFC 7523 §3): the row is kept until ``expires_at``, when the assertion could no longer verify.
        """
        with self._session(write=True) as session:
            return session.take_app_assertion(digest(f"{client_id}\x00{jti}"), expires_at, self._clock())

    def connected(self, principal: Principal) -> list[ConnectedApp]:
        """Return the apps the patient granted, with what and until when (journaled as a Consent search)."""
        patient_id = principal.patient_id
        if patient_id is None:
            return []
        with self._records.call(principal, "search-type", "Consent") as call:
            found = _grants_to(call, patient_id, None)
        registry = {client.client_id: client for client in self.clients()}
        out = []
        for stored in found:
            resource = stored.resource or {}
            client_id = consent_app(resource) or ""
            period = (resource.get("provision") or {}).get("period") or {}
            out.append(
                ConnectedApp(
                    client_id=client_id,
                    client=registry.get(client_id),
                    consent_id=stored.resource_id,
                    scopes=consent_scopes(resource),
                    granted=resource.get("dateTime"),
                    until=period.get("end"),
                )
            )
        return out


def _grants_to(call: RecordCall, patient_id: str, client_id: str | None) -> list[Stored]:
    """The active app-grant Consents of a record (to one app, or to all)."""
    found = call.search.search("Consent", [("patient", f"Patient/{patient_id}"), ("_count", "1000")])
    out = []
    for stored in found.entries:
        resource = stored.resource or {}
        if resource.get("status") != "active" or consent_kind(resource) is not ConsentKind.APP_GRANT:
            continue
        if client_id is None or consent_app(resource) == client_id:
            out.append(stored)
    return out


def _withdraw(call: RecordCall, current: Stored) -> None:
    resource = current.resource or {}
    call.writes.update(
        "Consent", current.resource_id, {**resource, "status": "inactive"}, if_match=current.etag
    )


def _check_redirect_uri(uri: str, *, loopback_http: bool) -> None:
    """Refuse a redirect URI that is not absolute https (or loopback http when allowed), or has a fragment.

    Raises:
        InvalidRequest: the URI is not acceptable.
    """
    parts = urlsplit(uri)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.fragment or not parts.netloc:
        raise InvalidRequest(f"The redirect URI {uri[:80]!r} must be absolute and have no fragment.")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback and loopback_http):
        return
    raise InvalidRequest(
        f"The redirect URI {uri[:80]!r} must use https (http only on the loopback, in development)."
    )
