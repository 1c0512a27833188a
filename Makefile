# sweepflow: `make sweep` runs a real sweep, `make test` runs the tests; both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

# The Prefect server's anonymous usage report only adds start-up work and log noise here.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install sweep test test-fast lint format mlflow-ui prefect-ui server pool deploy worker \
	run-now notifications team-worker team-run bench bench-serve bench-quality clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "sweepflow needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install sweepflow with its dev tools

sweep: $(STAMP)  ## run a sweep on the built-in data (pass options: make sweep ARGS="--trials 40")
	$(BIN)/sweepflow sweep $(ARGS)

test: $(STAMP)  ## lint, check the layers, then run every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

# Not part of `make test`: the benchmark takes minutes (tests/test_bench.py runs it tiny).
bench: $(STAMP)  ## bare Optuna vs our sweep, side by side (~10 min a repetition; BENCH_ARGS="--repeats 3")
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-serve: $(STAMP)  ## sweepflow serve vs mlflow models serve, side by side (~3 min)
	$(BIN)/python -m bench.serve $(BENCH_ARGS)

bench-quality: $(STAMP)  ## time to quality: our search vs a bare Optuna loop on the 165k file (~1 h quiet)
	$(BIN)/python -m bench.anytime --publish $(BENCH_ARGS)

lint: $(STAMP)  ## ruff lint and format check, and the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

mlflow-ui: $(STAMP)  ## open the local MLflow store at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000

prefect-ui: $(STAMP)  ## start a Prefect server and UI at http://127.0.0.1:4200
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

# The scheduling loop talks to a long-running server (`make server` in another terminal).
# Not PREFECT_-prefixed: Prefect would read such a variable as one of its settings.
SERVER_API ?= http://127.0.0.1:4200/api
pool deploy worker run-now notifications team-worker team-run: export PREFECT_API_URL = $(SERVER_API)

server: prefect-ui  ## same as prefect-ui: the Prefect server the deployments run on

pool: $(STAMP)  ## create the process work pools on the server: `sweeps`, and `sweeps-team`
	$(BIN)/prefect work-pool create sweeps --type process --overwrite
	$(BIN)/prefect work-pool create sweeps-team --type process --overwrite

deploy: $(STAMP)  ## register every deployment in prefect.yaml (schedules included)
	$(BIN)/prefect --no-prompt deploy --all

worker: $(STAMP)  ## start a worker that runs the pool's sweeps from this checkout
	$(BIN)/prefect worker start --pool sweeps

run-now: $(STAMP)  ## trigger the nightly sweep now (CONFIG='{"n_trials": 5}' replaces its config)
	$(BIN)/prefect deployment run sweep/nightly-sweep $(if $(CONFIG),--param 'config=$(CONFIG)')

notifications: $(STAMP)  ## webhooks on failure / new champion: make notifications WEBHOOK_URL=...
	$(BIN)/sweepflow notifications --webhook-url "$(WEBHOOK_URL)"

# Running as a team (see the README): shared backends come from the environment of each worker.
team-worker: $(STAMP)  ## a team worker; export OPTUNA_STORAGE and MLFLOW_TRACKING_URI first
	$(BIN)/prefect worker start --pool sweeps-team

team-run: $(STAMP)  ## trigger one team sweep run (CONFIG='{...}' replaces its config)
	$(BIN)/prefect deployment run sweep/team-sweep $(if $(CONFIG),--param 'config=$(CONFIG)')

clean:  ## remove the local stores (mlruns/ contents) and caches, keep .venv
	find mlruns -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
