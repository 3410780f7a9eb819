# Mission Control: `make demo` and `make test` install what they need by themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := tests

.PHONY: help venv system-deps control-plane deps test unit lint demo bench cluster-up cluster-down clean

help:
	@echo "make demo          bring up the local cluster and Prometheus, run the operator, break a release"
	@echo "make test          install what the tests need, then run every test"
	@echo "make unit          the fast unit tests only"
	@echo "make cluster-up    start the control plane, node simulator and Prometheus in the background"
	@echo "make cluster-down  stop them"
	@echo "make lint          ruff"
	@echo "make bench         the benchmarks"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

system-deps:
	@bash hack/install-system-deps.sh

control-plane:
	@bash hack/build-control-plane.sh

deps: venv system-deps control-plane

test: deps
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

lint: venv
	$(PY) -m ruff check operator tests bench

cluster-up: deps
	@$(PY) -m harness up

cluster-down: venv
	@$(PY) -m harness down

demo: deps
	@$(PY) -m harness up >/dev/null
	@echo "The local cluster is up. To use it from this shell:"
	@tail -n 3 "$${MC_CACHE:-$$HOME/.cache/mission-control}/run/cluster.env"
	@echo "Stop it with: make cluster-down"

bench: deps
	@echo "no benchmarks yet"

clean:
	rm -rf $(VENV) *.egg-info operator/*.egg-info .pytest_cache .ruff_cache
