"""Probe the CUDA stack and TensorFlow: a self-contained snippet plus pure parsers.

:data:`SNIPPET` is plain Python 3.8+ (standard library only; TensorFlow when it
is there) that runs anywhere: inside a container (``tfimg test``) or on a host
(``tfimg probe --local``). Each library, and TensorFlow, is probed in its own
child process (``python -c CHILD KIND``), so a library that aborts the process
(cuDNN on glibc >= 2.34 without ``libcuda.so.1``: SIGABRT) becomes that row's
error, with the signal named, and the other rows still come back.

For each library the child loads the soname TensorFlow 2.9 loads
(``libcudart.so.11.0``, ``libcudnn.so.8``, ``libnccl.so.2``) first, other names
only where that one is absent; it reports the real file the loader mapped
(``/proc/self/maps``, e.g. ``libcudart.so.11.7.99``) and what the library's
version call answered (``cudaRuntimeGetVersion``, ``cudnnGetVersion``,
``ncclGetVersion``); for the CUDA runtime also the toolkit's ``version.json``
above that file, where there is one. Each library child has 30 s, the
TensorFlow child 200 s (``TFIMG_PROBE_TF_TIMEOUT``: PyPI's TensorFlow 2.9
ships machine code up to sm_75 and PTX for compute 8.0, so on an A100 or
newer the driver JIT-compiles its kernels on first use, which can take far
longer); a child that overruns is that row's error. ``TFIMG_PROBE_TF=0``
leaves TensorFlow out. The parent adds NGC's environment
variables, asks ``nvidia-smi`` for the driver, and prints one line,
``TFIMG_PROBE=<json>``, of raw values. Everything else here is pure functions
over that JSON::

    raw = parse_output(text)          # the JSON line among TensorFlow's noise
    s = summarize(raw)                # versions as strings, each with its method; GPUs, matmul
    rows = evaluate(s, profile)       # each compared with the base profile

How a version is obtained (``method``), first that gives one:

- ``library call``: the version call answered. The only value that counts as
  read (``read``: true).
- ``file name``: the real file's name carries more than its soname
  (``libcudart.so.11.7.99`` -> CUDA 11.7). NVIDIA's packages name them so;
  the wheels do not (``libcudart.so.11.0`` only).
- ``version file``: ``version.json`` of the CUDA toolkit the runtime lies in.
- ``environment variable``: ``CUDA_VERSION``, ``CUDNN_VERSION``,
  ``NCCL_VERSION``: what the image says about itself.

The first three describe the library that was loaded: they are compared with
the profile (ok or mismatch), and the row's detail says which method gave the
value and why the library did not answer. An environment variable alone is
recorded, never asserted: a library that loads but whose version cannot be
established otherwise is ``unverified`` (a failure where the profile confirms
a version). A library found only under another name (``libcudart.so``: a CUDA
13 runtime on the dev machine) is not the one TensorFlow 2.9 loads: it is
reported as ``other``, and the component stays missing.
"""

from __future__ import annotations

import json
from typing import Any

from builder.errors import TfimgError
from builder.infra import runner
from builder.spec.profiles import Profile, version_matches

MARK = "TFIMG_PROBE="
CALL, FILE_NAME, VERSION_FILE, ENV_VAR = "library call", "file name", "version file", "environment variable"
ASSERTED = (CALL, FILE_NAME, VERSION_FILE)
# component -> (key in the raw "libs", soname TensorFlow 2.9 loads, version call, NGC's variable)
LIBS = {
    "cuda": ("cudart", "libcudart.so.11.0", "cudaRuntimeGetVersion", "CUDA_VERSION"),
    "cudnn": ("cudnn", "libcudnn.so.8", "cudnnGetVersion", "CUDNN_VERSION"),
    "nccl": ("nccl", "libnccl.so.2", "ncclGetVersion", "NCCL_VERSION"),
}
GPU_ONLY = ("driver", "tf_gpus", "matmul")
FAILED = ("mismatch", "missing", "unverified", "failed")

SNIPPET = r'''
import json, os, platform, shutil, signal, subprocess, sys, time
LIBS = {   # kind: [soname TensorFlow 2.9 loads, other names, real-file prefix, version call]
    "cudart": ["libcudart.so.11.0", ["libcudart.so", "libcudart.so.12", "libcudart.so.13"], "libcudart.so.",
               "cudaRuntimeGetVersion"],
    "cudnn": ["libcudnn.so.8", ["libcudnn.so", "libcudnn.so.9"], "libcudnn.so.", "cudnnGetVersion"],
    "nccl": ["libnccl.so.2", ["libnccl.so"], "libnccl.so.", "ncclGetVersion"],
}
LIB_CHILD = """
import ctypes, json, os, sys
soname, others, prefix, fn = json.loads(sys.argv[2])
def say(**kw):
    print("TFIMG_CHILD=" + json.dumps(kw, sort_keys=True), flush=True)
def mapped():
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and os.path.basename(parts[5].strip()).startswith(prefix):
                    return parts[5].strip()
    except OSError:
        return None
    return None
tried = []
for name in [soname] + others:
    try:
        lib = ctypes.CDLL(name)
        break
    except OSError as exc:
        tried.append(str(exc)[:160])
else:
    say(name=None, tried=tried)
    sys.exit(0)
path = mapped()
say(name=name, path=path, tried=tried)
if sys.argv[1] == "cudart" and path:
    d = os.path.dirname(path)
    for _ in range(4):
        vf = os.path.join(d, "version.json")
        if os.path.isfile(vf):
            try:
                with open(vf) as f:
                    data = json.loads(f.read(1000000))
                say(version_file={"path": vf, "cuda": (data.get("cuda") or {}).get("version"),
                                  "cuda_cudart": (data.get("cuda_cudart") or {}).get("version")})
            except Exception as exc:
                say(version_file={"path": vf, "error": type(exc).__name__ + ": " + str(exc)[:120]})
            break
        d = os.path.dirname(d)
say(call=fn)
try:
    if fn == "cudnnGetVersion":
        lib.cudnnGetVersion.restype = ctypes.c_size_t
        say(value=int(lib.cudnnGetVersion()))   # returns the version itself: no status code
    else:
        v = ctypes.c_int(-1)
        rc = getattr(lib, fn)(ctypes.byref(v))
        say(rc=rc, value=v.value if rc == 0 else None)
        if rc and fn == "cudaRuntimeGetVersion":
            lib.cudaGetErrorName.restype = ctypes.c_char_p
            say(rc_name=lib.cudaGetErrorName(rc).decode())
except Exception as exc:
    say(error=type(exc).__name__ + ": " + str(exc)[:160])
"""
TF_CHILD = """
import json, os, sys
def say(**kw):
    print("TFIMG_CHILD=" + json.dumps(kw, sort_keys=True, default=str), flush=True)
try:
    import tensorflow as tf
    say(version=tf.__version__)
    info = dict(tf.sysconfig.get_build_info())
    say(is_cuda_build=bool(info.get("is_cuda_build")), cuda_version=info.get("cuda_version"),
        cudnn_version=info.get("cudnn_version"))
    gpus = tf.config.list_physical_devices("GPU")
    say(gpus=[g.name for g in gpus])
    found = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and os.path.basename(parts[5]).startswith(("libcudart.so.", "libcudnn.so.",
                                                                          "libnccl.so.", "libcuda.so.")):
                if parts[5].strip() not in found:
                    found.append(parts[5].strip())
    say(cuda_libs=found)
    if gpus:
        tf.config.set_soft_device_placement(False)
        with tf.device("/GPU:0"):
            a = tf.random.uniform((256, 256), seed=1)
            b = tf.random.uniform((256, 256), seed=2)
            c = tf.linalg.matmul(a, b)
        diff = float(tf.reduce_max(tf.abs(c.cpu() - tf.linalg.matmul(a.cpu(), b.cpu()))))
        say(matmul={"device": c.device, "max_abs_diff": diff})
except Exception as exc:
    say(error=type(exc).__name__ + ": " + str(exc)[:300])
"""
def child(code, args, timeout):
    t0 = time.monotonic()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    res, rc = {}, None
    try:
        p = subprocess.run([sys.executable or "python3", "-c", code] + args, capture_output=True,
                           text=True, timeout=timeout, env=env)
        stdout, stderr, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = exc.stdout or "", exc.stderr or ""
        stdout = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        res["exit"] = "timed out after %d s" % timeout
    for line in stdout.splitlines():
        if line.startswith("TFIMG_CHILD="):
            res.update(json.loads(line[len("TFIMG_CHILD="):]))
    if rc is not None and rc < 0:
        try:
            res["exit"] = "killed by signal %d (%s)" % (-rc, signal.Signals(-rc).name)
        except ValueError:
            res["exit"] = "killed by signal %d" % -rc
    elif rc:
        res["exit"] = "exit %d" % rc
    if res.get("exit"):
        res["stderr"] = stderr.strip()[-400:]
    res["seconds"] = round(time.monotonic() - t0, 2)
    return res
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION")
except (ValueError, OSError):
    libc = None
out = {"probe": 2, "python": platform.python_version(), "glibc": libc, "libs": {}, "smi": None, "tf": None,
       "env": {k: os.environ[k] for k in ("CUDA_VERSION", "CUDNN_VERSION", "NCCL_VERSION", "CUBLAS_VERSION",
                                          "LD_LIBRARY_PATH") if k in os.environ}}
for kind, spec in LIBS.items():
    out["libs"][kind] = child(LIB_CHILD, [kind, json.dumps(spec)], 30)
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
    tf_out.update(child(TF_CHILD, [], int(os.environ.get("TFIMG_PROBE_TF_TIMEOUT", "200"))))
    if tf_out.get("exit") and not tf_out.get("error"):
        tf_out["error"] = "TensorFlow probe " + tf_out["exit"] + ": " + tf_out.get("stderr", "")[-200:]
print("TFIMG_PROBE=" + json.dumps(out, sort_keys=True))
'''


def parse_output(text: str) -> dict[str, Any]:
    """The probe's JSON line among whatever else was printed (TensorFlow logs, banners)."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK):]))
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


CALL_VERSION = {"cuda": cuda_version, "cudnn": cudnn_version, "nccl": nccl_version}


def _numbers(text: str | None) -> list[str]:
    """Leading dotted numbers of a version string ('11.7.1.017' -> ['11', '7', '1', '017'])."""
    out = []
    for part in (text or "").strip().split("."):
        if not part.isdigit():
            break
        out.append(part)
    return out


def _as_component(component: str, numbers: list[str]) -> str | None:
    """CUDA as major.minor (what ``cudaRuntimeGetVersion`` gives); cuDNN and NCCL as X.Y.Z."""
    want = 2 if component == "cuda" else 3
    if len(numbers) < want:
        return None
    return ".".join(str(int(n)) for n in numbers[:want])


def version_from_file_name(component: str, path: str | None) -> str | None:
    """The version in a real file's name, where it says more than the soname.

    ``libcudart.so.11.7.99`` -> '11.7'; ``libcudnn.so.8.5.0`` -> '8.5.0'; the
    wheels' ``libcudart.so.11.0`` (the soname itself) -> None.
    """
    if not path:
        return None
    name = path.rsplit("/", 1)[-1]
    prefix = LIBS[component][1].split(".so.")[0] + ".so."
    if not name.startswith(prefix):
        return None
    numbers = _numbers(name[len(prefix):])
    if len(numbers) < 3 or name[len(prefix):] != ".".join(numbers):
        return None
    return _as_component(component, numbers)


def _why_not_read(lib: dict[str, Any]) -> str:
    """Why the version call gave no value (rc, exception, signal), '' when it did."""
    call = lib.get("call") or "the version call"
    if lib.get("exit"):
        stderr = (lib.get("stderr") or "").strip().splitlines()
        return f"{call} {lib['exit']}" + (f" ({stderr[-1][:200]})" if stderr else "")
    if lib.get("error"):
        return f"{call}: {lib['error']}"
    if lib.get("rc"):
        return f"{call} rc {lib['rc']}" + (f" {lib['rc_name']}" if lib.get("rc_name") else "")
    return ""


def lib_summary(component: str, lib: dict[str, Any] | None, env: dict[str, str]) -> dict[str, Any]:
    """One library: its version and how it was obtained (``method``; ``read`` only for a library call).

    Keys: value, method, read, soname, loaded (the name that loaded), file (real
    file), why (why the library did not answer, or why the value is not the
    one TensorFlow loads), error (a crash of the probe child), other (another
    library found instead of the soname), env (NGC's variable, as set).
    """
    lib = lib or {}
    _, soname, _, var = LIBS[component]
    loaded, path = lib.get("name"), lib.get("path")
    out: dict[str, Any] = {"value": None, "method": None, "read": False, "soname": soname, "loaded": None,
                           "file": None, "why": "", "error": None, "other": None,
                           "env": f"{var}={env[var]}" if env.get(var) else None}
    if lib.get("exit"):               # the child crashed or hung: name the call it was in, and the signal
        out["error"] = f"{lib.get('call') or ('loading ' + (loaded or soname))} {lib['exit']}"
    elif lib.get("error"):
        out["error"] = f"{lib.get('call') or 'the probe'}: {lib['error']}"
    by_call = CALL_VERSION[component](lib.get("value")) if isinstance(lib.get("value"), int) \
        and lib.get("value", 0) > 0 else None
    if loaded and loaded != soname:
        other = by_call or version_from_file_name(component, path)
        out["other"] = f"{loaded} -> {path or '?'} ({other or 'version unknown'})"
        out["why"] = (f"{soname} is not on the loader path; {loaded} loads {path or '?'} "
                      f"({other or 'version unknown'}), not the runtime TensorFlow 2.9 loads")
    elif loaded:
        out.update(loaded=loaded, file=path)
        if by_call:
            out.update(value=by_call, method=CALL, read=True)
            return out
        out["why"] = _why_not_read(lib) or f"{lib.get('call') or 'the version call'} gave no value"
        vf = lib.get("version_file") or {}
        for method, value in ((FILE_NAME, version_from_file_name(component, path)),
                              (VERSION_FILE, _as_component(component, _numbers(vf.get("cuda_cudart")
                                                                               or vf.get("cuda"))))):
            if value:
                out.update(value=value, method=method)
                if method == VERSION_FILE:
                    out["version_file"] = vf.get("path")
                return out
    else:
        tried = lib.get("tried") or []
        out["why"] = f"{soname} not found" + (f" ({tried[0]})" if tried else "")
        if out["error"]:
            out["why"] = f"the probe child {out['error']}"
    value = _as_component(component, _numbers(env.get(var)))
    if value:
        out.update(value=value, method=ENV_VAR)
    return out


def parse_smi(text: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=driver_version,name --format=csv,noheader``."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            driver, _, name = line.partition(",")
            rows.append({"driver": driver.strip(), "name": name.strip()})
    return rows


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Versions as strings and what TensorFlow and nvidia-smi said (pure).

    ``cuda``, ``cudnn`` and ``nccl`` hold a version only where it describes the
    library that was loaded (library call, file name or version file);
    ``libs`` holds, per component, the value with its method (see
    :func:`lib_summary`), an environment variable's included.
    """
    libs = raw.get("libs") or {}
    env = raw.get("env") or {}
    tf = raw.get("tf") or {}
    smi = raw.get("smi") or {}
    gpus = parse_smi(smi.get("stdout", "")) if smi.get("rc") == 0 else []
    per = {c: lib_summary(c, libs.get(key), env) for c, (key, *_rest) in LIBS.items()}
    return {
        "python": raw.get("python"),
        "glibc": raw.get("glibc"),
        "tensorflow": tf.get("version"),
        "tf_error": tf.get("error"),
        "tf_cuda_build": tf.get("is_cuda_build"),
        "tf_build_cuda": tf.get("cuda_version"),
        "tf_build_cudnn": tf.get("cudnn_version"),
        "tf_gpus": tf.get("gpus") or [],
        "tf_cuda_libs": tf.get("cuda_libs") or [],
        "matmul": tf.get("matmul"),
        **{c: (p["value"] if p["method"] in ASSERTED else None) for c, p in per.items()},
        "libs": per,
        "driver": gpus[0]["driver"] if gpus else None,
        "gpus": [g["name"] for g in gpus],
        "smi": None if not smi else ("ok" if smi.get("rc") == 0 else (smi.get("stderr") or "failed").strip()[:200]),
    }


def _how(p: dict[str, Any]) -> str:
    """How a library's value was obtained, for a row's detail."""
    where = f"{p['loaded']} -> {p['file']}" if p.get("file") else (p.get("loaded") or p["soname"])
    method = p.get("method")
    if method == CALL:
        return f"read from the library ({where})"
    if method == FILE_NAME:
        return f"by file name ({where}); not read from the library: {p['why']}"
    if method == VERSION_FILE:
        return f"by version file ({p.get('version_file')}; library {where}); not read from the library: {p['why']}"
    text = p["why"] or f"{p['soname']} not found"
    if method == ENV_VAR:
        text += f"; {p['env']} (environment variable: recorded, not asserted)"
    elif p.get("env"):
        text += f"; {p['env']}"
    return text


def _version_row(s: dict[str, Any], component: str, profile: Profile) -> dict[str, Any]:
    p = (s.get("libs") or {}).get(component)
    row = profile.compare(component, s.get(component))
    if p is None:                                   # python, tensorflow
        row["detail"] = ""
        return row
    detail = _how(p)
    row["method"], row["read"] = p.get("method"), p.get("method") == CALL
    comp = profile.components.get(component)
    found = s.get(component)
    if row["status"] == "mismatch":
        unsure = "" if row["confirmed"] else " (the expected value is unconfirmed: reported, not failed)"
        detail = f"found {found}, expected {row['expected']}{unsure}; {detail}"
    elif row["status"] == "recorded":
        found = found or p["value"]
        row["detected"] = found
        if found and comp is not None and comp.expect and not version_matches(found, comp.expect):
            detail = f"found {found}, expected {comp.expect} (unconfirmed: recorded, not asserted); {detail}"
    elif row["status"] == "missing" and p.get("loaded"):
        row["status"] = "unverified"
        detail = f"{p['soname']} is there but its version could not be established: {detail}"
    row["detail"] = detail
    return row


def evaluate(s: dict[str, Any], profile: Profile, *, gpu: bool = True,
             reason: str = "GPU mode is off (no NVIDIA runtime or GPU)") -> list[dict[str, Any]]:
    """Rows (component, detected, expected, confirmed, status, detail) against ``profile``.

    Versions use :meth:`Profile.compare` (ok, mismatch, missing, or recorded when
    unconfirmed) on the values that describe the loaded library (see
    :func:`summarize`); a library that loads without an established version is
    ``unverified``. Whether TensorFlow is a CUDA build is read without a GPU.
    The GPU rows (driver, TensorFlow's GPUs, matmul) are ``skipped`` with the
    reason when ``gpu`` is off.
    """
    rows = [_version_row(s, c, profile) for c in ("python", "tensorflow", "cuda", "cudnn", "nccl")]

    def row(component: str, detected: Any, ok: bool | None, detail: str, status: str | None = None) -> None:
        rows.append({"component": component, "detected": detected, "expected": None, "confirmed": True,
                     "status": status or ("skipped" if ok is None else ("ok" if ok else "failed")), "detail": detail})

    build = s.get("tf_cuda_build")
    if s.get("tensorflow") is None:
        row("tf_cuda_build", None, None, f"TensorFlow not importable ({s.get('tf_error') or 'not probed'})")
    else:
        what = (f"TensorFlow is a CUDA build (built for CUDA {s.get('tf_build_cuda')}, cuDNN "
                f"{s.get('tf_build_cudnn')})" if build else f"TensorFlow is not a CUDA build {s.get('tf_error') or ''}")
        if profile.gpu:
            row("tf_cuda_build", build, bool(build), what.strip())
        else:
            row("tf_cuda_build", build, None, f"{what.strip()}; profile {profile.name} has no GPU stack: recorded",
                status="recorded")
    if not gpu:
        for comp in GPU_ONLY:
            row(comp, None, None, reason)
        return rows
    if s.get("driver"):
        ok, why = profile.driver_ok(s["driver"])
        row("driver", s["driver"], ok, why)
    else:
        row("driver", None, False, f"nvidia-smi gave no driver ({s.get('smi') or 'not on PATH'})")
    row("tf_gpus", len(s.get("tf_gpus") or []), bool(s.get("tf_gpus")), ", ".join(s.get("tf_gpus") or []) or
        f"TensorFlow lists no GPU {s.get('tf_error') or ''}".strip())
    mm = s.get("matmul") or {}
    placed = str(mm.get("device", "")).endswith("GPU:0")
    close = mm.get("max_abs_diff") is not None and mm["max_abs_diff"] < 1e-2
    row("matmul", mm.get("device"), placed and close,
        f"256x256 matmul on {mm.get('device')}, max |GPU-CPU| {mm.get('max_abs_diff')}" if mm else "no matmul ran")
    return rows


def failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that fail: a mismatch against an unconfirmed expectation is reported, not failed."""
    return [r for r in rows if r["status"] in FAILED and r.get("confirmed", True)]


def command(python: str = "python3") -> list[str]:
    return [python, "-c", SNIPPET]


def run_local(python: str = "python3", *, timeout: float = 300) -> dict[str, Any]:
    """Run the probe on this host (no Docker) with ``python``; returns the raw JSON."""
    res = runner.run(command(python), timeout=timeout, check=False, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    return parse_output(res.stdout + "\n" + res.stderr)
