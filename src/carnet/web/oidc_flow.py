"""The part of an OpenID sign-in that professionals and patients share: start, callback, refusal.

One :class:`ProviderFlow` per provider (``carnet.web.oidc_login``: professionals;
``carnet.web.oidc_patient_login``: patients). Between the redirect and the callback, the browser
holds the pending sign-in (state, nonce, PKCE verifier, start time) in the flow's own cookie:
signed, ``HttpOnly``, ``SameSite=Lax`` (the callback is a cross-site navigation, which a Strict
cookie would miss), limited to the flow's path, deleted by the callback so an answer is never
used twice. Every refusal is a journaled sign-in (``<prefix>:<reason>``) and the sign-in page
saying what failed in plain words — 401, or 503 for an unreachable provider — never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.auth.oidc import PendingSignIn, RelyingParty
from carnet.domain.errors import CarnetError, IdentityProviderUnavailable, SignInRefused
from carnet.web.pages import portal, render

#: What a person reads when a sign-in is refused, by ``SignInRefused.reason`` (message ids).
REASONS = {
    "state": "This sign-in was started in another browser, took too long, or was already used; start again.",
    "provider-error": "The identity provider did not sign you in; start again.",
    "token": "The identity provider did not accept this sign-in code; start again.",
    "signature": "The identity provider's answer does not verify.",
    "unknown-kid": "The identity provider's answer is signed with a key it does not publish.",
    "issuer": "The answer comes from another identity provider.",
    "audience": "The answer was meant for another service.",
    "expired": "The identity provider's answer has expired; start again.",
    "not-yet-valid": "The identity provider's answer is dated in the future; the server's clock may be wrong.",
    "nonce": "The answer belongs to another sign-in; start again.",
    "acr": "Your authentication level is too low: sign in with your CPS card or the e-CPS app.",
    "userinfo": "The identity provider's description of you does not verify.",
    "claims": "The identity provider did not give your national identifier and profession.",
    "provider-unavailable": "The identity provider cannot be reached; try again in a moment.",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """A provider's answer that passed every check: its claims and its signed ID token."""

    party: RelyingParty
    claims: dict[str, Any]
    id_token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderFlow:
    """The code flow with one provider, as the portal runs it (no per-request state)."""

    #: Who signs in there, as the journal names them (``professional``, ``patient``).
    actor_kind: str
    #: The journal's prefix of its sign-in reasons (``oidc``, ``oidc-patient``).
    prefix: str
    cookie: str
    path: str
    salt: str
    #: The relying party of this flow in the running portal (None: not configured).
    party_of: Callable[[Request], RelyingParty | None]

    def _serializer(self, request: Request) -> URLSafeSerializer:
        return URLSafeSerializer(portal(request).session_secret, salt=self.salt)

    def refused(self, request: Request, exc: CarnetError, *, status: int) -> Response:
        """The sign-in page with the reason, journaled; the pending cookie deleted."""
        reason = exc.reason if isinstance(exc, SignInRefused) else "provider-unavailable"
        state = portal(request)
        state.services.sign_ins.record(
            actor_kind=self.actor_kind,
            actor_id="unknown",
            accepted=False,
            reason=f"{self.prefix}:{reason}",
            outcome=reason,
        )
        response = render(
            request,
            "login.html",
            {
                "enabled": False,
                "oidc": state.sign_in is not None,
                "patient_oidc": state.patient_sign_in is not None,
                "patients": [],
                "professionals": [],
                "error": REASONS.get(reason, REASONS["signature"]),
            },
            status=status,
        )
        self.forget(response)
        return response

    def forget(self, response: Response) -> None:
        """Delete the pending sign-in's cookie (an answer is used once)."""
        response.delete_cookie(self.cookie, path=self.path)

    def start(self, request: Request) -> Response:
        """Send the browser to the provider (its sign-in kept in the cookie), or back to /login."""
        party = self.party_of(request)
        if party is None:
            return RedirectResponse("/login", status_code=303)
        try:
            url, pending = party.start(now=time.time())
        except IdentityProviderUnavailable as exc:
            return self.refused(request, exc, status=503)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            self.cookie,
            self._serializer(request).dumps(pending.as_dict()),
            max_age=party.client.pending_seconds,
            path=self.path,
            httponly=True,
            samesite="lax",
            secure=not portal(request).settings.development_issuer_enabled,
        )
        return response

    def verify(self, request: Request) -> Verified | Response:
        """Check the provider's answer on the callback: the verified sign-in, or the refusal page.

        Blocking (HTTP calls to the provider): run it in a worker thread.
        """
        party = self.party_of(request)
        if party is None:
            return RedirectResponse("/login", status_code=303)
        params = request.query_params
        raw = request.cookies.get(self.cookie)
        try:
            if params.get("error"):
                raise SignInRefused(
                    f"The identity provider answered {params.get('error', '')[:60]!r}.",
                    reason="provider-error",
                )
            try:
                data = self._serializer(request).loads(raw) if raw else None
            except BadSignature:
                data = None
            claims, id_token = party.finish_signed(
                code=params.get("code", ""),
                state=params.get("state", ""),
                pending=PendingSignIn.from_dict(data),
                now=time.time(),
            )
        except SignInRefused as exc:
            return self.refused(request, exc, status=401)
        except IdentityProviderUnavailable as exc:
            return self.refused(request, exc, status=503)
        return Verified(party=party, claims=claims, id_token=id_token)
