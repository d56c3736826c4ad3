# The README's commands. Everything installs into .venv from requirements.lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Go builds the metrics linter; fall back to the usual install place if it is not on PATH.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)

.PHONY: run test lint typecheck unit integration chaos bench lock clean kafka-jars tools

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "zapflow needs Python 3.11 or newer (found %s); install it and run make again" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/zapflow dev

lint: $(STAMP)
	$(BIN)/ruff check worker tests bench
	$(BIN)/ruff format --check worker tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

kafka-jars: $(STAMP)
	$(BIN)/zapflow kafka fetch

# The linter of `promtool check metrics`, built from tools/promlint (needs Go); a test runs it
# on the worker's /metrics.
$(BIN)/promlint: tools/promlint/main.go tools/promlint/go.mod tools/promlint/go.sum $(STAMP)
	@test -x "$(GO)" || { echo "Go is needed to build tools/promlint (the metrics linter): install Go 1.23+ or set GO=/path/to/go"; exit 1; }
	cd tools/promlint && $(GO) build -o ../../$(BIN)/promlint .

tools: $(BIN)/promlint

test: lint typecheck kafka-jars tools
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet || true
	$(BIN)/coverage report

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: kafka-jars
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# The multi-process chaos tests (also part of make test), with the counts they measure printed.
chaos: kafka-jars
	$(BIN)/pytest tests/integration/fleet -s $(PYTEST_ARGS)

bench: kafka-jars
	$(BIN)/python -m bench

# Re-resolve every dependency to its newest allowed version and pin it.
lock:
	$(PYTHON) -m venv .lockvenv && .lockvenv/bin/pip install --quiet pip-tools
	.lockvenv/bin/pip-compile --quiet --strip-extras --extra dev --allow-unsafe -o requirements.lock pyproject.toml
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* build *.egg-info
