#!/usr/bin/env python3
"""Record what NVIDIA's CUDA user-space libraries answer on this machine.

Each probe runs in its own child Python process, so a library that aborts
(cuDNN on glibc >= 2.34 without libcuda.so.1) is recorded with its signal
instead of killing the probe. For each library it prints the ctypes calls'
return codes and values and the real file the loader mapped (from the
child's /proc/self/maps). `--tf` adds a TensorFlow probe (import time,
get_build_info, GPU list, which CUDA libraries TF mapped).

Used to record tests/data/probe/standin-cuda-libs-recorded.txt (inside the
CUDA stand-in) and host-glibc236-cuda-wheels-recorded.txt (on a Debian 12
host, wheels in a venv, LD_LIBRARY_PATH at their lib folders). Python 3.8+,
standard library only.
"""
import json
import os
import platform
import signal
import subprocess
import sys
import time

PRELUDE = r'''
import ctypes, json, os, sys
def maps(*names):
    found = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6:
                p = parts[5].strip()
                if any(os.path.basename(p).startswith(n) for n in names) and p not in found:
                    found.append(p)
    return found
def say(**kw):
    print("RESULT " + json.dumps(kw, sort_keys=True), flush=True)
'''

PROBES = {
    "cudart": r'''
lib = ctypes.CDLL("libcudart.so.11.0")
say(step="loaded", mapped=maps("libcudart"))
v = ctypes.c_int(-1)
rc = lib.cudaRuntimeGetVersion(ctypes.byref(v))
lib.cudaGetErrorName.restype = ctypes.c_char_p
say(call="cudaRuntimeGetVersion", rc=rc, rc_name=lib.cudaGetErrorName(rc).decode(), value=v.value,
    note="value -1 means not written")
d = ctypes.c_int(-1)
rc = lib.cudaDriverGetVersion(ctypes.byref(d))
say(call="cudaDriverGetVersion", rc=rc, rc_name=lib.cudaGetErrorName(rc).decode(), value=d.value)
n = ctypes.c_int(-1)
rc = lib.cudaGetDeviceCount(ctypes.byref(n))
say(call="cudaGetDeviceCount", rc=rc, rc_name=lib.cudaGetErrorName(rc).decode(), value=n.value)
say(step="end", mapped=maps("libcudart", "libcuda."))
''',
    "cudart-unversioned": r'''
# What a probe that asks for plain libcudart.so gets (on this host: CUDA 13).
try:
    lib = ctypes.CDLL("libcudart.so")
except OSError as e:
    say(step="load", error=str(e)); sys.exit(0)
v = ctypes.c_int(-1)
rc = lib.cudaRuntimeGetVersion(ctypes.byref(v))
say(call="cudaRuntimeGetVersion", rc=rc, value=v.value, mapped=maps("libcudart"))
''',
    "cublas": r'''
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
''',
    "cudnn-version": r'''
lib = ctypes.CDLL("libcudnn.so.8")
say(step="loaded", mapped=maps("libcudnn", "libcublas"))
lib.cudnnGetVersion.restype = ctypes.c_size_t
say(step="calling cudnnGetVersion")
say(call="cudnnGetVersion", value=lib.cudnnGetVersion(), mapped=maps("libcudnn", "libcublas", "libcuda."))
''',
    "cudnn-cudart-version": r'''
lib = ctypes.CDLL("libcudnn.so.8")
lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
say(step="calling cudnnGetCudartVersion")
say(call="cudnnGetCudartVersion", value=lib.cudnnGetCudartVersion())
''',
    "cudnn-version-cublasLt-preloaded": r'''
# The same calls after loading libcublasLt.so.11 first (from Python, not from
# inside cuDNN's lazy dlopen of libcudnn_ops_infer).
lt = ctypes.CDLL("libcublasLt.so.11")
lib = ctypes.CDLL("libcudnn.so.8")
lib.cudnnGetVersion.restype = ctypes.c_size_t
lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
say(step="calling cudnnGetVersion")
say(call="cudnnGetVersion", value=lib.cudnnGetVersion())
say(call="cudnnGetCudartVersion", value=lib.cudnnGetCudartVersion(),
    mapped=maps("libcudnn", "libcublas", "libcuda."))
''',
    "cudnn-split-libs": r'''
# cuDNN 8 splits into sub-libraries; each has a <Name>VersionCheck call that
# compares its version with libcudnn's (0 = CUDNN_STATUS_SUCCESS).
for so, fn in (("libcudnn_ops_infer.so.8", "cudnnOpsInferVersionCheck"),
               ("libcudnn_ops_train.so.8", "cudnnOpsTrainVersionCheck"),
               ("libcudnn_cnn_infer.so.8", "cudnnCnnInferVersionCheck"),
               ("libcudnn_cnn_train.so.8", "cudnnCnnTrainVersionCheck"),
               ("libcudnn_adv_infer.so.8", "cudnnAdvInferVersionCheck"),
               ("libcudnn_adv_train.so.8", "cudnnAdvTrainVersionCheck")):
    lib = ctypes.CDLL(so)
    say(step="calling " + fn)
    say(call=fn, lib=so, rc=getattr(lib, fn)(), mapped=maps(so.split(".")[0] + "."))
''',
    "nccl": r'''
lib = ctypes.CDLL("libnccl.so.2")
v = ctypes.c_int(-1)
rc = lib.ncclGetVersion(ctypes.byref(v))
say(call="ncclGetVersion", rc=rc, value=v.value, mapped=maps("libnccl"))
''',
    "tensorflow": r'''
import time
t0 = time.monotonic()
import tensorflow as tf
t1 = time.monotonic()
say(step="import", seconds=round(t1 - t0, 2), version=tf.__version__)
info = dict(tf.sysconfig.get_build_info())
say(call="tf.sysconfig.get_build_info()", value=info)
t2 = time.monotonic()
gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
say(call="tf.config.list_physical_devices('GPU')", value=gpus, seconds=round(time.monotonic() - t2, 2))
say(step="mapped after list_physical_devices",
    mapped=maps("libcudart", "libcublas", "libcudnn", "libnccl", "libcuda.", "libcufft", "libcurand",
                "libcusolver", "libcusparse"))
''',
}


def run(name, code):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True)
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


def main():
    names = [n for n in PROBES if n != "tensorflow"]
    if "--tf" in sys.argv[1:]:
        names.append("tensorflow")
    with open("/etc/os-release") as f:
        os_name = f.read().split("PRETTY_NAME=")[1].split("\n")[0].strip('"')
    print("=== environment")
    print("  " + json.dumps({
        "python": platform.python_version(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "os": os_name,
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH"),
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.endswith("_VERSION") and k.split("_")[0] in ("CUDA", "CUDNN", "NCCL", "CUBLAS", "TENSORFLOW")},
        "libcuda.so.1 present": any(os.path.exists(os.path.join(d, "libcuda.so.1")) for d in
                                    ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64",
                                     "/usr/local/cuda/compat", "/usr/local/cuda/compat/lib")),
    }, sort_keys=True))
    for n in names:
        run(n, PROBES[n])


if __name__ == "__main__":
    main()
