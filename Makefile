# Ops-Core developer commands. `make run` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.13: use a python3.13 that actually starts (a pyenv shim can exist and still refuse), from
# $PYTHON, the PATH, or pyenv's versions folder.
PYTHON ?= $(shell for c in python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null | sort -rV); do \
	  if "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then command -v "$$c"; exit 0; fi; \
	done)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
CHECKOV := $(CHECKOV_VENV)/bin/checkov
HOST ?= 127.0.0.1
PORT ?= 3000
# sam needs a region to validate and build, never credentials.
export AWS_DEFAULT_REGION ?= us-east-1
# No telemetry from developer machines or CI (they have no network for it anyway).
export SAM_CLI_TELEMETRY := 0
# checkov runs offline: no guideline download, no update check.
export BC_SKIP_MAPPING := TRUE
export CKV_SKIP_PACKAGE_UPDATE_CHECK := TRUE

.PHONY: help python run demo test lint typecheck unit integration e2e browser screenshots validate build bench deploy schema sdk-models clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: Python 3.13 not found (Lambda runs python3.13). Install it, or run: make PYTHON=/path/to/python3.13 ..." >&2; \
	  exit 1; \
	fi
	@echo "using $(PYTHON) ($$($(PYTHON) --version))"

$(VENV)/.installed: pyproject.toml requirements-dev.txt layers/opscore/requirements.txt sdk/python/pyproject.toml | python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e . -e sdk/python
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt | python
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.txt
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt | python
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	@touch $@

run: $(VENV)/.installed ## install, then serve Ops-Core locally on $(HOST):$(PORT)
	$(BIN)/opscore local --host $(HOST) --port $(PORT)

demo: $(VENV)/.installed ## three agents on the SDK's worker run five sessions on a local runtime, live (under a minute)
	$(BIN)/opscore demo

test: lint typecheck validate ## every check: ruff, xenon, mypy, sam validate --lint, checkov, pytest
	$(BIN)/pytest

lint: $(VENV)/.installed ## ruff lint and format check, and the complexity gate (xenon)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# The complexity gate: radon's cyclomatic complexity, which (unlike ruff's C90) counts boolean operators.
	@# Nothing below B in what ships; the tooling and the bench may reach C. Failures name file:line and function.
	$(BIN)/xenon --paths-in-front --max-absolute B --max-modules B --max-average A layers functions sdk/python/opscore_sdk
	$(BIN)/xenon --paths-in-front --max-absolute C --max-modules B --max-average A tooling bench

typecheck: $(VENV)/.installed ## mypy (strict on the opscore library)
	$(BIN)/mypy layers/opscore/opscore tooling/opscore_tools functions bench sdk/python/opscore_sdk

unit: $(VENV)/.installed ## unit tests only
	$(BIN)/pytest tests/unit

integration: $(VENV)/.installed ## handler and state-machine tests on moto
	$(BIN)/pytest tests/integration

e2e: $(VENV)/.installed ## HTTP tests against the local runtime
	$(BIN)/pytest tests/e2e

browser: $(VENV)/.installed ## the dashboard's tests in headless Chromium (Debian's chromium package)
	$(BIN)/pytest tests/e2e/browser

screenshots: $(VENV)/.installed ## redraw docs/dashboard/*.png from a real run of the dashboard (needs chromium)
	$(BIN)/python -m tests.e2e.browser.screenshots docs/dashboard

validate: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## sam validate --lint (cfn-lint), then checkov on the template
	$(SAM) validate --lint --template template.yaml
	@# Any failed check fails the build; a suppression sits beside its resource (Metadata: checkov: skip) with its
	@# reason. checkov exits 0 on a template it could not parse or did not recognise, so its summary must show a
	@# scan with no parsing error.
	@echo "$(CHECKOV) --file template.yaml --framework cloudformation --skip-download --compact --quiet"
	@report="$$($(CHECKOV) --file template.yaml --framework cloudformation --skip-download --compact --quiet 2>&1)"; \
	  status=$$?; echo "$$report"; \
	  if [ $$status -ne 0 ]; then exit $$status; fi; \
	  grep -Eq '^Passed checks: [1-9][0-9]*, Failed checks: 0, Skipped checks: [0-9]+$$' <<<"$$report" || \
	    { echo "error: checkov did not scan template.yaml cleanly (see above)" >&2; exit 1; }

build: $(SAM_VENV)/.installed ## sam build (arm64, python3.13) into .aws-sam/, with bytecode Lambda can use
	PATH="$(dir $(PYTHON)):$$PATH" $(SAM) build --template template.yaml
	@# Zips carry 1980 timestamps, which void timestamp-checked .pyc files: ship hash-checked ones instead.
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode checked-hash .aws-sam/build

bench: $(VENV)/.installed $(SAM_VENV)/.installed ## measure cold start, latency, AWS requests and cost (bench/)
	PATH="$(dir $(PYTHON)):$$PATH" $(BIN)/python -m bench

deploy: build ## sam deploy (CONFIG_ENV=dev|staging|prod; needs AWS credentials)
	$(SAM) deploy --config-env $${CONFIG_ENV:-default}

schema: $(VENV)/.installed ## regenerate docs/workflow-template.schema.json from the template model
	$(BIN)/python -m opscore_tools.schema docs/workflow-template.schema.json

sdk-models: $(VENV)/.installed ## regenerate the Python SDK's models (sdk/python/opscore_sdk/models.py) from docs/openapi.yaml
	$(BIN)/python -m opscore_tools.sdk_models

clean: ## remove the virtual environments and build output
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
