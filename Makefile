# Carnet — the two commands a newcomer needs are `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3
AXE    := tests/browser/node_modules/axe-core/axe.min.js

.PHONY: install demo serve test test-long test-citus check bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# axe-core, injected into pages by the browser tests (pinned in tests/browser/package-lock.json).
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $(AXE)

## Seed synthetic patients into var/data (keys in var/keys) and serve the API and portals on http://127.0.0.1:8000
demo: $(STAMP)
	$(VENV)/bin/carnet demo

## The test suite (SQLite always; PostgreSQL too when CARNET_TEST_PG_URL is set). Tests over the
## external corpus (../shared/data/external) run when it is there; without it they are listed as not
## run in one line (and CI=true fails). The browser tests drive Debian's chromium (see .ci/run).
## A test stuck 10 minutes fails with its stacks; a crashed worker ends the run (xdist's --dist
## loadfile can wait forever after replacing one: pytest-xdist issue 784).
test: $(STAMP) $(AXE)
	$(VENV)/bin/pytest -m "not slow" -n 2 --dist loadfile --timeout 600 --max-worker-restart 0

## The Citus variants of the PostgreSQL tests that make test leaves out (tests/citus.py names the
## core ones make test runs); needs CARNET_TEST_CITUS_URL (.ci/citus-cluster.sh start). CI runs it.
test-citus: $(STAMP) $(AXE)
	CARNET_TEST_CITUS_SCOPE=rest $(VENV)/bin/pytest -m "citus and not slow" -n 2 --dist loadfile --timeout 600 --max-worker-restart 0

## Long soaks (pytest -m slow): 1,000 kill -9 rounds of carnet serve under writes, 10⁶ policy
## cases against the reference model, 100,000 fuzzed API requests, every Synthea bundle of the corpus,
## Citus operations (add a worker and rebalance under load, kill -9 of a worker and of the coordinator)
test-long: $(STAMP) $(AXE)
	$(VENV)/bin/pytest -m slow

## Lint, format, types, architecture contracts
check: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -n 0 tests/unit/test_architecture.py  # no import cycle, no module over 800 lines, no private imports

## Benchmarks (print numbers; see docs/performance.md)
bench: $(STAMP)
	$(PY) bench/run.py --quick   # wrk needed: apt-get install wrk; full sizes: bench/run.py
	$(PY) bench/journal.py
	$(PY) bench/research.py --patients 1000   # full size: bench/research.py (10,000 patients)
	$(PY) bench/apps.py --quick
	$(PY) bench/feeds.py --quick
	$(PY) bench/reimbursements.py --quick
	$(PY) bench/passkeys.py

## The README's screenshots (docs/img/*.png), taken by the browser tests against a seeded server
screenshots: $(STAMP) $(AXE)
	CARNET_DOCS_IMG=docs/img $(VENV)/bin/pytest -n 0 -q tests/browser/test_phone.py -k "hundred or messaging or representative"

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
