"""The ASGI application built from the environment, for ``carnet serve --workers N``.

A composition root, like ``carnet.cli``: in development mode it hands the demo population's
identities to the sign-in page (``carnet.demo``); the API and the portals never import them.
"""

from __future__ import annotations

import os

from carnet.api.app import build_services, create_app
from carnet.demo import demo_people
from carnet.heap import settle
from carnet.settings import load

_settings = load(os.environ)
app = create_app(
    _settings,
    build_services(_settings, migrate=False),
    demo_people=demo_people() if _settings.development_issuer_enabled else (),
)
settle()  # the application is built: its objects leave the collector's sight (carnet.heap)
