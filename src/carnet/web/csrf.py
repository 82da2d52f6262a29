"""Cross-site request forgery protection for every form of the portals.

Each session holds one random token (``session["csrf"]``, drawn at sign-in, or on the first
page shown to an anonymous visitor). Every form carries it in a hidden field named
:data:`FIELD` (templates: ``{{ csrf_field() }}``), and every POST handler reads its form with
:func:`checked_form`, which compares it in constant time and raises :class:`CSRFError` when it
is missing or wrong; the portals answer that with a plain-language 403 page and change nothing.
:func:`form_text` then reads each text field of the checked form.
A POST whose ``Origin`` header names another site is refused the same way (defence in depth,
on top of the ``SameSite=Strict`` session cookie).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

FIELD = "csrf_token"


class CSRFError(Exception):
    """A form arrived without the session's CSRF token, or from another site."""


def csrf_token(request: Request) -> str:
    """Return the session's CSRF token, drawing one if the session has none yet."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    expected = f"{request.url.scheme}://{request.url.netloc}"
    return origin == expected


async def checked_form(request: Request, *, max_size: int | None = None) -> FormData:
    """Read a POSTed form and check its CSRF token.

    ``max_size`` bounds each uploaded part (bytes); multipart and urlencoded bodies are accepted.
    A handler that receives files closes the form (``await form.close()``) once it has read them.

    Raises:
        CSRFError: no token, a wrong token, no session token, or a cross-site ``Origin``.
    """
    if not _same_origin(request):
        raise CSRFError("cross-site form")
    expected = request.session.get("csrf")
    if max_size is not None:
        form = await request.form(max_part_size=max_size)
    else:
        form = await request.form()
    sent = form.get(FIELD)
    if not isinstance(expected, str) or not expected or not isinstance(sent, str):
        await form.close()
        raise CSRFError("missing token")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        await form.close()
        raise CSRFError("wrong token")
    return form


def form_text(form: FormData | Mapping[str, Any], name: str, limit: int = 2000) -> str:
    """Return a form field's text, stripped and cut to ``limit`` characters ("" if absent or a file)."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""
