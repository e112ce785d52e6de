#!/usr/bin/env python3
"""Record what NVIDIA's CUDA user-space libraries answer on this machine.

Each probe runs in its own child Python process (this file again, ``--child
NAME``), so a library that aborts (cuDNN on glibc >= 2.34 without
libcuda.so.1) is recorded with its signal instead of killing the probe. For
each library it prints the ctypes calls' return codes and values and the real
files the loader mapped (the child's /proc/self/maps, read by tfimg's one
parser, builder/check/incontainer/tfimg_maps.py). `--tf` adds a TensorFlow
probe (import time, get_build_info, GPU list, which CUDA libraries TF mapped).

Needs the whole tree (for the parser), e.g. in a container:

    docker run --rm -v "$PWD:/tree:ro" STANDIN python3 /tree/scripts/standin/probe-cuda-libs.py --tf

Used to record tests/data/probe/standin-cuda-libs-recorded.txt (inside the
CUDA stand-in) and host-glibc236-cuda-wheels-recorded.txt (on a Debian 12
host, wheels in a venv, LD_LIBRARY_PATH at their lib folders). Python 3.8+,
standard library only. Not part of any image build: no stand-in's tag hashes it.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "builder", "check",
                                "incontainer"))
import tfimg_maps  # the folder above is on sys.path now


def maps(*names: str) -> list[str]:
    return tfimg_maps.self_mapped(names)


def say(**kw: Any) -> None:
    print("RESULT " + json.dumps(kw, sort_keys=True, default=str), flush=True)


def _int_call(lib: Any, fn: str) -> tuple[int, int]:
    v = ctypes.c_int(-1)
    rc = getattr(lib, fn)(ctypes.byref(v))
    return rc, v.value


def cudart() -> None:
    lib = ctypes.CDLL("libcudart.so.11.0")
    say(step="loaded", mapped=maps("libcudart"))
    lib.cudaGetErrorName.restype = ctypes.c_char_p
    for fn in ("cudaRuntimeGetVersion", "cudaDriverGetVersion", "cudaGetDeviceCount"):
        rc, value = _int_call(lib, fn)
        extra = {"note": "value -1 means not written"} if fn == "cudaRuntimeGetVersion" else {}
        say(call=fn, rc=rc, rc_name=lib.cudaGetErrorName(rc).decode(), value=value, **extra)
    say(step="end", mapped=maps("libcudart", "libcuda."))


def cudart_unversioned() -> None:
    """What a probe that asks for plain libcudart.so gets (on the dev host: CUDA 13)."""
    try:
        lib = ctypes.CDLL("libcudart.so")
    except OSError as e:
        say(step="load", error=str(e))
        return
    rc, value = _int_call(lib, "cudaRuntimeGetVersion")
    say(call="cudaRuntimeGetVersion", rc=rc, value=value, mapped=maps("libcudart"))


def cublas() -> None:
    lib = ctypes.CDLL("libcublas.so.11")
    say(step="loaded", mapped=maps("libcublas"))
    out = {}
    for name, prop in (("major", 0), ("minor", 1), ("patch", 2)):
        v = ctypes.c_int(-1)
        rc = lib.cublasGetProperty(prop, ctypes.byref(v))
        out[name] = [rc, v.value]
    say(call="cublasGetProperty(MAJOR,MINOR,PATCH) [rc, value]", value=out)
    lt = ctypes.CDLL("libcublasLt.so.11")
    lt.cublasLtGetVersion.restype = ctypes.c_size_t
    say(call="cublasLtGetVersion", value=lt.cublasLtGetVersion(), mapped=maps("libcublas"))


def cudnn_version() -> None:
    lib = ctypes.CDLL("libcudnn.so.8")
    say(step="loaded", mapped=maps("libcudnn", "libcublas"))
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    say(step="calling cudnnGetVersion")
    say(call="cudnnGetVersion", value=lib.cudnnGetVersion(), mapped=maps("libcudnn", "libcublas", "libcuda."))


def cudnn_cudart_version() -> None:
    lib = ctypes.CDLL("libcudnn.so.8")
    lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
    say(step="calling cudnnGetCudartVersion")
    say(call="cudnnGetCudartVersion", value=lib.cudnnGetCudartVersion())


def cudnn_version_cublaslt_preloaded() -> None:
    """The same calls after loading libcublasLt.so.11 first (from Python, not from inside cuDNN's lazy
    dlopen of libcudnn_ops_infer)."""
    ctypes.CDLL("libcublasLt.so.11")
    lib = ctypes.CDLL("libcudnn.so.8")
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
    say(step="calling cudnnGetVersion")
    say(call="cudnnGetVersion", value=lib.cudnnGetVersion())
    say(call="cudnnGetCudartVersion", value=lib.cudnnGetCudartVersion(),
        mapped=maps("libcudnn", "libcublas", "libcuda."))


def cudnn_split_libs() -> None:
    """cuDNN 8 splits into sub-libraries; each has a <Name>VersionCheck call that compares its version
    with libcudnn's (0 = CUDNN_STATUS_SUCCESS)."""
    for so, fn in (("libcudnn_ops_infer.so.8", "cudnnOpsInferVersionCheck"),
                   ("libcudnn_ops_train.so.8", "cudnnOpsTrainVersionCheck"),
                   ("libcudnn_cnn_infer.so.8", "cudnnCnnInferVersionCheck"),
                   ("libcudnn_cnn_train.so.8", "cudnnCnnTrainVersionCheck"),
                   ("libcudnn_adv_infer.so.8", "cudnnAdvInferVersionCheck"),
                   ("libcudnn_adv_train.so.8", "cudnnAdvTrainVersionCheck")):
        lib = ctypes.CDLL(so)
        say(step="calling " + fn)
        say(call=fn, lib=so, rc=getattr(lib, fn)(), mapped=maps(so.split(".")[0] + "."))


def nccl() -> None:
    lib = ctypes.CDLL("libnccl.so.2")
    rc, value = _int_call(lib, "ncclGetVersion")
    say(call="ncclGetVersion", rc=rc, value=value, mapped=maps("libnccl"))


def tensorflow() -> None:
    t0 = time.monotonic()
    import tensorflow as tf
    say(step="import", seconds=round(time.monotonic() - t0, 2), version=tf.__version__)
    say(call="tf.sysconfig.get_build_info()", value=dict(tf.sysconfig.get_build_info()))
    t2 = time.monotonic()
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    say(call="tf.config.list_physical_devices('GPU')", value=gpus, seconds=round(time.monotonic() - t2, 2))
    say(step="mapped after list_physical_devices",
        mapped=maps("libcudart", "libcublas", "libcudnn", "libnccl", "libcuda.", "libcufft", "libcurand",
                    "libcusolver", "libcusparse"))


PROBES: dict[str, Callable[[], None]] = {
    "cudart": cudart, "cudart-unversioned": cudart_unversioned, "cublas": cublas, "cudnn-version": cudnn_version,
    "cudnn-cudart-version": cudnn_cudart_version, "cudnn-version-cublasLt-preloaded": cudnn_version_cublaslt_preloaded,
    "cudnn-split-libs": cudnn_split_libs, "nccl": nccl, "tensorflow": tensorflow,
}


def run(name: str) -> None:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name], capture_output=True, text=True)
    secs = time.monotonic() - t0
    if p.returncode < 0:
        status = f"killed by signal {-p.returncode} ({signal.Signals(-p.returncode).name})"
    else:
        status = f"exit {p.returncode}"
    print(f"=== {name}: {status}, {secs:.2f} s")
    for line in p.stdout.splitlines():
        print("  " + (line[len("RESULT "):] if line.startswith("RESULT ") else "stdout: " + line))
    for line in p.stderr.splitlines():
        print("  stderr: " + line)


def environment() -> dict[str, Any]:
    with open("/etc/os-release") as f:
        os_name = f.read().split("PRETTY_NAME=")[1].split("\n")[0].strip('"')
    return {
        "python": platform.python_version(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "os": os_name,
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH"),
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.endswith("_VERSION") and k.split("_")[0] in ("CUDA", "CUDNN", "NCCL", "CUBLAS", "TENSORFLOW")},
        "libcuda.so.1 present": any(os.path.exists(os.path.join(d, "libcuda.so.1")) for d in
                                    ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64",
                                     "/usr/local/cuda/compat", "/usr/local/cuda/compat/lib")),
    }


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--child"] and len(argv) == 3 and argv[2] in PROBES:
        PROBES[argv[2]]()
        return 0
    names = [n for n in PROBES if n != "tensorflow"]
    if "--tf" in argv[1:]:
        names.append("tensorflow")
    print("=== environment")
    print("  " + json.dumps(environment(), sort_keys=True))
    for n in names:
        run(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
