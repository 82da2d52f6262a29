"""Shared pytest configuration.

Its presence puts ``tests/`` on ``sys.path`` (pytest's default "prepend" import mode), so test
modules import the helpers beside it: ``from paths import EXTERNAL``, ``from softhsm import create_token``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.api.auth import issue_token
from carnet.demo import demo_people
from carnet.settings import Settings
from carnet.store.engine import make_engine, upgrade
from minting import Mint

#: ``corpus`` runs the tests over ``../shared/data/external`` only when it is there (one line when
#: not; an error under CI); ``pytester`` lets a test run pytest itself (see tests/unit/test_corpus_plugin.py).
pytest_plugins = ["corpus", "citus", "pytester"]

#: Hypothesis's per-example deadline (200 ms by default) is a wall-clock assertion: on a loaded CI
#: machine an example that takes a millisecond can take 300 ms and fail as "flaky". Speed is
#: checked by the benchmarks, not here; a test that needs a bound sets its own.
hypothesis_settings.register_profile("carnet", deadline=None)
hypothesis_settings.load_profile("carnet")

PG_URL = os.environ.get("CARNET_TEST_PG_URL")
CITUS_URL = os.environ.get("CARNET_TEST_CITUS_URL")
IN_CI = os.environ.get("CI") == "true"

#: The PostgreSQL tests run on plain PostgreSQL and on a Citus cluster (tests/citus.py).
BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("citus", marks=[pytest.mark.postgres, pytest.mark.citus]),
]


@pytest.fixture
def sqlite_file_store(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    """A migrated SQLite store on a file: its engine and its path (the SQLite store's own tests)."""
    path = tmp_path / "carnet.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield engine, path
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database: a SQLite file, or a new schema on PostgreSQL or on Citus."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'carnet.sqlite3'}"
        return
    url = CITUS_URL if request.param == "citus" else PG_URL
    if not url:  # Citus tests without a cluster are deselected by tests/citus.py
        if IN_CI:
            pytest.fail("CI must run the PostgreSQL suite: set CARNET_TEST_PG_URL (see .ci/run).")
        pytest.skip("CARNET_TEST_PG_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings with a private data directory and key directory."""
    # Rate limits high enough for the suite's bursts; tests of the limits set their own.
    return Settings(
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
        database_url=database_url,
        api_rate_per_minute=6_000_000,
        api_burst=100_000,
        login_rate_per_minute=100_000,
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """The wired services on a migrated database."""
    wired = build_services(settings)
    yield wired
    wired.store.engine.dispose()


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The real app in-process (its sign-in page offering the demo population, as ``carnet demo``'s)."""
    app = create_app(settings, services, demo_people=demo_people())
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def auth(settings: Settings) -> Mint:
    """Return a function minting development-token headers from claims."""

    def mint(**claims: Any) -> dict[str, str]:
        claims.setdefault("sub", f"{claims.get('kind', 'patient')}:{uuid.uuid4().hex[:8]}")
        token = issue_token(settings, claims, now=datetime.now(UTC), lifetime=timedelta(hours=1))
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    return mint
