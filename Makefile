# Sweetspot's developer entry points. `make test` is the command README.md and CI run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install lint test quickstart crd dashboards clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

quickstart: install
	$(BIN)/sweetspot validate examples/quickstart.yaml
	$(BIN)/sweetspot run examples/quickstart.yaml

crd: install
	$(BIN)/sweetspot crd > crds/finetunestudies.sweetspot.dev.yaml

dashboards: install
	$(BIN)/sweetspot dashboards charts/sweetspot/dashboards

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
