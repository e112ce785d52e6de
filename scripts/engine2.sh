#!/usr/bin/env bash
# Second Docker engines beside the first one, each standing in for another CI
# runner (issue 12: runners that share build work through a registry), of either
# Docker version tfimg supports (issue 20). Each ENGINE is its own instance; all
# can run at once:
#
#   26      Docker 26 (what scripts/engine.sh installs), classic overlay2 image store:
#           another runner like the first engine (the default).
#   20.10   Debian 12's docker.io 20.10 and its pre-23 client: the legacy
#           `DOCKER_BUILDKIT=1 docker build` path (BuildKit v0.8).
#   26c     Docker 26 with the containerd image store (dockerd's containerd-snapshotter
#   26c-b   feature): `--cache-to type=registry` works on buildx's default builder, and
#           rewrite-timestamp=true is honoured; two of them for "same inputs, two
#           engines, same digest" (the overlay2 store ignores rewrite-timestamp).
#   other   20.10 when the first engine (what `docker` reaches without DOCKER_HOST)
#           is 23 or newer, else 26.
#
#   scripts/engine2.sh [--engine E] start          start it (idempotent) and wait until it answers
#   scripts/engine2.sh [--engine E] stop           stop only it; its images and cache stay
#   scripts/engine2.sh [--engine E] stop --purge   stop it and delete its data: an empty runner
#   scripts/engine2.sh [--engine E] host           print its DOCKER_HOST value
#   scripts/engine2.sh [--engine E] client         print the path of a docker client of its version
#   scripts/engine2.sh --engine 20.10 client --no-buildx
#                                                  print the path of a wrapper that runs the 20.10
#                                                  client with no buildx plugin in sight (Debian 12's
#                                                  situation: tfimg takes the pre-23 path; needs root)
#   scripts/engine2.sh [--engine E] version        print its server version (it must be running)
#   scripts/engine2.sh [--engine E] status         exit 0 if it answers, 1 if not
#
# E defaults to $TFIMG_ENGINE2, else 26; `--version` is a synonym of `--engine`.
#
# Binaries. If the system's dockerd and /usr/bin/docker are of the engine's version,
# they are used. Otherwise that version's Debian packages are unpacked, never
# installed, into $TFIMG_STATE_DIR/dist/docker-<version>/ (scripts/debget.sh:
# `apt-get download` + `dpkg -x`; the system's dpkg database and files are not
# touched): 20.10 is docker.io from Debian 12 (bookworm; client and daemon in one
# package), 26 is docker.io and docker-cli from Debian 13 (trixie). All use the
# system's containerd, runc and docker-init (bookworm's containerd 1.6 and runc 1.1
# run both versions). Note: the 20.10 client also finds the system's buildx plugin
# (/usr/libexec/docker/cli-plugins), so `docker buildx version` succeeds with it and
# tfimg would pick buildx; `client --no-buildx` gives a wrapper that runs it in a
# private mount namespace (unshare -m) where the plugin folders are empty tmpfs mounts.
#
# Each instance has its own data root, exec root (its own containerd, its own
# containerd namespace), pid file, socket, config file (rewritten at each start),
# cgroup parent, bridge, CIDR and NAT chain; the first engine (scripts/engine.sh)
# is never touched:
#
#   E      socket                           exec root       state ($TFIMG_STATE_DIR/)  bridge     CIDR
#   26     /run/tfimg-engine2.sock          /run/tfimg-e2   engine2/                   tfimg-e2   10.213.37.1/24
#   20.10  /run/tfimg-engine2-20.sock       /run/tfimg-e2o  engine2-20.10/             tfimg-e2o  10.213.38.1/24
#   26c    /run/tfimg-engine2-26c.sock      /run/tfimg-e2c  engine2-26c/               tfimg-e2c  10.213.39.1/24
#   26c-b  /run/tfimg-engine2-26c-b.sock    /run/tfimg-e2d  engine2-26c-b/             tfimg-e2d  10.213.40.1/24
#   (NAT chain: TFIMG-E2, TFIMG-E2O, TFIMG-E2C, TFIMG-E2D; log: <state>/dockerd.log)
#
# Networking: --bridge <its bridge> --iptables=false --ip6tables=false --ip-masq=false.
# NOT --bridge=none: a dockerd started with --bridge=none DELETES the host's
# docker0 interface (moby's removeDefaultBridgeInterface), which breaks the
# first engine's containers and builds. This script creates the bridge and,
# unless TFIMG_ENGINE2_NAT=0, its own NAT: a chain hooked into FORWARD and nat
# POSTROUTING that only matches that bridge, so RUN steps of builds reach the
# network (pip install) with the default build network, as on a real runner;
# `stop` removes those rules, `stop --purge` the bridge too. With
# TFIMG_ENGINE2_NAT=0, builds that need the network must use `docker build
# --network host`. Pulls and pushes are done by dockerd itself, in the host's
# namespace, so a registry on 127.0.0.1 is reached either way; docker treats
# 127.0.0.0/8 as an insecure (plain http) registry by default.
#
# Environment: TFIMG_STATE_DIR (default /var/lib/tfimg), TFIMG_ENGINE2,
# TFIMG_ENGINE2_NAT (1 or 0); for the chosen instance only: TFIMG_ENGINE2_SOCK,
# TFIMG_ENGINE2_EXEC_ROOT (short: unix socket paths are limited to 108 bytes),
# TFIMG_ENGINE2_LOG, TFIMG_ENGINE2_CIDR.
set -euo pipefail

say() { printf 'engine2: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

ENGINE=${TFIMG_ENGINE2:-26}
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --engine|--version) [ $# -ge 2 ] || die "$1 needs 26, 20.10, 26c, 26c-b or other"; ENGINE=$2; shift 2 ;;
    --engine=*|--version=*) ENGINE=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]}"

SYSTEM_CLIENT=docker
[ -x /usr/bin/docker ] && SYSTEM_CLIENT=/usr/bin/docker
if [ "$ENGINE" = other ]; then
  first=$(env -u DOCKER_HOST -u DOCKER_CONTEXT timeout 20 "$SYSTEM_CLIENT" version --format '{{.Server.Version}}' 2>/dev/null || true)
  [ -n "$first" ] || die "--engine other: the first engine does not answer (scripts/engine.sh)"
  if [ "${first%%.*}" -ge 23 ] 2>/dev/null; then ENGINE=20.10; else ENGINE=26; fi
fi

STATE_ROOT=${TFIMG_STATE_DIR:-/var/lib/tfimg}
STORE=overlay2
case "$ENGINE" in
  26) VERSION=26; STATE=$STATE_ROOT/engine2; SOCK_DEFAULT=/run/tfimg-engine2.sock; EXEC_DEFAULT=/run/tfimg-e2
      BRIDGE=tfimg-e2; CIDR_DEFAULT=10.213.37.1/24 ;;
  20.10) VERSION=20.10; STATE=$STATE_ROOT/engine2-20.10; SOCK_DEFAULT=/run/tfimg-engine2-20.sock
      EXEC_DEFAULT=/run/tfimg-e2o; BRIDGE=tfimg-e2o; CIDR_DEFAULT=10.213.38.1/24 ;;
  26c) VERSION=26; STORE=containerd; STATE=$STATE_ROOT/engine2-26c; SOCK_DEFAULT=/run/tfimg-engine2-26c.sock
      EXEC_DEFAULT=/run/tfimg-e2c; BRIDGE=tfimg-e2c; CIDR_DEFAULT=10.213.39.1/24 ;;
  26c-b) VERSION=26; STORE=containerd; STATE=$STATE_ROOT/engine2-26c-b; SOCK_DEFAULT=/run/tfimg-engine2-26c-b.sock
      EXEC_DEFAULT=/run/tfimg-e2d; BRIDGE=tfimg-e2d; CIDR_DEFAULT=10.213.40.1/24 ;;
  *) die "unknown engine '$ENGINE': 26, 20.10, 26c, 26c-b or other" ;;
esac
case "$VERSION" in
  26) SUITE=trixie; PACKAGES=(docker.io docker-cli) ;;
  20.10) SUITE=bookworm; PACKAGES=(docker.io) ;;
esac
b=${BRIDGE#tfimg-}; CHAIN=TFIMG-${b^^}
DATA=$STATE/data
CONFIG=$STATE/daemon.json
SOCK=${TFIMG_ENGINE2_SOCK:-$SOCK_DEFAULT}
EXEC_ROOT=${TFIMG_ENGINE2_EXEC_ROOT:-$EXEC_DEFAULT}
PIDFILE=$EXEC_ROOT.pid
LOGFILE=${TFIMG_ENGINE2_LOG:-$STATE/dockerd.log}
HOST=unix://$SOCK
CIDR=${TFIMG_ENGINE2_CIDR:-$CIDR_DEFAULT}
NAT=${TFIMG_ENGINE2_NAT:-1}
NAMESPACE=tfimg-${BRIDGE#tfimg-}
DIST=$STATE_ROOT/dist/docker-$VERSION

# Is the version string $1 of version $VERSION (26.x.y, 20.10.z)?
is_version() { case "$1" in "$VERSION".*) return 0 ;; *) return 1 ;; esac; }
# The version a docker or dockerd binary says it is (`Docker version 26.1.5+dfsg1, build ...`).
version_of() { "$1" --version 2>/dev/null | sed -n 's/^Docker version \([^ ,+]*\).*/\1/p' || true; }

# Set DOCKERD, CLIENT and PATH_PREFIX for $VERSION: the system's binaries if they are of that
# version, else the unpacked Debian packages (`binaries fetch` unpacks them if needed).
binaries() {
  if command -v dockerd >/dev/null && is_version "$(version_of dockerd)" && is_version "$(version_of "$SYSTEM_CLIENT")"; then
    DOCKERD=$(command -v dockerd); CLIENT=$SYSTEM_CLIENT; PATH_PREFIX=''
    return
  fi
  DOCKERD=$DIST/root/usr/sbin/dockerd; CLIENT=$DIST/root/usr/bin/docker
  PATH_PREFIX=$DIST/root/usr/sbin:$DIST/root/usr/bin
  [ "${1:-}" = fetch ] || return 0
  "$(dirname "$0")/debget.sh" "$SUITE" "$DIST" "${PACKAGES[@]}" ||
    die "cannot fetch Docker $VERSION (${PACKAGES[*]} from Debian $SUITE)"
  is_version "$(version_of "$DOCKERD")" || die "$DOCKERD is not Docker $VERSION: $("$DOCKERD" --version)"
}

bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE"
  fi
  ip -4 addr show dev "$BRIDGE" | grep -q " ${CIDR%/*}/" ||
    ip addr add "$CIDR" dev "$BRIDGE" || die "cannot give $BRIDGE the address $CIDR"
  ip link set "$BRIDGE" up
}

subnet() { python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$CIDR"; }

# Our own rules, in our own chain, matching only our bridge; idempotent.
nat_on() {
  [ "$NAT" = 1 ] || return 0
  command -v iptables >/dev/null || die "TFIMG_ENGINE2_NAT=1 needs iptables (or set TFIMG_ENGINE2_NAT=0)"
  local net; net=$(subnet)
  iptables -N "$CHAIN" 2>/dev/null || iptables -F "$CHAIN"
  iptables -A "$CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j ACCEPT
  iptables -A "$CHAIN" -o "$BRIDGE" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  iptables -A "$CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  iptables -C FORWARD -j "$CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$CHAIN"
  iptables -t nat -C POSTROUTING -s "$net" ! -o "$BRIDGE" -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -s "$net" ! -o "$BRIDGE" -j MASQUERADE
}
nat_off() {
  command -v iptables >/dev/null || return 0
  local net; net=$(subnet)
  while iptables -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
  iptables -F "$CHAIN" 2>/dev/null || true
  iptables -X "$CHAIN" 2>/dev/null || true
  while iptables -t nat -D POSTROUTING -s "$net" ! -o "$BRIDGE" -j MASQUERADE 2>/dev/null; do :; done
}

answers() { DOCKER_HOST=$HOST timeout 20 "$CLIENT" info >/dev/null 2>&1; }
running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Only a dockerd that was started with our socket counts.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "unix://$SOCK " || return 1
  echo "$pid"
}

start() {
  binaries fetch
  if answers; then
    local v; v=$(DOCKER_HOST=$HOST "$CLIENT" version --format '{{.Server.Version}}' 2>/dev/null)
    is_version "$v" || die "the engine at $HOST is Docker $v, not $VERSION; stop it first ($0 --engine $ENGINE stop)"
    say "Docker $v already answers at $HOST; nothing changed"
    return 0
  fi
  if pid=$(running_pid); then
    say "dockerd (pid $pid) is running but does not answer yet; waiting"
  else
    [ "$(id -u)" = 0 ] || die "must be root to start a second dockerd"
    [ "${#SOCK}" -lt 100 ] || die "socket path $SOCK is too long for a unix socket"
    if [ -e "$SOCK" ]; then say "removing stale socket $SOCK"; rm -f "$SOCK"; fi
    mkdir -p "$DATA" "$EXEC_ROOT" "$(dirname "$LOGFILE")"
    # Its own config, rewritten at each start: never the first engine's /etc/docker/daemon.json.
    if [ "$STORE" = containerd ]; then
      echo '{"features": {"containerd-snapshotter": true}}' >"$CONFIG"
    else
      echo '{}' >"$CONFIG"
    fi
    bridge_up
    nat_on
    say "starting Docker $VERSION ($DOCKERD, $STORE image store) at $HOST (data: $DATA, log: $LOGFILE)"
    # setsid: the engine must outlive the shell that started it. PATH: the unpacked
    # version's docker-proxy first; containerd, runc and docker-init are the system's.
    PATH="${PATH_PREFIX:+$PATH_PREFIX:}$PATH" setsid "$DOCKERD" \
      --host "$HOST" \
      --data-root "$DATA" \
      --exec-root "$EXEC_ROOT" \
      --pidfile "$PIDFILE" \
      --config-file "$CONFIG" \
      --containerd-namespace "$NAMESPACE" --containerd-plugins-namespace "$NAMESPACE-plugins" \
      --cgroup-parent "$NAMESPACE" \
      --bridge "$BRIDGE" --iptables=false --ip6tables=false --ip-masq=false \
      >>"$LOGFILE" 2>&1 </dev/null &
  fi
  for i in $(seq 1 60); do
    if answers; then say "Docker $VERSION is up at $HOST"; return 0; fi
    if ! running_pid >/dev/null && [ "$i" -gt 3 ]; then break; fi
    sleep 1
  done
  say "dockerd did not answer at $HOST within 60 s; last lines of $LOGFILE:"
  tail -n 20 "$LOGFILE" >&2 || true
  exit 2
}

stop() {
  local purge=${1:-}
  [ -z "$purge" ] || [ "$purge" = --purge ] || die "unknown option to stop: $purge"
  if pid=$(running_pid); then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then die "dockerd (pid $pid) did not stop within 30 s"; fi
    say "stopped Docker $VERSION at $HOST (pid $pid)"
  else
    say "Docker $VERSION at $HOST is not running; nothing stopped"
  fi
  rm -f "$PIDFILE"
  nat_off
  if [ "$purge" = --purge ]; then
    # Mounts left below the data root (overlay, containerd) must go before rm.
    local m
    while read -r m; do
      [ -n "$m" ] && { umount "$m" 2>/dev/null || umount -l "$m" || true; }
    done < <(awk -v d="$DATA" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
    rm -rf "$DATA" "$EXEC_ROOT"
    ip link del "$BRIDGE" 2>/dev/null || true
    say "purged $DATA"
  fi
}

# Write (each time) and print a wrapper that runs $CLIENT in a private mount namespace where
# every folder the client looks for plugins in is an empty read-only tmpfs: no buildx.
no_buildx_wrapper() {
  [ "$VERSION" = 20.10 ] || die "--no-buildx is for the 20.10 client (clients from 23 on need buildx)"
  command -v unshare >/dev/null || die "--no-buildx needs unshare (util-linux)"
  local wrapper=$DIST/docker-no-buildx
  mkdir -p "$DIST"
  {
    echo '#!/bin/sh'
    echo "# Written by scripts/engine2.sh: the Docker $VERSION client without buildx, as on Debian 12."
    # shellcheck disable=SC2016,SC1003  # single-quoted on purpose: the wrapper's own shell expands it
    printf '%s\n' 'exec unshare -m sh -c '\''for d in /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins \' \
      '    /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"; do' \
      '  if [ -d "$d" ]; then mount -t tmpfs -o ro,size=4k tfimg-no-plugins "$d" || exit 125; fi' \
      'done' \
      'exec "$0" "$@"'\'' '"'$CLIENT'"' "$@"'
  } >"$wrapper.tmp"
  chmod +x "$wrapper.tmp"
  mv "$wrapper.tmp" "$wrapper"
  echo "$wrapper"
}

case "${1:-start}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  host) echo "$HOST" ;;
  client)
    binaries fetch
    case "${2:-}" in
      '') echo "$CLIENT" ;;
      --no-buildx) no_buildx_wrapper ;;
      *) die "unknown option to client: $2" ;;
    esac ;;
  version) binaries; DOCKER_HOST=$HOST timeout 20 "$CLIENT" version --format '{{.Server.Version}}' ;;
  status) binaries; answers ;;
  *) die "usage: $0 [--engine 26|20.10|26c|26c-b|other] start|stop [--purge]|host|client [--no-buildx]|version|status" ;;
esac
