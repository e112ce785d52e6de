#!/usr/bin/env bash
# `make demo`'s publishing step (issue 14): publish bert to the local registry
# (scripts/registry.sh, 127.0.0.1, no auth) with signed evidence, then verify it.
#
# bert is gated under policies/demo-bert-waivers.yaml into build/demo-signed/ (the
# default policy blocks it, and a blocked image is never published); the key pair
# is a throwaway made here with openssl (build/demo-keys/, never reused).
# Usage: scripts/demo-evidence.sh STANDIN_REF TRIVY_DB_REF
set -euo pipefail
BIN=${BIN:-.venv/bin}
standin=$1
db=$2
out=build/demo-signed
keys=build/demo-keys
reg="$(scripts/registry.sh url)/tfimg-demo"

rm -rf "$keys" && mkdir -p "$keys" && chmod 700 "$keys"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/tfimg.pem" 2>/dev/null
openssl pkey -in "$keys/tfimg.pem" -pubout -out "$keys/tfimg.pub" 2>/dev/null
echo "demo: a throwaway signing key: $keys/tfimg.pem (public: $keys/tfimg.pub)"

"$BIN/tfimg" build variants/bert.yaml --base "$standin" --trivy-db-repository "$db" \
  --trivy-cache-dir build/trivy-cache --policy policies/demo-bert-waivers.yaml --out "$out"
"$BIN/tfimg" publish variants/bert.yaml --out "$out" --registry "$reg" --push --sign-key "$keys/tfimg.pem"
digest=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["publish"]["digest"])' \
         "$out/bert/report.json")
echo "demo: tfimg verify $reg/bert@$digest --key $keys/tfimg.pub"
"$BIN/tfimg" verify "$reg/bert@$digest" --key "$keys/tfimg.pub"

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
# A separate last step (issue 19 reworks the steps above): a static site of what the demo registry holds,
# its evidence verified with the demo's public key. Open build/catalog/index.html from disk.
"$BIN/tfimg" registry catalog "$reg" --out build/catalog --key "$keys/tfimg.pub"
echo "demo: the catalog of $reg: open build/catalog/index.html (file://$PWD/build/catalog/index.html)"
