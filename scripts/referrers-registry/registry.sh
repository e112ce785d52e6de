#!/usr/bin/env bash
# A local registry that serves the OCI 1.1 referrers API (GET /v2/<name>/referrers/<digest>,
# with ?artifactType= filtering): go-containerregistry's pkg/registry, built here from
# Debian's source package with Debian's Go (scripts/referrers-registry/main.go says what the
# wrapper adds). Debian's docker-registry (distribution 2.8, scripts/registry.sh, port 5000)
# has no referrers API; clients fall back to the tag schema there.
#
#   scripts/referrers-registry/registry.sh start    build if needed, start (idempotent), wait until it answers
#   scripts/referrers-registry/registry.sh stop     stop it, only if this script started it; data stays
#   scripts/referrers-registry/registry.sh url      print 127.0.0.1:PORT
#   scripts/referrers-registry/registry.sh status   exit 0 if ours runs and answers, 1 if not
#   scripts/referrers-registry/registry.sh log      print the access log's path (one line a request,
#                                                   common log format: "GET /v2/x/blobs/sha256:... HTTP/1.1" 200)
#   scripts/referrers-registry/registry.sh build    build only; print the binary's path
#   scripts/referrers-registry/registry.sh purge    stop it and delete its data (blobs and manifests)
#
# Environment: TFIMG_REFERRERS_PORT (default 5001), TFIMG_STATE_DIR (default /var/lib/tfimg).
# Under $TFIMG_STATE_DIR/referrers-registry: data/ (blobs/, uploads/ and manifests.jsonl: all
# survive a restart), access.log, registry.log (the server's own messages), registry.pid.
# Under build/referrers-registry/ of this checkout (like build/trivydb/): ggcr/ (the unpacked
# Debian package golang-github-google-go-containerregistry-dev from Debian 13, fetched with
# scripts/debget.sh: nothing is installed), <hash>/referrers-registry (the binary, cached by
# the hash of the *.go files, the ggcr package version and the Go version), gocache/.
# Needs Debian's golang-go (1.19 in Debian 12 is enough) and apt-get for the first build.
# It binds 127.0.0.1 only, so docker treats it as a plain-http registry without flags; oras
# needs --plain-http, cosign --allow-insecure-registry --allow-http-registry.
# If the port is taken by anything that is not this registry, start fails (exit 2) and says
# what holds the port; it never stops what it did not start.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$HERE/../.." && pwd)/build/referrers-registry
PORT=${TFIMG_REFERRERS_PORT:-5001}
STATE=${TFIMG_STATE_DIR:-/var/lib/tfimg}/referrers-registry
DATA=$STATE/data
PIDFILE=$STATE/registry.pid
LOGFILE=$STATE/registry.log
ACCESS=$STATE/access.log
ADDR=127.0.0.1:$PORT
GGCR_SUITE=trixie   # 0.20.1: the first Debian version with WithReferrersSupport and NewDiskBlobHandler

say() { printf 'referrers-registry: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

case "$PORT" in ''|*[!0-9]*) die "TFIMG_REFERRERS_PORT must be a port number, not '$PORT'";; esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "TFIMG_REFERRERS_PORT out of range: $PORT"; fi

v2_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$ADDR/v2/" 2>/dev/null || true; }

# The pid of the registry this script started, if it still runs (on any port).
our_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  case "$pid" in ''|*[!0-9]*) return 1;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid is not ours: the command line must name our data folder.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-data $DATA " || return 1
  echo "$pid"
}
our_addr() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | sed -n 's/.*-addr \([^ ]*\) .*/\1/p'; }

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
  [ -n "$(ss -Hltn "sport = :$PORT" 2>/dev/null)" ]
}
port_holder() {
  local who; who=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)
  echo "${who:-unknown process}"
}

# Build (or find) the binary; print its path.
build() {
  command -v go >/dev/null || die "Go is not installed (scripts/deps.sh, or: apt-get install golang-go)"
  "$HERE/../debget.sh" "$GGCR_SUITE" "$BUILD/ggcr" golang-github-google-go-containerregistry-dev
  local src=$BUILD/ggcr/root/usr/share/gocode ver hash bin
  ver=$(awk '{print $2}' "$BUILD/ggcr/VERSIONS")
  grep -q 'func WithReferrersSupport' "$src/src/github.com/google/go-containerregistry/pkg/registry/registry.go" ||
    die "go-containerregistry $ver has no WithReferrersSupport"
  hash=$({ cat "$HERE"/*.go; echo "$ver"; go version; } | sha256sum | cut -c1-16)
  bin=$BUILD/$hash/referrers-registry
  if [ ! -x "$bin" ]; then
    say "building with $(go version | cut -d' ' -f3) and go-containerregistry $ver"
    mkdir -p "$BUILD/$hash" "$BUILD/gocache"
    (cd "$HERE" && GO111MODULE=off GOFLAGS='' GOPATH="$BUILD/gopath:$src:/usr/share/gocode" GOCACHE="$BUILD/gocache" \
       CGO_ENABLED=0 go build -trimpath -ldflags "-X main.ggcrVersion=$ver" -o "$bin.tmp" .) ||
      die "go build failed"
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

start() {
  local pid bin
  if pid=$(our_pid); then
    [ "$(our_addr "$pid")" = "$ADDR" ] ||
      die "our registry already runs on $(our_addr "$pid") (pid $pid), not $ADDR; run '$0 stop' first"
    if [ "$(v2_status)" = 200 ]; then say "already running at $ADDR (pid $pid)"; return 0; fi
    say "our registry (pid $pid) does not answer yet; waiting"
  else
    port_busy && die "port $PORT on 127.0.0.1 is taken by something that is not this script's registry ($(port_holder)); set TFIMG_REFERRERS_PORT to a free port"
    bin=$(build)   # cached: start built it already
    mkdir -p "$DATA"
    # setsid: the registry outlives this shell and its process group.
    setsid nohup "$bin" -addr "$ADDR" -data "$DATA" -access-log "$ACCESS" >>"$LOGFILE" 2>&1 </dev/null 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi
  local _
  for _ in $(seq 1 100); do
    if [ "$(v2_status)" = 200 ]; then
      say "running at $ADDR (pid $pid; data $DATA; access log $ACCESS)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGFILE" >&2 || true; rm -f "$PIDFILE"; die "the registry exited; log: $LOGFILE"; }
    sleep 0.2
  done
  die "the registry (pid $pid) did not answer on $ADDR within 20 s; log: $LOGFILE"
}

stop() {
  local pid _
  if pid=$(our_pid); then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { say "pid $pid did not stop on TERM; sending KILL"; kill -9 "$pid" || true; }
    rm -f "$PIDFILE"
    say "stopped the registry this script started (pid $pid); data stays in $DATA"
  else
    rm -f "$PIDFILE"
    say "no registry started by this script is running; nothing stopped"
  fi
}

mkdir -p "$STATE"
cmd=${1:-}
case "$cmd" in
  url) echo "$ADDR"; exit 0 ;;
  log) echo "$ACCESS"; exit 0 ;;
  status) pid=$(our_pid) && [ "$(our_addr "$pid")" = "$ADDR" ] && [ "$(v2_status)" = 200 ]; exit ;;
esac
# One build at a time per checkout, one start/stop at a time per state folder.
mkdir -p "$BUILD"
exec 8>"$BUILD/lock"
exec 9>"$STATE/lock"
case "$cmd" in
  start) flock -w 300 9 || die "another $0 holds $STATE/lock"; { flock -w 300 8 && build >/dev/null; } || exit 2; start ;;
  stop) flock -w 300 9 || die "another $0 holds $STATE/lock"; stop ;;
  build) flock -w 300 8 || die "another $0 holds $BUILD/lock"; build ;;
  purge) flock -w 300 9 || die "another $0 holds $STATE/lock"; stop; rm -rf "$DATA" "$ACCESS"; say "purged $DATA" ;;
  *) echo "usage: $0 start|stop|url|status|log|build|purge" >&2; exit 64 ;;
esac
