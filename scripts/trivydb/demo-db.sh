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
#
#   scripts/trivydb/demo-db.sh --later    # the "later" edition, tag :2-later
#
# serves the same DB some weeks on: every advisory, also those marked `edition: later`
# in advisories.yaml (disclosed after the image was published), with an UpdatedAt after
# the first edition's. `make demo` publishes under the first and watches under the later.
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

edition=first
case "${1:-}" in
  "") ;;
  --later) edition=later ;;
  *) say "usage: $0 [--later]"; exit 2 ;;
esac

scripts/registry.sh start >&2

# The DB depends on the advisories and the generator only (push.py just packs it).
hash=$(cat "$HERE/advisories.yaml" "$HERE/make_db.py" "$HERE/main.go" | sha256sum | cut -c1-16)
out=build/trivydb/$hash
if [ -s "$out/db/trivy.db" ] && [ -s "$out/db/metadata.json" ]; then
  say "DB $hash already built ($out/db)"
else
  "$PY" "$HERE/make_db.py" --out "$out" >/dev/null
fi
if [ "$edition" = first ]; then
  ref="$(scripts/registry.sh url)/$REPO_NAME:2"
else   # built after the first edition, and dated after it
  ref="$(scripts/registry.sh url)/$REPO_NAME:2-later"
  later=$out-later
  if [ -s "$later/db/trivy.db" ] && [ -s "$later/db/metadata.json" ]; then
    say "DB $hash (later edition) already built ($later/db)"
  else
    at=$("$PY" -c 'import datetime as d, json, sys
first = d.datetime.fromisoformat(json.load(open(sys.argv[1]))["UpdatedAt"].replace("Z", "+00:00"))
now = d.datetime.now(d.timezone.utc).replace(microsecond=0)
print(max(now, first + d.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))' "$out/db/metadata.json")
    "$PY" "$HERE/make_db.py" --edition later --updated-at "$at" --out "$later" >/dev/null
  fi
  out=$later
fi
"$PY" "$HERE/push.py" "$out/db" "$ref" >/dev/null
echo "$ref"
