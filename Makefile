# The two commands a new user needs: `make demo` (the main job) and `make test`.
.PHONY: setup demo test unit lint format crds generate-grpc up down clean

VENV ?= .venv
PY := $(VENV)/bin/python

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

lint:
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

format:
	@$(PY) -m ruff check --fix . && $(PY) -m ruff format .

generate-grpc: ## the runtime's gRPC code from runtime/torchship_runtime/oip/grpc_predict_v2.proto
	@$(PY) hack/generate_grpc.py

up: setup ## start the local control plane in the background (prints the KUBECONFIG export)
	@$(PY) hack/testenv.py up

down: ## stop it
	@$(PY) hack/testenv.py down

clean: down
	rm -rf .testenv
