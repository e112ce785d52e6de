#!/usr/bin/env bash
# Record what tfimg's probe and GPU checks say on a machine WITH an NVIDIA GPU,
# offline: only what this working tree carries is used, nothing is downloaded.
#
#   scripts/gpu-check.sh [OUTDIR]      (default: $OUT, else ./gpu-check-out)
#
# Steps (each one skipped, with the reason, where the machine cannot do it):
#  1. the host: nvidia-smi, /proc/driver/nvidia/version, the loader's CUDA
#     libraries                                  -> gpu-host-env-recorded.txt
#  2. the probe (builder/check/incontainer/tfimg_probe.py, run as a file: it
#     imports nothing of tfimg, so no Python package is needed) against this
#     machine's driver and libraries, with the first python3 on PATH (set
#     PYTHON to use another)                     -> gpu-host-probe-recorded.txt
#     With TFIMG_GPU_CHECK_LIBS=DIR (e.g. NVIDIA's libraries copied out of the
#     CUDA stand-in, carried beside the tree) the probe runs again with DIR on
#     LD_LIBRARY_PATH                            -> gpu-host-libs-probe-recorded.txt
#  3. `tfimg probe --local --json` where tfimg is installed (.venv)
#                                                -> gpu-host-tfimg-probe-recorded.json
#  4. where Docker has the NVIDIA runtime and the CUDA stand-in image
#     (scripts/standin/build-cuda.sh --ref) is in the engine: the probe copied
#     (docker cp) into a container of it with --gpus all
#                                                -> gpu-standin-cuda-probe-recorded.txt
#  5. and, with tfimg installed: `tfimg test --gpu on` on
#     tests/data/probe/cuda-stack.yaml built on the CUDA stand-in (building
#     needs apt's mirror; or set TFIMG_GPU_CHECK_IMAGE to an image of it built
#     elsewhere and loaded here)                 -> gpu-standin-cuda-tfimg-test-recorded.txt
#                                                   (+ gpu-standin-cuda-report-recorded.json)
# Time: steps 1-3 take seconds. In 4 and 5 TensorFlow's first GPU use may be
# slow: PyPI's TensorFlow 2.9 has machine code up to sm_75 (PTX for 8.0), so on
# an A100/H100 the driver JIT-compiles its kernels; the probe gives TensorFlow
# TFIMG_PROBE_TF_TIMEOUT seconds (default 200) and then reports it as timed
# out, the library rows still recorded.
# A summary of what ran and what was skipped: gpu-check-summary.txt. Copy the
# *-recorded files into tests/data/probe/ and describe them in its README.
# Exit 0 when every step that ran finished, 1 when one failed (a failed check
# is a finding, recorded all the same), 2 on bad usage.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-$PWD/gpu-check-out}}
[ $# -le 1 ] || { echo "usage: $0 [OUTDIR]" >&2; exit 2; }
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
PYTHON=${PYTHON:-python3}
DOCKER=${TFIMG_DOCKER:-docker}
[ -x /usr/bin/docker ] && [ -z "${TFIMG_DOCKER:-}" ] && DOCKER=/usr/bin/docker
gpus=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | paste -sd ';' -)
[ -n "$gpus" ] || gpus="none (nvidia-smi absent or failing)"
if rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
  tree="commit $rev$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ', with local changes')"
else
  tree="not a git checkout"
fi
summary="$out/gpu-check-summary.txt"
status=0
: >"$summary"
note() { printf '%s\n' "$*" | tee -a "$summary" >&2; }
header() {   # header FILE WHAT COMMAND: the provenance lines every recorded file starts with
  {
    echo "# RECORDED (not constructed) by scripts/gpu-check.sh on $(hostname 2>/dev/null || echo '?'), $(date -u '+%F %T') UTC."
    echo "# Tree: $tree."
    echo "# GPU (name, driver): $gpus"
    echo "# $2"
    echo "# Command: $3"
  } >"$1"
}

note "gpu-check: writing to $out"

# ---- 1. the host
f="$out/gpu-host-env-recorded.txt"
header "$f" "The host: kernel, glibc, driver, GPUs, the CUDA libraries the loader knows." "see the sections below"
{
  echo "=== uname -a"; uname -a
  echo "=== glibc"; getconf GNU_LIBC_VERSION 2>&1
  echo "=== /etc/os-release"; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release 2>&1
  echo "=== /proc/driver/nvidia/version"; cat /proc/driver/nvidia/version 2>&1
  echo "=== nvidia-smi -L"; nvidia-smi -L 2>&1
  echo "=== nvidia-smi --query-gpu=driver_version,name --format=csv,noheader"
  nvidia-smi --query-gpu=driver_version,name --format=csv,noheader 2>&1
  echo "=== nvidia-smi"; nvidia-smi 2>&1
  echo "=== ldconfig -p (CUDA libraries)"
  ldconfig -p 2>&1 | grep -E 'libcuda\.|libcudart|libcudnn\.|libnccl|libcublas' || echo "(none)"
  echo "=== ls /usr/local (cuda*)"; ls -ld /usr/local/cuda* 2>&1
  echo "=== docker runtimes"; $DOCKER info --format '{{json .Runtimes}}' 2>&1 | head -c 2000; echo
} >>"$f" 2>&1
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  note "1. host: $(nvidia-smi -L | head -1) ... (gpu-host-env-recorded.txt)"
else
  note "1. host: NO GPU answers nvidia-smi here: the recordings below are not GPU recordings"
fi

# ---- 2. the probe on the host, straight from its file
programs="$root/builder/check/incontainer"   # the programs tfimg runs in containers (tfimg_*.py)
[ -r "$programs/tfimg_probe.py" ] || { note "2. probe: $programs/tfimg_probe.py is missing"; exit 2; }
run_probe() {   # run_probe FILE WHAT [LD_LIBRARY_PATH]
  local f=$1 what=$2 libs=${3:-} start=$SECONDS rc
  header "$f" "$what" "${libs:+LD_LIBRARY_PATH=$libs }$PYTHON -B builder/check/incontainer/tfimg_probe.py"
  if [ -n "$libs" ]; then
    LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 600 "$PYTHON" -B "$programs/tfimg_probe.py" \
      >>"$f" 2>&1
  else
    timeout 600 "$PYTHON" -B "$programs/tfimg_probe.py" >>"$f" 2>&1
  fi
  rc=$?
  if [ $rc -eq 0 ] && grep -q '^TFIMG_PROBE=' "$f"; then
    note "2. probe: $(basename "$f") in $((SECONDS - start)) s"
  else
    note "2. probe: FAILED (exit $rc, $(basename "$f"))"; status=1
  fi
}
run_probe "$out/gpu-host-probe-recorded.txt" \
  "The probe on the host, against its own driver and libraries ($("$PYTHON" --version 2>&1))."
if [ -n "${TFIMG_GPU_CHECK_LIBS:-}" ]; then
  if [ -d "$TFIMG_GPU_CHECK_LIBS" ]; then
    run_probe "$out/gpu-host-libs-probe-recorded.txt" \
      "The probe on the host with these libraries first on the loader path: $(ls "$TFIMG_GPU_CHECK_LIBS" | paste -sd ' ')" \
      "$TFIMG_GPU_CHECK_LIBS"
  else
    note "2. probe with TFIMG_GPU_CHECK_LIBS: skipped, $TFIMG_GPU_CHECK_LIBS is not a directory"
  fi
fi

# ---- 3. tfimg probe --local, where tfimg is installed
tfimg=""
if [ -x "$root/.venv/bin/tfimg" ]; then tfimg="$root/.venv/bin/tfimg"
elif command -v tfimg >/dev/null; then tfimg=$(command -v tfimg)
fi
if [ -n "$tfimg" ]; then
  f="$out/gpu-host-tfimg-probe-recorded.json"
  (cd "$root" && timeout 600 "$tfimg" probe --local --json) >"$f" 2>"$out/gpu-host-tfimg-probe.stderr"
  rc=$?
  if [ $rc -eq 0 ]; then note "3. tfimg probe --local: gpu-host-tfimg-probe-recorded.json"
  else note "3. tfimg probe --local: FAILED (exit $rc; gpu-host-tfimg-probe.stderr)"; status=1; fi
else
  note "3. tfimg probe --local: skipped, tfimg is not installed here (no .venv; make venv needs the network)"
fi

# ---- 4. and 5. the CUDA stand-in with a GPU
standin=$("$root/scripts/standin/build-cuda.sh" --ref 2>/dev/null || true)
if ! $DOCKER info >/dev/null 2>&1; then
  note "4./5. CUDA stand-in: skipped, no Docker engine answers ($DOCKER info)"
elif ! $DOCKER info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"nvidia"'; then
  note "4./5. CUDA stand-in: skipped, the Docker engine has no NVIDIA runtime (NVIDIA Container Toolkit)"
elif [ -z "$standin" ] || ! $DOCKER image inspect "$standin" >/dev/null 2>&1; then
  note "4./5. CUDA stand-in: skipped, ${standin:-its image} is not in this engine (build it with network:" \
       "scripts/standin/build-cuda.sh, then docker save | docker load here)"
else
  f="$out/gpu-standin-cuda-probe-recorded.txt"
  dest=/tmp/tfimg-incontainer                 # where tfimg test copies them (builder.check.incontainer.DEST)
  header "$f" "The probe in a container of the CUDA stand-in $standin with --gpus all." \
    "docker create --gpus all $standin python3 -B $dest/tfimg_probe.py; docker cp builder/check/incontainer/. CONTAINER:$dest; docker start -a CONTAINER"
  rc=1
  if cid=$($DOCKER create --gpus all -e TFIMG_PROBE_TF_TIMEOUT="${TFIMG_PROBE_TF_TIMEOUT:-200}" \
             "$standin" python3 -B "$dest/tfimg_probe.py" 2>>"$f"); then
    $DOCKER cp "$programs/." "$cid:$dest" >>"$f" 2>&1 && timeout 600 $DOCKER start -a "$cid" >>"$f" 2>&1
    rc=$?
    $DOCKER rm -f "$cid" >/dev/null 2>&1
  fi
  if [ $rc -eq 0 ]; then note "4. probe in the CUDA stand-in: gpu-standin-cuda-probe-recorded.txt"
  else note "4. probe in the CUDA stand-in: FAILED (exit $rc)"; status=1; fi

  if [ -z "$tfimg" ]; then
    note "5. tfimg test --gpu on: skipped, tfimg is not installed here"
  else
    image=${TFIMG_GPU_CHECK_IMAGE:-}
    spec="$root/tests/data/probe/cuda-stack.yaml"
    if [ -z "$image" ]; then
      (cd "$root" && timeout 900 "$root/.venv/bin/python" - "$spec" "$standin" "$out/build" \
        >"$out/gpu-standin-cuda-build.log" 2>&1 <<'EOF'
import sys
from builder.infra.ui import UI
from builder.pipeline import orchestrator as pipeline
from builder.spec import loader
loaded = loader.load(sys.argv[1])
built = pipeline.build_stage(loaded, pipeline.BuildOptions(out_root=sys.argv[3], base=sys.argv[2], force=True),
                             UI(quiet=True))
print("IMAGE=" + built.image)
EOF
      ) && image=$(sed -n 's/^IMAGE=//p' "$out/gpu-standin-cuda-build.log" | tail -1)
    fi
    if [ -z "$image" ]; then
      note "5. tfimg test --gpu on: skipped, cuda-stack could not be built on $standin" \
           "(gpu-standin-cuda-build.log; offline, set TFIMG_GPU_CHECK_IMAGE to an image built elsewhere)"
    else
      f="$out/gpu-standin-cuda-tfimg-test-recorded.txt"
      header "$f" "tfimg test --gpu on on $image (tests/data/probe/cuda-stack.yaml on $standin)." \
        "tfimg test $image --spec tests/data/probe/cuda-stack.yaml --gpu on --out OUT/test"
      (cd "$root" && COLUMNS=200 timeout 900 "$tfimg" test "$image" --spec "$spec" --gpu on --out "$out/test") >>"$f" 2>&1
      rc=$?
      cp "$out/test/cuda-stack/report.json" "$out/gpu-standin-cuda-report-recorded.json" 2>/dev/null
      if [ $rc -eq 0 ]; then note "5. tfimg test --gpu on: every check passed (gpu-standin-cuda-tfimg-test-recorded.txt)"
      else note "5. tfimg test --gpu on: exit $rc, see gpu-standin-cuda-tfimg-test-recorded.txt"; status=1; fi
    fi
  fi
fi
note "gpu-check: done, exit $status; outputs in $out"
exit $status
