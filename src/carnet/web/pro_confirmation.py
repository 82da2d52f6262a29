"""A professional confirms a colleague's emergency access, signed in as themself (``sovereign`` profile).

==================================  =================================================================
``GET  /pro/confirm``               the form: the colleague's national identifier (idNat_PS)
``POST /pro/confirm``               the confirmation to hand over (valid five minutes), shown once
==================================  =================================================================

The confirmation is the token of ``carnet.auth.confirmation``: the colleague pastes it into the
break-glass form (field ``confirmation``), and :func:`confirmer_of` checks it there. The journal
entry of every read in that emergency names both professionals.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.auth.confirmation import CONFIRMATION_SECONDS, issue_confirmation, verify_confirmation
from carnet.domain.errors import AccessDenied
from carnet.domain.principal import ActorKind, Principal
from carnet.web.csrf import checked_form, form_text
from carnet.web.pages import portal, render
from carnet.web.session import current_principal

router = APIRouter(prefix="/pro", include_in_schema=False)


def confirmer_of(request: Request, form: Any, principal: Principal) -> str | None:
    """The idNat_PS of the colleague whose confirmation the break-glass form carries, if it verifies."""
    token = form_text(form, "confirmation", 4000)
    if not token:
        return None
    try:
        confirmer = verify_confirmation(portal(request).confirmation_key, token, principal, now=time.time())
    except AccessDenied:
        return None
    return confirmer.professional_id


def _professional(request: Request) -> Principal | None:
    principal = current_principal(request)
    if principal is None or principal.kind is not ActorKind.PROFESSIONAL:
        return None
    return principal


@router.get("/confirm")
def confirm_form(request: Request) -> Response:
    """Show the form to confirm a colleague's emergency access."""
    if _professional(request) is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, "pro/confirm.html", {"confirmation": None, "colleague": "", "error": None})


@router.post("/confirm")
async def confirm(request: Request) -> Response:
    """Issue the confirmation for the colleague named in the form."""
    form = await checked_form(request)
    principal = _professional(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    colleague = form_text(form, "colleague", 40).replace(" ", "")
    try:
        token = issue_confirmation(portal(request).confirmation_key, principal, colleague, now=time.time())
    except AccessDenied:
        return render(
            request,
            "pro/confirm.html",
            {
                "confirmation": None,
                "colleague": colleague,
                "error": "Give your colleague's national identifier (RPPS or ADELI number, idNat_PS), not your own.",
            },
            status=422,
        )
    return render(
        request,
        "pro/confirm.html",
        {"confirmation": token, "colleague": colleague, "minutes": CONFIRMATION_SECONDS // 60, "error": None},
    )
