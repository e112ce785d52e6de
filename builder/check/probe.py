"""Read what the probe printed: pure functions from its raw JSON to a summary and rows.

The probe itself is a file, ``builder/check/incontainer/tfimg_probe.py``: plain
Python 3.8+ (standard library only; TensorFlow where it is there) that runs in
a container (``tfimg test``: :func:`run_in` copies it there) or on a host
(``tfimg probe --local``: :func:`run_local`), and prints one line
``TFIMG_PROBE=<json>`` of raw values (see its docstring for what it reads and
how a crashing library is contained). Everything here is pure functions over
that line, each result a model of :mod:`builder.check.probe_models`::

    raw = parse_output(text)          # the JSON line among TensorFlow's noise -> RawProbe
    s = summarize(raw)                # versions as strings, each with its method; GPUs, matmul -> Summary
    rows = evaluate(s, profile)       # each compared with the base profile -> list[Row]

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
a version). A library found only under another name (``libcudart.so.13``: a
CUDA 13 runtime) is not the one TensorFlow 2.9 loads: it is reported as
``other``, and the component stays missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from builder.check import incontainer
from builder.check.probe_models import LibSummary, Method, RawLib, RawProbe, Row, Status, Summary
from builder.errors import TfimgError
from builder.infra import datafile, runner
from builder.spec.profiles import Profile, version_matches

if TYPE_CHECKING:
    from builder.infra.engine import Engine

MARK = "TFIMG_PROBE="
PROGRAM = "tfimg_probe.py"
CALL: Method = "library call"
FILE_NAME: Method = "file name"
VERSION_FILE: Method = "version file"
ENV_VAR: Method = "environment variable"
ASSERTED = (CALL, FILE_NAME, VERSION_FILE)
# component -> (key in the raw "libs", soname TensorFlow 2.9 loads, version call, NGC's variable)
LIBS = {
    "cuda": ("cudart", "libcudart.so.11.0", "cudaRuntimeGetVersion", "CUDA_VERSION"),
    "cudnn": ("cudnn", "libcudnn.so.8", "cudnnGetVersion", "CUDNN_VERSION"),
    "nccl": ("nccl", "libnccl.so.2", "ncclGetVersion", "NCCL_VERSION"),
}
GPU_ONLY = ("driver", "tf_gpus", "matmul")
FAILED = ("mismatch", "missing", "unverified", "failed")


def parse_output(text: str) -> RawProbe:
    """The probe's JSON line among whatever else was printed (TensorFlow logs, banners)."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARK):
            try:
                return RawProbe.model_validate(datafile.loads_json(line[len(MARK):], "the probe's line", what="it"))
            except (ValueError, ValidationError) as exc:
                raise TfimgError("the probe printed a result tfimg cannot read",
                                 hint=str(exc).splitlines()[0][:300]) from exc
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


def _why_not_read(lib: RawLib) -> str:
    """Why the version call gave no value (rc, exception, signal), '' when it did."""
    call = lib.call or "the version call"
    if lib.exit:
        stderr = (lib.stderr or "").strip().splitlines()
        return f"{call} {lib.exit}" + (f" ({stderr[-1][:200]})" if stderr else "")
    if lib.error:
        return f"{call}: {lib.error}"
    if lib.rc:
        return f"{call} rc {lib.rc}" + (f" {lib.rc_name}" if lib.rc_name else "")
    return ""


def _loaded(component: str, lib: RawLib, by_call: str | None) -> dict[str, Any]:
    """What the soname TensorFlow loads says: read by its call, else by file name or version file."""
    if by_call:
        return {"loaded": lib.name, "file": lib.path, "value": by_call, "method": CALL, "read": True}
    out: dict[str, Any] = {"loaded": lib.name, "file": lib.path,
                           "why": _why_not_read(lib) or f"{lib.call or 'the version call'} gave no value"}
    vf = lib.version_file
    from_file = _as_component(component, _numbers(vf.cuda_cudart or vf.cuda)) if vf else None
    if (value := version_from_file_name(component, lib.path)) is not None:
        out.update(value=value, method=FILE_NAME)
    elif from_file and vf:
        out.update(value=from_file, method=VERSION_FILE, version_file=vf.path)
    return out


def lib_summary(component: str, lib: RawLib | None, env: dict[str, str]) -> LibSummary:
    """One library: its version and how it was obtained (see :class:`LibSummary`)."""
    lib = lib or RawLib()
    _, soname, _, var = LIBS[component]
    out: dict[str, Any] = {"soname": soname, "env": f"{var}={env[var]}" if env.get(var) else None}
    if lib.exit:               # the child crashed or hung: name the call it was in, and the signal
        out["error"] = f"{lib.call or ('loading ' + (lib.name or soname))} {lib.exit}"
    elif lib.error:
        out["error"] = f"{lib.call or 'the probe'}: {lib.error}"
    by_call = CALL_VERSION[component](lib.value) if lib.value and lib.value > 0 else None
    if lib.name and lib.name != soname:
        other = by_call or version_from_file_name(component, lib.path)
        out["other"] = f"{lib.name} -> {lib.path or '?'} ({other or 'version unknown'})"
        out["why"] = (f"{soname} is not on the loader path; {lib.name} loads {lib.path or '?'} "
                      f"({other or 'version unknown'}), not the runtime TensorFlow 2.9 loads")
    elif lib.name:
        out.update(_loaded(component, lib, by_call))
    else:
        out["why"] = f"{soname} not found" + (f" ({lib.tried[0]})" if lib.tried else "")
        if out.get("error"):
            out["why"] = f"the probe child {out['error']}"
    if out.get("method") is None and (value := _as_component(component, _numbers(env.get(var)))):
        out.update(value=value, method=ENV_VAR)
    return LibSummary.model_validate(out)


def parse_smi(text: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=driver_version,name --format=csv,noheader``."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            driver, _, name = line.partition(",")
            rows.append({"driver": driver.strip(), "name": name.strip()})
    return rows


def summarize(raw: RawProbe) -> Summary:
    """Versions as strings and what TensorFlow and nvidia-smi said (pure).

    ``cuda``, ``cudnn`` and ``nccl`` hold a version only where it describes the
    library that was loaded (library call, file name or version file);
    ``libs`` holds, per component, the value with its method (see
    :func:`lib_summary`), an environment variable's included.
    """
    tf, smi = raw.tf, raw.smi
    gpus = parse_smi(smi.stdout) if smi and smi.rc == 0 else []
    per = {c: lib_summary(c, raw.libs.get(key), raw.env) for c, (key, *_rest) in LIBS.items()}
    smi_text = None if smi is None else ("ok" if smi.rc == 0 else (smi.stderr or "failed").strip()[:200])
    return Summary(
        python=raw.python, glibc=raw.glibc,
        tensorflow=tf.version if tf else None, tf_error=tf.error if tf else None,
        tf_cuda_build=tf.is_cuda_build if tf else None,
        tf_build_cuda=tf.cuda_version if tf else None, tf_build_cudnn=tf.cudnn_version if tf else None,
        tf_gpus=tf.gpus if tf else [], tf_cuda_libs=tf.cuda_libs if tf else [], matmul=tf.matmul if tf else None,
        cuda=_asserted(per["cuda"]), cudnn=_asserted(per["cudnn"]), nccl=_asserted(per["nccl"]), libs=per,
        driver=gpus[0]["driver"] if gpus else None, gpus=[g["name"] for g in gpus], smi=smi_text)


def _asserted(p: LibSummary) -> str | None:
    return p.value if p.method in ASSERTED else None


def _how(p: LibSummary) -> str:
    """How a library's value was obtained, for a row's detail."""
    where = f"{p.loaded} -> {p.file}" if p.file else (p.loaded or p.soname)
    if p.method == CALL:
        return f"read from the library ({where})"
    if p.method == FILE_NAME:
        return f"by file name ({where}); not read from the library: {p.why}"
    if p.method == VERSION_FILE:
        return f"by version file ({p.version_file}; library {where}); not read from the library: {p.why}"
    text = p.why or f"{p.soname} not found"
    if p.method == ENV_VAR:
        text += f"; {p.env} (environment variable: recorded, not asserted)"
    elif p.env:
        text += f"; {p.env}"
    return text


def _version_row(s: Summary, component: str, profile: Profile) -> Row:
    found: str | None = getattr(s, component)
    row = profile.compare(component, found)
    p = s.libs.get(component)
    if p is None:                                   # python, tensorflow
        return Row.model_validate({**row, "detail": ""})
    detail, status = _how(p), row["status"]
    comp = profile.components.get(component)
    if status == "mismatch":
        unsure = "" if row["confirmed"] else " (the expected value is unconfirmed: reported, not failed)"
        detail = f"found {found}, expected {row['expected']}{unsure}; {detail}"
    elif status == "recorded":
        found = found or p.value
        row["detected"] = found
        if found and comp is not None and comp.expect and not version_matches(found, comp.expect):
            detail = f"found {found}, expected {comp.expect} (unconfirmed: recorded, not asserted); {detail}"
    elif status == "missing" and p.loaded:
        row["status"] = "unverified"
        detail = f"{p.soname} is there but its version could not be established: {detail}"
    return Row.model_validate({**row, "detail": detail, "method": p.method, "read": p.method == CALL})


def _tf_absent(s: Summary) -> str:
    return f"TensorFlow not importable ({s.tf_error or 'not probed'})"


def _tf_build_row(s: Summary, profile: Profile) -> Row:
    """Whether TensorFlow is a CUDA build: read without a GPU; recorded where the profile has no GPU stack."""
    build = s.tf_cuda_build
    if s.tensorflow is None:
        return Row(component="tf_cuda_build", status="skipped", detail=_tf_absent(s))
    what = (f"TensorFlow is a CUDA build (built for CUDA {s.tf_build_cuda}, cuDNN {s.tf_build_cudnn})" if build
            else f"TensorFlow is not a CUDA build {s.tf_error or ''}".strip())
    if profile.gpu:
        return Row(component="tf_cuda_build", detected=build, status="ok" if build else "failed", detail=what)
    return Row(component="tf_cuda_build", detected=build, status="recorded",
               detail=f"{what}; profile {profile.name} has no GPU stack: recorded")


def _gpu_rows(s: Summary, profile: Profile) -> list[Row]:
    """The driver (nvidia-smi), TensorFlow's GPUs and a matmul on GPU:0: ok or failed."""
    def row(component: str, detected: Any, ok: bool, detail: str) -> Row:
        return Row(component=component, detected=detected, status="ok" if ok else "failed", detail=detail)

    if s.driver:
        ok, why = profile.driver_ok(s.driver)
        rows = [row("driver", s.driver, ok, why)]
    else:
        rows = [row("driver", None, False, f"nvidia-smi gave no driver ({s.smi or 'not on PATH'})")]
    if s.tensorflow is None:      # no TensorFlow: nothing listed and nothing ran, and the rows say why
        return [*rows, row("tf_gpus", None, False, f"{_tf_absent(s)}: it lists no GPU"),
                row("matmul", None, False, f"{_tf_absent(s)}: no matmul ran")]
    rows.append(row("tf_gpus", len(s.tf_gpus), bool(s.tf_gpus), ", ".join(s.tf_gpus) or
                    f"TensorFlow lists no GPU {s.tf_error or ''}".strip()))
    mm = s.matmul
    placed = bool(mm and str(mm.device or "").endswith("GPU:0"))
    close = bool(mm and mm.max_abs_diff is not None and mm.max_abs_diff < 1e-2)
    rows.append(row("matmul", mm.device if mm else None, placed and close,
                    f"256x256 matmul on {mm.device}, max |GPU-CPU| {mm.max_abs_diff}" if mm else
                    f"no matmul ran {s.tf_error or ''}".strip()))
    return rows


def evaluate(s: Summary, profile: Profile, *, gpu: bool = True,
             reason: str = "GPU mode is off (no NVIDIA runtime or GPU)") -> list[Row]:
    """Rows (component, detected, expected, confirmed, status, detail) against ``profile``.

    Versions use :meth:`Profile.compare` (ok, mismatch, missing, or recorded when
    unconfirmed) on the values that describe the loaded library (see
    :func:`summarize`); a library that loads without an established version is
    ``unverified``. Whether TensorFlow is a CUDA build is read without a GPU.
    The GPU rows (driver, TensorFlow's GPUs, matmul) are ``skipped`` with the
    reason when ``gpu`` is off.
    """
    rows = [_version_row(s, c, profile) for c in ("python", "tensorflow", "cuda", "cudnn", "nccl")]
    rows.append(_tf_build_row(s, profile))
    if not gpu:
        return [*rows, *(Row(component=c, status="skipped", detail=reason) for c in GPU_ONLY)]
    return [*rows, *_gpu_rows(s, profile)]


def failed(rows: list[Row]) -> list[Row]:
    """The rows that fail: a mismatch against an unconfirmed expectation is reported, not failed."""
    return [r for r in rows if r.status in FAILED and r.confirmed]


def statuses(rows: list[Row]) -> dict[str, Status]:
    """Component -> status, for a glance (tests, summaries)."""
    return {r.component: r.status for r in rows}


def command(python: str = "python3", where: str = incontainer.DEST) -> list[str]:
    """The command that runs the probe from ``where`` (a container's copy, by default) with ``python``."""
    return incontainer.argv(PROGRAM, python, where)


def run_in(engine: Engine, container: Any, python: str = "python3", *, timeout: float = 300) -> tuple[int, str]:
    """Copy the probe into a running ``container`` and run it there: (exit code, output)."""
    incontainer.install(engine, container)
    return engine.exec_run(container, command(python), timeout=timeout)


def run_local(python: str = "python3", *, timeout: float = 300) -> RawProbe:
    """Run the probe on this host (no Docker) with ``python``, from the installed package; the raw result."""
    res = runner.run(command(python, str(incontainer.DIR)), timeout=timeout, check=False,
                     env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    return parse_output(res.stdout + "\n" + res.stderr)
