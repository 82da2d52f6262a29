"""Error pages of the portals: plain language, in the visitor's language, never a stack trace.

:func:`install_error_pages` wraps the application's exception handlers: for a portal request
(:func:`~carnet.web.headers.is_web_path`, or any request whose ``Accept`` prefers HTML outside
``/fhir``) the answer is an HTML page (``error.html``) with a status and one sentence saying what
happened and what to do; every other request keeps the FHIR ``OperationOutcome`` of
``carnet.api``. Routes may also raise :class:`PageError` to show a page with a chosen message.

=========  ================================================================================
status     what the page says
=========  ================================================================================
400, 422   what was sent could not be used (the route's own message when it has one)
401        redirect to ``/login``
403        not allowed; a CSRF failure says the form expired and that nothing changed
404        the page does not exist or is not yours to see (same words for both)
409, 412   changed meanwhile: reload and try again
410        deleted
413        file too large
500, 503   our fault, logged, try again later
=========  ================================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from carnet.domain.errors import CarnetError
from carnet.offload import offload
from carnet.web.csrf import CSRFError
from carnet.web.headers import apply_security_headers, is_web_path
from carnet.web.i18n import language_of, translate

log = logging.getLogger("carnet.web")

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]

MESSAGES = {
    400: "What was sent could not be used. Check what you entered and try again.",
    403: "You are not allowed to do this.",
    404: "This page does not exist, or it is not yours to see.",
    405: "This action is not possible on this page.",
    409: "This was changed at the same time by someone else. Reload the page and try again.",
    410: "This item was deleted.",
    413: "The file is too large.",
    422: "What was sent could not be used. Check what you entered and try again.",
    500: "Something went wrong on our side. It has been recorded; please try again later.",
    503: "The service is briefly unavailable. Please try again in a few minutes.",
}
TITLES = {
    400: "Cannot be used",
    403: "Not allowed",
    404: "Page not found",
    405: "Not possible",
    409: "Changed meanwhile",
    410: "Deleted",
    413: "Too large",
    422: "Cannot be used",
    500: "Something went wrong",
    503: "Unavailable",
}
CSRF_MESSAGE = (
    "This form has expired or did not come from Carnet, so nothing was changed. "
    "Go back, reload the page and try again."
)


class PageError(Exception):
    """Show an error page with ``status`` and a message id of the catalogs (``message``)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(status, MESSAGES[500]))
        self.status = status
        self.message = message or MESSAGES.get(status, MESSAGES[500])


def wants_page(request: Request) -> bool:
    """Tell whether an error on this request is answered with an HTML page."""
    path = request.url.path
    if is_web_path(path):
        return True
    if path.startswith(("/fhir", "/docs", "/openapi")):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, message: str | None = None) -> Response:
    """Render the plain-language error page (a plain-text page if even that fails)."""
    language = language_of(request)
    message = message or MESSAGES.get(status, MESSAGES[500 if status >= 500 else 400])
    title = TITLES.get(status, TITLES[500 if status >= 500 else 400])
    try:
        from carnet.web.pages import page_context, portal

        try:
            values = page_context(request)
        except AssertionError:  # no session on this request (an error before the session middleware)
            values = {
                "_": lambda m, /, **v: translate(language, m, **v),
                "lang": language,
                "csrf_field": lambda: "",
                "csrf_token": "",
                "principal": None,
                "path": request.url.path,
                "languages": {"fr": "Français", "en": "English"},
                "flash": None,
            }
        values.update({"status": status, "title": title, "message": message})
        html = portal(request).templates.get_template("error.html").render(values)
        response: Response = HTMLResponse(html, status_code=status)
    except Exception:  # the error page itself must never fail into a stack trace
        log.exception("the error page could not be rendered")
        response = PlainTextResponse(message, status_code=status)
    apply_security_headers(response.headers, request.url.path)
    return response


def _page_for(request: Request, exc: Exception, status_of: Callable[[CarnetError], int]) -> Response:
    if isinstance(exc, PageError):
        return error_page(request, exc.status, exc.message)
    if isinstance(exc, CSRFError):
        return error_page(request, 403, CSRF_MESSAGE)
    if isinstance(exc, CarnetError):
        status = status_of(exc)
        if status == 401:
            return RedirectResponse("/login", status_code=303)
        if status >= 500:
            log.error(
                "portal request failed: %s %s -> %s (%s)",
                request.method,
                request.url.path,
                status,
                type(exc).__name__,
            )
        return error_page(request, status)
    if isinstance(exc, StarletteHTTPException):
        return error_page(request, exc.status_code)
    if isinstance(exc, RequestValidationError):
        return error_page(request, 400)
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_page(request, 500)


def install_error_pages(app: FastAPI, status_of: Callable[[CarnetError], int]) -> None:
    """Answer errors of portal requests with pages, keeping the API's handlers for the rest.

    ``status_of`` gives an error's HTTP status (the API's table, handed in by the composition
    root). A page is built in a worker thread: finding who is signed in may read the database.
    """
    originals: dict[Any, Any] = dict(app.exception_handlers)

    def dispatch(kind: type[Exception] | int) -> Handler:
        fallback = originals.get(kind)

        async def handler(request: Request, exc: Exception) -> Response:
            if wants_page(request) or fallback is None:
                return await offload(_page_for, request, exc, status_of)
            result = fallback(request, exc)
            if isinstance(result, Response):
                return result
            response: Response = await result
            return response

        return handler

    kinds: tuple[type[Exception], ...] = (
        CarnetError,
        StarletteHTTPException,
        RequestValidationError,
        Exception,
        PageError,
        CSRFError,
    )
    for kind in kinds:
        app.add_exception_handler(kind, dispatch(kind))
