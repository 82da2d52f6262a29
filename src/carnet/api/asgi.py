"""The ASGI application built from the environment, for ``carnet serve --workers N``."""

from __future__ import annotations

import os

from carnet.api.app import build_services, create_app
from carnet.settings import load

_settings = load(os.environ)
app = create_app(_settings, build_services(_settings, migrate=False))
