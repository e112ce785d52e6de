"""The probe: what the CUDA libraries, TensorFlow and nvidia-smi say, printed as one JSON line.

A program for the image's own Python (3.8 or newer, standard library only,
TensorFlow where there is one; see ``builder/check/incontainer/__init__.py``).
It runs anywhere: in a container (``tfimg test``, copied there) or on a host
(``tfimg probe --local``, ``scripts/gpu-check.sh``)::

    python3 -B tfimg_probe.py        # -> TFIMG_PROBE=<json>, the last line

Each library, and TensorFlow, is probed in a child process (this file again,
``--child lib KIND`` or ``--child tf``), so a library that aborts the process
(cuDNN on glibc >= 2.34 without ``libcuda.so.1``: SIGABRT) becomes that row's
error, with the signal named, and the other rows still come back.

For each library the child loads the soname TensorFlow 2.9 loads
(``libcudart.so.11.0``, ``libcudnn.so.8``, ``libnccl.so.2``) first, other
names only where that one is absent (the newer sonames first, the unversioned
development name last); it reports the real file the loader mapped
(``/proc/self/maps``, e.g. ``libcudart.so.11.7.99``) and what the library's
version call answered (``cudaRuntimeGetVersion``, ``cudnnGetVersion``,
``ncclGetVersion``); for the CUDA runtime also the toolkit's ``version.json``
above that file, where there is one. Each library child has 30 s, the
TensorFlow child 200 s (``TFIMG_PROBE_TF_TIMEOUT``: PyPI's TensorFlow 2.9 ships
machine code up to sm_75 and PTX for compute 8.0, so on an A100 or newer the
driver JIT-compiles its kernels on first use, which can take far longer); a
child that overruns is that row's error. ``TFIMG_PROBE_TF=0`` leaves
TensorFlow out. The parent adds NGC's environment variables and asks
``nvidia-smi`` for the driver. The values are raw; ``builder/check/probe.py``
reads them on the host.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:   # imported as builder.check.incontainer.tfimg_probe (tests, type checks)
    from . import tfimg_maps
else:                              # run as a file: its sibling, also where sys.path[0] is not its folder (-P, -I)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tfimg_maps

MARK = "TFIMG_PROBE="
CHILD_MARK = "TFIMG_CHILD="
VERSION = 2
# kind: (soname TensorFlow 2.9 loads, other names in the order tried, real-file prefix, version call)
LIBS = {
    "cudart": ("libcudart.so.11.0", ("libcudart.so.13", "libcudart.so.12", "libcudart.so"), "libcudart.so.",
               "cudaRuntimeGetVersion"),
    "cudnn": ("libcudnn.so.8", ("libcudnn.so.9", "libcudnn.so"), "libcudnn.so.", "cudnnGetVersion"),
    "nccl": ("libnccl.so.2", ("libnccl.so",), "libnccl.so.", "ncclGetVersion"),
}
TF_LIBS = ("libcudart.so.", "libcudnn.so.", "libnccl.so.", "libcuda.so.")
ENV = ("CUDA_VERSION", "CUDNN_VERSION", "NCCL_VERSION", "CUBLAS_VERSION", "LD_LIBRARY_PATH")
LIB_TIMEOUT = 30


def say(**values: Any) -> None:
    """One result line of a child, read back by :func:`child`."""
    print(CHILD_MARK + json.dumps(values, sort_keys=True, default=str), flush=True)


# --------------------------------------------------------------------------- the library child

def load(kind: str) -> tuple[Any, str | None, list[str]]:
    """(the library, the name that loaded, the errors of the names tried before); (None, None, errors)."""
    soname, others, _, _ = LIBS[kind]
    tried: list[str] = []
    for name in (soname, *others):
        try:
            return ctypes.CDLL(name), name, tried
        except OSError as exc:
            tried.append(str(exc)[:160])
    return None, None, tried


def version_file(path: str) -> dict[str, Any] | None:
    """The CUDA toolkit's ``version.json`` in one of the four folders above ``path``, where there is one."""
    folder = os.path.dirname(path)
    for _ in range(4):
        candidate = os.path.join(folder, "version.json")
        if os.path.isfile(candidate):
            try:
                with open(candidate) as fh:
                    data = json.loads(fh.read(1000000))
                return {"path": candidate, "cuda": (data.get("cuda") or {}).get("version"),
                        "cuda_cudart": (data.get("cuda_cudart") or {}).get("version")}
            except Exception as exc:   # unreadable or not JSON: reported, never fatal
                return {"path": candidate, "error": type(exc).__name__ + ": " + str(exc)[:120]}
        folder = os.path.dirname(folder)
    return None


def version_call(lib: Any, fn: str) -> None:
    """Call the library's version function and say what it answered (rc and value, or the error)."""
    try:
        if fn == "cudnnGetVersion":
            lib.cudnnGetVersion.restype = ctypes.c_size_t
            say(value=int(lib.cudnnGetVersion()))   # returns the version itself: no status code
            return
        value = ctypes.c_int(-1)
        rc = getattr(lib, fn)(ctypes.byref(value))
        say(rc=rc, value=value.value if rc == 0 else None)
        if rc and fn == "cudaRuntimeGetVersion":
            lib.cudaGetErrorName.restype = ctypes.c_char_p
            say(rc_name=lib.cudaGetErrorName(rc).decode())
    except Exception as exc:   # a missing symbol, a bad signature: that row's error
        say(error=type(exc).__name__ + ": " + str(exc)[:160])


def lib_child(kind: str) -> None:
    """Load one library, say which file the loader mapped, then call its version function."""
    _, _, prefix, fn = LIBS[kind]
    lib, name, tried = load(kind)
    if lib is None:
        say(name=None, tried=tried)
        return
    mapped = tfimg_maps.self_mapped((prefix,))
    path = mapped[0] if mapped else None
    say(name=name, path=path, tried=tried)
    if kind == "cudart" and path:
        found = version_file(path)
        if found:
            say(version_file=found)
    say(call=fn)
    version_call(lib, fn)


# --------------------------------------------------------------------------- the TensorFlow child

def tf_child() -> None:
    """TensorFlow's version, build info, GPUs, the CUDA libraries it mapped, and a matmul on GPU:0."""
    try:
        import tensorflow as tf

        say(version=tf.__version__)
        info = dict(tf.sysconfig.get_build_info())
        say(is_cuda_build=bool(info.get("is_cuda_build")), cuda_version=info.get("cuda_version"),
            cudnn_version=info.get("cudnn_version"))
        gpus = tf.config.list_physical_devices("GPU")
        say(gpus=[g.name for g in gpus])
        say(cuda_libs=tfimg_maps.self_mapped(TF_LIBS))
        if gpus:
            tf.config.set_soft_device_placement(False)
            with tf.device("/GPU:0"):
                a = tf.random.uniform((256, 256), seed=1)
                b = tf.random.uniform((256, 256), seed=2)
                c = tf.linalg.matmul(a, b)
            diff = float(tf.reduce_max(tf.abs(c.cpu() - tf.linalg.matmul(a.cpu(), b.cpu()))))
            say(matmul={"device": c.device, "max_abs_diff": diff})
    except Exception as exc:   # TensorFlow absent or broken: the finding
        say(error=type(exc).__name__ + ": " + str(exc)[:300])


# --------------------------------------------------------------------------- the parent

def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run this file as a child with ``args``: its result lines merged, and how it ended where it
    did not exit 0 (``exit``: the signal, the exit code or the timeout, with ``stderr``'s tail)."""
    start = time.monotonic()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result: dict[str, Any] = {}
    rc = None
    try:
        done = subprocess.run([sys.executable or "python3", "-B", os.path.abspath(__file__), "--child", *args],
                              capture_output=True, text=True, timeout=timeout, env=env)
        stdout, stderr, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = _text(exc.stdout), _text(exc.stderr)
        result["exit"] = f"timed out after {int(timeout)} s"
    for line in stdout.splitlines():
        if line.startswith(CHILD_MARK):
            result.update(json.loads(line[len(CHILD_MARK):]))
    if rc is not None and rc < 0:
        try:
            result["exit"] = f"killed by signal {-rc} ({signal.Signals(-rc).name})"
        except ValueError:
            result["exit"] = f"killed by signal {-rc}"
    elif rc:
        result["exit"] = f"exit {rc}"
    if result.get("exit"):
        result["stderr"] = stderr.strip()[-400:]
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def smi() -> dict[str, Any] | None:
    """What ``nvidia-smi`` says of the driver and the GPUs; None where it is not on PATH."""
    found = shutil.which("nvidia-smi")
    if not found:
        return None
    try:
        done = subprocess.run([found, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=60)
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-400:]}
    except Exception as exc:   # hung or unrunnable: reported as its row
        return {"rc": None, "stdout": "", "stderr": type(exc).__name__ + ": " + str(exc)[:200]}


def tensorflow() -> dict[str, Any]:
    """The TensorFlow child's result; a child that did not finish is TensorFlow's error."""
    result: dict[str, Any] = {"version": None}
    result.update(child(["tf"], int(os.environ.get("TFIMG_PROBE_TF_TIMEOUT", "200"))))
    if result.get("exit") and not result.get("error"):
        result["error"] = "TensorFlow probe " + result["exit"] + ": " + result.get("stderr", "")[-200:]
    return result


def probe() -> dict[str, Any]:
    """Every value the probe reads, raw."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        libc = None
    return {
        "probe": VERSION, "python": platform.python_version(), "glibc": libc,
        "env": {k: os.environ[k] for k in ENV if k in os.environ},
        "libs": {kind: child(["lib", kind], LIB_TIMEOUT) for kind in LIBS},
        "smi": smi(),
        "tf": tensorflow() if os.environ.get("TFIMG_PROBE_TF", "1") != "0" else None,
    }


def main(argv: list[str]) -> int:
    if argv[1:3] == ["--child", "lib"] and len(argv) == 4 and argv[3] in LIBS:
        lib_child(argv[3])
    elif argv[1:] == ["--child", "tf"]:
        tf_child()
    elif len(argv) == 1:
        print(MARK + json.dumps(probe(), sort_keys=True), flush=True)
    else:
        sys.stderr.write("usage: python3 tfimg_probe.py\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
