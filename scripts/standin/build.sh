#!/usr/bin/env bash
# Build (once) the stand-in base image and print its reference on stdout.
# The tag carries the hash of this folder (the recipe), so an image built
# from the same recipe is reused: on a warm machine this prints at once.
#   scripts/standin/build.sh          -> tfimg-standin:tf2.9-<hash>
#   scripts/standin/build.sh --ref    -> only print the reference
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DOCKER=${TFIMG_DOCKER:-docker}
[ -x /usr/bin/docker ] && [ -z "${TFIMG_DOCKER:-}" ] && DOCKER=/usr/bin/docker
CA=${TFIMG_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
MIRROR=${TFIMG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bullseye

hash=$(cd "$here" && cat Dockerfile requirements.txt build.sh | sha256sum | cut -c1-12)
ref="tfimg-standin:tf2.9-$hash"
rootfs="tfimg-standin-rootfs:$SUITE-$hash"
say() { printf 'standin: %s\n' "$*" >&2; }

if [ "${1:-}" = --ref ]; then echo "$ref"; exit 0; fi
if $DOCKER image inspect "$ref" >/dev/null 2>&1; then
  say "$ref is up to date"
  echo "$ref"; exit 0
fi

if ! $DOCKER image inspect "$rootfs" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  work=$(mktemp -d /tmp/tfimg-rootfs.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  say "debootstrap $SUITE into $work (a few minutes)"
  debootstrap --variant=minbase "$SUITE" "$work/root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2; exit 2; }
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  say "importing the rootfs as $rootfs"
  tar -C "$work/root" --numeric-owner -c . | $DOCKER import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$rootfs" >/dev/null
fi

say "building $ref on $rootfs"
DOCKER_BUILDKIT=1 $DOCKER build --progress=plain \
  --secret id=ca_bundle,src="$CA" \
  --build-arg ROOTFS="$rootfs" \
  --label org.opencontainers.image.version="$hash" \
  -t "$ref" "$here" >&2
echo "$ref"
