"""The patient's own sign-in means (built-in accounts): passkeys, recovery codes, an authenticator app.

=============================================  ==================================================
``GET  /patient/sign-in``                      the passkeys (when each was added), the unused
                                               recovery codes, whether an app (TOTP) is set up
``POST /patient/sign-in/passkey/new``          JSON creation options of one more passkey
``POST /patient/sign-in/passkey/add``          the new passkey verified, then kept
``POST /patient/sign-in/passkey/remove``       ``passkey``: remove it (never the last way in)
``POST /patient/sign-in/recovery``             new recovery codes, shown once (the old ones stop)
``POST /patient/sign-in/totp/remove``          remove the app (never the last way in)
=============================================  ==================================================

Setting up the app is ``/login/patient/totp/setup`` (``carnet.web.patient_accounts``). Everything
but adding a passkey works without JavaScript (a passkey is created by the browser's WebAuthn
API; the page says so). Each change is an entry of the record's journal
(``carnet.services.patient_accounts``). Only the holder of a record manages its means: a
representative acting for another record manages only their own.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import Conflict, NotFound, SignInRefused, Unauthenticated
from carnet.domain.principal import ActorKind
from carnet.offload import offload
from carnet.web.csrf import checked_form, form_text
from carnet.web.holder import page
from carnet.web.pages import portal, render
from carnet.web.patient_accounts import keep_challenge, passkey_party, take_challenge
from carnet.web.session import current_principal

router = APIRouter(prefix="/patient/sign-in", include_in_schema=False)
#: What the page says after each change (message ids).
DONE = {
    "added": "Your new passkey is added.",
    "removed": "The passkey is removed.",
    "totp-removed": "The authenticator app is removed.",
}
LAST = "This is your last way to sign in: add another passkey or an authenticator app first."


def _own_record(request: Request) -> str:
    """The record the signed-in person holds (never one they act for as a representative)."""
    principal = current_principal(request)
    if principal is None or principal.kind is not ActorKind.PATIENT or not principal.patient_id:
        raise Unauthenticated("Sign in as a patient.")
    return principal.patient_id


def _page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    patient_id = _own_record(request)
    passkeys, totp, recovery = portal(request).services.patient_accounts.means(patient_id)
    return page(
        request,
        "patient/sign_in.html",
        "sign-in",
        {
            "passkeys": passkeys,
            "totp": totp,
            "recovery": recovery,
            "provider": portal(request).patient_sign_in is not None,
            "error": error,
        },
        status=status,
    )


@router.get("")
def means_page(request: Request) -> Response:
    """List the record's sign-in means, with the forms that change them."""
    return _page(request)


@router.post("/passkey/new")
async def passkey_options(request: Request) -> Response:
    """The creation options of one more passkey (for ``navigator.credentials.create``)."""
    await checked_form(request)
    _own_record(request)
    options, challenge = passkey_party(request).registration(
        user_handle=secrets.token_bytes(32), label="Carnet"
    )
    keep_challenge(request, "add", challenge)
    return Response(options, media_type="application/json")


@router.post("/passkey/add")
async def passkey_add(request: Request) -> Response:
    """Verify the new passkey and keep it."""
    form = await checked_form(request)
    return await offload(_passkey_add, request, form)


def _passkey_add(request: Request, form: Any) -> Response:
    patient_id = _own_record(request)
    try:
        challenge = take_challenge(request, "add")
        credential_id, public_key, count = passkey_party(request).registered(
            form_text(form, "credential", 20000), challenge
        )
        portal(request).services.patient_accounts.add_passkey(patient_id, credential_id, public_key, count)
    except SignInRefused:
        return _page(request, error="The new passkey could not be verified; try again.", status=400)
    request.session["flash"] = DONE["added"]
    return RedirectResponse("/patient/sign-in", status_code=303)


@router.post("/passkey/remove")
async def passkey_remove(request: Request) -> Response:
    """Remove one passkey, unless it is the last way in."""
    form = await checked_form(request)
    return await offload(_passkey_remove, request, form)


def _passkey_remove(request: Request, form: Any) -> Response:
    patient_id = _own_record(request)
    try:
        portal(request).services.patient_accounts.remove_passkey(patient_id, form_text(form, "passkey", 200))
    except NotFound:
        return _page(request, error="This passkey is not one of yours.", status=404)
    except Conflict:
        return _page(request, error=LAST, status=409)
    request.session["flash"] = DONE["removed"]
    return RedirectResponse("/patient/sign-in", status_code=303)


@router.post("/recovery")
async def recovery(request: Request) -> Response:
    """Draw new recovery codes and show them once (the old ones stop working)."""
    await checked_form(request)
    return await offload(_recovery, request)


def _recovery(request: Request) -> Response:
    codes = portal(request).services.patient_accounts.new_recovery_codes(_own_record(request))
    response = render(request, "login_recovery_codes.html", {"codes": codes, "target": "/patient/sign-in"})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/totp/remove")
async def totp_remove(request: Request) -> Response:
    """Remove the authenticator app, unless it is the last way in."""
    await checked_form(request)
    return await offload(_totp_remove, request)


def _totp_remove(request: Request) -> Response:
    patient_id = _own_record(request)
    try:
        portal(request).services.patient_accounts.remove_totp(patient_id)
    except NotFound:
        return _page(request, error="No authenticator app is set up.", status=404)
    except Conflict:
        return _page(request, error=LAST, status=409)
    request.session["flash"] = DONE["totp-removed"]
    return RedirectResponse("/patient/sign-in", status_code=303)
