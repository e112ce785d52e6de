#!/usr/bin/env bash
# Make sure a Docker engine that can do BuildKit builds answers.
#
#   scripts/engine.sh [start]   what `make engine` runs
#   scripts/engine.sh stop      stop only an engine that this script started
#
# In order:
# 1. An engine already answers `docker info` (DOCKER_HOST and the user's docker
#    config are honoured): nothing is changed, whatever its version, 20.10
#    included (tfimg then uses buildx where the client has it, else the pre-23
#    `DOCKER_BUILDKIT=1 docker build` path).
# 2. DOCKER_HOST is set but does not answer: exit 2; no local engine is started
#    in its place.
# 3. Not root, or no apt-get: exit 2 ("start Docker yourself").
# 4. No dockerd is installed: install Docker 26.1.5 (docker.io, docker-cli) and
#    buildx 0.13.1 (docker-buildx) from Debian 13 (scripts/trixie.sh: only those
#    packages are pinned to trixie, nothing else is upgraded; on Debian 13 they
#    come from the system's own sources). TFIMG_ENGINE_SOURCE=distribution, or a
#    system that is not Debian (Ubuntu), installs the distribution's own docker.io
#    instead (Debian 12: 20.10, no buildx).
# 5. A dockerd is installed but not running (for example Debian 12's docker.io
#    20.10): it is started as it is. This script does not replace an engine the
#    machine's owner installed: 20.10 -> 26 migrates /var/lib/docker one way, and
#    the owner may depend on 20.10. It says which version it started and, when it
#    is older than 23, how to get 26: TFIMG_ENGINE_UPGRADE=1 scripts/engine.sh
#    first installs Docker 26 and buildx from Debian 13 over it (step 4's packages
#    only), then starts it.
# 6. Start: `setsid dockerd --pidfile $TFIMG_DOCKERD_PIDFILE` (default
#    /var/run/tfimg-dockerd.pid), log in $TFIMG_DOCKERD_LOG (default
#    /var/log/tfimg-dockerd.log), wait up to 60 s. An engine the package's own
#    scripts started during step 4 (systemd) is used instead.
set -euo pipefail

PIDFILE=${TFIMG_DOCKERD_PIDFILE:-/var/run/tfimg-dockerd.pid}
LOGFILE=${TFIMG_DOCKERD_LOG:-/var/log/tfimg-dockerd.log}
# Debian's client: /usr/local/bin/docker on some machines refuses BuildKit.
CLIENT=docker
[ -x /usr/bin/docker ] && CLIENT=/usr/bin/docker

say() { printf 'engine: %s\n' "$*" >&2; }

answers() { timeout 20 "$CLIENT" info >/dev/null 2>&1; }

if [ "${1:-start}" = stop ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")" && rm -f "$PIDFILE" && say "stopped the engine this script started"
  else
    say "no engine started by this script is running; nothing stopped"
  fi
  exit 0
fi

if answers; then
  say "a Docker engine answers ($($CLIENT version --format '{{.Server.Version}}' 2>/dev/null || echo '?')); nothing changed"
  exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
  say "DOCKER_HOST=$DOCKER_HOST is set but does not answer; not starting a local engine"
  exit 2
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  say "no Docker engine answers, and this is not a Debian/Ubuntu machine where I am root: start Docker yourself"
  exit 2
fi

from=${TFIMG_ENGINE_SOURCE:-trixie}
# shellcheck source=/dev/null
[ "$(. /etc/os-release 2>/dev/null && echo "${ID:-}")" = debian ] || from=distribution
if ! command -v dockerd >/dev/null || { [ "${TFIMG_ENGINE_UPGRADE:-0}" = 1 ] && [ "$from" = trixie ]; }; then
  if [ "$from" = distribution ]; then
    say "installing docker.io from the distribution"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
  else
    "$(dirname "$0")/trixie.sh" docker.io docker-cli docker-buildx
  fi
fi
[ -x /usr/bin/docker ] && CLIENT=/usr/bin/docker
if answers; then say "the engine the package started answers; nothing else to do"; exit 0; fi

version=$(dockerd --version 2>/dev/null | sed -n 's/^Docker version \([^ ,+]*\).*/\1/p')
say "starting the installed dockerd ${version:-?} (log: $LOGFILE)"
if [ "${version%%.*}" -lt 23 ] 2>/dev/null; then
  say "Docker $version is older than 23 (no buildx from Debian 12): tfimg uses the pre-23 path." \
      "For Docker 26 with buildx from Debian 13: TFIMG_ENGINE_UPGRADE=1 $0"
fi
# A pid file left by a dockerd of ours that died would stop the new one from starting.
if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null; then rm -f "$PIDFILE"; fi
mkdir -p "$(dirname "$LOGFILE")"
# setsid: the engine must outlive the make process that started it.
setsid dockerd --pidfile "$PIDFILE" >>"$LOGFILE" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if answers; then say "engine is up"; exit 0; fi
  sleep 1
done
say "dockerd did not answer within 60 s; last lines of $LOGFILE:"
tail -n 20 "$LOGFILE" >&2 || true
exit 2
