"""pytest plugin: the PostgreSQL tests run on a Citus cluster too when ``CARNET_TEST_CITUS_URL`` is set.

The ``database_url`` fixture (conftest.py) has a third backend, ``citus``: a fresh schema on the
coordinator of a cluster started by ``.ci/citus-cluster.sh`` (a coordinator and two workers from
the vendored build in ``../shared/vendor/citus``). When the URL is not set:

- locally, those tests are deselected and the terminal summary says so in one line;
- under ``CI=true`` the run stops before any test with a usage error: CI must run them
  (``.ci/run`` starts the cluster and sets the URL).

Every PostgreSQL test has a Citus variant, but the whole set takes about 15 minutes on the 2-core
machine (each test builds and drops a distributed schema, each query crosses to a worker), which
would triple ``make test``. So ``make test`` runs the variants of the modules in ``CORE`` (the
store, the REST interactions, the journal and its tampering, backups, kill -9: every SQL path of
the store, distributed); ``make test-citus`` (``CARNET_TEST_CITUS_SCOPE=rest``, run by CI after
``make test``) runs the others, and ``CARNET_TEST_CITUS_SCOPE=all`` every one.
"""

from __future__ import annotations

import os

import pytest

MARKER = "citus"
URL = os.environ.get("CARNET_TEST_CITUS_URL")
SCOPE = os.environ.get("CARNET_TEST_CITUS_SCOPE", "core")

#: The test modules whose Citus variants ``make test`` runs (docs/testing.md says why these).
CORE = frozenset(
    {
        "test_citus.py",
        "test_fhir_rest.py",
        "test_journal.py",
        "test_journal_mutation.py",
        "test_backup.py",
        "test_kill9.py",
        "test_erasure.py",
        "test_keys.py",
    }
)
_NOT_RUN = pytest.StashKey[int]()
_OUTPUT_KEY = "carnet_citus_not_run"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; under CI=true refuse to start without a Citus cluster."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}: runs on a Citus cluster (CARNET_TEST_CITUS_URL); an error under CI=true without",
    )
    is_worker = hasattr(config, "workerinput")
    if os.environ.get("CI") == "true" and not is_worker and not URL:
        raise pytest.UsageError(
            "CI must run the PostgreSQL suite on Citus, but CARNET_TEST_CITUS_URL is not set: "
            "start .ci/citus-cluster.sh (it needs ../shared/vendor/citus) as .ci/run does."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the Citus tests when no cluster is configured (and count them), or those outside the scope.

    The scope: ``core`` (the modules in ``CORE``), ``rest`` (the others) or ``all``.
    """
    if URL:
        if SCOPE != "all":
            beyond = [
                item
                for item in items
                if item.get_closest_marker(MARKER) is not None
                and (item.path.name in CORE) == (SCOPE == "rest")
            ]
            if beyond:
                config.hook.pytest_deselected(items=beyond)
                dropped = {id(item) for item in beyond}
                items[:] = [item for item in items if id(item) not in dropped]
        return
    citus = [item for item in items if item.get_closest_marker(MARKER) is not None]
    if not citus:
        return
    config.hook.pytest_deselected(items=citus)
    items[:] = [item for item in items if item.get_closest_marker(MARKER) is None]
    config.stash[_NOT_RUN] = len(citus)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the count of Citus tests not run to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_OUTPUT_KEY] = session.config.stash.get(_NOT_RUN, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the xdist controller, keep the count a worker reports (every worker collects the same)."""
    output = getattr(node, "workeroutput", {})
    config: pytest.Config = getattr(node, "config")  # noqa: B009 (xdist's WorkerController has no stubs)
    config.stash[_NOT_RUN] = max(int(output.get(_OUTPUT_KEY, 0)), config.stash.get(_NOT_RUN, 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say in one line how many Citus tests were not run and why."""
    count = config.stash.get(_NOT_RUN, 0)
    if count:
        terminalreporter.write_line(
            f"{count} tests on Citus not run: CARNET_TEST_CITUS_URL is not set (see .ci/citus-cluster.sh).",
            yellow=True,
            bold=True,
        )
