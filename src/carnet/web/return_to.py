"""Where to go back after signing in: an app's authorization request sends the patient to sign in first.

Signing in draws a fresh session (``carnet.web.session.login``), so the page to come back to is
kept in a short-lived cookie of its own, holding a local path only (never another site).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

RETURN_COOKIE = "carnet_return"
#: Ten minutes to sign in.
RETURN_SECONDS = 600


def is_local(path: str) -> bool:
    """Tell whether ``path`` is a path of this site (not ``//host`` nor ``\\``)."""
    return path.startswith("/") and not path.startswith("//") and "\\" not in path


def remember(response: Response, path: str) -> None:
    """Set the page to come back to after signing in."""
    if is_local(path):
        response.set_cookie(RETURN_COOKIE, path, max_age=RETURN_SECONDS, httponly=True, samesite="lax")


def take(request: Request, response: Response) -> str | None:
    """Return the page to come back to (and forget it), or None."""
    path = request.cookies.get(RETURN_COOKIE)
    if path is None:
        return None
    response.delete_cookie(RETURN_COOKIE)
    return path if is_local(path) else None
