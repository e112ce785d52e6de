#!/usr/bin/env bash
# Make sure a Docker engine that can do BuildKit builds answers.
#
# - If `docker info` already answers (DOCKER_HOST and the user's docker config
#   are honoured), change nothing: any engine, 20.10 included, is used as it is.
# - Else, on Debian as root: install Docker 26.1.5 (docker.io, docker-cli) and
#   buildx 0.13.1 (docker-buildx) from Debian 13 (scripts/trixie.sh: only those
#   packages are pinned to trixie, nothing else is upgraded), start dockerd in the
#   background with a pid file and a log file, and wait until it answers.
#   TFIMG_ENGINE_SOURCE=distribution installs the distribution's own docker.io
#   instead (Debian 12: 20.10, no buildx).
# - `engine.sh stop` stops only an engine that this script started.
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

if ! command -v dockerd >/dev/null; then
  if [ "${TFIMG_ENGINE_SOURCE:-trixie}" = distribution ]; then
    say "installing docker.io from the distribution"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
  else
    "$(dirname "$0")/trixie.sh" docker.io docker-cli docker-buildx
  fi
fi
[ -x /usr/bin/docker ] && CLIENT=/usr/bin/docker

say "starting dockerd (log: $LOGFILE)"
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
