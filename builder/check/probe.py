"""Probe the CUDA stack and TensorFlow: a self-contained snippet plus pure parsers.

:data:`SNIPPET` is plain Python (standard library only; TensorFlow when it is
there) that runs anywhere: inside a container (``tfimg test``) or on a host
(``tfimg probe --local``). It reads versions from the libraries themselves
through ctypes -- ``cudaRuntimeGetVersion`` (libcudart), ``cudnnGetVersion``
(libcudnn), ``ncclGetVersion`` (libnccl) -- asks ``nvidia-smi`` for the
driver, and asks TensorFlow whether it is a CUDA build, which GPUs it lists
and where a small matmul ran. It prints one line, ``TFIMG_PROBE=<json>``, of
raw values; everything else here is pure functions over that JSON::

    raw = parse_output(text)          # the JSON line among TensorFlow's noise
    s = summarize(raw)                # versions as strings, GPUs, matmul
    rows = evaluate(s, profile)       # each compared with the base profile
"""

from __future__ import annotations

import json
from typing import Any

from builder.errors import TfimgError
from builder.infra import runner
from builder.spec.profiles import Profile

MARK = "TFIMG_PROBE="
SNIPPET = r'''
import ctypes, json, os, platform, shutil, subprocess
out = {"probe": 1, "python": platform.python_version(), "libs": {}, "smi": None, "tf": None}
CANDIDATES = {
    "cudart": ["libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so"],
    "cudnn": ["libcudnn.so", "libcudnn.so.9", "libcudnn.so.8"],
    "nccl": ["libnccl.so", "libnccl.so.2"],
}
def lib_version(kind):
    errors = []
    for name in CANDIDATES[kind]:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc)[:120])
            continue
        try:
            if kind == "cudnn":
                lib.cudnnGetVersion.restype = ctypes.c_size_t
                return {"name": name, "value": int(lib.cudnnGetVersion())}
            v = ctypes.c_int(0)
            fn = lib.cudaRuntimeGetVersion if kind == "cudart" else lib.ncclGetVersion
            rc = fn(ctypes.byref(v))
            return {"name": name, "value": v.value if rc == 0 else None, "rc": rc}
        except Exception as exc:
            return {"name": name, "value": None, "error": type(exc).__name__ + ": " + str(exc)[:160]}
    return {"value": None, "error": "not found: " + "; ".join(errors[-1:])}
for kind in CANDIDATES:
    out["libs"][kind] = lib_version(kind)
smi = shutil.which("nvidia-smi")
if smi:
    try:
        p = subprocess.run([smi, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=60)
        out["smi"] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-400:]}
    except Exception as exc:
        out["smi"] = {"rc": None, "stdout": "", "stderr": type(exc).__name__ + ": " + str(exc)[:200]}
if os.environ.get("TFIMG_PROBE_TF", "1") != "0":
    tf_out = out["tf"] = {"version": None}
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        tf_out["version"] = tf.__version__
        info = dict(tf.sysconfig.get_build_info())
        tf_out["is_cuda_build"] = bool(info.get("is_cuda_build"))
        tf_out["cuda_version"] = info.get("cuda_version")
        tf_out["cudnn_version"] = info.get("cudnn_version")
        gpus = tf.config.list_physical_devices("GPU")
        tf_out["gpus"] = [g.name for g in gpus]
        if gpus:
            tf.config.set_soft_device_placement(False)
            with tf.device("/GPU:0"):
                a = tf.random.uniform((256, 256), seed=1)
                b = tf.random.uniform((256, 256), seed=2)
                c = tf.linalg.matmul(a, b)
            diff = float(tf.reduce_max(tf.abs(c.cpu() - tf.linalg.matmul(a.cpu(), b.cpu()))))
            tf_out["matmul"] = {"device": c.device, "max_abs_diff": diff}
    except Exception as exc:
        tf_out["error"] = type(exc).__name__ + ": " + str(exc)[:300]
print("TFIMG_PROBE=" + json.dumps(out, sort_keys=True))
'''


def parse_output(text: str) -> dict[str, Any]:
    """The probe's JSON line among whatever else was printed (TensorFlow logs, banners)."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = "\n".join(text.strip().splitlines()[-8:]) or "(no output)"
    raise TfimgError("the probe printed no result", hint="Last output:\n" + tail)


def cuda_version(value: int | None) -> str | None:
    """``cudaRuntimeGetVersion``: 1000*major + 10*minor (11070 -> '11.7')."""
    if not value:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def cudnn_version(value: int | None) -> str | None:
    """``cudnnGetVersion``: major*1000+minor*100+patch up to cuDNN 8 (8401 -> '8.4.1'), major*10000+... from 9."""
    if not value:
        return None
    if value >= 90000:
        return f"{value // 10000}.{(value % 10000) // 100}.{value % 100}"
    return f"{value // 1000}.{(value % 1000) // 100}.{value % 100}"


def nccl_version(value: int | None) -> str | None:
    """``ncclGetVersion``: X*10000+Y*100+Z from NCCL 2.9 (21212 -> '2.12.12'), X*1000+Y*100+Z before."""
    if not value:
        return None
    if value >= 20900:
        return f"{value // 10000}.{(value % 10000) // 100}.{value % 100}"
    return f"{value // 1000}.{(value % 1000) // 100}.{value % 100}"


def parse_smi(text: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=driver_version,name --format=csv,noheader``."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            driver, _, name = line.partition(",")
            rows.append({"driver": driver.strip(), "name": name.strip()})
    return rows


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Versions as strings and what TensorFlow and nvidia-smi said (pure)."""
    libs = raw.get("libs") or {}
    tf = raw.get("tf") or {}
    smi = raw.get("smi") or {}
    gpus = parse_smi(smi.get("stdout", "")) if smi.get("rc") == 0 else []
    return {
        "python": raw.get("python"),
        "tensorflow": tf.get("version"),
        "tf_error": tf.get("error"),
        "tf_cuda_build": tf.get("is_cuda_build"),
        "tf_build_cuda": tf.get("cuda_version"),
        "tf_build_cudnn": tf.get("cudnn_version"),
        "tf_gpus": tf.get("gpus") or [],
        "matmul": tf.get("matmul"),
        "cuda": cuda_version((libs.get("cudart") or {}).get("value")),
        "cudnn": cudnn_version((libs.get("cudnn") or {}).get("value")),
        "nccl": nccl_version((libs.get("nccl") or {}).get("value")),
        "driver": gpus[0]["driver"] if gpus else None,
        "gpus": [g["name"] for g in gpus],
        "smi": None if not smi else ("ok" if smi.get("rc") == 0 else (smi.get("stderr") or "failed").strip()[:200]),
    }


def evaluate(s: dict[str, Any], profile: Profile, *, gpu: bool = True,
             reason: str = "GPU mode is off (no NVIDIA runtime or GPU)") -> list[dict[str, Any]]:
    """Rows (component, detected, expected, status, detail) against ``profile``.

    Versions use :meth:`Profile.compare` (ok, mismatch, missing, or recorded when
    unconfirmed). GPU rows are ``skipped`` with the reason when ``gpu`` is off.
    """
    rows = [{**profile.compare(c, s.get(c)), "detail": ""} for c in ("python", "tensorflow", "cuda", "cudnn", "nccl")]

    def row(component: str, detected: Any, ok: bool | None, detail: str) -> None:
        status = "skipped" if ok is None else ("ok" if ok else "failed")
        rows.append({"component": component, "detected": detected, "expected": None,
                     "confirmed": True, "status": status, "detail": detail})

    if not gpu:
        for comp in ("driver", "tf_cuda_build", "tf_gpus", "matmul"):
            row(comp, None, None, reason)
        return rows
    if s.get("driver"):
        ok, why = profile.driver_ok(s["driver"])
        row("driver", s["driver"], ok, why)
    else:
        row("driver", None, False, f"nvidia-smi gave no driver ({s.get('smi') or 'not on PATH'})")
    row("tf_cuda_build", s.get("tf_cuda_build"), bool(s.get("tf_cuda_build")),
        "TensorFlow is a CUDA build" if s.get("tf_cuda_build") else f"not a CUDA build {s.get('tf_error') or ''}".strip())
    row("tf_gpus", len(s.get("tf_gpus") or []), bool(s.get("tf_gpus")), ", ".join(s.get("tf_gpus") or []) or
        f"TensorFlow lists no GPU {s.get('tf_error') or ''}".strip())
    mm = s.get("matmul") or {}
    placed = str(mm.get("device", "")).endswith("GPU:0")
    close = mm.get("max_abs_diff") is not None and mm["max_abs_diff"] < 1e-2
    row("matmul", mm.get("device"), placed and close,
        f"256x256 matmul on {mm.get('device')}, max |GPU-CPU| {mm.get('max_abs_diff')}" if mm else "no matmul ran")
    return rows


def failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] in ("mismatch", "missing", "failed")]


def command(python: str = "python3") -> list[str]:
    return [python, "-c", SNIPPET]


def run_local(python: str = "python3", *, timeout: float = 300) -> dict[str, Any]:
    """Run the probe on this host (no Docker) with ``python``; returns the raw JSON."""
    res = runner.run(command(python), timeout=timeout, check=False, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    return parse_output(res.stdout + "\n" + res.stderr)
