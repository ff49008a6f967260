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
.PHONY: help install dep tools system-deps test lint typecheck demo demo-down bench clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing digi (editable) with its dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev]'
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

clean: ## remove the virtualenv and built tools
	rm -rf $(VENV) bin
