#!/usr/bin/env bash
# `make demo`'s publishing step (issues 14, 19): publish bert to the local registry
# (scripts/registry.sh, 127.0.0.1, no auth) with signed evidence, then verify it with
# tfimg's policy and with cosign. Runs again as often as you like: the key is kept,
# an unchanged build is reused, and an unchanged statement is not attached twice.
#
# - The stand-in NGC base is pushed to the local registry first, and bert is built
#   on it from there, so the base has a registry digest: the provenance names it by
#   digest (and tfimg verify requires that).
# - bert is gated under policies/demo-bert-waivers.yaml into build/demo-signed/ (the
#   default policy blocks it, and a blocked image is never published).
# - The key pair is a throwaway made here with openssl on the first run and kept in
#   build/demo-keys/ (ignored by git, never committed) for the next runs.
# Usage: scripts/demo-evidence.sh STANDIN_REF TRIVY_DB_REF
set -euo pipefail
BIN=${BIN:-.venv/bin}
standin=$1
db=$2
out=build/demo-signed
keys=build/demo-keys
host=$(scripts/registry.sh url)
reg="$host/tfimg-demo"
base="$host/tfimg-bases/tfimg-standin:${standin##*:}"   # outside tfimg-demo/: not in its catalog

if [ -s "$keys/tfimg.pem" ] && [ -s "$keys/tfimg.pub" ]; then
  echo "demo: the throwaway signing key of an earlier run: $keys/tfimg.pem (public: $keys/tfimg.pub)"
else
  rm -rf "$keys" && mkdir -p "$keys" && chmod 700 "$keys"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/tfimg.pem" 2>/dev/null
  openssl pkey -in "$keys/tfimg.pem" -pubout -out "$keys/tfimg.pub" 2>/dev/null
  echo "demo: a throwaway signing key, kept for the next runs: $keys/tfimg.pem (public: $keys/tfimg.pub)"
fi

echo "demo: pushing the stand-in base to $base, so the build names its base by digest"
docker tag "$standin" "$base"
docker push --quiet "$base" >/dev/null

"$BIN/tfimg" build variants/bert.yaml --base "$base" --trivy-db-repository "$db" \
  --trivy-cache-dir build/trivy-cache --policy policies/demo-bert-waivers.yaml --out "$out"
"$BIN/tfimg" publish variants/bert.yaml --out "$out" --registry "$reg" --push --sign-key "$keys/tfimg.pem"
digest=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["publish"]["digest"])' \
         "$out/bert/report.json")
ref="$reg/bert@$digest"

# --- Curation after publishing (issue 21). A separate step: it only reads what the steps above published.
# Some weeks later the vulnerability DB knows one more advisory (its "later" edition, demo-db.sh --later:
# CVE-2025-5197 in transformers 4.21.3, disclosed after the first edition's newest). `tfimg watch` scans
# the published digest's signed SBOM against it, without a rebuild and without pulling the image, and
# attaches a signed, dated statement of what it decided. Exit 1 would be an alert (a digest that no
# longer passes): the demo shows it and goes on; only bad input (exit 2) stops it.
later=$(scripts/trivydb/demo-db.sh --later 2>/dev/null)
echo
echo "demo: later, the DB knows more ($later). tfimg watch $reg bert: what was disclosed since publishing"
rc=0
"$BIN/tfimg" watch "$reg" bert --policy policies/demo-bert-waivers.yaml --trivy-db-repository "$later" \
  --key "$keys/tfimg.pub" --sign-key "$keys/tfimg.pem" --warn-days 180 --markdown build/demo-watch.md || rc=$?
[ "$rc" -le 1 ] || exit "$rc"
echo "demo: the newly disclosed finding is 'new since publishing'; the Markdown for an issue is build/demo-watch.md"
"$BIN/tfimg" vex "$reg/bert@$digest" --policy policies/demo-bert-waivers.yaml -o build/demo-bert.vex.json
echo "demo: the waiver as OpenVEX (also attached, signed, by tfimg publish): build/demo-bert.vex.json"

# --- issue 22: the catalog of the demo registry --------------------------------------------------------
# A separate step: a static site of what the demo registry holds,
# its evidence verified with the demo's public key. Open build/catalog/index.html from disk.
"$BIN/tfimg" registry catalog "$reg" --out build/catalog --key "$keys/tfimg.pub"
echo "demo: the catalog of $reg: open build/catalog/index.html (file://$PWD/build/catalog/index.html)"

# --- issue 19: the demo ends with both verifications of the published digest (the watch's statement is
# signed with the same key, so it is one more trusted vuln statement, never a failure).
echo
echo "demo: tfimg verify $ref --key $keys/tfimg.pub"
"$BIN/tfimg" verify "$ref" --key "$keys/tfimg.pub"

echo
echo "demo: cosign $(cosign version 2>/dev/null | sed -n 's/^GitVersion: *//p') finds and verifies the same statements" \
     "(cosign verify-attestation --key $keys/tfimg.pub --insecure-ignore-tlog --allow-insecure-registry" \
     "--allow-http-registry --type T $ref):"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for type in cyclonedx slsaprovenance1 vuln https://tfimg.dev/attestations/report/v1; do
  if ! n=$(cosign verify-attestation --key "$keys/tfimg.pub" --insecure-ignore-tlog --allow-insecure-registry \
             --allow-http-registry --type "$type" "$ref" 2>"$log" | wc -l); then
    cat "$log" >&2
    echo "demo: cosign did not verify --type $type" >&2
    exit 1
  fi
  grep -q "verified against the specified public key" "$log" || { cat "$log" >&2; exit 1; }
  echo "  --type $type: $n attestation(s) verified against $keys/tfimg.pub"
done
echo "demo: cosign tree $ref"
cosign tree --allow-insecure-registry --allow-http-registry "$ref" 2>/dev/null | grep -v '^$'
