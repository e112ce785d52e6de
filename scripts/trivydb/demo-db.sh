#!/usr/bin/env bash
# One idempotent command for a real Trivy scan without the internet: make sure
# the local registry runs (scripts/registry.sh), build the demo vulnerability DB
# from scripts/trivydb/advisories.yaml (cached by the hash of the advisories and
# the generator), push it as the trivy-db OCI artifact unless the registry
# already has that digest, and print the repository reference for
#
#   trivy image --db-repository "$(scripts/trivydb/demo-db.sh)" ...
#
# stdout: the reference only (e.g. 127.0.0.1:5000/tfimg/trivy-db:2); logs on stderr.
# Environment: TFIMG_REGISTRY_PORT, TFIMG_STATE_DIR (see scripts/registry.sh),
# TFIMG_TRIVYDB_REPO (default tfimg/trivy-db), PYTHON (default .venv/bin/python,
# which needs PyYAML and requests).
set -euo pipefail

cd "$(dirname "$0")/../.."
HERE=scripts/trivydb
REPO_NAME=${TFIMG_TRIVYDB_REPO:-tfimg/trivy-db}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

say() { printf 'demo-db: %s\n' "$*" >&2; }

"$PY" -c 'import yaml, requests' 2>/dev/null ||
  { say "$PY lacks PyYAML or requests: run 'make venv' or set PYTHON"; exit 2; }

scripts/registry.sh start >&2
ref="$(scripts/registry.sh url)/$REPO_NAME:2"

# The DB depends on the advisories and the generator only (push.py just packs it).
hash=$(cat "$HERE/advisories.yaml" "$HERE/make_db.py" "$HERE/main.go" | sha256sum | cut -c1-16)
out=build/trivydb/$hash
if [ -s "$out/db/trivy.db" ] && [ -s "$out/db/metadata.json" ]; then
  say "DB $hash already built ($out/db)"
else
  "$PY" "$HERE/make_db.py" --out "$out" >/dev/null
fi
"$PY" "$HERE/push.py" "$out/db" "$ref" >/dev/null
echo "$ref"
