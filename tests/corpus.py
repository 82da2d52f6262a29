"""pytest plugin: tests over the external corpus run when it is there, and say so in one line when not.

A test that reads ``../shared/data/external`` (``paths.EXTERNAL``) carries the ``external`` marker
(a module sets ``pytestmark = pytest.mark.external``). Every other test uses data the project
makes itself (``carnet.synthetic``, the small fixtures in ``tests/``), so a fresh clone passes
``make test`` on its own. When the corpus folder is absent:

- locally, the marked tests are deselected and the terminal summary says so in one line naming
  the folder (no per-test skips, no "empty parameter set");
- under ``CI=true`` the run stops before any test with a usage error: CI must run the whole suite.

Under pytest-xdist each worker collects and deselects; it hands its count to the controller through
``workeroutput``, and the controller prints the line.
"""

from __future__ import annotations

import os

import pytest

import paths

MARKER = "external"
_NOT_RUN = pytest.StashKey[int]()
_OUTPUT_KEY = "carnet_external_not_run"


def is_corpus_present() -> bool:
    """Tell whether the external corpus folder exists."""
    return paths.EXTERNAL.is_dir()


def missing_message() -> str:
    """The one line that says which tests did not run, and why."""
    return f"{paths.EXTERNAL} is absent"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; under CI=true refuse to start without the corpus."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}: reads the external corpus ({paths.EXTERNAL}); not run when it is absent, "
        "an error under CI=true",
    )
    is_worker = hasattr(config, "workerinput")
    if os.environ.get("CI") == "true" and not is_worker and not is_corpus_present():
        raise pytest.UsageError(
            f"CI must run the tests over the external corpus, but {paths.EXTERNAL} is absent: "
            "copy shared/ beside the clone (see tests/paths.py)."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the corpus tests when the corpus is absent, and count them."""
    if is_corpus_present():
        return
    corpus = [item for item in items if item.get_closest_marker(MARKER) is not None]
    if not corpus:
        return
    config.hook.pytest_deselected(items=corpus)
    items[:] = [item for item in items if item.get_closest_marker(MARKER) is None]
    config.stash[_NOT_RUN] = len(corpus)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the count of corpus tests not run to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_OUTPUT_KEY] = session.config.stash.get(_NOT_RUN, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the xdist controller, keep the count a worker reports (every worker collects the same)."""
    output = getattr(node, "workeroutput", {})
    config: pytest.Config = getattr(node, "config")  # noqa: B009 (xdist's WorkerController has no stubs)
    count = int(output.get(_OUTPUT_KEY, 0))
    config.stash[_NOT_RUN] = max(count, config.stash.get(_NOT_RUN, 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say in one line how many corpus tests were not run and which folder is missing."""
    count = config.stash.get(_NOT_RUN, 0)
    if count:
        tests = "test" if count == 1 else "tests"
        terminalreporter.write_line(
            f"{count} {tests} over the external corpus not run: {missing_message()}.", yellow=True, bold=True
        )
