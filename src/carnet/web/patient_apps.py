"""The patient's screens for apps: the consent screen of the authorization server, and « Mes applications ».

==========================================  =======================================================
``GET  /auth/authorize``                    consent screen: which app, which data, read or write,
                                            for how long (sign in first; come back here after)
``POST /auth/authorize``                    the patient's answer (``decision`` = allow / deny)
``GET  /patient/apps``                      the apps the patient connected (SMART
                                            ``management_endpoint``), each with « Révoquer »
``POST /patient/apps/{client_id}/revoke``   withdraw the grant: the app loses access at once
==========================================  =======================================================

The grant itself is a Consent of the record written by :meth:`AppService.grant` (journaled);
the OAuth protocol is :mod:`carnet.web.smart`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc6749.errors import OAuth2Error
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import CarnetError
from carnet.domain.principal import ActorKind, Principal
from carnet.domain.smart import CONTEXT_SCOPES, parse_scope, split_scopes
from carnet.offload import offload
from carnet.web.csrf import checked_form, form_text
from carnet.web.pages import flash, portal, render
from carnet.web.return_to import remember
from carnet.web.session import current_principal
from carnet.web.smart import OAuthRequest, authorize_url, read_request, server_of

router = APIRouter(include_in_schema=False)

#: Plain words for the kinds of data (English ids; French in locales/fr.json).
DATA_WORDS = {
    "*": "All the data of your record",
    "Observation": "Measures and results (blood pressure, weight, glucose…)",
    "DocumentReference": "Your documents",
    "Binary": "The content of your documents",
    "Patient": "Your identity",
    "AllergyIntolerance": "Your allergies",
    "MedicationStatement": "Your treatments",
    "MedicationDispense": "Your dispensed medicines",
    "Immunization": "Your vaccinations",
    "Condition": "Your conditions and history",
    "Device": "Your connected devices",
    "DiagnosticReport": "Your laboratory reports",
    "AuditEvent": "Who accessed your record",
    "Consent": "Your choices",
}
ACTION_WORDS = {"r": "see", "s": "search", "c": "add", "u": "change", "d": "delete"}
#: How long a grant lasts, as the consent screen offers it.
DURATIONS = {"30": "One month", "90": "Three months", "365": "One year", "0": "Until I revoke it"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeLine:
    """One requested scope as the consent screen shows it."""

    scope: str
    what: str
    actions: tuple[str, ...]
    writes: bool
    category: str | None


def describe(scope: str) -> ScopeLine | None:
    """Describe a data scope in plain words (None for a scope that gives no data)."""
    try:
        parsed = parse_scope(scope)
    except CarnetError:
        return None
    if parsed is None:
        return None
    letters = [letter for letter in "rscud" if letter in parsed.permissions]
    category = parsed.category.rsplit("|", 1)[-1] if parsed.category else None
    return ScopeLine(
        scope=scope,
        what=DATA_WORDS.get(parsed.resource_type, parsed.resource_type),
        actions=tuple(ACTION_WORDS[letter] for letter in letters),
        writes=bool(parsed.permissions & {"c", "u", "d"}),
        category=category,
    )


def _patient(request: Request) -> Principal | None:
    principal = current_principal(request)
    if principal is None or principal.kind is not ActorKind.PATIENT or principal.patient_id is None:
        return None
    return principal


async def _oauth_or_page(request: Request) -> tuple[OAuthRequest, Principal] | Response:
    """Read the authorization request; send a visitor who is not a signed-in patient to sign in."""
    principal = _patient(request)
    if principal is None:
        response = RedirectResponse("/login", status_code=303)
        remember(response, authorize_url(request))
        return response
    try:
        return await read_request(request, form=False), principal
    except OAuth2Error as error:  # plain HTTP: authlib's insecure_transport
        return _refused(request, error)


def _refused(request: Request, error: OAuth2Error) -> Response:
    """An authorization request that cannot go on: back to the app if it is safe, else a page here."""
    if error.redirect_uri:
        return server_of(request).error_response(_dummy(request), error)
    return render(
        request,
        "patient/app_error.html",
        {"error": error.error, "description": error.get_error_description(), "section": "apps"},
        status=400,
    )


def _dummy(request: Request) -> OAuthRequest:
    return OAuthRequest(request.method, str(request.url), {}, list(request.query_params.multi_items()), [])


@router.get("/auth/authorize")
async def consent_screen(request: Request) -> Response:
    """Show the patient what the app asks for, in plain words, with a choice of what and how long."""
    read = await _oauth_or_page(request)
    if isinstance(read, Response):
        return read
    oauth, principal = read
    server = server_of(request)
    try:
        grant = await offload(server.consent_request, oauth, principal)
    except OAuth2Error as error:
        return _refused(request, error)
    scopes = split_scopes(grant.request.scope)
    lines = [line for line in map(describe, scopes) if line is not None]
    return render(
        request,
        "patient/app_consent.html",
        {
            "app": grant.client.app,
            "lines": lines,
            "durations": DURATIONS,
            "offline": "offline_access" in scopes,
            "action": authorize_url(request),
            "section": "apps",
            "error": None,
        },
    )


@router.post("/auth/authorize")
async def consent_answer(request: Request) -> Response:
    """Record the patient's answer: the grant (a Consent) and a code to the app, or a refusal."""
    read = await _oauth_or_page(request)
    if isinstance(read, Response):
        return read
    form = await checked_form(request)
    oauth, principal = read
    server = server_of(request)
    allow = form_text(form, "decision", 10) == "allow"
    chosen = [v for k, v in form.multi_items() if k == "scope" and isinstance(v, str)]
    days = form_text(form, "duration", 5)

    def run() -> Response:
        try:
            grant = server.consent_request(oauth, principal)
            if not allow:
                return server.answer(oauth, principal, None)
            requested = split_scopes(grant.request.scope)
            data = [s for s in requested if s in chosen and s not in CONTEXT_SCOPES]
            if not data:
                return render(
                    request,
                    "patient/app_consent.html",
                    {
                        "app": grant.client.app,
                        "lines": [line for line in map(describe, requested) if line is not None],
                        "durations": DURATIONS,
                        "offline": "offline_access" in requested,
                        "action": authorize_url(request),
                        "error": "Choose at least one kind of data, or refuse.",
                        "section": "apps",
                    },
                    status=422,
                )
            until = _until(days, server.clock())
            server.apps.grant(principal, grant.client.get_client_id(), tuple(data), until)
            kept = [s for s in requested if s in CONTEXT_SCOPES or s in data]
            return server.answer(oauth, principal, " ".join(kept), until)
        except OAuth2Error as error:
            return _refused(request, error)

    return await offload(run)


def _until(days: str, now: datetime) -> datetime | None:
    if days not in DURATIONS or days == "0":
        return None
    return now + timedelta(days=int(days))


@router.get("/patient/apps")
def apps_page(request: Request) -> Response:
    """List the apps the patient connected: what each may do, until when; revoke any."""
    principal = _patient(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    apps = portal(request).services.apps
    connected = apps.connected(principal)
    rows = [
        {"app": c, "lines": [line for line in map(describe, c.scopes) if line is not None]} for c in connected
    ]
    return render(request, "patient/apps.html", {"rows": rows, "section": "apps"})


@router.post("/patient/apps/{client_id}/revoke")
async def revoke_app(client_id: str, request: Request) -> Response:
    """Withdraw an app's access: its grant and tokens end now."""
    await checked_form(request)
    principal = _patient(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    apps = portal(request).services.apps
    await offload(apps.revoke_app, principal, client_id)
    flash(request, "The app no longer has access to your record.")
    return RedirectResponse("/patient/apps", status_code=303)
