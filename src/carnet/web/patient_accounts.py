"""Built-in patient accounts (no patient OpenID provider): passkeys, recovery codes, TOTP.

=========================================  ===========================================================
``GET  /login/patient/account``            the page: enrol with a desk code, sign in with a passkey,
                                           or with the INS and a recovery code or a TOTP code
``POST /login/patient/enrol``              the enrolment code (``carnet patient enrol``) checked, or a
                                           representative's claim code (``carnet patient represent add``)
``POST /login/patient/passkey/new``        JSON creation options (``navigator.credentials.create``)
``POST /login/patient/passkey/register``   the new passkey verified; code spent; recovery codes shown
``POST /login/patient/passkey/options``    JSON request options (``navigator.credentials.get``)
``POST /login/patient/passkey``            the passkey's assertion verified, then signed in
``POST /login/patient/recovery``           the INS and a one-time recovery code, then signed in
``POST /login/patient/totp``               the INS and the TOTP code, then signed in
``GET|POST /login/patient/totp/setup``     a signed-in patient adds TOTP (the secret, then a code)
=========================================  ===========================================================

A representative without a record of their own enrols with the claim code of their link: the
passkey then opens a built-in account bound to their identity (``account:rep-<id>``, no record),
which signs in as the representative of the records the registry links to it; its recovery
codes work with its account number in place of an INS.

Every challenge is kept in the portal session and taken at its first use (a replayed assertion
finds none). Every answer, accepted or refused, is journaled as a sign-in; refusals answer 4xx.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.auth.passkeys import RelyingParty, credential_id_of
from carnet.domain.errors import RecordShredded, SignInRefused
from carnet.domain.principal import ActorKind, Principal
from carnet.offload import offload
from carnet.services.representations import REPRESENTATIVE_ACCOUNT, representative_account
from carnet.web.csrf import checked_form, form_text
from carnet.web.oidc_patient_login import INS_SYSTEMS
from carnet.web.pages import portal, render
from carnet.web.representation import person_claims
from carnet.web.session import current_principal, login

router = APIRouter(include_in_schema=False)

ENROL_KEY = "account_enrol"
#: Set when the session's enrolment code is a representative's claim code (an account without a record).
ENROL_REPRESENTATIVE = "account_enrol_representative"
CHALLENGE_KEY = "account_challenge"
TOTP_KEY = "account_totp"
REFUSALS = {
    "enrolment-code": "This enrolment code is unknown, used or expired; ask the desk for a new one.",
    "passkey": "The passkey could not be verified. Try again, or use a recovery code.",
    "challenge": "This sign-in attempt expired or was already used; try again.",
    "recovery-code": "The INS or the recovery code is wrong, or the code was already used.",
    "totp": "The INS or the code is wrong; type the code your app shows now.",
    "represents-nobody": "This account no longer represents anybody here; ask the desk.",
}


def enabled(request: Request) -> bool:
    """Built-in accounts are offered when no patient OpenID provider is configured."""
    return portal(request).patient_sign_in is None


def passkey_party(request: Request) -> RelyingParty:
    """The passkeys' relying party of this server (its origin and id from the base URL)."""
    return RelyingParty.of(portal(request).settings.base_url)


def _journal(request: Request, *, accepted: bool, reason: str, patient_id: str | None = None) -> None:
    representative = bool(patient_id) and str(patient_id).startswith(REPRESENTATIVE_ACCOUNT)
    portal(request).services.sign_ins.record(
        actor_kind="representative" if representative else "patient",
        actor_id=(f"account:{patient_id}" if representative else f"patient:{patient_id}")
        if patient_id
        else "unknown",
        accepted=accepted,
        reason=f"account:{reason}",
        outcome="ok" if accepted else reason,
    )


def _page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    return render(request, "login_account.html", {"error": error}, status=status)


def _refused(request: Request, exc: SignInRefused, *, status: int = 401) -> Response:
    _journal(request, accepted=False, reason=exc.reason)
    return _page(request, error=REFUSALS.get(exc.reason, REFUSALS["passkey"]), status=status)


def _limited(request: Request, account: str) -> Response | None:
    limiter = request.app.state.login_limiter
    address = request.client.host if request.client else "unknown"
    wait = max(
        limiter.take(f"address:{address}"), limiter.take(f"account:builtin:{account}") if account else 0
    )
    if not wait:
        return None
    _journal(request, accepted=False, reason="rate-limited")
    response = _page(request, error="Too many sign-in attempts; wait a minute, then try again.", status=429)
    response.headers["Retry-After"] = str(wait)
    return response


def _signed_in(request: Request, owner: str, how: str) -> Response | None:
    """Sign the account's owner in (a record's holder, or a representative's account); a refusal page if not."""
    record = None if owner.startswith(REPRESENTATIVE_ACCOUNT) else owner
    claims = person_claims(request, subject=f"account:{owner}", patient_id=record)
    if claims is None:  # a representative's account whose every link has ended
        _journal(request, accepted=False, reason="represents-nobody", patient_id=owner)
        return _page(request, error=REFUSALS["represents-nobody"], status=403)
    _journal(request, accepted=True, reason=how, patient_id=owner)
    login(request, claims, now=datetime.now(UTC))
    return None


def take_challenge(request: Request, purpose: str) -> bytes:
    """Take the session's challenge for ``purpose`` (once)."""
    kept = request.session.pop(CHALLENGE_KEY, None)
    if not isinstance(kept, dict) or kept.get("purpose") != purpose or not isinstance(kept.get("value"), str):
        raise SignInRefused("No sign-in attempt is in progress.", reason="challenge")
    return base64.urlsafe_b64decode(kept["value"])


def keep_challenge(request: Request, purpose: str, challenge: bytes) -> None:
    """Keep a WebAuthn challenge for ``purpose`` in the session (taken by :func:`take_challenge`)."""
    request.session[CHALLENGE_KEY] = {
        "purpose": purpose,
        "value": base64.urlsafe_b64encode(challenge).decode(),
    }


def _record_of_ins(request: Request, ins: str) -> str | None:
    ins = ins.replace(" ", "")
    if ins.lower().startswith(REPRESENTATIVE_ACCOUNT):
        return ins.lower()[:64]  # a representative's account number (its recovery codes decide)
    if not (ins.isdigit() and len(ins) in (13, 15)):
        return None
    value = ins[:13]
    records = portal(request).services.records
    for system in INS_SYSTEMS:
        found = records.record_with(system, value)
        if found is not None:
            return found
    return None


@router.get("/login/patient/account")
def account_page(request: Request) -> Response:
    """Show the built-in account's sign-in and enrolment page."""
    if not enabled(request):
        return RedirectResponse("/login", status_code=303)
    return _page(request)


@router.post("/login/patient/enrol")
async def enrol(request: Request) -> Response:
    """Check a desk-issued enrolment code, then offer to create a passkey."""
    form = await checked_form(request)
    return await offload(_enrol, request, form)


def _enrol(request: Request, form: Any) -> Response:
    if not enabled(request):
        return RedirectResponse("/login", status_code=303)
    code = form_text(form, "code", 40)
    limited = _limited(request, "")
    if limited is not None:
        return limited
    services = portal(request).services
    representative = False
    try:
        services.patient_accounts.enrolment_record(code)
    except SignInRefused as exc:
        try:  # a representative without a record enrols with the claim code of their link
            services.representations.pending(code)
            representative = True
        except SignInRefused:
            return _refused(request, exc, status=403)
    request.session[ENROL_KEY] = code
    request.session[ENROL_REPRESENTATIVE] = representative
    return render(request, "login_enrol.html", {"error": None})


@router.post("/login/patient/passkey/new")
async def registration_options(request: Request) -> Response:
    """The creation options of a new passkey for the record of the session's enrolment code."""
    await checked_form(request)
    return await offload(_registration_options, request)


def _registration_options(request: Request) -> Response:
    code = request.session.get(ENROL_KEY)
    if not enabled(request) or not isinstance(code, str):
        return Response(
            '{"error":"no enrolment in progress"}', status_code=409, media_type="application/json"
        )
    # The user handle is random: the authenticator never learns the record id.
    options, challenge = passkey_party(request).registration(
        user_handle=secrets.token_bytes(32), label="Carnet"
    )
    keep_challenge(request, "register", challenge)
    return Response(options, media_type="application/json")


@router.post("/login/patient/passkey/register")
async def register(request: Request) -> Response:
    """Verify the new passkey, spend the enrolment code, sign in, and show the recovery codes once."""
    form = await checked_form(request)
    return await offload(_register, request, form)


def _register(request: Request, form: Any) -> Response:
    code = request.session.get(ENROL_KEY)
    if not enabled(request) or not isinstance(code, str):
        return RedirectResponse("/login/patient/account", status_code=303)
    accounts = portal(request).services.patient_accounts
    try:
        challenge = take_challenge(request, "register")
        credential_id, public_key, count = passkey_party(request).registered(
            form_text(form, "credential", 20000), challenge
        )
        if request.session.get(ENROL_REPRESENTATIVE):
            owner = representative_account()
            subject = f"account:{owner}"
            by = Principal(kind=ActorKind.REPRESENTATIVE, subject=subject)
            portal(request).services.representations.claim(code, subject, by=by)  # journaled there
            codes = accounts.enrol_representative(owner, credential_id, public_key, count)
        else:
            owner = accounts.enrolment_record(code)
            codes = accounts.enrol_passkey(code, credential_id, public_key, count)
    except SignInRefused as exc:
        return _refused(request, exc, status=400 if exc.reason in ("passkey", "challenge") else 403)
    request.session.pop(ENROL_KEY, None)
    request.session.pop(ENROL_REPRESENTATIVE, None)
    refused = _signed_in(request, owner, "passkey-enrolled")
    if refused is not None:
        return refused
    account = owner if owner.startswith(REPRESENTATIVE_ACCOUNT) else None
    return render(request, "login_recovery_codes.html", {"codes": codes, "account": account})


@router.post("/login/patient/passkey/options")
async def authentication_options(request: Request) -> Response:
    """The request options of a passkey sign-in (a fresh challenge, kept in the session)."""
    await checked_form(request)
    return await offload(_authentication_options, request)


def _authentication_options(request: Request) -> Response:
    if not enabled(request):
        return Response('{"error":"disabled"}', status_code=404, media_type="application/json")
    options, challenge = passkey_party(request).authentication()
    keep_challenge(request, "sign-in", challenge)
    return Response(options, media_type="application/json")


@router.post("/login/patient/passkey")
async def passkey_sign_in(request: Request) -> Response:
    """Sign in with a passkey's assertion."""
    form = await checked_form(request)
    return await offload(_passkey_sign_in, request, form)


def _passkey_sign_in(request: Request, form: Any) -> Response:
    if not enabled(request):
        return RedirectResponse("/login", status_code=303)
    accounts = portal(request).services.patient_accounts
    credential = form_text(form, "credential", 20000)
    try:
        challenge = take_challenge(request, "sign-in")
        known = accounts.passkey(credential_id_of(credential))
        count = passkey_party(request).authenticated(credential, challenge, known.secret, known.sign_count)
        accounts.passkey_used(known, count)
    except SignInRefused as exc:
        return _refused(request, exc, status=400 if exc.reason == "challenge" else 401)
    refused = _signed_in(request, known.patient_id, "passkey")
    if refused is not None:
        return refused
    return render(request, "login_done.html", {"target": "/patient/"})


@router.post("/login/patient/recovery")
async def recovery(request: Request) -> Response:
    """Sign in with the INS and a one-time recovery code."""
    form = await checked_form(request)
    return await offload(_fallback, request, form, "recovery-code")


@router.post("/login/patient/totp")
async def totp(request: Request) -> Response:
    """Sign in with the INS and the code of the TOTP app."""
    form = await checked_form(request)
    return await offload(_fallback, request, form, "totp")


def _fallback(request: Request, form: Any, how: str) -> Response:
    if not enabled(request):
        return RedirectResponse("/login", status_code=303)
    ins = form_text(form, "ins", 40)
    limited = _limited(request, ins)
    if limited is not None:
        return limited
    accounts = portal(request).services.patient_accounts
    code = form_text(form, "code", 40)
    try:
        patient_id = _record_of_ins(request, ins)
        if patient_id is None:
            raise SignInRefused("No such record.", reason=how)
        if how == "totp":
            accounts.check_totp(patient_id, code)
        else:
            accounts.use_recovery_code(patient_id, code)
    except RecordShredded:
        return _refused(request, SignInRefused("Erased.", reason=how))
    except SignInRefused as exc:
        return _refused(request, exc)
    refused = _signed_in(request, patient_id, how)
    if refused is not None:
        return refused
    return render(request, "login_done.html", {"target": "/patient/"})


def _patient_of(request: Request) -> str | None:
    principal = current_principal(request)
    return principal.patient_id if principal is not None and principal.kind.value == "patient" else None


@router.get("/login/patient/totp/setup")
def totp_setup_page(request: Request) -> Response:
    """A signed-in patient sees a new TOTP secret to add to their app."""
    if _patient_of(request) is None:
        return RedirectResponse("/login", status_code=303)
    secret = portal(request).services.patient_accounts.new_totp_secret()
    request.session[TOTP_KEY] = secret
    return _totp_page(request, secret, None, 200)


def _totp_page(request: Request, secret: str, error: str | None, status: int) -> Response:
    uri = f"otpauth://totp/Carnet?secret={secret}&issuer=Carnet"
    return render(
        request, "login_totp_setup.html", {"secret": secret, "uri": uri, "error": error}, status=status
    )


@router.post("/login/patient/totp/setup")
async def totp_setup(request: Request) -> Response:
    """Keep the TOTP secret once the patient typed the code their app shows."""
    form = await checked_form(request)
    return await offload(_totp_setup, request, form)


def _totp_setup(request: Request, form: Any) -> Response:
    patient_id = _patient_of(request)
    secret = request.session.get(TOTP_KEY)
    if patient_id is None or not isinstance(secret, str):
        return RedirectResponse("/login", status_code=303)
    try:
        portal(request).services.patient_accounts.enrol_totp(patient_id, secret, form_text(form, "code", 12))
    except SignInRefused:
        _journal(request, accepted=False, reason="totp-setup", patient_id=patient_id)
        return _totp_page(request, secret, REFUSALS["totp"], 422)
    request.session.pop(TOTP_KEY, None)
    _journal(request, accepted=True, reason="totp-setup", patient_id=patient_id)
    request.session["flash"] = "Your authenticator app is set up."
    return RedirectResponse("/patient/sign-in", status_code=303)
