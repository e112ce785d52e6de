#!/usr/bin/env bash
# Install the machine tools the tests and the demo use, where missing, on
# Debian/Ubuntu as root: debootstrap (stand-in base), the OpenSSH client (SSH
# checks), docker-registry, skopeo and htpasswd (registry tests), Go and bbolt
# (the demo Trivy DB generator, scripts/trivydb), shellcheck (lint of
# scripts/ and of rendered scripts), and from Debian 13 (trixie) cosign 2.5.0 and oras 1.2.0 (evidence
# read by the ecosystem's verifiers) through scripts/trixie.sh, which pins only
# those two packages to trixie and refuses any other upgrade. ssh-audit is
# not one of them: the SSH checks use the pinned one from PyPI (tfimg[checks]).
# The Docker engine itself is scripts/engine.sh's business. Elsewhere it only
# reports what is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have debootstrap     || need+=(debootstrap)
have ssh             || need+=(openssh-client)
have ssh-keygen      || need+=(openssh-client)
have docker-registry || need+=(docker-registry)
have skopeo          || need+=(skopeo)
have htpasswd        || need+=(apache2-utils)
have go              || need+=(golang-go)         # the demo Trivy DB generator (scripts/trivydb)
[ -d /usr/share/gocode/src/go.etcd.io/bbolt ] || need+=(golang-github-coreos-bbolt-dev)
have chromium        || need+=(chromium)          # headless browser login to JupyterLab (tests/test_jupyter_browser.py)
have chromedriver    || need+=(chromium-driver)
have shellcheck      || need+=(shellcheck)
trixie=()                                         # Debian 13 only (static Go programs, glibc >= 2.34)
have cosign          || trixie+=(cosign)
have oras            || trixie+=(oras)
[ ${#need[@]} -eq 0 ] && [ ${#trixie[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && have apt-get; then
  export DEBIAN_FRONTEND=noninteractive
  if [ ${#need[@]} -gt 0 ]; then
    echo "deps: installing ${need[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  [ ${#trixie[@]} -eq 0 ] || "$(dirname "$0")/trixie.sh" "${trixie[@]}"
else
  echo "deps: missing ${need[*]} ${trixie[*]}; install them (Debian/Ubuntu package names; cosign and oras from Debian 13)" >&2
  exit 2
fi
