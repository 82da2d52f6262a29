"""Legal representatives in the patient portal: one person, several records, one at a time.

A parent or a guardian (représentant légal) signs in as themself; their identity lists the records
they represent (``represents``). The portal shows one of them at a time, with a banner naming it,
and every page reads it through the policy as the representative, so what the rules hide from
representatives (``INVISIBLE_REPRESENTANTS_LEGAUX``, a minor's secret documents) stays hidden.

=============================  ==================================================================
``GET  /patient/switch``       the records they represent, by name
``POST /patient/switch``       ``record``: act on that one now (refused for any other record)
=============================  ==================================================================
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import CarnetError, Unauthenticated
from carnet.domain.principal import ActorKind, Principal
from carnet.offload import offload
from carnet.web.csrf import checked_form, form_text
from carnet.web.errors import PageError
from carnet.web.holder import ACTING_FOR, page
from carnet.web.pages import portal
from carnet.web.session import current_principal

router = APIRouter(prefix="/patient", include_in_schema=False)
#: The session key of the name of the record acted on (shown in the banner of every page).
ACTING_FOR_NAME = "acting_for_name"


def _representative(request: Request) -> Principal:
    principal = current_principal(request)
    if principal is None or principal.kind is not ActorKind.REPRESENTATIVE or not principal.represents:
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
    records = portal(request).services.records.records(principal)
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
    """List the records the representative acts for."""
    principal = _representative(request)
    return page(
        request,
        "patient/switch.html",
        "switch",
        {"records": represented(request, principal), "current": request.session.get(ACTING_FOR)},
    )


@router.post("/switch")
async def switch(request: Request) -> Response:
    """Act on another of the represented records."""
    form = await checked_form(request)
    principal = _representative(request)
    chosen = form_text(form, "record", 100)
    names = dict(await offload(represented, request, principal))
    if chosen not in names:
        raise PageError(403)
    request.session[ACTING_FOR] = chosen
    request.session[ACTING_FOR_NAME] = names[chosen]
    return RedirectResponse("/patient/", status_code=303)
