"""Run the container checks (:mod:`builder.check.suite`) against a built image.

    section = run_checks(loaded, "tfimg/bert:abc", Path("build/bert"), gpu="auto")

Starts, with the variant's run-time settings and ports published on
127.0.0.1 only: the services container (a throwaway SSH key mounted at
``ssh.authorized_keys_file``, a throwaway Jupyter password's hash in the
spec's variable, a GPU when GPU mode is on), a container of the image whose
entrypoint never runs (to look at the image's files), and one of the base
(for comparisons). Probes versions (:mod:`builder.check.probe`), runs the suite as
``python -m pytest`` in a subprocess with a context file, and writes
``checks.xml`` (JUnit), ``checks.log`` and the ``checks`` and ``facts``
sections of ``report.json``. Every container is removed at the end, also on
failure and Ctrl-C; every wait and command has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from builder.check import probe
from builder.check import suite as checks
from builder.check.suite import results
from builder.check.suite.context import ENV, Context
from builder.check.suite.results import facts, failure, table  # re-exported: the table and error of a run
from builder.errors import EnvError, TfimgError
from builder.infra import engine, report, runner
from builder.infra import labels as label_names
from builder.infra.report_models import ChecksSection, GpuInfo
from builder.render import context as render
from builder.spec import passwords, requirements
from builder.spec.loader import LoadedVariant, Variant

STANDIN_ENV = "TFIMG_STANDIN=1"
STANDIN_CUDA_ENV = "TFIMG_STANDIN_CUDA=1"     # scripts/standin/cuda/Dockerfile (it also has STANDIN_ENV)
# NVIDIA's recommended run flags (--ipc=host --ulimit memlock=-1 --ulimit stack=67108864) as SDK options.
NGC_RUN = {"ipc_mode": "host", "ulimits": [{"name": "memlock", "soft": -1, "hard": -1},
                                           {"name": "stack", "soft": 67108864, "hard": 67108864}]}


@dataclass(frozen=True)
class GpuMode:
    enabled: bool
    requested: str
    reason: str


def gpu_mode(requested: str, available: Callable[[], bool] = engine.gpu_available) -> GpuMode:
    """Decide GPU mode: ``auto`` follows the engine, ``on`` requires a GPU, ``off`` never.

    Raises:
        EnvError: ``on`` and the engine has no NVIDIA runtime; an unknown mode.
    """
    if requested not in ("auto", "on", "off"):
        raise EnvError(f"--gpu must be auto, on or off, not '{requested}'")
    if requested == "off":
        return GpuMode(False, requested, "GPU checks turned off (--gpu off)")
    if available():
        return GpuMode(True, requested, "the Docker engine has an NVIDIA runtime")
    if requested == "on":
        raise EnvError("--gpu on, but the Docker engine has no NVIDIA runtime, so no container can get a GPU.",
                       hint="Install the NVIDIA Container Toolkit and register its runtime with the engine "
                            "(nvidia-ctk runtime configure), or run with --gpu auto (GPU checks skipped) or --gpu off.")
    return GpuMode(False, requested, "no NVIDIA runtime in the Docker engine (--gpu auto)")


def choose_profile(spec: Variant, image_config: dict[str, Any]) -> tuple[str, str]:
    """The profile to compare versions with, and why (each stand-in base has its own)."""
    env = image_config.get("Env") or []
    if STANDIN_CUDA_ENV in env:
        name, what = "standin-cuda", "CUDA stand-in"
    elif STANDIN_ENV in env:
        name, what = "standin-cpu", "stand-in"
    else:
        return spec.base.profile, ""
    if spec.base.profile == name:
        return name, ""
    return name, f"built on tfimg's {what} base: versions compared with '{name}', not the spec's '{spec.base.profile}'"


def requirement_pins(loaded: LoadedVariant) -> list[dict[str, Any]]:
    """Each private requirement: name, specifier, file and line (markers and URLs skipped)."""
    return [pin for path in loaded.spec.python.requirements for pin in requirements.pins(Path(path))]


def resolve_base(out_dir: Path, image_config: dict[str, Any], base_ref: str | None) -> tuple[str | None, str]:
    """The base image to compare with: given, from report.json, or from the image's label; and a note."""
    built = report.load(out_dir).build
    ref = base_ref or (built.base.ref if built else None) \
        or (image_config.get("Labels") or {}).get("org.opencontainers.image.base.name")
    if not ref or ref == "unknown":
        return None, "the base image is unknown (no report build section, no base label)"
    if engine.image_attrs(ref) is None:
        return None, f"the base image {ref} is not in the local engine"
    return ref, ""


def _keys(tmp: Path, spec: Variant) -> tuple[dict[str, Any], str | None, str, str | None]:
    """(volumes, private key, note, wrong key): a throwaway key mounted at the runtime keys path."""
    if not spec.ssh.enabled:
        return {}, None, "SSH is not enabled", None
    try:
        for name in ("key", "wrong_key"):
            runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tfimg-test-{name}",
                        "-f", str(tmp / name)], timeout=30)
    except TfimgError as exc:
        return {}, None, f"no throwaway key could be made ({exc.message})", None
    if not spec.ssh.authorized_keys_file:
        return {}, None, ("the variant has only baked keys (ssh.authorized_keys), which belong to the team; tfimg "
                          "has no private key for them. Set ssh.authorized_keys_file to test logins"), str(tmp / "wrong_key")
    keys = tmp / "authorized_keys"
    keys.write_text((tmp / "key.pub").read_text())
    keys.chmod(0o644)
    return ({str(keys): {"bind": spec.ssh.authorized_keys_file, "mode": "ro"}}, str(tmp / "key"), "",
            str(tmp / "wrong_key"))


def wait_ready(container: Any, spec: Variant, ports: dict[int, int], timeout: float = 90) -> str:
    """Wait until every enabled service answers on its loopback port; '' or why not."""
    want = {p: kind for p, kind, on in ((spec.ssh.port, "ssh", spec.ssh.enabled),
                                        (spec.jupyter.port, "http", spec.jupyter.enabled)) if on}
    deadline = time.monotonic() + timeout
    pending = dict(want)
    while pending and time.monotonic() < deadline:
        if engine.container_state(container).get("Status") not in ("running", "created"):
            break
        for port, kind in list(pending.items()):
            if port in ports and _answers(ports[port], kind):
                del pending[port]
        time.sleep(0.5)
    if not pending:
        return ""
    state = engine.container_state(container)
    what = ", ".join(f"{kind} on {p}" for p, kind in pending.items())
    status = f"exited {state.get('ExitCode')}" if state.get("Status") == "exited" else f"{state.get('Status')}"
    return f"{what} did not answer within {timeout:.0f} s (container {status}); last logs: " + \
        " | ".join(engine.container_logs(container, 8).strip().splitlines())[-800:]


def _answers(port: int, kind: str) -> bool:
    try:
        if kind == "ssh":
            with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
                return s.recv(64).startswith(b"SSH-")
        requests.get(f"http://127.0.0.1:{port}/api/status", timeout=3)
        return True
    except (OSError, requests.RequestException):
        return False


def _probe(container: Any, timeout: float = 300) -> tuple[dict[str, Any], str | None]:
    try:
        code, output = engine.exec_run(container, probe.command("python3"), timeout=timeout)
    except Exception as exc:
        return {}, f"cannot exec in the container: {str(exc).splitlines()[0][:300]}"
    try:
        return probe.summarize(probe.parse_output(output)), None
    except TfimgError as exc:
        return {}, f"exit {code}: {exc.message}; " + (exc.hint or "")[-400:]


def _enter(stack: contextlib.ExitStack, cm: Any, what: str) -> Any:
    try:
        return stack.enter_context(cm)
    except Exception as exc:
        raise EnvError(f"could not start {what}: {str(exc).splitlines()[0][:500]}",
                       hint="The engine refused the container; with --ngc-run-flags it must allow "
                            "--ulimit memlock=-1 and stack limits.") from None


def _sleeper(image: str, run_id: str, seconds: int) -> Any:
    labels = {label_names.TEMPORARY: "1", label_names.RUN: run_id}
    return engine.running(image, command=[str(seconds)], extra={"entrypoint": ["sleep"], "labels": labels})


def run_checks(loaded: LoadedVariant, image_ref: str, out_dir: Path, gpu: str = "auto",
               base_ref: str | None = None, *, ngc_run_flags: bool = False, ui: Any = None,
               raise_on_failure: bool = True, timeout: float = 900) -> ChecksSection:
    """Check a built image against its spec; write checks.xml and report sections; return ``checks``.

    Raises:
        ChecksFailed: a check failed or could not run to an end (after writing the report).
        EnvError: no engine, the image is absent, or ``gpu="on"`` without a GPU.
    """
    spec, out_dir, started = loaded.spec, Path(out_dir), time.time()
    attrs = engine.image_attrs(image_ref)
    if attrs is None:
        raise EnvError(f"image {image_ref} is not in the local engine", hint="Build it first: tfimg build SPEC")
    mode = gpu_mode(gpu)
    config = attrs.get("Config") or {}
    profile, profile_note = choose_profile(spec, config)
    base, base_note = resolve_base(out_dir, config, base_ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    labels = {label_names.TEMPORARY: "1", label_names.RUN: run_id}
    try:
        with tempfile.TemporaryDirectory(prefix="tfimg-test-") as tmpdir, contextlib.ExitStack() as stack:
            tmp = Path(tmpdir)
            volumes, key, key_note, wrong = _keys(tmp, spec)
            password = secrets.token_urlsafe(16) if spec.jupyter.enabled else None
            env = {spec.jupyter.password_hash_env: passwords.hash_password(password)} if password else {}
            extra: dict[str, Any] = {"labels": labels, "volumes": volumes, **(NGC_RUN if ngc_run_flags else {})}
            # No services: the image's entrypoint runs a command instead; keep it alive with sleep.
            command = None if (spec.ssh.enabled or spec.jupyter.enabled) else ["sleep", str(int(timeout) + 300)]
            services, ports = _enter(stack, engine.running(
                image_ref, command=command, ports=spec.exposed_ports(), environment=env, gpu=mode.enabled, extra=extra),
                f"the services container of {image_ref}")
            pristine, _ = _enter(stack, _sleeper(image_ref, run_id, int(timeout) + 300), f"a container of {image_ref}")
            base_c = _enter(stack, _sleeper(base, run_id, int(timeout) + 300),
                            f"a container of {base}")[0] if base else None
            services_note = wait_ready(services, spec, ports)
            summary, probe_error = _probe(services)
            ctx = Context(
                variant=spec.name, spec=spec.model_dump(mode="json"), spec_hash=render.spec_hash(loaded),
                image=image_ref, image_config=config, profile=profile, profile_note=profile_note,
                results_path=str(tmp / "results.json"), services=services.id, services_note=services_note,
                pristine=pristine.id, base_ref=base, base_container=base_c.id if base_c else None,
                base_config=((engine.image_attrs(base) or {}).get("Config") if base else None), base_note=base_note,
                ports={str(k): v for k, v in ports.items()}, ssh_key=key, ssh_key_note=key_note, wrong_key=wrong,
                jupyter_password=password, gpu=mode.enabled, gpu_reason=mode.reason, probe=summary,
                probe_error=probe_error, requirements=requirement_pins(loaded), declared=checks.declared(loaded))
            ctx_path = ctx.write(tmp / "context.json")
            try:
                res = _run_suite(spec, ctx_path, out_dir, timeout)
            except TfimgError as exc:
                report.write_section(out_dir, ChecksSection(
                    passed=False, image=image_ref, error=exc.render(), results=[],
                    gpu=GpuInfo.model_validate(asdict(mode)), run_id=run_id))
                raise
            (out_dir / "checks-services.log").write_text(engine.container_logs(services, 400))
            outcome = json.loads(Path(ctx.results_path).read_text()) if Path(ctx.results_path).is_file() else {}
    finally:   # also containers created but never started (engine.running cannot see them)
        engine.remove_containers_with_label(label_names.RUN, run_id)
    section = results.section(loaded, image_ref, attrs, mode, ctx, outcome, res.returncode, out_dir,
                              time.time() - started, run_id=run_id)
    report.write_section(out_dir, section)
    report.write_section(out_dir, facts(summary, attrs["Id"], profile))
    if ui is not None:
        ui.console.print(table(section))
    if raise_on_failure and not section.passed:
        raise failure(section)
    return section


def _run_suite(spec: Variant, ctx_path: Path, out_dir: Path, timeout: float) -> runner.Result:
    argv = [sys.executable, "-m", "pytest", "-c", str(checks.DIR / "pytest.ini"), "--rootdir", str(checks.DIR),
            f"--junitxml={out_dir / 'checks.xml'}", "-o", f"junit_suite_name=tfimg-checks-{spec.name}",
            *checks.paths_for(spec)]
    env = {ENV: str(ctx_path), "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_ADDOPTS": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(checks.DIR.parents[1]), os.environ.get("PYTHONPATH")]))}
    res = runner.run(argv, timeout=timeout, check=False, env=env)
    (out_dir / "checks.log").write_text(res.stdout + res.stderr)
    if res.returncode not in (0, 1):
        raise TfimgError(f"the check suite could not run (pytest exit {res.returncode})",
                         hint="\n".join((res.stdout + res.stderr).strip().splitlines()[-15:]))
    return res
