# tfimg: the two commands a newcomer needs are `make demo` and `make test`.
# Both install and start what they need: Python deps (.venv), machine tools,
# the Docker engine (scripts/engine.sh), the stand-in NGC base (built once,
# cached by its recipe's hash).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STANDIN = $$(scripts/standin/build.sh --ref)
PYTEST_ARGS ?=

.PHONY: all venv deps engine standin test test-unit demo bench lint schema golden clean

all: test

$(BIN)/tfimg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/tfimg

deps:
	scripts/deps.sh

engine: deps
	scripts/engine.sh

standin: engine
	scripts/standin/build.sh >/dev/null

# Everything: unit tests and the docker integration tests (on the stand-in base).
test: venv standin
	TFIMG_TEST_BASE=$(STANDIN) $(BIN)/pytest $(PYTEST_ARGS)

# Tests that need no Docker engine.
test-unit: venv
	$(BIN)/pytest -m "not docker" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check builder tests
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/tfimg lint variants/*.yaml

# The main job end to end: validate and lint every variant, then build, check,
# scan, gate and tag variants/bert.yaml on the stand-in base.
# Without Trivy on PATH the gate cannot scan: the demo then says so and uses
# policies/local-unscanned.yaml, so the image is built and checked but marked
# UNSCANNED (and `tfimg publish` refuses it). With Trivy it scans for real.
demo: venv standin
	$(BIN)/tfimg lint variants/*.yaml
	@if command -v trivy >/dev/null; then policy=""; else \
	  echo "demo: no trivy on PATH: the image will be UNSCANNED (policies/local-unscanned.yaml)"; \
	  policy="--policy policies/local-unscanned.yaml"; fi; \
	$(BIN)/tfimg build variants/bert.yaml --base $(STANDIN) $$policy
	$(BIN)/tfimg tags variants/bert.yaml

bench: venv standin
	TFIMG_BENCH_BASE=$(STANDIN) $(BIN)/python -m tests.bench

schema: venv
	$(BIN)/tfimg schema -o variants/variant.schema.json

golden: venv
	TFIMG_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_render.py

clean:
	rm -rf build .pytest_cache
