"""Signing in and out, the language switch, and ``/``.

==========================  =====================================================================
``GET /``                   HTML: to the signed-in portal, else ``/login``; other clients: the
                            service's JSON description (as before the portals)
``GET /login``              the demo sign-in page (development mode), or a page saying sign-in is
                            not configured (production mode)
``POST /login``             form: ``kind=patient`` with ``identifier`` (``system|value``, the
                            INS), or ``kind=professional`` with ``practitioner`` (a directory id)
                            or ``idnps`` + ``profession`` + ``specialty`` + ``name`` (+ ``samu``)
``POST /logout``            end the session, then at the OpenID provider that signed it in
                            (RP-initiated logout) when it offers an ``end_session_endpoint``
``GET /language/{code}``    choose ``fr`` or ``en`` (cookie), then back to ``?next=`` (a local path)
==========================  =====================================================================
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.offload import offload
from carnet.services.rate_limit import RateLimiter
from carnet.services.representations import record_key
from carnet.web.csrf import checked_form
from carnet.web.i18n import LANGUAGE_COOKIE, LANGUAGES
from carnet.web.identities import (
    DIRECTORY_READER,
    DemoProfessional,
    idnps_of,
    matches_words,
    practitioner_display,
)
from carnet.web.pages import portal, render
from carnet.web.return_to import take
from carnet.web.session import PROVIDER_SESSION, current_principal, login, logout

router = APIRouter(include_in_schema=False)

#: A long-lived cookie remembering, per record (by hash), when its holder last signed in here.
VISITS_COOKIE = "carnet_visits"
VISITS_SECONDS = 400 * 24 * 3600


def home_of(principal: Principal | None) -> str:
    """Return the start page of a signed-in principal (``/login`` for nobody)."""
    if principal is None:
        return "/login"
    if principal.kind is ActorKind.PROFESSIONAL:
        return "/pro/"
    return "/patient/"


@router.get("/")
def root(request: Request) -> Response:
    """Send people to their portal; answer API clients with the service description."""
    if "text/html" not in request.headers.get("accept", ""):
        return Response(
            content=b'{"service":"carnet","fhir":"/fhir/metadata"}', media_type="application/json"
        )
    return RedirectResponse(home_of(current_principal(request)), status_code=303)


def _login_page(
    request: Request, *, error: str | None = None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    state = portal(request)
    enabled = state.settings.development_issuer_enabled
    patients = state.demo.patients() if enabled else []
    professionals = state.demo.professionals() if enabled else []
    words = request.query_params.get("q", "")[:100].strip()
    if words:
        patients = [p for p in patients if matches_words(f"{p.display} {p.identifier.value}", words)]
        professionals = [p for p in professionals if p.matches(words)]
    groups: dict[str, list[DemoProfessional]] = {}
    for professional in professionals:
        groups.setdefault(professional.profession_label or professional.profession or "—", []).append(
            professional
        )
    return render(
        request,
        "login.html",
        {
            "enabled": enabled,
            "oidc": state.sign_in is not None,
            "patient_oidc": state.patient_sign_in is not None,
            "patients": patients,
            "professionals": professionals,
            "professional_groups": sorted(groups.items()),
            "q": words,
            "error": error,
        },
        status=status,
        headers=headers,
    )


@router.get("/login")
def login_page(request: Request) -> Response:
    """Show the sign-in page."""
    return _login_page(request)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _visit_hash(patient_id: str) -> str:
    return hashlib.sha256(f"carnet-visit:{patient_id}".encode()).hexdigest()[:20]


def _visits(request: Request) -> dict[str, str]:
    raw = request.cookies.get(VISITS_COOKIE)
    if not raw:
        return {}
    try:
        data = URLSafeSerializer(portal(request).session_secret, salt="visits").loads(raw)
    except BadSignature:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _sign_in_wait(request: Request, kind: str, form: Any) -> int:
    """Take a sign-in attempt from the client address's and the account's buckets: 0, or seconds to wait.

    The account is what the form names (the INS, the directory entry, the idNat_PS), so one
    address cannot try many accounts quickly, nor many addresses one account.
    """
    limiter: RateLimiter = request.app.state.login_limiter
    account = _text(form, "identifier") or _text(form, "practitioner") or _text(form, "idnps")
    address = request.client.host if request.client else "unknown"
    by_address = limiter.take(f"address:{address}")
    by_account = limiter.take(f"account:{kind}:{account}") if account else 0
    return max(by_address, by_account)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """Sign in with an embedded demo identity (development mode only)."""
    form = await checked_form(request)
    return await offload(_sign_in, request, form)


def _sign_in(request: Request, form: Any) -> Response:
    """Resolve the identity chosen on the sign-in page and start its session (blocking: a worker thread)."""
    state = portal(request)
    if not state.settings.development_issuer_enabled:
        return _login_page(request, status=403)
    service = state.services.records
    kind = _text(form, "kind")
    now = datetime.now(UTC)
    wait = _sign_in_wait(request, kind, form)
    if wait:
        return _login_page(
            request,
            error="Too many sign-in attempts; wait a minute, then try again.",
            status=429,
            headers={"Retry-After": str(wait)},
        )
    if kind == "patient":
        system, bar, value = _text(form, "identifier").partition("|")
        if not (bar and system and value):
            return _login_page(request, error="Give the identifier as system|value.", status=422)
        identifier = Identifier(system=system, value=value)
        resolved = service.resolve(
            Principal(kind=ActorKind.PATIENT, subject=f"web:{value}", identifier=identifier)
        )
        if resolved.patient_id is None:
            return _login_page(request, error="No record has this identifier.", status=422)
        names = {p.patient_id: p.display for p in state.demo.patients()}
        claims: dict[str, Any] = {
            "kind": "patient",
            "sub": f"patient:{resolved.patient_id}",
            "patient": resolved.patient_id,
            "identifier": identifier.token(),
        }
        if resolved.patient_id in names:
            claims["name"] = names[resolved.patient_id]
        represents = state.services.representations.represented_by([record_key(resolved.patient_id)])
        if represents:
            claims["represents"] = represents
        visits = _visits(request)
        previous = visits.get(_visit_hash(resolved.patient_id))
        login(request, claims, now=now)
        if previous:
            request.session["previous_visit"] = previous
        visits[_visit_hash(resolved.patient_id)] = now.isoformat()
        response = RedirectResponse("/patient/", status_code=303)
        back = take(request, response)  # an app's consent screen sent the patient to sign in
        if back is not None:
            response.headers["location"] = back
        response.set_cookie(
            VISITS_COOKIE,
            URLSafeSerializer(state.session_secret, salt="visits").dumps(dict(list(visits.items())[-20:])),
            max_age=VISITS_SECONDS,
            httponly=True,
            samesite="strict",
            secure=not state.settings.development_issuer_enabled,
        )
        return response
    if kind == "representative":
        return _sign_in_representative(request, form, now)
    if kind == "professional":
        practitioner_id = _text(form, "practitioner")
        if practitioner_id:
            chosen = next(
                (p for p in state.demo.professionals() if p.practitioner_id == practitioner_id), None
            )
            if chosen is None:
                return _login_page(request, error="Choose a professional from the list.", status=422)
            idnps, name = chosen.idnps, chosen.display
            profession, specialty = chosen.profession, chosen.specialty
        else:
            idnps, name = _text(form, "idnps"), _text(form, "name")
            profession, specialty = _text(form, "profession") or None, _text(form, "specialty") or None
            if not idnps.isdigit() or not profession:
                return _login_page(
                    request,
                    error="Give the national identifier (digits) and the profession code.",
                    status=422,
                )
            if not name:
                found = service.records(DIRECTORY_READER).search(
                    "Practitioner", [("identifier", f"urn:oid:1.2.250.1.71.4.2.1|{idnps}")]
                )
                name = next(
                    (practitioner_display(p) for p in found.resources if idnps_of(p) == idnps), f"PS {idnps}"
                )
        claims = {"kind": "professional", "sub": f"idnps:{idnps}", "idnps": idnps, "name": name}
        if profession:
            claims["profession"] = profession
        if specialty:
            claims["specialty"] = specialty
        if _text(form, "samu") in ("on", "true", "1"):
            claims["samu"] = True
        login(request, claims, now=now)
        return RedirectResponse("/pro/", status_code=303)
    return _login_page(request, error="Choose whom to sign in as.", status=422)


def _sign_in_representative(request: Request, form: Any, now: datetime) -> Response:
    """A legal representative (demo): their name and the INS of each record they represent, one per line."""
    service = portal(request).services.records
    represents: list[str] = []
    for line in _text(form, "represents").replace(",", "\n").splitlines():
        system, bar, value = line.strip().partition("|")
        if not (bar and system and value):
            continue
        found = service.resolve(
            Principal(
                kind=ActorKind.PATIENT,
                subject=f"web:{value}",
                identifier=Identifier(system=system, value=value),
            )
        )
        if found.patient_id is not None:
            represents.append(found.patient_id)
    if not represents:
        return _login_page(
            request, error="Give the INS of each record you represent, as system|value.", status=422
        )
    name = _text(form, "name") or "Représentant légal"
    digest = hashlib.sha256(f"{name}|{sorted(represents)}".encode()).hexdigest()[:16]
    claims = {
        "kind": "representative",
        "sub": f"representative:{digest}",
        "represents": represents,
        "name": name,
    }
    login(request, claims, now=now)
    return RedirectResponse("/patient/switch", status_code=303)


@router.post("/logout")
async def logout_submit(request: Request) -> Response:
    """Sign out here, then at the OpenID provider that signed the session in, if it offers it."""
    await checked_form(request)
    return RedirectResponse(await offload(_sign_out, request), status_code=303)


def _sign_out(request: Request) -> str:
    """End the session; return where the browser goes next (the provider's end-session URL, or /login).

    OpenID Connect RP-Initiated Logout: the provider's ``end_session_endpoint`` (discovery),
    with the session's signed ID token as ``id_token_hint`` and ``{origin}/login`` as
    ``post_logout_redirect_uri``. A provider without one (or out of reach): a local sign-out.
    """
    kept = request.session.get(PROVIDER_SESSION)
    logout(request)
    if not isinstance(kept, dict):
        return "/login"
    state = portal(request)
    party = state.sign_in if kept.get("party") == "pro" else state.patient_sign_in
    if party is None:
        return "/login"
    origin = urlsplit(state.settings.base_url)
    url = party.logout_url(
        id_token=str(kept.get("id_token") or "") or None,
        post_logout_redirect_uri=f"{origin.scheme}://{origin.netloc}/login",
        state=secrets.token_urlsafe(16),
    )
    return url or "/login"


@router.get("/language/{code}")
async def language(code: str, request: Request, next: str = "/") -> Response:
    """Choose the portals' language and go back to the page it was chosen on."""
    target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
    response = RedirectResponse(target, status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, code, max_age=400 * 24 * 3600, httponly=True, samesite="lax")
    return response
