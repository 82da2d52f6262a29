"""The ``corpus`` plugin: corpus tests run when the folder is there, one line when not, an error in CI.

Each test runs pytest in a subprocess on a two-test suite whose conftest points ``paths.EXTERNAL``
at a folder of the test's choosing, so a missing corpus is simulated without touching the real one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from paths import REPO

SUITE = '''
import pytest

from paths import EXTERNAL


def test_core():
    """Needs nothing from outside."""


@pytest.mark.external
@pytest.mark.parametrize("name", sorted(p.name for p in EXTERNAL.glob("*")))
def test_corpus(name):
    """Reads the corpus (one case per file; no file, no case)."""
    assert (EXTERNAL / name).read_text() == "data"
'''


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, corpus: Path, *args: str
) -> pytest.RunResult:
    """Run the small suite in a subprocess, with ``paths.EXTERNAL`` pointing at ``corpus``."""
    pytester.makeconftest(
        f"from pathlib import Path\n\nimport paths\n\npaths.EXTERNAL = Path({str(corpus)!r})\n"
        'pytest_plugins = ["corpus"]\n'
    )
    pytester.makepyfile(test_sample=SUITE)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.fixture
def not_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run under test is a local one, even when this suite itself runs in CI."""
    monkeypatch.delenv("CI", raising=False)


@pytest.mark.usefixtures("not_in_ci")
def test_a_present_corpus_runs_its_tests(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the folder there, the corpus tests run like any other, and nothing is said about them."""
    corpus = pytester.mkdir("corpus")
    (corpus / "a.json").write_text("data")
    (corpus / "b.json").write_text("data")
    result = _run(pytester, monkeypatch, corpus)
    result.assert_outcomes(passed=3)
    assert "external corpus" not in result.stdout.str()


@pytest.mark.usefixtures("not_in_ci")
def test_a_missing_corpus_is_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the folder, its tests are deselected and one line names the folder: no skip, no empty set."""
    missing = pytester.path / "nowhere" / "external"
    result = _run(pytester, monkeypatch, missing, "-rA")
    result.assert_outcomes(passed=1, deselected=1)
    output = result.stdout.str()
    assert output.count(f"1 test over the external corpus not run: {missing} is absent.") == 1
    assert ("SKIPPED" in output, "empty parameter set" in output) == (False, False)


@pytest.mark.usefixtures("not_in_ci")
def test_a_missing_corpus_is_one_line_under_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two xdist workers, the controller still prints the line once."""
    missing = pytester.path / "nowhere" / "external"
    result = _run(pytester, monkeypatch, missing, "-n", "2")
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count(f"1 test over the external corpus not run: {missing} is absent.") == 1


def test_a_missing_corpus_fails_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI=true a missing corpus stops the run before any test, naming the folder."""
    monkeypatch.setenv("CI", "true")
    missing = pytester.path / "nowhere" / "external"
    result = _run(pytester, monkeypatch, missing)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"CI must run the tests over the external corpus, but {missing} is absent" in result.stderr.str()
