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

.PHONY: all venv deps engine standin trivydb referrers-registry test test-unit demo bench lint schema docs golden clean

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

# The demo Trivy vulnerability DB (scripts/trivydb/advisories.yaml), built with Go + bbolt and
# served as an OCI artifact from the local registry (scripts/registry.sh), as companies mirror trivy-db;
# and its "later" edition (tag :2-later: one more advisory, disclosed after publishing; tfimg watch).
trivydb: venv deps
	scripts/trivydb/demo-db.sh >/dev/null
	scripts/trivydb/demo-db.sh --later >/dev/null

# A registry with the OCI 1.1 referrers API on 127.0.0.1:5001 (scripts/referrers-registry/:
# go-containerregistry's pkg/registry built with Debian's Go; tests start their own).
referrers-registry: deps
	scripts/referrers-registry/registry.sh start

# Everything: unit tests and the docker integration tests (on the stand-in base), the
# real-Trivy tests (tests/test_trivy_real.py) included.
test: venv standin trivydb
	TFIMG_TEST_BASE=$(STANDIN) $(BIN)/pytest $(PYTEST_ARGS)

# Tests that need no Docker engine.
test-unit: venv
	$(BIN)/pytest -m "not docker" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check builder tests scripts/check_structure.py
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_structure.py
	$(BIN)/mypy
	$(BIN)/vermin -q -t=3.8- --violations --no-tips builder/check/incontainer/   # runs in the image's Python
	$(BIN)/tfimg lint variants/*.yaml
	shellcheck -S warning scripts/*.sh scripts/*/*.sh

# The main job end to end: validate and lint every variant, then build, check,
# scan, gate and tag variants/bert.yaml on the stand-in base. The scan is real:
# the pinned Trivy (.venv/bin/trivy, extra `scan`) against tfimg's demo DB
# pulled from the local registry. bert's own layers add transformers 4.21.3,
# which has a CRITICAL advisory with a fix: the default policy BLOCKS it (the
# image is built and checked but not tagged). The demo then shows the same
# report passing under policies/demo-bert-waivers.yaml (a waiver with owner and
# expiry), written to build/bert-waived/ so build/bert/ keeps the real decision.
# Last, scripts/demo-evidence.sh publishes bert (gated under that waiver policy,
# into build/demo-signed/) to the local registry with signed evidence made with a
# throwaway key and prints `tfimg verify`'s result; then, under the DB's later edition, `tfimg watch`
# shows the finding disclosed since publishing (no rebuild); last it writes the catalog of the demo registry
# (`tfimg registry catalog`, build/catalog/index.html), which shows the latest watch.
demo: venv standin trivydb
	$(BIN)/tfimg lint variants/*.yaml
	@db=$$(scripts/trivydb/demo-db.sh 2>/dev/null); \
	n=$$($(BIN)/python -c 'import yaml; print(len(yaml.safe_load(open("scripts/trivydb/advisories.yaml"))["advisories"]))'); \
	echo "demo: scanning with Trivy $$($(BIN)/trivy --version | sed -n 's/^Version: //p') against tfimg's DEMO vulnerability DB:" \
	     "$$n real advisories (scripts/trivydb/advisories.yaml) served from $$db. It is NOT Trivy's full DB:" \
	     "findings are real, but a clean result would say nothing about other CVEs."; \
	rc=0; $(BIN)/tfimg build variants/bert.yaml --base $(STANDIN) --trivy-db-repository "$$db" \
	  --trivy-cache-dir build/trivy-cache || rc=$$?; \
	decision=$$($(BIN)/python -c 'import json; print(json.load(open("build/bert/report.json")).get("gate", {}).get("decision", "none"))' 2>/dev/null); \
	if [ "$$rc" != 0 ] && { [ "$$rc" != 1 ] || [ "$$decision" != block ]; }; then exit $$rc; fi; \
	if [ "$$rc" = 1 ]; then \
	  echo; echo "demo: the gate BLOCKED bert under the default policy (from build/bert/gate.md):"; \
	  awk '/^\| Findings/{p=1} p{print} /^### What blocks/{w=1} w && /^$$/ && n++>0 {exit}' build/bert/gate.md; \
	  echo "demo: findings in the base's layers are 'inherited' and only reported; bert's own layers add" \
	       "transformers 4.21.3 (CVE-2023-6730, CRITICAL, fixed in 4.36.0), which blocks."; \
	  echo "demo: the same report under policies/demo-bert-waivers.yaml (a waiver with owner and expiry):"; \
	  $(BIN)/tfimg gate --report build/bert/trivy.json --base $(STANDIN) \
	    --policy policies/demo-bert-waivers.yaml --out build/bert-waived; \
	  echo "demo: build/bert/ keeps the real decision (block); publishing reads it. Renew or remove the waiver before it expires."; \
	fi
	$(BIN)/tfimg tags variants/bert.yaml
	BIN=$(BIN) scripts/demo-evidence.sh "$(STANDIN)" "$$(scripts/trivydb/demo-db.sh 2>/dev/null)"

bench: venv standin trivydb
	TFIMG_BENCH_BASE=$(STANDIN) $(BIN)/python -m tests.bench

# The JSON Schemas: variant files, policy files, and report.json (CI jobs read it); tests check all are current.
schema: venv
	$(BIN)/tfimg schema -o variants/variant.schema.json
	$(BIN)/tfimg schema --policy -o policies/policy.schema.json
	$(BIN)/tfimg schema --report -o docs/report.schema.json
	$(BIN)/python -m builder.catalog.models -o docs/catalog.schema.json

# The command line reference, generated from the Typer commands (tests/test_docs.py checks it is current).
docs: venv
	$(BIN)/python scripts/cli-reference.py

golden: venv
	TFIMG_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_render.py

clean:
	rm -rf build .pytest_cache
