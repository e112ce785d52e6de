#!/usr/bin/env bash
# A local demo/CI registry: Debian's docker-registry (distribution 2.8) on
# 127.0.0.1, without auth, deletes enabled. Used to serve the demo Trivy DB
# (scripts/trivydb/demo-db.sh) the way a company mirrors aquasec's trivy-db.
#
#   scripts/registry.sh start    start it (idempotent) and wait until it answers
#   scripts/registry.sh stop     stop it, only if this script started it; data stays
#   scripts/registry.sh url      print 127.0.0.1:PORT
#   scripts/registry.sh status   exit 0 if ours runs and answers, 1 if not
#
# Environment: TFIMG_REGISTRY_PORT (default 5000), TFIMG_STATE_DIR (default
# /var/lib/tfimg; the registry keeps config.yml, data/, registry.pid and
# registry.log under $TFIMG_STATE_DIR/registry). It binds 127.0.0.1 only, so
# docker and Trivy treat it as a plain-http registry without extra flags.
# If the port is taken by anything that is not this registry, start fails
# (exit 2) and says what holds the port; it never stops what it did not start.
set -euo pipefail

PORT=${TFIMG_REGISTRY_PORT:-5000}
STATE=${TFIMG_STATE_DIR:-/var/lib/tfimg}/registry
CONFIG=$STATE/config.yml
PIDFILE=$STATE/registry.pid
LOGFILE=$STATE/registry.log
ADDR=127.0.0.1:$PORT

say() { printf 'registry: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

case "$PORT" in ''|*[!0-9]*) die "TFIMG_REGISTRY_PORT must be a port number, not '$PORT'";; esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "TFIMG_REGISTRY_PORT out of range: $PORT"

# HTTP status of GET http://ADDR/v2/ (000 when nothing answers).
v2_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1/v2/" || true
  else
    python3 - "$1" <<'EOF' || echo 000
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
  fi
}

# The pid of the registry this script started, if it still runs.
our_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  case "$pid" in ''|*[!0-9]*) return 1;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid is not ours: the command line must be ours.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "serve $CONFIG" || return 1
  echo "$pid"
}

# The address our running registry was started with (from its config).
our_addr() { sed -n 's/^ *addr: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CONFIG" 2>/dev/null | head -n1; }

port_holder() {
  command -v ss >/dev/null 2>&1 || { echo "unknown process"; return; }
  local who
  who=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)
  echo "${who:-unknown process}"
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
  command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$PORT" 2>/dev/null)" ]
}

start() {
  local pid
  if pid=$(our_pid); then
    local addr; addr=$(our_addr)
    [ "$addr" = "$ADDR" ] ||
      die "our registry already runs on $addr (pid $pid), not $ADDR; run 'scripts/registry.sh stop' first"
    if [ "$(v2_status "$ADDR")" = 200 ]; then
      say "already running at $ADDR (pid $pid)"
      return 0
    fi
    say "our registry (pid $pid) does not answer yet; waiting"
  else
    if port_busy; then
      die "port $PORT on 127.0.0.1 is taken by something that is not this script's registry ($(port_holder)); set TFIMG_REGISTRY_PORT to a free port"
    fi
    command -v docker-registry >/dev/null 2>&1 ||
      die "docker-registry is not installed (scripts/deps.sh, or: apt-get install docker-registry)"
    mkdir -p "$STATE/data"
    local secret
    secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    cat >"$CONFIG" <<EOF
# Written by scripts/registry.sh; rewritten at each start.
version: 0.1
log:
  level: info
  fields:
    service: tfimg-registry
storage:
  filesystem:
    rootdirectory: $STATE/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: "$ADDR"
  secret: "$secret"
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    chmod 600 "$CONFIG"
    # setsid: the registry outlives this shell and its process group.
    setsid nohup docker-registry serve "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi
  local _
  for _ in $(seq 1 100); do
    if [ "$(v2_status "$ADDR")" = 200 ]; then
      say "running at $ADDR (pid $pid; data $STATE/data; log $LOGFILE)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGFILE" >&2 || true; rm -f "$PIDFILE"; die "the registry exited; log: $LOGFILE"; }
    sleep 0.2
  done
  die "the registry (pid $pid) did not answer on $ADDR within 20 s; log: $LOGFILE"
}

stop() {
  local pid
  if pid=$(our_pid); then
    kill "$pid"
    local _
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { say "pid $pid did not stop on TERM; sending KILL"; kill -9 "$pid" || true; }
    rm -f "$PIDFILE"
    say "stopped the registry this script started (pid $pid); data stays in $STATE/data"
  else
    rm -f "$PIDFILE"
    say "no registry started by this script is running; nothing stopped"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$ADDR" ;;
  status) pid=$(our_pid) && [ "$(our_addr)" = "$ADDR" ] && [ "$(v2_status "$ADDR")" = 200 ] ;;
  *) echo "usage: $0 start|stop|url|status" >&2; exit 64 ;;
esac
