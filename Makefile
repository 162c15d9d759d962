# Every target sets itself up: a virtual environment in .venv, torch (CPU wheel) first, then the project.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.stamp-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv test test-fast lint mypy format crds chart-sync demo bench bench-prep bench-operator bench-faults images e2e-kind clean

help:
	@echo "make demo      run the pipeline (sft-prep, then a tiny CPU fine-tune) on bundled sample chats"
	@echo "make test      lint + mypy + the whole test suite (GPU/kind tests skip without them)"
	@echo "make lint      ruff"
	@echo "make crds      regenerate manifests/crds from the pydantic models (and sync the Helm chart)"
	@echo "make images    build the container images (needs a Docker engine)"
	@echo "make e2e-kind  kind cluster + images + chart + sample pipeline (needs docker and kind)"
	@echo "make bench     all benchmarks (bench-prep, bench-operator, bench-faults)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[prep,train,operator,dev]'
	@rm -f $(VENV)/.stamp-* && touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

mypy: $(STAMP)
	$(VENV)/bin/mypy

test: lint mypy
	$(PY) -m pytest -n 2 tests

test-fast: $(STAMP)
	$(PY) -m pytest -x -q tests -m "not slow"

crds: $(STAMP)
	$(PY) -m sft_operator.crdgen manifests/crds
	$(PY) charts/sync_chart.py

# Copy CRDs, RBAC rules and the Argo CD health Lua from manifests/ into the Helm chart.
chart-sync: $(STAMP)
	$(PY) charts/sync_chart.py

# Container images (images/<name>/Dockerfile). Needs a Docker engine; `make images IMAGES="operator prep"`
# builds a subset (the trainer pulls the ~30 GB NeMo base).
DOCKER         ?= docker
IMAGE_REGISTRY ?= ghcr.io/sft-operator
IMAGE_TAG      ?= dev
IMAGES         ?= operator prep trainer-cpu trainer

images:
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make images: no Docker engine reachable ('$(DOCKER) info' failed); start Docker or build images/*/Dockerfile on a machine that has one" >&2; exit 1; }
	@for image in $(IMAGES); do \
	  echo "building $(IMAGE_REGISTRY)/sft-$$image:$(IMAGE_TAG)"; \
	  $(DOCKER) build -f images/$$image/Dockerfile -t $(IMAGE_REGISTRY)/sft-$$image:$(IMAGE_TAG) . || exit 1; \
	done

# kind cluster + images + chart + the tiny pipeline, end to end (needs docker and kind; see tests/kind/run.sh).
e2e-kind:
	tests/kind/run.sh

demo: $(STAMP)
	$(PY) -m sft_train.demo

bench: bench-prep bench-operator bench-faults

bench-prep: $(STAMP)
	$(PY) benchmarks/bench_prep.py

bench-operator: $(STAMP)
	$(PY) benchmarks/bench_operator.py

# Kills of sft-prep and of the operator, malformed rows, invalid CRs: figures from one run (a few minutes).
bench-faults: $(STAMP)
	$(PY) benchmarks/bench_faults.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
