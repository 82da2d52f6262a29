"""The web portals: server-rendered pages for patients (``/patient``) and professionals (``/pro``).

One call, from the composition root (``carnet.api.app.create_app``), wires them into the
FastAPI application::

    mount_web(app, application, settings, status_of=status_of, demo_people=people)

The portals see the application only through ``carnet.services.application.Application``
(the same services as the FHIR API) and import nothing of ``carnet.api``: the HTTP status of
an error is the function the root hands in, and the demo identities are data it hands in.

It adds, for the portals only: the server-side session behind an opaque cookie (``carnet.web.session``), the
security headers (``carnet.web.headers``), plain-language error pages (``carnet.web.errors``),
``/static``, the sign-in pages (``carnet.web.login``), the patient portal (``carnet.web.patient``,
``patient_documents``, ``patient_journal``, ``patient_profile``) and, when the module exists, the
professional portal (``carnet.web.pro``, whose ``router`` is included as it is: its paths start
with ``/pro``).

What a portal module uses (each documented in its module):

- ``carnet.web.pages``: ``render(request, "pro/x.html", {...})``, ``portal(request)`` →
  ``.services`` (the ``Application``; ``.records`` is the ``RecordService``), ``.settings``,
  ``.demo`` (the development sign-in's identities);
- ``carnet.offload``: ``await offload(fn, ...)`` for every blocking call in an ``async def``
  handler (or write the handler as a plain ``def``); who is signed in is resolved before each
  route by the ``signed_in`` dependency, in a worker thread;
- ``carnet.web.session``: ``current_principal(request)``, ``login``, ``logout``,
  ``start_break_glass`` / ``break_glass`` / ``end_break_glass``;
- ``carnet.web.csrf``: ``form = await checked_form(request)`` first in every POST handler, then
  ``form_text(form, "name", limit)`` for each text field;
- ``carnet.web.headers``: ``file_response(content, media_type, filename, inline=…)`` for raw
  content (downloads, a PDF in a frame), under ``CONTENT_CSP``;
- ``carnet.web.errors``: ``raise PageError(404)`` (or any status, with a catalog message);
- ``carnet.web.i18n``: ``translate(lang, "English text")``; templates call ``_("…")``;
  new strings go into ``locales/fr.json``.

Every route of the portals is left out of the OpenAPI schema (``include_in_schema=False``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from carnet.auth.confirmation import confirmation_key
from carnet.auth.oidc import RelyingParty
from carnet.domain.errors import CarnetError
from carnet.domain.principal import Identifier
from carnet.services.application import Application
from carnet.services.rate_limit import RateLimiter
from carnet.settings import Mode, Settings
from carnet.web.body_limit import BodyLimitMiddleware
from carnet.web.errors import install_error_pages
from carnet.web.headers import SecurityHeadersMiddleware
from carnet.web.identities import DemoDirectory
from carnet.web.pages import Portal, make_templates
from carnet.web.session import SESSION_COOKIE, SESSION_SECONDS, session_secret, signed_in
from carnet.web.session_cookie import ServerSessionMiddleware

__all__ = ["mount_web"]


async def _favicon(request: Request) -> Response:
    """Send browsers asking for ``/favicon.ico`` to the portals' icon."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


def mount_web(
    app: FastAPI,
    services: Application,
    settings: Settings,
    *,
    status_of: Callable[[CarnetError], int],
    demo_people: Sequence[tuple[Identifier, str]] = (),
    sign_in: RelyingParty | None = None,
    patient_sign_in: RelyingParty | None = None,
    sign_in_jwks: dict[str, Any] | None = None,
) -> None:
    """Add the portals to ``app``: session, security headers, error pages, static files, routes.

    ``status_of`` maps an error to its HTTP status (the API's table); ``demo_people`` are the
    identities the development sign-in page offers when a record has their INS; ``sign_in`` is
    the OpenID relying party professionals sign in with (and ``sign_in_jwks`` the public key
    set it publishes), when a provider is configured.
    """
    from carnet.web import (
        login,
        oidc_login,
        oidc_patient_login,
        patient,
        patient_accounts,
        patient_apps,
        patient_documents,
        patient_feeds,
        patient_journal,
        patient_messages,
        patient_notifications,
        patient_profile,
        patient_reimbursements,
        patient_search,
        patient_studies,
        pro_confirmation,
        representation,
        sign_in_means,
        smart,
    )

    secret = session_secret(settings.key_dir)
    app.state.portal = Portal(
        services=services,
        settings=settings,
        templates=make_templates(),
        session_secret=secret,
        demo=DemoDirectory(services.records, demo_people),
        sign_in=sign_in,
        patient_sign_in=patient_sign_in,
        sign_in_jwks=sign_in_jwks,
        confirmation_key=confirmation_key(settings.key_dir),
    )
    # Sign-ins per client address and per account (carnet.web.login); burst = one minute's worth.
    app.state.login_limiter = RateLimiter(
        per_minute=settings.login_rate_per_minute, burst=settings.login_rate_per_minute
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        ServerSessionMiddleware,
        sessions=services.portal_sessions,
        cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        https_only=settings.mode is Mode.PRODUCTION,
    )
    install_error_pages(app, status_of)
    static = Path(str(files("carnet.web").joinpath("static")))
    app.mount("/static", StaticFiles(directory=static), name="static")
    # Browsers and bookmarks ask for /favicon.ico whatever the page says.
    app.add_route("/favicon.ico", _favicon, include_in_schema=False)
    # Who is signed in is found before every portal route, in a worker thread.
    signed = [Depends(signed_in)]
    app.include_router(login.router, dependencies=signed)
    app.include_router(oidc_login.router, dependencies=signed)
    app.include_router(oidc_patient_login.router, dependencies=signed)
    app.include_router(patient_accounts.router, dependencies=signed)
    app.include_router(pro_confirmation.router, dependencies=signed)
    app.include_router(representation.router, dependencies=signed)
    app.include_router(sign_in_means.router, dependencies=signed)
    app.include_router(patient.router, dependencies=signed)
    app.include_router(patient_documents.router, dependencies=signed)
    app.include_router(patient_journal.router, dependencies=signed)
    app.include_router(patient_search.router, dependencies=signed)
    app.include_router(patient_notifications.router, dependencies=signed)
    app.include_router(patient_feeds.router, dependencies=signed)
    app.include_router(patient_messages.router, dependencies=signed)
    app.include_router(patient_profile.router, dependencies=signed)
    app.include_router(patient_reimbursements.router, dependencies=signed)
    app.include_router(patient_studies.router, dependencies=signed)
    # SMART on FHIR: the patient's consent screen and apps page; the apps' token endpoints.
    app.state.smart = smart.SmartServer(
        services.apps, base_url=settings.base_url, clock=services.records.clock, key_dir=settings.key_dir
    )
    app.include_router(patient_apps.router, dependencies=signed)
    app.include_router(smart.router)
    try:
        pro = importlib.import_module("carnet.web.pro")
    except ModuleNotFoundError as error:
        if error.name != "carnet.web.pro":
            raise
    else:
        router = getattr(pro, "router", None)
        if isinstance(router, APIRouter):
            app.include_router(router, dependencies=signed)
            pro_messages = importlib.import_module("carnet.web.pro_messages")
            app.include_router(pro_messages.router, dependencies=signed)
            pro_reimbursements = importlib.import_module("carnet.web.pro_reimbursements")
            app.include_router(pro_reimbursements.router, dependencies=signed)
