# Mission Control: `make demo` and `make test` install what they need by themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := tests

.PHONY: help venv system-deps control-plane helm chart-files deps test unit lint demo bench bench-scale cluster-up cluster-down clean plugin-archive

help:
	@echo "make demo          a local cluster, the operator, a broken release: freeze, rollback, recovery"
	@echo "make demo DEMO=rb-002   RB-002 on a real PostgreSQL primary and replica"
	@echo "make demo DEMO=rb-003   RB-003 on a real Redis queue"
	@echo "make test          install what the tests need, then run every test"
	@echo "make unit          the fast unit tests only"
	@echo "make cluster-up    start the control plane, node simulator and Prometheus in the background"
	@echo "make cluster-down  stop them"
	@echo "make lint          ruff"
	@echo "make chart-files   copy crds/ and deploy/monitoring/ into the Helm chart"
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

# helm renders and lints the chart in the tests; cached beside the control plane.
helm:
	@bash hack/build-helm.sh

# The chart's copies of crds/ and deploy/monitoring/ (hack/chart_files.py).
chart-files: venv
	@$(PY) hack/chart_files.py

deps: venv system-deps control-plane helm

# Two workers, each with its own control plane and Prometheus: the cluster tests mostly wait
# (rollouts, scrapes, leases), so two of them share the 2 cores well.
test: deps
	$(PY) -m pytest -n 2 --dist worksteal --durations=25

unit: venv
	$(PY) -m pytest tests/unit

lint: venv
	$(PY) -m ruff check operator tests bench hack examples

cluster-up: deps
	@$(PY) -m harness up

cluster-down: venv
	@$(PY) -m harness down

# The demo starts a cluster of its own (temporary folder, free ports) and stops it at the end:
# it neither needs nor touches one started with `make cluster-up`.
# DEMO=rb-002: RB-002 on a real PostgreSQL primary and replica (hack/demo_rb002.py);
# DEMO=rb-003: a webhook retry storm on a real Redis queue (hack/demo_rb003.py).
DEMO ?= rb-001
demo: deps
	@$(PY) hack/$(if $(filter rb-002,$(DEMO)),demo_rb002.py,demo.py --demo $(DEMO)) $(DEMO_ARGS)

# RB-001's rollback latency over repeated broken releases (bench/README.md). Pass options
# with BENCH_ARGS, e.g. make bench BENCH_ARGS="--iterations 30".
bench: deps
	@$(PY) bench/rollback.py $(BENCH_ARGS)

# What guarding a fleet costs (bench/README.md), e.g.
# make bench-scale BENCH_ARGS="--deployments 1000 --namespaces 100 --policies 20".
bench-scale: deps
	@$(PY) bench/scale.py $(BENCH_ARGS)

# The krew archive of `kubectl mc` and its manifest with the archive's sha256, in dist/.
plugin-archive: venv
	@$(PY) hack/plugin_archive.py --out dist

clean:
	rm -rf $(VENV) dist *.egg-info operator/*.egg-info .pytest_cache .ruff_cache
