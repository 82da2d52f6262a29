# Carnet — the two commands a newcomer needs are `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install demo serve test test-long check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Seed synthetic patients into var/demo and serve the FHIR API on http://127.0.0.1:8000
demo: $(STAMP)
	$(VENV)/bin/carnet demo

## The test suite (SQLite always; PostgreSQL too when CARNET_TEST_PG_URL is set)
test: $(STAMP)
	$(VENV)/bin/pytest -m "not slow" -n 2 --dist loadfile

## Long soaks: many generated cases, kill loops
test-long: $(STAMP)
	$(VENV)/bin/pytest -m slow

## Lint, format, types, architecture contracts
check: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## Benchmarks (print numbers; see docs/performance.md)
bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
