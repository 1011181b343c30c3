# Two commands matter: `make run` (the whole system, embedded) and `make test` (everything CI runs).
# Both bootstrap from a fresh clone: uv (if missing), the virtualenv, the locked dependencies.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make test` runs the suite in parallel (pytest-xdist): most tests wait on servers, sandboxes,
# brokers and child processes, so four workers beat two even on two cores. `loadgroup` hands
# out the few `xdist_group`s first, each to one worker (two of whole systems, the CPU-bound bus
# crash tests), then every other test one at a time (ADR 0027). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 4

.PHONY: run test check format lint types pytest migrate token bench-ingest bench-app-home clean

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

## The whole system on the embedded default: SQLite, sandboxes, demo shop. Ctrl-C stops it.
run: $(VENV)/.synced
	$(BIN)/syncapp run

## Format check, lint, types, then the whole test suite with its coverage (child processes
## included: [tool.coverage.run] in pyproject.toml), the total on the report's last line.
## Bytecode is cached even where the environment says PYTHONDONTWRITEBYTECODE: each worker
## would otherwise compile the dependencies and rewrite every test module again.
test: check pytest

check: $(VENV)/.synced
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

pytest: $(VENV)/.synced
	rm -f .coverage .coverage.*
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup \
	  --cov --cov-report=term $(PYTEST_ARGS)

format: $(VENV)/.synced
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

migrate: $(VENV)/.synced
	$(BIN)/syncapp db upgrade

## An Admin API access token of the Shopify sandbox for demo.myshopify.com.
token: $(VENV)/.synced
	@$(BIN)/syncapp sandbox shopify token demo

bench-ingest: $(VENV)/.synced
	$(BIN)/python benchmarks/ingest/run.py

## App Home LCP/CLS/INP in headless Chromium (4x CPU, Fast 3G, eManageCRM 1.5 s slower).
bench-app-home: $(VENV)/.synced
	$(BIN)/python benchmarks/app_home/run.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
