"""The web portals: server-rendered pages for patients (``/patient``) and professionals (``/pro``).

One call wires them into the FastAPI application of ``carnet.api.app``::

    mount_web(app, services, settings)

It adds, for the portals only: the signed session cookie (``carnet.web.session``), the
security headers (``carnet.web.headers``), plain-language error pages (``carnet.web.errors``),
``/static``, the sign-in pages (``carnet.web.login``), the patient portal (``carnet.web.patient``,
``patient_documents``, ``patient_journal``, ``patient_profile``) and, when the module exists, the
professional portal (``carnet.web.pro``, whose ``router`` is included as it is: its paths start
with ``/pro``).

What a portal module uses (each documented in its module):

- ``carnet.web.pages``: ``render(request, "pro/x.html", {...})``, ``portal(request)`` →
  ``.services`` (``.records`` is the ``RecordService``), ``.settings``;
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
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles

from carnet.settings import Mode, Settings
from carnet.web.errors import install_error_pages
from carnet.web.headers import SecurityHeadersMiddleware
from carnet.web.pages import Portal, make_templates
from carnet.web.session import SESSION_COOKIE, SESSION_SECONDS, session_secret

if TYPE_CHECKING:
    from carnet.api.app import Services

__all__ = ["mount_web"]


def mount_web(app: FastAPI, services: Services, settings: Settings) -> None:
    """Add the portals to ``app``: session, security headers, error pages, static files, routes."""
    from carnet.web import login, patient, patient_documents, patient_journal, patient_profile

    secret = session_secret(settings.key_dir)
    app.state.portal = Portal(
        services=services, settings=settings, templates=make_templates(), session_secret=secret
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        same_site="strict",
        https_only=settings.mode is Mode.PRODUCTION,
    )
    install_error_pages(app)
    static = Path(str(files("carnet.web").joinpath("static")))
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.include_router(login.router)
    app.include_router(patient.router)
    app.include_router(patient_documents.router)
    app.include_router(patient_journal.router)
    app.include_router(patient_profile.router)
    try:
        pro = importlib.import_module("carnet.web.pro")
    except ModuleNotFoundError as error:
        if error.name != "carnet.web.pro":
            raise
    else:
        router = getattr(pro, "router", None)
        if isinstance(router, APIRouter):
            app.include_router(router)
