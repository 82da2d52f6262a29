"""Patients sign in through their OpenID provider (``CARNET_PATIENT_OIDC_*``), their record linked once.

=====================================  ==============================================================
``GET  /login/patient/oidc``           to the provider (code flow, PKCE, nonce, state)
``GET  /login/patient/oidc/callback``  verified (``carnet.auth.oidc``); a linked account is signed
                                       in; otherwise the identity-verification step is asked
``POST /login/patient/link``           the INS typed; linked when the provider's traits match the
                                       record's (``carnet.services.identity_links``), then signed in
``POST /login/patient/represent``      a representative without a record here: the desk's one-time
                                       code (``carnet.services.representations``), then signed in
=====================================  ==============================================================

The redirect, the pending sign-in's cookie (``carnet_patient_oidc``), the callback's checks and
the refusal page are the flow shared with professionals (``carnet.web.oidc_flow``).
Someone holding no record here who represents others (the registry knows their account) signs
in as a legal representative (``carnet.web.representation``). Every answer, accepted or
refused, and every refused link, is journaled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.auth.oidc import RelyingParty
from carnet.domain.errors import AccessDenied, SignInRefused
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.offload import offload
from carnet.services.identity_links import MISMATCH, Traits, subject_identifier
from carnet.web.csrf import checked_form, form_text
from carnet.web.oidc_flow import ProviderFlow, Verified
from carnet.web.pages import portal, render
from carnet.web.representation import CODE_REFUSED, person_claims
from carnet.web.session import login, remember_provider_session

router = APIRouter(include_in_schema=False)

LINK_KEY = "oidc_patient_link"
#: INS-NIR, INS-NIA, then the test and demonstration NIRs (only records of those exist on a test server).
INS_SYSTEMS = tuple(f"urn:oid:1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11))


def _relying_party(request: Request) -> RelyingParty | None:
    party: RelyingParty | None = portal(request).patient_sign_in
    return party


FLOW = ProviderFlow(
    actor_kind="patient",
    prefix="oidc-patient",
    cookie="carnet_patient_oidc",
    path="/login/patient/oidc",
    salt="oidc-patient-pending",
    party_of=_relying_party,
)


def _journal(request: Request, *, accepted: bool, reason: str, actor: str = "unknown") -> None:
    portal(request).services.sign_ins.record(
        actor_kind="patient",
        actor_id=actor,
        accepted=accepted,
        reason=reason,
        outcome="ok" if accepted else reason,
    )


@router.get("/login/patient/oidc")
def start(request: Request) -> Response:
    """Send the patient to their provider's sign-in page."""
    return FLOW.start(request)


def _names(claims: dict[str, Any]) -> str:
    return " ".join(str(claims.get(k) or "") for k in ("given_name", "family_name")).strip()


def _signed_in(
    request: Request, patient_id: str | None, account: Identifier, claims: dict[str, Any], id_token: str
) -> Response:
    """Sign in the holder of ``patient_id`` (or a representative without a record of their own)."""
    principal = person_claims(
        request, subject=f"oidc:{account.value}", patient_id=patient_id, name=_names(claims) or None
    )
    if principal is None:  # no record, and nobody to represent: the identity-verification step
        request.session[LINK_KEY] = {
            "account": account.value,
            "claims": _traits_claims(claims),
            "id_token": id_token,
        }
        return render(request, "login_link.html", {"error": None})
    _journal(
        request,
        accepted=True,
        reason="oidc-patient:" + (portal(request).settings.patient_oidc_issuer or ""),
        actor=f"patient:{patient_id}" if patient_id else str(principal["sub"]),
    )
    login(request, principal, now=datetime.now(UTC))
    remember_provider_session(request, "patient", id_token)
    target = "/patient/switch" if principal["kind"] == "representative" else "/patient/"
    return render(request, "login_done.html", {"target": target})


def _finish(request: Request) -> Response:
    verified = FLOW.verify(request)
    if not isinstance(verified, Verified):
        return verified
    account = subject_identifier(verified.party.provider.issuer, str(verified.claims.get("sub")))
    patient_id = portal(request).services.identity_links.record_of(account)
    response = _signed_in(request, patient_id, account, verified.claims, verified.id_token)
    FLOW.forget(response)
    return response


def _traits_claims(claims: dict[str, Any]) -> dict[str, str]:
    return {k: str(claims[k]) for k in ("given_name", "family_name", "birthdate", "gender") if claims.get(k)}


@router.get("/login/patient/oidc/callback")
async def callback(request: Request) -> Response:
    """Finish a patient's sign-in started at ``/login/patient/oidc``."""
    return await offload(_finish, request)


@router.post("/login/patient/link")
async def link(request: Request) -> Response:
    """Link the signed-in provider account to the record of the INS typed, if the identities match."""
    form = await checked_form(request)
    return await offload(_link, request, form)


def _link(request: Request, form: Any) -> Response:
    pending = request.session.get(LINK_KEY)
    if not isinstance(pending, dict) or not isinstance(pending.get("account"), str):
        return RedirectResponse("/login", status_code=303)
    ins = form_text(form, "ins", 40).replace(" ", "")
    account = Identifier(system="urn:carnet:oidc-subject", value=pending["account"])
    claims = dict(pending.get("claims") or {})
    if not (ins.isdigit() and len(ins) in (13, 15)):
        return render(
            request,
            "login_link.html",
            {"error": "Type the 13 or 15 digits of your INS (your social security number)."},
            status=422,
        )
    links = portal(request).services.identity_links
    value = ins[:13] if len(ins) == 15 else ins  # the NIR without its key
    patient_id, refusal = None, MISMATCH
    for system in INS_SYSTEMS:
        try:
            patient_id = links.link(account, Traits.of(claims), Identifier(system=system, value=value))
            break
        except AccessDenied as exc:
            refusal = exc.message
    if patient_id is None:
        _journal(request, accepted=False, reason="oidc-patient:identity-not-verified")
        return render(request, "login_link.html", {"error": refusal}, status=403)
    request.session.pop(LINK_KEY, None)
    return _signed_in(request, patient_id, account, claims, str(pending.get("id_token") or ""))


@router.post("/login/patient/represent")
async def represent(request: Request) -> Response:
    """A representative without a record here claims their link with the desk's code, then signs in."""
    form = await checked_form(request)
    return await offload(_represent, request, form)


def _represent(request: Request, form: Any) -> Response:
    pending = request.session.get(LINK_KEY)
    if not isinstance(pending, dict) or not isinstance(pending.get("account"), str):
        return RedirectResponse("/login", status_code=303)
    account = Identifier(system="urn:carnet:oidc-subject", value=pending["account"])
    claims = dict(pending.get("claims") or {})
    who = Principal(
        kind=ActorKind.REPRESENTATIVE, subject=f"oidc:{account.value}", display=_names(claims) or None
    )
    try:
        portal(request).services.representations.claim(
            form_text(form, "code", 40), f"oidc:{account.value}", by=who
        )
    except SignInRefused:
        _journal(request, accepted=False, reason="oidc-patient:represent-code")
        return render(request, "login_link.html", {"error": CODE_REFUSED}, status=403)
    request.session.pop(LINK_KEY, None)
    return _signed_in(request, None, account, claims, str(pending.get("id_token") or ""))
