"""The portals' session: who is signed in, their CSRF token, their break-glass state.

The session is kept server-side (``carnet.services.portal_sessions``, sealed, valid
:data:`SESSION_SECONDS` from its creation); the browser holds only the cookie ``carnet_session``,
an opaque random id (``carnet.web.session_cookie``: ``HttpOnly``, ``SameSite=Strict``,
``Secure`` in production mode). Signing in draws a new id; signing out deletes the session,
so a copied cookie stops working at once. The secret in ``<key_dir>/web-session.key`` (mode
0600, created on first use) now signs only the ``carnet_visits`` cookie (``carnet.web.login``).

Session keys (JSON values)::

    principal     the signed-in identity as token claims (``kind``, ``sub``, ``patient``,
                  ``identifier``, ``name``, ``idnps``, ``profession``, ``specialty``, ``samu``…;
                  see ``carnet.api.auth``), turned back into a ``Principal`` on every request
    csrf          the per-session CSRF token (``carnet.web.csrf``)
    signed_in     ISO instant of the sign-in
    previous_visit ISO instant of the patient's previous visit on this browser, or absent
    break_glass   {patient_id: {"justification": str, "started": ISO instant}} — the
                  professional portal's emergency accesses in progress
    provider_session  {"party": "pro"|"patient", "id_token": the provider's signed ID token}
                  — signing out ends the session at the provider too (``carnet.web.login``)

Public helpers: :func:`current_principal` (resolved once, before each portal route, by the
:func:`signed_in` dependency), :func:`login`, :func:`logout`,
:func:`start_break_glass`, :func:`break_glass`, :func:`end_break_glass`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request

from carnet.domain.errors import CarnetError
from carnet.domain.principal import Principal, principal_from_claims
from carnet.services.portal_sessions import SESSION_LIFETIME
from carnet.web.session_cookie import ROTATE

SESSION_COOKIE = "carnet_session"
SESSION_SECONDS = int(SESSION_LIFETIME.total_seconds())
SECRET_FILE = "web-session.key"  # noqa: S105 - a file name, not a secret


def session_secret(key_dir: Path) -> str:
    """Return the session-signing secret, creating ``<key_dir>/web-session.key`` (0600) on first use."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(32))
    return path.read_text(encoding="ascii").strip()


def current_principal(request: Request) -> Principal | None:
    """Return the signed-in principal of a request, or None (no session, signed out, unusable claims).

    A session whose id was signed out (its cookie copied, say) is emptied; the answer is kept
    for the rest of the request.
    """
    if "carnet_principal" in request.scope:
        known: Principal | None = request.scope["carnet_principal"]
        return known
    principal = _principal_of(request)
    request.scope["carnet_principal"] = principal
    return principal


def signed_in(request: Request) -> None:
    """Find who is signed in before a portal route runs (``current_principal`` then answers from memory).

    A plain ``def`` dependency, so FastAPI runs it in a worker thread: the session store's
    "signed out?" check never runs on the event loop (``carnet.offload``).
    """
    current_principal(request)


def _principal_of(request: Request) -> Principal | None:
    # A signed-out or expired session was not found by the middleware: its content is empty.
    claims = request.session.get("principal")
    if not isinstance(claims, dict):
        return None
    try:
        return principal_from_claims(claims)
    except CarnetError:
        return None


def login(request: Request, principal_claims: Mapping[str, Any], *, now: datetime) -> None:
    """Start a fresh session for ``principal_claims`` (any earlier session content is dropped).

    A new CSRF token is drawn, so a token seen before sign-in is worthless after it.
    """
    request.session.clear()
    request.scope["carnet_principal"] = principal_from_claims(principal_claims)
    request.scope[ROTATE] = True  # a new session id: one planted before sign-in is worthless
    request.session["principal"] = dict(principal_claims)
    request.session["csrf"] = secrets.token_urlsafe(32)
    request.session["signed_in"] = now.isoformat()


#: The session key of the provider session to end at sign-out: ``{"party": "pro"|"patient", "id_token": JWS}``.
PROVIDER_SESSION = "provider_session"


def remember_provider_session(request: Request, party: str, id_token: str) -> None:
    """Keep which OpenID provider signed this session in, and its ID token (RP-initiated logout)."""
    request.session[PROVIDER_SESSION] = {"party": party, "id_token": id_token}


def logout(request: Request) -> None:
    """End the session: emptied here, deleted server-side as the response starts (its cookie expired)."""
    request.session.clear()
    request.scope["carnet_principal"] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakGlass:
    """An emergency access in progress (accès en mode bris de glace): why, and since when.

    ``confirmed_by`` is the idNat_PS of the second professional who confirmed it, where the
    policy profile asks for one (``sovereign``).
    """

    justification: str
    started: datetime
    confirmed_by: str | None = None


def start_break_glass(
    request: Request, patient_id: str, justification: str, *, now: datetime, confirmed_by: str | None = None
) -> BreakGlass:
    """Record in the session that the signed-in professional broke the glass on a record."""
    state = dict(request.session.get("break_glass") or {})
    state[patient_id] = {"justification": justification, "started": now.isoformat()}
    if confirmed_by:
        state[patient_id]["confirmed_by"] = confirmed_by
    request.session["break_glass"] = state
    return BreakGlass(justification=justification, started=now, confirmed_by=confirmed_by)


def break_glass(request: Request, patient_id: str) -> BreakGlass | None:
    """Return the break-glass access in progress on a record, if any."""
    entry = (request.session.get("break_glass") or {}).get(patient_id)
    if not isinstance(entry, dict):
        return None
    try:
        confirmed_by = entry.get("confirmed_by")
        return BreakGlass(
            justification=str(entry["justification"]),
            started=datetime.fromisoformat(entry["started"]),
            confirmed_by=str(confirmed_by) if confirmed_by else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def end_break_glass(request: Request, patient_id: str) -> None:
    """Forget the break-glass access on a record."""
    state = dict(request.session.get("break_glass") or {})
    if state.pop(patient_id, None) is not None:
        request.session["break_glass"] = state
