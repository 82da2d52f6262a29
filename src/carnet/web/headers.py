"""Security headers of the portals' responses (never of the FHIR API's).

Every response under a portal path (:func:`is_web_path`) gets, unless the route set its own:

- ``Content-Security-Policy``: :data:`CSP` — only this origin, no inline script or style, no
  plugins, no ``<base>``, forms post here only, framed only by ourselves;
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` (no referrer to other sites; Chromium sends
  ``Origin: null`` on same-origin form posts under ``no-referrer``, which the CSRF check refuses),
  ``X-Frame-Options: SAMEORIGIN``, ``Cross-Origin-Opener-Policy: same-origin``,
  ``Cross-Origin-Resource-Policy: same-origin``, a ``Permissions-Policy`` that turns off
  camera, microphone, geolocation and payment;
- ``Cache-Control: no-store`` on pages and document content (a shared computer's cache must not
  keep a medical record), ``public, max-age=3600`` on ``/static/``.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
#: The policy of raw document content (PDF shown in a frame, downloads): nothing may run.
CONTENT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"

WEB_PREFIXES = ("/login", "/logout", "/language", "/static/", "/patient", "/pro", "/portal")

_COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "SAMEORIGIN",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def file_response(content: bytes, media_type: str, filename: str, *, inline: bool = False) -> Response:
    """Return raw content as a file: shown in the page (``inline``) or downloaded, under :data:`CONTENT_CSP`.

    ``filename`` is written into ``Content-Disposition`` as it is: give a plain ASCII name.
    """
    return Response(
        content=content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"',
            "Content-Security-Policy": CONTENT_CSP,
        },
    )


def is_web_path(path: str) -> bool:
    """Tell whether a path belongs to the portals (``/`` included), not to the FHIR API."""
    return path == "/" or path.startswith(WEB_PREFIXES)


def apply_security_headers(headers: MutableHeaders, path: str) -> None:
    """Add the portals' security headers to a response's headers (keeping any already set)."""
    for name, value in _COMMON.items():
        headers.setdefault(name, value)
    headers.setdefault("content-security-policy", CSP)
    if path.startswith("/static/"):
        headers.setdefault("cache-control", "public, max-age=3600")
    else:
        headers.setdefault("cache-control", "no-store")


class SecurityHeadersMiddleware:
    """ASGI middleware adding :func:`apply_security_headers` to the portals' responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; decorate the response start of portal paths."""
        if scope["type"] != "http" or not is_web_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                apply_security_headers(MutableHeaders(scope=message), path)
            await send(message)

        await self.app(scope, receive, send_with_headers)
