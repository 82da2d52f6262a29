"""Signing in professionals through the configured OpenID provider (Pro Santé Connect or another).

==============================  ===================================================================
``GET /login/oidc``             to the provider (code flow, PKCE, nonce, state, ``acr_values``)
``GET /login/oidc/callback``    the provider's answer: verified (``carnet.auth.oidc``), journaled,
                                then signed in — or the structure to act for is asked first
``POST /login/structure``       the structure chosen (``choice``: its index), then signed in
``GET /oidc/jwks.json``         Carnet's public encryption key (the provider encrypts ID tokens to it)
==============================  ===================================================================

The redirect, the pending sign-in's cookie (``carnet_oidc``, path ``/login/oidc``), the checks
of the callback and the refusal page are the flow shared with patients
(``carnet.web.oidc_flow``). Every answer, accepted or refused, is an entry of the journal
(``carnet.services.sign_ins``); a refusal is a 401 page naming what failed, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from carnet.auth.claims import SignedInProfessional, Structure, parse_mapping, professional
from carnet.auth.oidc import RelyingParty
from carnet.domain.errors import SignInRefused
from carnet.offload import offload
from carnet.web.csrf import checked_form
from carnet.web.oidc_flow import ProviderFlow, Verified
from carnet.web.pages import portal, render
from carnet.web.session import login, remember_provider_session

router = APIRouter(include_in_schema=False)

CHOICE_KEY = "oidc_choice"


def _relying_party(request: Request) -> RelyingParty | None:
    party: RelyingParty | None = portal(request).sign_in
    return party


FLOW = ProviderFlow(
    actor_kind="professional",
    prefix="oidc",
    cookie="carnet_oidc",
    path="/login/oidc",
    salt="oidc-pending",
    party_of=_relying_party,
)


@router.get("/login/oidc")
def start(request: Request) -> Response:
    """Send the browser to the provider's sign-in page."""
    return FLOW.start(request)


def _finish(request: Request) -> Response:
    """Verify the provider's answer and sign in (blocking: HTTP calls to the provider)."""
    verified = FLOW.verify(request)
    if not isinstance(verified, Verified):
        return verified
    try:
        signed_in = professional(verified.claims, parse_mapping(portal(request).settings.oidc_claims))
    except SignInRefused as exc:
        return FLOW.refused(request, exc, status=401)
    response: Response
    if len(signed_in.structures) > 1:
        request.session[CHOICE_KEY] = {
            "id_token": verified.id_token,
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
        response = _signed_in(request, signed_in, only, verified.id_token)
    FLOW.forget(response)
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
