"""Legal representatives in the patient portal: one person, several records, one at a time.

A parent or a guardian (représentant légal) signs in as themself — through the patients' OpenID
provider, a built-in account, or (development) the demo page — and the registry
(``carnet.services.representations``) says which records they represent: their identity then
lists them (``represents``). Someone who also holds a record of their own signs in as a patient
who represents others; someone without one signs in as a representative. The portal shows one
record at a time, with a banner naming it, and every page reads it through the policy as the
representative (``AccessMode.REPRESENTATIVE``), so what the rules hide from representatives
(``INVISIBLE_REPRESENTANTS_LEGAUX``, a minor's secret documents) stays hidden, and the journal
names the representative, not the patient.

=====================================  ==========================================================
``GET  /patient/switch``               their own record (if any) and those they represent, by name
``POST /patient/switch``               ``record``: act on that one now (refused for any other)
``GET  /patient/representatives``      who represents the record shown, since when, on what basis
``POST /patient/representatives``      ``code``: claim a link with the desk's one-time code
=====================================  ==========================================================
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.access import AccessMode
from carnet.domain.errors import CarnetError, SignInRefused, Unauthenticated
from carnet.domain.principal import ActorKind, Principal
from carnet.offload import offload
from carnet.services.representations import is_person_key, record_key
from carnet.web.csrf import checked_form, form_text
from carnet.web.errors import PageError
from carnet.web.holder import ACTING_FOR, ACTING_FOR_NAME, holder_of, page, registry_keys, represented_now
from carnet.web.pages import portal
from carnet.web.session import current_principal, login

router = APIRouter(prefix="/patient", include_in_schema=False)
#: What a refused claim code reads as.
CODE_REFUSED = "This representation code is unknown, used or expired; ask the desk for a new one."


def person_claims(
    request: Request, *, subject: str, patient_id: str | None, name: str | None = None
) -> dict[str, Any] | None:
    """The session claims of a person signing in: a patient (who may represent others) or a representative.

    ``subject`` is their sign-in identity (``oidc:<hash>``, ``account:<record>``…), ``patient_id``
    the record they hold here, if any. None when they hold no record and represent nobody.
    """
    keys = [subject] if is_person_key(subject) else []
    if patient_id:
        keys.append(record_key(patient_id))
    represents = portal(request).services.representations.represented_by(keys)
    claims: dict[str, Any]
    if patient_id:
        claims = {"kind": "patient", "sub": subject, "patient": patient_id}
    elif represents:
        claims = {"kind": "representative", "sub": subject}
    else:
        return None
    if represents:
        claims["represents"] = [r for r in represents if r != patient_id]
    if name:
        claims["name"] = name
    return claims


def represents_others(principal: Principal | None) -> bool:
    """Whether a signed-in person acts for records other than their own."""
    return principal is not None and bool(principal.represents)


def _representative(request: Request) -> Principal:
    principal = current_principal(request)
    if principal is None or principal.kind not in (ActorKind.REPRESENTATIVE, ActorKind.PATIENT):
        raise Unauthenticated("Sign in as a legal representative.")
    principal = replace(principal, represents=represented_now(request, principal))
    if not principal.represents and principal.kind is ActorKind.PATIENT:
        raise PageError(403)  # signed in, but representing nobody (any more)
    if not principal.represents:
        raise Unauthenticated("Sign in as a legal representative.")
    return principal


def _name_of(resource: dict[str, Any] | None, fallback: str) -> str:
    for name in (resource or {}).get("name") or []:
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p).strip()
        if text:
            return text
    return fallback


def represented(request: Request, principal: Principal) -> list[tuple[str, str]]:
    """``(record id, patient's name)`` of each record the representative may open, by name."""
    records = portal(request).services.records.records(principal, mode=AccessMode.REPRESENTATIVE)
    found: list[tuple[str, str]] = []
    for patient_id in sorted(principal.represents):
        try:
            resource = records.read("Patient", patient_id).resource
        except CarnetError:
            continue  # closed, erased, or no longer theirs: not offered
        found.append((patient_id, _name_of(resource, patient_id)))
    return sorted(found, key=lambda item: item[1])


@router.get("/switch")
def switch_page(request: Request) -> Response:
    """List the records the representative acts for (their own first, if they hold one)."""
    principal = _representative(request)
    return page(
        request,
        "patient/switch.html",
        "switch",
        {
            "records": represented(request, principal),
            "own": principal.patient_id,
            "current": request.session.get(ACTING_FOR) or principal.patient_id,
        },
    )


@router.post("/switch")
async def switch(request: Request) -> Response:
    """Act on another of the represented records (or on one's own again)."""
    form = await checked_form(request)
    principal = await offload(_representative, request)  # reads the registry: not on the event loop
    chosen = form_text(form, "record", 100)
    if principal.patient_id and chosen == principal.patient_id:
        request.session.pop(ACTING_FOR, None)
        request.session.pop(ACTING_FOR_NAME, None)
        return RedirectResponse("/patient/", status_code=303)
    names = dict(await offload(represented, request, principal))
    if chosen not in names:
        raise PageError(403)
    request.session[ACTING_FOR] = chosen
    request.session[ACTING_FOR_NAME] = names[chosen]
    return RedirectResponse("/patient/", status_code=303)


@router.get("/representatives")
def representatives_page(request: Request) -> Response:
    """Show who represents the record shown, and the form to claim a representation code."""
    return _representatives(request, error=None, status=200)


def _representatives(request: Request, *, error: str | None, status: int) -> Response:
    holder = holder_of(request)
    links = portal(request).services.representations.of_record(holder.patient_id)
    return page(
        request,
        "patient/representatives.html",
        "representatives",
        {"links": links, "error": error},
        status=status,
    )


@router.post("/representatives")
async def claim(request: Request) -> Response:
    """Claim a representation with the one-time code the desk gave (then act for that record)."""
    form = await checked_form(request)
    return await offload(_claim, request, form)


def _claim(request: Request, form: Any) -> Response:
    holder = holder_of(request)
    principal = holder.principal
    keys = registry_keys(principal)
    if not keys:
        raise PageError(403)
    services = portal(request).services
    try:
        # Bound to their own record when they hold one: then every way they sign in carries it.
        services.representations.claim(form_text(form, "code", 40), keys[-1], by=principal)
    except SignInRefused:
        return _representatives(request, error=CODE_REFUSED, status=403)
    claims = person_claims(
        request, subject=principal.subject, patient_id=principal.patient_id, name=principal.display
    )
    if claims is not None:
        login(request, claims, now=datetime.now(UTC))
    return RedirectResponse("/patient/switch", status_code=303)
