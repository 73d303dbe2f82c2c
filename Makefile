# The two commands a new user needs: `make demo` (the main job) and `make test`.
.PHONY: help setup demo test unit lint format generate generate-grpc up down clean

VENV ?= .venv
PY := $(VENV)/bin/python
PYPATH := PYTHONPATH=operator:runtime:sdk

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## virtual environment + control-plane binaries (cached; idempotent)
	@hack/setup.sh

demo: setup ## local control plane, operator, a sample ModelService Ready, one inference answered
	@$(PY) hack/demo.py

test: setup ## the whole suite: unit, runtime, control plane, operator, delivery, reliability
	@$(PY) -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
	  exit $$rc

unit: setup ## unit tests only (no cluster)
	@$(PY) -m pytest -m "not cluster"

lint: ## ruff check and ruff format --check
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: ## ruff fix and format
	@$(PY) -m ruff check --fix . && $(PY) -m ruff format .

generate: ## the CRD from api.py, the chart's copy of it, and docs/api.md
	@$(PYPATH) $(PY) -m torchship_operator.crdgen > crds/torchship.dev_modelservices.yaml
	@hack/sync-chart-crds.sh
	@$(PYPATH) $(PY) -m torchship_operator.apidoc --write docs/api.md

generate-grpc: ## the runtime's gRPC code from runtime/torchship_runtime/oip/grpc_predict_v2.proto
	@$(PY) hack/generate_grpc.py

up: setup ## start the local control plane in the background (prints the KUBECONFIG export)
	@$(PY) hack/testenv.py up

down: ## stop it
	@$(PY) hack/testenv.py down

clean: down ## stop the control plane and remove its directory
	rm -rf .testenv
