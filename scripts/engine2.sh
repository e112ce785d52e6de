#!/usr/bin/env bash
# A second Docker engine beside the first one, standing in for a second CI
# runner (issue 12: runners that share build work through a registry).
#
#   scripts/engine2.sh start          start it (idempotent) and wait until it answers
#   scripts/engine2.sh stop           stop only it; its images and cache stay
#   scripts/engine2.sh stop --purge   stop it and delete its data: an empty runner
#   scripts/engine2.sh host           print its DOCKER_HOST value
#   scripts/engine2.sh status         exit 0 if it answers, 1 if not
#
# It never touches the first engine (scripts/engine.sh): its own data root,
# exec root (its own containerd), pid file, socket, config file and cgroup
# parent, and its own bridge, so the two engines never fight over docker0 or
# the DOCKER iptables chains:
#   --bridge tfimg-e2 --iptables=false --ip6tables=false --ip-masq=false
# NOT --bridge=none: a dockerd started with --bridge=none DELETES the host's
# docker0 interface (moby's removeDefaultBridgeInterface), which breaks the
# first engine's containers and builds.
# This script creates the bridge tfimg-e2 (address TFIMG_ENGINE2_CIDR, default
# 10.213.37.1/24) and, unless TFIMG_ENGINE2_NAT=0, its own NAT: a chain
# TFIMG-E2 hooked into FORWARD and nat POSTROUTING that only matches that
# bridge, so RUN steps of builds on engine2 reach the network (pip install)
# with the default build network, as on a real runner; `stop` removes those
# rules. With TFIMG_ENGINE2_NAT=0, builds that need the network must use
# `docker build --network host` (dockerd's BuildKit allows network.host).
# Pulls and pushes are done by dockerd itself, in the host's namespace, so a
# registry on 127.0.0.1 is reached either way; docker treats 127.0.0.0/8 as
# an insecure (plain http) registry by default: no --insecure-registry needed.
#
# Environment: TFIMG_STATE_DIR (default /var/lib/tfimg), TFIMG_ENGINE2_SOCK
# (default /run/tfimg-engine2.sock), TFIMG_ENGINE2_EXEC_ROOT (default
# /run/tfimg-e2: short, because of the unix socket path limit),
# TFIMG_ENGINE2_LOG (default $TFIMG_STATE_DIR/engine2/dockerd.log),
# TFIMG_ENGINE2_CIDR, TFIMG_ENGINE2_NAT (1 or 0).
set -euo pipefail

STATE=${TFIMG_STATE_DIR:-/var/lib/tfimg}/engine2
DATA=$STATE/data
CONFIG=$STATE/daemon.json
SOCK=${TFIMG_ENGINE2_SOCK:-/run/tfimg-engine2.sock}
EXEC_ROOT=${TFIMG_ENGINE2_EXEC_ROOT:-/run/tfimg-e2}
PIDFILE=$EXEC_ROOT.pid
LOGFILE=${TFIMG_ENGINE2_LOG:-$STATE/dockerd.log}
HOST=unix://$SOCK
BRIDGE=tfimg-e2
CIDR=${TFIMG_ENGINE2_CIDR:-10.213.37.1/24}
NAT=${TFIMG_ENGINE2_NAT:-1}
CHAIN=TFIMG-E2
CLIENT=docker
[ -x /usr/bin/docker ] && CLIENT=/usr/bin/docker

say() { printf 'engine2: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

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
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "unix://$SOCK" || return 1
  echo "$pid"
}

start() {
  if answers; then say "already answers at $HOST; nothing changed"; return 0; fi
  if pid=$(running_pid); then
    say "dockerd (pid $pid) is running but does not answer yet; waiting"
  else
    [ "$(id -u)" = 0 ] || die "must be root to start a second dockerd"
    command -v dockerd >/dev/null || die "no dockerd on PATH: run scripts/engine.sh first (it installs docker.io)"
    [ "${#SOCK}" -lt 100 ] || die "socket path $SOCK is too long for a unix socket"
    if [ -e "$SOCK" ]; then say "removing stale socket $SOCK"; rm -f "$SOCK"; fi
    mkdir -p "$DATA" "$EXEC_ROOT" "$(dirname "$LOGFILE")"
    # Its own (empty) config: never read the first engine's /etc/docker/daemon.json.
    [ -f "$CONFIG" ] || echo '{}' >"$CONFIG"
    bridge_up
    nat_on
    say "starting dockerd at $HOST (data: $DATA, log: $LOGFILE)"
    # setsid: the engine must outlive the shell that started it.
    setsid dockerd \
      --host "$HOST" \
      --data-root "$DATA" \
      --exec-root "$EXEC_ROOT" \
      --pidfile "$PIDFILE" \
      --config-file "$CONFIG" \
      --cgroup-parent tfimg-engine2 \
      --bridge "$BRIDGE" --iptables=false --ip6tables=false --ip-masq=false \
      >>"$LOGFILE" 2>&1 </dev/null &
  fi
  for i in $(seq 1 60); do
    if answers; then say "engine2 is up at $HOST"; return 0; fi
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
    say "stopped engine2 (pid $pid)"
  else
    say "engine2 is not running; nothing stopped"
  fi
  rm -f "$PIDFILE"
  nat_off
  if [ "$purge" = --purge ]; then
    # Mounts left below the data root (overlay, containerd) must go before rm.
    local m
    for m in $(awk -v d="$DATA" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    rm -rf "$DATA" "$EXEC_ROOT"
    ip link del "$BRIDGE" 2>/dev/null || true
    say "purged $DATA"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  host) echo "$HOST" ;;
  status) answers ;;
  *) die "usage: $0 start|stop [--purge]|host|status" ;;
esac
