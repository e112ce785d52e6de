#!/usr/bin/env bash
# Install named packages from Debian 13 (trixie) on Debian 12 (bookworm), changing
# nothing else on the system:
#
#   scripts/trixie.sh PACKAGE...     e.g. docker.io docker-cli docker-buildx cosign oras
#
# - adds the trixie suite to apt's sources, from the machine's own Debian URI (never a
#   hard-coded host), with a pin file that gives trixie priority 100 (never chosen for an
#   upgrade) and only the named packages priority 990;
# - simulates the install first (apt-get -s) and refuses (exit 2) if it would upgrade or
#   remove any package that is not named;
# - on Debian 13 itself the packages come from the system's own sources.
# Needs root and apt-get. Packages already installed at the trixie version are left alone.
set -euo pipefail
say() { printf 'trixie: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
[ $# -gt 0 ] || die "usage: $0 PACKAGE..."
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "needs root and apt-get (Debian): install $* yourself"

SOURCES=/etc/apt/sources.list.d/tfimg-trixie.sources
PIN=/etc/apt/preferences.d/tfimg-trixie
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
export DEBIAN_FRONTEND=noninteractive

if [ "$codename" != trixie ]; then
  # The machine's own Debian archive URI (deb822 or one-line sources), not the security one.
  uri=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -v -E 'security|-updates' | grep -o -E '(https?|file)://[^ ]+' | grep -m1 '/debian/*$' || true)
  [ -n "$uri" ] || die "cannot find this machine's Debian archive URI in /etc/apt/sources.list*"
  want_sources="Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  # The pin names every package this script was ever asked for (they accumulate).
  old=$(sed -n 's/^Package: \(.*[^*]\)$/\1/p' "$PIN" 2>/dev/null | grep -v '^\*' || true)
  pkgs=$(printf '%s\n' $old "$@" | sort -u | tr '\n' ' ' | sed 's/ $//')
  want_pin="Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: $pkgs
Pin: release n=trixie
Pin-Priority: 990"
  changed=0
  [ "$(cat "$SOURCES" 2>/dev/null)" = "$want_sources" ] || { printf '%s\n' "$want_sources" >"$SOURCES"; changed=1; }
  [ "$(cat "$PIN" 2>/dev/null)" = "$want_pin" ] || { printf '%s\n' "$want_pin" >"$PIN"; changed=1; }
  if [ "$changed" = 1 ] || ! apt-cache policy "$1" 2>/dev/null | grep -q trixie; then
    say "adding Debian 13 (trixie) from $uri, pinned to: $pkgs"
    apt-get update -qq
  fi
fi

# Simulate: anything upgraded or removed that was not asked for is refused.
sim=$(apt-get -s install -y --no-install-recommends "$@" 2>&1) || die "apt-get cannot install $*: $(tail -n 3 <<<"$sim")"
others=$(awk '/^(Inst|Remv) /{print $1, $2, $3}' <<<"$sim" | while read -r verb name cur; do
  case " $* " in *" $name "*) continue ;; esac
  # "Inst NAME [OLD]" is an upgrade of an installed package; "Inst NAME (NEW" a new dependency.
  if [ "$verb" = Remv ] || [[ "$cur" == \[* ]]; then echo "$verb $name $cur"; fi
done)
[ -z "$others" ] || die "installing $* would also change installed packages: $(echo $others); refused"
if grep -q '^Inst ' <<<"$sim"; then
  say "installing $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
fi
