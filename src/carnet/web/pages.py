"""Rendering pages: the Jinja2 environment, the portal's shared state, and :func:`render`.

Templates live in ``carnet/web/templates`` (autoescaped, ``StrictUndefined``). Every page
extends ``base.html`` and receives, besides its own context:

=================  ===========================================================================
``_``              ``_("English text", name=value)`` → the text in the page's language
``lang``           ``"fr"`` or ``"en"``
``csrf_field()``   the hidden ``<input>`` every ``<form method="post">`` must contain
``csrf_token``     the token itself
``principal``      the signed-in :class:`~carnet.domain.principal.Principal`, or None
``path``           the request path (the language switch returns there)
``languages``      ``{"fr": "Français", "en": "English"}``
``date``           filter: ``{{ value | date }}``, ``{{ value | date(time=True) }}``
``flash``          a message id set by :func:`flash` before a redirect, shown once (or None)
=================  ===========================================================================

Blocks of ``base.html``: ``title``, ``nav`` (the portal's menu), ``banner`` (the professional
portal's break-glass banner, shown above the main content), ``content``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from joserfc.jwk import OctKey
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from carnet.auth.oidc import RelyingParty
from carnet.services.application import Application
from carnet.settings import Settings
from carnet.web.csrf import FIELD, csrf_token
from carnet.web.i18n import LANGUAGE_NAMES, format_date, language_of, translate
from carnet.web.identities import DemoDirectory
from carnet.web.session import current_principal
from carnet.web.units import number, unit_text


@dataclass(frozen=True, slots=True, kw_only=True)
class Portal:
    """What the portal routes share: the wired application, the settings and the templates.

    ``demo`` lists the identities the development sign-in page offers (none in production).
    """

    services: Application
    settings: Settings
    templates: jinja2.Environment
    session_secret: str
    demo: DemoDirectory
    #: Sign-in through the configured OpenID provider (``carnet.web.oidc_login``), if configured.
    sign_in: RelyingParty | None = None
    #: Sign-in of patients through their OpenID provider (``carnet.web.oidc_patient_login``).
    patient_sign_in: RelyingParty | None = None
    #: Carnet's public encryption key set, published at ``/oidc/jwks.json``.
    sign_in_jwks: dict[str, Any] | None = None
    #: Signs the second professional's break-glass confirmations (``carnet.auth.confirmation``).
    confirmation_key: OctKey


def make_templates() -> jinja2.Environment:
    """Build the Jinja2 environment of the portals (autoescaped, strict about undefined names)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("carnet.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["date"] = _date_filter
    environment.filters["number"] = _number_filter
    environment.filters["unit"] = unit_text
    return environment


@jinja2.pass_context
def _date_filter(context: jinja2.runtime.Context, value: str | None, time: bool = False) -> str:
    return format_date(value, str(context.get("lang", "fr")), with_time=time)


@jinja2.pass_context
def _number_filter(context: jinja2.runtime.Context, value: float | str | None) -> str:
    return number(value, str(context.get("lang", "fr")))


def portal(request: Request) -> Portal:
    """Return the portal state mounted on the application."""
    state: Portal = request.app.state.portal
    return state


def flash(request: Request, message: str) -> None:
    """Keep a message (a catalog id) to show once on the next page, after a redirect."""
    request.session["flash"] = message


def page_context(request: Request) -> dict[str, Any]:
    """Return the names every template receives (see the module docstring)."""
    language = language_of(request)
    token = csrf_token(request)

    def _(message: str, /, **values: Any) -> str:
        return translate(language, message, **values)

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, token)

    return {
        "_": _,
        "lang": language,
        "csrf_field": csrf_field,
        "csrf_token": token,
        "principal": current_principal(request),
        "path": request.url.path,
        "languages": LANGUAGE_NAMES,
        "flash": request.session.pop("flash", None),
        # The record a legal representative acts on now (carnet.web.representation).
        "acting_for_name": request.session.get("acting_for_name"),
    }


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a template of the portals into an HTML response."""
    values = page_context(request)
    values.update(context or {})
    html = portal(request).templates.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))
