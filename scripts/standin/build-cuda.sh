#!/usr/bin/env bash
# Build (once) the CUDA stand-in base and print its reference on stdout: the
# CPU stand-in (scripts/standin/build.sh) plus NVIDIA's CUDA 11.7 runtime,
# cuBLAS, cuDNN 8 and NCCL 2 libraries from their PyPI wheels, laid out at
# NGC's paths (recipe: scripts/standin/cuda/). The tag carries a hash of that
# recipe and of the CPU stand-in's reference (itself the hash of its recipe),
# so a change to either rebuilds, and an image built from the same recipes is
# reused.
#   scripts/standin/build-cuda.sh          -> tfimg-standin:cuda11.7-<hash>
#   scripts/standin/build-cuda.sh --ref    -> only print the reference
# Logs go to stderr; a failure exits 2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DOCKER=${TFIMG_DOCKER:-docker}
[ -x /usr/bin/docker ] && [ -z "${TFIMG_DOCKER:-}" ] && DOCKER=/usr/bin/docker
CA=${TFIMG_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

say() { printf 'standin-cuda: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

base_ref=$("$here/build.sh" --ref) || die "scripts/standin/build.sh --ref failed"
hash=$( { echo "$base_ref"; cat "$here/cuda/Dockerfile" "$here/build-cuda.sh"; } \
        | sha256sum | cut -c1-12)
ref="tfimg-standin:cuda11.7-$hash"

if [ "${1:-}" = --ref ]; then echo "$ref"; exit 0; fi
[ $# -eq 0 ] || die "usage: $0 [--ref]"

$DOCKER info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed); run scripts/engine.sh"
if $DOCKER image inspect "$ref" >/dev/null 2>&1; then
  say "$ref is up to date"
  echo "$ref"; exit 0
fi

if ! $DOCKER image inspect "$base_ref" >/dev/null 2>&1; then
  say "building the CPU stand-in $base_ref first"
  built=$("$here/build.sh") || die "the CPU stand-in build (scripts/standin/build.sh) failed"
  [ "$built" = "$base_ref" ] || die "build.sh built $built, expected $base_ref"
fi
[ -r "$CA" ] || die "CA bundle $CA is not readable (set TFIMG_CA_BUNDLE)"

say "building $ref on $base_ref (downloads about 1 GB of NVIDIA wheels)"
start=$SECONDS
DOCKER_BUILDKIT=1 $DOCKER build --progress=plain \
  --secret id=ca_bundle,src="$CA" \
  --build-arg BASE="$base_ref" \
  --label org.opencontainers.image.version="$hash" \
  --label org.opencontainers.image.base.name="$base_ref" \
  -t "$ref" "$here/cuda" >&2 \
  || die "docker build of $ref failed (log above)"
say "built $ref in $((SECONDS - start)) s"
echo "$ref"
