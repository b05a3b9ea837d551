# Stock trading service — developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
VENDOR_PORT ?= 8099
export TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
export BENCH_DATABASE_URL ?= $(TEST_DATABASE_URL)
export BENCH_REDIS_URL ?= $(TEST_REDIS_URL)
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' chart/Chart.yaml)
IMAGE ?= stock-trading:$(APP_VERSION)

.PHONY: help run tokens test lint typecheck unit bench test-reliability manifests image clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.runtime: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

# What `make run` and `make tokens` give the service: readable logs and the
# simulator on VENDOR_PORT. DATABASE_URL and REDIS_URL, from the environment or
# the command line (`make run DATABASE_URL=… REDIS_URL=…`), reach them unchanged.
RUN_ENV = LOG_FORMAT=text VENDOR_BASE_URL=http://127.0.0.1:$(VENDOR_PORT)
HEALTHZ = $(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(PORT)/healthz', timeout=1)"

# The recipe stops only the two servers it started (by PID), announces the
# address once /healthz answers, and ends quietly (status 0) on Ctrl-C or TERM.
run: $(BIN)/.runtime ## start the vendor simulator and the service (default: SQLite, in-process Redis); Ctrl-C stops both
	@mkdir -p instance
	@$(RUN_ENV) $(BIN)/flask --app service.wsgi db upgrade
	@pids=(); \
	stop() { trap - INT TERM EXIT; kill "$${pids[@]}" 2>/dev/null; wait "$${pids[@]}" 2>/dev/null; }; \
	trap 'stop; exit 0' INT TERM; trap stop EXIT; \
	$(BIN)/python -m service.vendorapi.simulator --port $(VENDOR_PORT) & pids+=($$!); \
	$(RUN_ENV) PORT=$(PORT) HOST=127.0.0.1 \
	  $(BIN)/gunicorn -c python:service.gunicorn_conf service.wsgi:app & pids+=($$!); \
	until $(HEALTHZ) 2>/dev/null; do \
	  for pid in "$${pids[@]}"; do \
	    kill -0 "$$pid" 2>/dev/null || { echo "make run: a server did not start (see above)" >&2; exit 1; }; \
	  done; \
	  sleep 0.3; \
	done; \
	echo "listening on http://127.0.0.1:$(PORT) — try: curl 'http://127.0.0.1:$(PORT)/stocks?limit=5'; Ctrl-C stops"; \
	wait -n; echo "make run: a server stopped (see above)" >&2; exit 1

tokens: $(BIN)/.runtime ## tokens refresh against the simulator on VENDOR_PORT (needs REDIS_URL, as `make run` got)
	@$(RUN_ENV) $(BIN)/flask --app service.wsgi tokens refresh

lint: $(BIN)/.dev ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint ## the whole suite on PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL)
	$(BIN)/pytest

unit: $(BIN)/.dev ## the suite without the linters
	$(BIN)/pytest

bench: $(BIN)/.dev ## benchmarks, figures as Markdown (BENCH_DATABASE_URL, BENCH_REDIS_URL; ONLY=name, QUICK=1)
	$(BIN)/python -m tests.bench.run $(addprefix --only ,$(ONLY)) $(if $(QUICK),--quick)

test-reliability: $(BIN)/.dev ## fault injection, fuzzing and load against real gunicorn, PostgreSQL and Redis
	$(BIN)/pytest tests/reliability

image: ## build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .

manifests: $(BIN)/.dev ## regenerate k8s/ from the chart (default values)
	$(BIN)/python -m tests.deploy.helm --write k8s/

clean: ## remove the virtualenv, caches and the embedded database
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
