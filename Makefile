# Digi — developer entry points. `make help` lists them.
#
# The first run builds the pinned Go tools (kube-apiserver, etcd, zed, helm)
# into bin/ and a virtualenv into .venv/; both are cached, so later runs are fast.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DIGI   := $(VENV)/bin/digi
STAMP  := $(VENV)/.installed
ROWS   ?=
MODE   ?= lockstep
SPEED  ?= 60
QUICK  ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := install
.PHONY: help install dep tools system-deps test lint typecheck demo demo-down bench lock chart-crds clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing digi (editable) with its dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@# setuptools prints a banner for every editable install; this filter matches only that warning's text.
	@PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the digi command into it (.venv/bin/digi)

tools: ## build the pinned Go tools into bin/ (cached)
	@bash hack/build-tools.sh

system-deps: ## install Debian packages the tests use (prometheus), when root
	@bash hack/system-deps.sh

dep: tools install ## tools + Python dependencies (the original project's `make dep`)

test: dep system-deps ## run the test suite against a private control plane and lake
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install ## ruff + mypy
	@$(VENV)/bin/ruff check digi manager controllers tests
	@$(VENV)/bin/mypy

demo: dep ## bring up a space and run the smart-office demo (ROWS=N MODE=lockstep|paced SPEED=x)
	@$(DIGI) demo office $(if $(ROWS),--rows $(ROWS)) --mode $(MODE) --speed $(SPEED)

demo-down: install ## stop the demo's space
	@$(DIGI) space down

bench: dep ## run the benchmark suite (QUICK=1 for a reduced run); writes bench/results.json
	@$(PY) -m bench $(if $(QUICK),--quick)

LOCK := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

lock: install ## re-resolve the hashed locks the Dockerfile installs (requirements*.lock) from pyproject.toml
	@$(LOCK) --output-file requirements.lock pyproject.toml
	@$(LOCK) --build-deps-for wheel --only-build-deps --output-file requirements-build.lock pyproject.toml

chart-crds: ## copy crds/ into the Helm chart (tests/test_chart_crds.py checks they match)
	@rm -f charts/digi/crds/*.yaml && cp crds/*.yaml charts/digi/crds/

clean: ## remove the virtualenv and built tools
	rm -rf $(VENV) bin
