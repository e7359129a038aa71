# The README's commands. Each target creates .venv when missing and installs the project.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run ui serve test test-slow test-all bench docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "from pipeline.capacity import fused, initial; fused.warm(); initial.check_torch()"  # numba compiles the
	# 1D trainer once (~15 s); the installed torch is checked once to initialise as the trainer's own draws
	touch $(STAMP)

setup: $(STAMP)

PORT       ?= 5001
EXPERIMENT ?= convnet-study

## run: the main job, `mlflow run .` on the built-in synthetic data (offline), into the experiment convnet-study;
## a stage already done (same configuration, code and data) is reused: `make run RERUN=1` runs every stage again
RERUN ?=
run: setup
	mlflow run . --env-manager local --experiment-name $(EXPERIMENT)$(if $(RERUN), -P rerun=true)

## ui: the MLflow UI on the store that `make run` fills (http://127.0.0.1:5000)
ui: setup
	mlflow ui --backend-store-uri sqlite:///mlflow.db

## serve: a train run's model over HTTP: make serve RUN=<train run id> [PORT=5001]; POST to /invocations
serve: setup
	@test -n "$(RUN)" || { echo "usage: make serve RUN=<train run id> [PORT=$(PORT)]" >&2; exit 2; }
	$(PY) -m pipeline serve --run-id $(RUN) --port $(PORT)

## test: the default (fast) suite; slow tests with `make test-all`
test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

test-all: setup
	$(PY) -m pytest -m "slow or not slow"

## bench: speed comparisons, printed as tables with ratios
bench: setup
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

## docs: rewrite every generated number of README.md and docs/*.md, and the pictures, from fixed seeds (minutes)
docs: setup
	$(PY) docs/make_figures.py

clean:
	rm -rf mlruns mlflow.db optuna.db *.journal .pytest_cache
