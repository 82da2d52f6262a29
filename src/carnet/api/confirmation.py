"""``POST /fhir/$confirm-break-glass``: a professional confirms a colleague's emergency access.

The confirming professional calls it with their own bearer token and a Parameters body naming
the colleague (``professional``: their idNat_PS); the answer is a Parameters resource with
``confirmation`` (the token the colleague sends as ``X-Carnet-Confirmation`` with their
break-glass requests, ``carnet.auth.confirmation``) and ``expires`` (five minutes on).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from carnet.api.fhir import fhir_response, principal_of
from carnet.auth.confirmation import CONFIRMATION_SECONDS, issue_confirmation
from carnet.domain.errors import InvalidRequest

router = APIRouter()


async def _colleague(request: Request) -> str:
    try:
        body = await request.json()
    except ValueError:
        body = None
    parameters = (
        body.get("parameter") if isinstance(body, dict) and body.get("resourceType") == "Parameters" else None
    )
    for parameter in parameters if isinstance(parameters, list) else []:
        if isinstance(parameter, dict) and parameter.get("name") == "professional":
            value = parameter.get("valueString") or (parameter.get("valueIdentifier") or {}).get("value")
            if isinstance(value, str):
                return value
    raise InvalidRequest(
        "Send a Parameters resource with 'professional' (valueString: the idNat_PS of the colleague you confirm for).",
        expression=["Parameters.parameter"],
    )


@router.post("/$confirm-break-glass")
async def confirm_break_glass(request: Request) -> Response:
    """Issue a confirmation token for a colleague's emergency access, signed for the caller."""
    principal = await principal_of(request)
    colleague = await _colleague(request)
    now = time.time()
    token = issue_confirmation(request.app.state.confirmation_key, principal, colleague, now=now)
    expires = datetime.fromtimestamp(int(now) + CONFIRMATION_SECONDS, UTC).isoformat()
    return fhir_response(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "confirmation", "valueString": token},
                {"name": "expires", "valueInstant": expires},
            ],
        }
    )
