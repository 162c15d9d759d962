# Every target sets itself up: a virtual environment in .venv, torch (CPU wheel) first, then the project.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.stamp-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv test test-fast lint format crds demo bench bench-prep bench-operator images e2e-kind clean

help:
	@echo "make demo      run the pipeline (sft-prep, then a tiny CPU fine-tune) on bundled sample chats"
	@echo "make test      lint + the whole test suite (GPU/kind tests skip without them)"
	@echo "make lint      ruff"
	@echo "make crds      regenerate manifests/crds from the pydantic models"
	@echo "make bench     all benchmarks (bench-prep, bench-operator)"

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

test: lint
	$(PY) -m pytest -n 2 tests

test-fast: $(STAMP)
	$(PY) -m pytest -x -q tests -m "not slow"

crds: $(STAMP)
	$(PY) -m sft_operator.crdgen manifests/crds

demo: $(STAMP)
	$(PY) -m sft_train.demo

bench: bench-prep bench-operator

bench-prep: $(STAMP)
	$(PY) benchmarks/bench_prep.py

bench-operator: $(STAMP)
	$(PY) benchmarks/bench_operator.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
