"""Signing in professionals through the configured OpenID provider (Pro Santé Connect or another).

==============================  ===================================================================
``GET /login/oidc``             to the provider (code flow, PKCE, nonce, state, ``acr_values``)
``GET /login/oidc/callback``    the provider's answer: verified (``carnet.auth.oidc``), journaled,
                                then signed in — or the structure to act for is asked first
``POST /login/structure``       the structure chosen (``choice``: its index), then signed in
``GET /oidc/jwks.json``         Carnet's public encryption key (the provider encrypts ID tokens to it)
==============================  ===================================================================

Between the redirect and the callback, the browser holds the pending sign-in (state, nonce,
PKCE verifier, start time) in the cookie ``carnet_oidc``: signed, ``HttpOnly``,
``SameSite=Lax`` (the callback is a cross-site navigation, which a Strict cookie would miss),
path ``/login/oidc``, deleted by the callback so an answer is never used twice. Every answer,
accepted or refused, is an entry of the journal (``carnet.services.sign_ins``); a refusal is a
401 page naming what failed, never a 500.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from carnet.auth.claims import SignedInProfessional, Structure, parse_mapping, professional
from carnet.auth.oidc import PendingSignIn, RelyingParty
from carnet.domain.errors import CarnetError, IdentityProviderUnavailable, SignInRefused
from carnet.offload import offload
from carnet.web.csrf import checked_form
from carnet.web.pages import portal, render
from carnet.web.session import login, remember_provider_session

router = APIRouter(include_in_schema=False)

PENDING_COOKIE = "carnet_oidc"
PENDING_PATH = "/login/oidc"
CHOICE_KEY = "oidc_choice"
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


def _relying_party(request: Request) -> RelyingParty | None:
    party: RelyingParty | None = portal(request).sign_in
    return party


def _serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(portal(request).session_secret, salt="oidc-pending")


def _refused(request: Request, exc: CarnetError, *, status: int) -> Response:
    """The sign-in page with the reason, journaled."""
    reason = exc.reason if isinstance(exc, SignInRefused) else "provider-unavailable"
    portal(request).services.sign_ins.record(
        actor_kind="professional", actor_id="unknown", accepted=False, reason=f"oidc:{reason}", outcome=reason
    )
    state = portal(request)
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
    response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH)
    return response


@router.get("/login/oidc")
def start(request: Request) -> Response:
    """Send the browser to the provider's sign-in page."""
    party = _relying_party(request)
    if party is None:
        return RedirectResponse("/login", status_code=303)
    try:
        url, pending = party.start(now=time.time())
    except IdentityProviderUnavailable as exc:
        return _refused(request, exc, status=503)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        PENDING_COOKIE,
        _serializer(request).dumps(pending.as_dict()),
        max_age=party.client.pending_seconds,
        path=PENDING_PATH,
        httponly=True,
        samesite="lax",
        secure=not portal(request).settings.development_issuer_enabled,
    )
    return response


def _pending(request: Request) -> PendingSignIn:
    raw = request.cookies.get(PENDING_COOKIE)
    try:
        data = _serializer(request).loads(raw) if raw else None
    except BadSignature:
        data = None
    return PendingSignIn.from_dict(data)


def _finish(request: Request) -> Response:
    """Verify the provider's answer and sign in (blocking: HTTP calls to the provider)."""
    party = _relying_party(request)
    if party is None:
        return RedirectResponse("/login", status_code=303)
    params = request.query_params
    try:
        if params.get("error"):
            raise SignInRefused(
                f"The identity provider answered {params.get('error', '')[:60]!r}.", reason="provider-error"
            )
        pending = _pending(request)
        claims, id_token = party.finish_signed(
            code=params.get("code", ""), state=params.get("state", ""), pending=pending, now=time.time()
        )
        signed_in = professional(claims, parse_mapping(portal(request).settings.oidc_claims))
    except SignInRefused as exc:
        return _refused(request, exc, status=401)
    except IdentityProviderUnavailable as exc:
        return _refused(request, exc, status=503)
    response: Response
    if len(signed_in.structures) > 1:
        request.session[CHOICE_KEY] = {
            "id_token": id_token,
            "claims": signed_in.claims,
            "structures": [
                {
                    "identifier": s.identifier,
                    "name": s.name,
                    "profession": s.profession,
                    "specialty": s.specialty,
                }
                for s in signed_in.structures
            ],
        }
        response = render(request, "login_structure.html", {"structures": signed_in.structures})
    else:
        only = signed_in.structures[0] if signed_in.structures else None
        response = _signed_in(request, signed_in, only, id_token)
    response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH)
    return response


def _signed_in(
    request: Request, who: SignedInProfessional, structure: Structure | None, id_token: str
) -> Response:
    claims = who.principal_claims(structure)
    portal(request).services.sign_ins.record(
        actor_kind="professional",
        actor_id=str(claims["idnps"]),
        actor_display=str(claims.get("name")),
        actor_profession=str(claims.get("profession")),
        actor_structure=structure.identifier if structure else None,
        actor_structure_name=structure.name if structure else None,
        accepted=True,
        reason="oidc:" + (portal(request).settings.oidc_issuer or ""),
    )
    login(request, claims, now=datetime.now(UTC))
    remember_provider_session(request, "pro", id_token)
    # A page of ours moves on to the portal: after a cross-site redirect chain, a browser would
    # not send the SameSite=Strict session cookie on a redirect (carnet.web.session_cookie).
    return render(request, "login_done.html", {"target": "/pro/"})


@router.get("/login/oidc/callback")
async def callback(request: Request) -> Response:
    """Finish a sign-in started at ``/login/oidc``."""
    return await offload(_finish, request)


@router.post("/login/structure")
async def choose_structure(request: Request) -> Response:
    """Sign in for the structure chosen among those the provider listed."""
    form = await checked_form(request)
    return await offload(_choose, request, form)


def _choose(request: Request, form: Any) -> Response:
    pending = request.session.get(CHOICE_KEY)
    raw = form.get("choice")
    if not isinstance(pending, dict):
        return RedirectResponse("/login", status_code=303)
    try:
        index = int(raw) if isinstance(raw, str) else -1
        structures = [Structure(**s) for s in pending["structures"]]
        chosen = structures[index] if 0 <= index < len(structures) else None
        who = SignedInProfessional(claims=dict(pending["claims"]), structures=tuple(structures))
    except (TypeError, KeyError, ValueError):
        return RedirectResponse("/login", status_code=303)
    if chosen is None:
        return render(
            request,
            "login_structure.html",
            {"structures": structures, "error": "Choose a structure."},
            status=422,
        )
    request.session.pop(CHOICE_KEY, None)
    return _signed_in(request, who, chosen, str(pending.get("id_token") or ""))


@router.get("/oidc/jwks.json")
def jwks(request: Request) -> Response:
    """Publish Carnet's public encryption key (the provider encrypts ID tokens to it)."""
    keys = portal(request).sign_in_jwks
    if keys is None:
        return JSONResponse({"keys": []})
    return JSONResponse(keys)
