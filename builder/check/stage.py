"""Run the container checks (:mod:`builder.check.suite`) against a built image.

    engine = Engine.from_env()
    mode = gpu_mode("auto", engine.gpu_available)
    result = run_checks(loaded, "tfimg/bert:abc", Path("build/bert"), mode, engine=engine)
    result.checks, result.facts   # report.json's sections (the orchestrator records them)

Starts, with the variant's run-time settings and ports published on
127.0.0.1 only: the services container (a throwaway SSH key mounted at
``ssh.authorized_keys_file``, a throwaway Jupyter password's hash in the
spec's variable, a GPU when GPU mode is on), a container of the image whose
entrypoint never runs (to look at the image's files), and one of the base
(for comparisons). Probes versions (:mod:`builder.check.probe`), runs the suite as
``python -m pytest`` in a subprocess with a context file, and writes
``checks.xml`` (JUnit) and ``checks.log``; returns a frozen :class:`Checked`
(the ``checks`` and ``facts`` sections of ``report.json``). Every container is
removed at the end, also on failure and Ctrl-C; every wait and command has a timeout.
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
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from builder.check import probe
from builder.check import suite as checks
from builder.check.probe_models import Summary
from builder.check.suite import results
from builder.check.suite.context import ENV, Context
from builder.check.suite.results import facts
from builder.errors import EnvError, TfimgError
from builder.infra import datafile, outdir, runner
from builder.infra import labels as label_names
from builder.infra.engine import Container, Engine, ImageInfo
from builder.infra.report_models import ChecksSection, FactsSection, GpuInfo
from builder.render import context as render
from builder.spec import passwords, requirements
from builder.spec.loader import LoadedVariant, Variant

STANDIN_ENV = "TFIMG_STANDIN=1"
STANDIN_CUDA_ENV = "TFIMG_STANDIN_CUDA=1"     # scripts/standin/cuda/Dockerfile (it also has STANDIN_ENV)
failure = results.failure   # the error of a run whose checks did not pass
table = results.table       # the table of a run's checks
# NVIDIA's recommended run flags (--ipc=host --ulimit memlock=-1 --ulimit stack=67108864) as SDK options.
NGC_RUN = {"ipc_mode": "host", "ulimits": [{"name": "memlock", "soft": -1, "hard": -1},
                                           {"name": "stack", "soft": 67108864, "hard": 67108864}]}


@dataclass(frozen=True)
class GpuMode:
    enabled: bool
    requested: str
    reason: str


def gpu_mode(requested: str, available: Callable[[], bool]) -> GpuMode:
    """Decide GPU mode: ``auto`` follows the engine, ``on`` requires a GPU, ``off`` never.

    ``available``: whether the engine has a GPU (:meth:`Engine.gpu_available`); not called for ``off``.

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


def resolve_base(image: ImageInfo, base_ref: str | None, engine: Engine) -> tuple[str | None, str]:
    """The base image to compare with: given (the build's), else the image's label; and a note."""
    ref = base_ref or image.labels.get("org.opencontainers.image.base.name")
    if not ref or ref == "unknown":
        return None, "the base image is unknown (no report build section, no base label)"
    if engine.image(ref) is None:
        return None, f"the base image {ref} is not in the local engine"
    return ref, ""


def _keys(tmp: Path, spec: Variant) -> tuple[dict[str, dict[str, str]], str | None, str, str | None]:
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


def wait_ready(container: Container, spec: Variant, ports: dict[int, int], engine: Engine, timeout: float = 90) -> str:
    """Wait until every enabled service answers on its loopback port; '' or why not."""
    want = {p: kind for p, kind, on in ((spec.ssh.port, "ssh", spec.ssh.enabled),
                                        (spec.jupyter.port, "http", spec.jupyter.enabled)) if on}
    deadline = time.monotonic() + timeout
    pending = dict(want)
    while pending and time.monotonic() < deadline:
        if engine.container_state(container).status not in ("running", "created"):
            break
        for port, kind in list(pending.items()):
            if port in ports and _answers(ports[port], kind):
                del pending[port]
        time.sleep(0.5)
    if not pending:
        return ""
    state = engine.container_state(container)
    what = ", ".join(f"{kind} on {p}" for p, kind in pending.items())
    status = f"exited {state.exit_code}" if state.status == "exited" else f"{state.status}"
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


def _probe(container: Container, engine: Engine, timeout: float = 300) -> tuple[Summary | None, str | None]:
    try:
        code, output = probe.run_in(engine, container, "python3", timeout=timeout)
    except EnvError as exc:   # EngineError: the copy or the exec failed
        return None, f"cannot copy the probe into the container or run it: {exc.message.splitlines()[0][:300]}"
    try:
        return probe.summarize(probe.parse_output(output)), None
    except TfimgError as exc:
        return None, f"exit {code}: {exc.message}; " + (exc.hint or "")[-400:]


def _enter_all(stack: contextlib.ExitStack, starts: list[tuple[Any, str]]) -> list[Any]:
    """Enter the containers' context managers together (each ``docker run`` in its own thread);
    every one that started is left on ``stack`` to be removed, also when another failed."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(cm.__enter__) for cm, _ in starts]
    entered, failed = [], None
    for (cm, what), fut in zip(starts, futures, strict=True):
        try:
            entered.append(fut.result())
            stack.push(cm)
        except EnvError as exc:   # EngineError: the engine refused it
            failed = failed or (what, exc)
    if failed:
        raise EnvError(f"could not start {failed[0]}: {str(failed[1]).splitlines()[0][:500]}",
                       hint="The engine refused the container; with --ngc-run-flags it must allow "
                            "--ulimit memlock=-1 and stack limits.")
    return entered


def base_cache(base_id: str, cache_root: Path | None) -> Path | None:
    """Where the suite keeps the base's file inventory (setuid files, private keys, pip state), by
    the base's image id: read once per base, not once per variant (under tfimg's cache,
    ``--cache`` / ``$TFIMG_CACHE_DIR``; none without one)."""
    if cache_root is None or not base_id.startswith("sha256:"):
        return None
    return cache_root / "base-inventory" / f"{base_id.removeprefix('sha256:')}.json"


def _sleeper(image: str, run_id: str, seconds: int, engine: Engine) -> Any:
    labels = {label_names.TEMPORARY: "1", label_names.RUN: run_id}
    return engine.running(image, command=[str(seconds)], extra={"entrypoint": ["sleep"], "labels": labels})


@dataclass(frozen=True)
class Checked:
    """What the checks found: report.json's ``checks`` and ``facts`` sections.

    ``error``: the suite could not run to an end (``checks`` says so too; ``facts`` is None).
    A check that failed is not an error here: ``checks.passed`` is False (:func:`failure` explains it).
    """

    checks: ChecksSection
    facts: FactsSection | None
    error: TfimgError | None = None


@dataclass(frozen=True)
class _Plan:
    """One check run: what is checked, how, and against which base."""

    loaded: LoadedVariant
    image_ref: str
    info: ImageInfo
    mode: GpuMode
    profile: tuple[str, str]             # the profile versions are compared with, and why
    base: tuple[str | None, str]         # the base container's image (or None), and why not
    run_id: str
    ngc_run_flags: bool
    timeout: float
    cache_root: Path | None


@dataclass(frozen=True)
class _Started:
    """The containers of one check run and what was read from them."""

    ctx: Context
    services: Container
    summary: Summary | None


def run_checks(loaded: LoadedVariant, image_ref: str, out_dir: Path, mode: GpuMode, base_ref: str | None = None, *,
               engine: Engine, cache_root: Path | None = None, ngc_run_flags: bool = False,
               timeout: float = 900) -> Checked:
    """Check a built image against its spec; write checks.xml and checks.log; return what was found.

    ``mode``: :func:`gpu_mode`, decided once per run. ``base_ref``: the base to compare with (the
    build's; else the image's base label). ``cache_root``: tfimg's cache (the base's inventory).

    Raises:
        EnvError: no engine, or the image is absent.
    """
    out_dir, started = Path(out_dir), time.time()
    attrs = engine.image_attrs(image_ref)
    if attrs is None:
        raise EnvError(f"image {image_ref} is not in the local engine", hint="Build it first: tfimg build SPEC")
    info = ImageInfo.from_inspect(attrs)
    plan = _Plan(loaded, image_ref, info, mode, choose_profile(loaded.spec, info.config),
                 resolve_base(info, base_ref, engine), uuid.uuid4().hex[:12], ngc_run_flags, timeout, cache_root)
    outdir.claim(out_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="tfimg-test-") as tmpdir, contextlib.ExitStack() as stack:
            tmp = Path(tmpdir)
            run = _start(stack, tmp, plan, engine)
            ctx_path = run.ctx.write(tmp / "context.json")
            try:
                res = _run_suite(loaded.spec, ctx_path, out_dir, timeout)
            except TfimgError as exc:
                failed = ChecksSection(passed=False, image=image_ref, error=exc.render(), results=[],
                                       gpu=GpuInfo.model_validate(asdict(mode)), run_id=plan.run_id)
                return Checked(failed, None, exc)
            (out_dir / "checks-services.log").write_text(engine.container_logs(run.services, 400))
            results_path = Path(run.ctx.results_path)
            outcome = datafile.load_json(results_path) if results_path.is_file() else {}
    finally:   # also containers created but never started (engine.running cannot see them)
        engine.remove_containers_with_label(label_names.RUN, plan.run_id)
    section = results.section(loaded, image_ref, attrs, mode, run.ctx, outcome, res.returncode, out_dir,
                              time.time() - started, run_id=plan.run_id)
    return Checked(section, facts(run.summary, info.id, plan.profile[0]))


def _start(stack: contextlib.ExitStack, tmp: Path, plan: _Plan, engine: Engine) -> _Started:
    """Start the services, the image and the base containers together; probe; the suite's context."""
    spec, image_ref, mode, timeout = plan.loaded.spec, plan.image_ref, plan.mode, plan.timeout
    volumes, key, key_note, wrong = _keys(tmp, spec)
    password = secrets.token_urlsafe(16) if spec.jupyter.enabled else None
    env = {spec.jupyter.password_hash_env: passwords.hash_password(password)} if password else {}
    labels = {label_names.TEMPORARY: "1", label_names.RUN: plan.run_id}
    extra: dict[str, Any] = {"labels": labels, "volumes": volumes, **(NGC_RUN if plan.ngc_run_flags else {})}
    # No services: the image's entrypoint runs a command instead; keep it alive with sleep.
    command = None if (spec.ssh.enabled or spec.jupyter.enabled) else ["sleep", str(int(timeout) + 300)]
    base_ref, base_note = plan.base
    starts = [(engine.running(image_ref, command=command, ports=spec.exposed_ports(), environment=env,
                              gpu=mode.enabled, extra=extra), f"the services container of {image_ref}"),
              (_sleeper(image_ref, plan.run_id, int(timeout) + 300, engine), f"a container of {image_ref}")]
    if base_ref:
        starts.append((_sleeper(base_ref, plan.run_id, int(timeout) + 300, engine), f"a container of {base_ref}"))
    started_all = _enter_all(stack, starts)
    (services, ports), (pristine, _) = started_all[0], started_all[1]
    base_c = started_all[2][0] if base_ref else None
    with ThreadPoolExecutor(1) as pool:   # the probe needs the container, not its services
        probing = pool.submit(_probe, services, engine)
        services_note = wait_ready(services, spec, ports, engine)
        summary, probe_error = probing.result()
    base_info = engine.image(base_ref) if base_ref else None
    inventory = base_cache(base_info.id, plan.cache_root) if base_info else None
    ctx = Context(
        variant=spec.name, spec=spec.model_dump(mode="json"), spec_hash=render.spec_hash(plan.loaded),
        image=image_ref, image_config=plan.info.config, profile=plan.profile[0], profile_note=plan.profile[1],
        results_path=str(tmp / "results.json"), services=services.id, services_note=services_note,
        pristine=pristine.id, base_ref=base_ref, base_container=base_c.id if base_c else None,
        base_config=base_info.config if base_info else None, base_note=base_note,
        ports={str(k): v for k, v in ports.items()}, ssh_key=key, ssh_key_note=key_note, wrong_key=wrong,
        jupyter_password=password, gpu=mode.enabled, gpu_reason=mode.reason, probe=summary,
        base_cache=str(inventory) if inventory else None,
        probe_error=probe_error, requirements=requirement_pins(plan.loaded), declared=checks.declared(plan.loaded))
    return _Started(ctx, services, summary)


def groups(paths: list[str]) -> list[list[str]]:
    """The suite's modules in two runs that go side by side, each a run of consecutive modules (so
    joining their results keeps the order of one run): the Python checks and those before them, and
    the rest."""
    cut = next((i + 1 for i, p in enumerate(paths) if Path(p).stem == "test_python"), len(paths) // 2 or 1)
    return [g for g in (paths[:cut], paths[cut:]) if g]


def _run_suite(spec: Variant, ctx_path: Path, out_dir: Path, timeout: float) -> runner.Result:
    """Run the suite's groups side by side (one pytest each, its own context and results file); join
    their results, JUnit files and logs in module order into ``ctx.results_path``, checks.xml, checks.log."""
    ctx = datafile.load_json(ctx_path)
    parts = groups(checks.paths_for(spec))

    def one(i: int, paths: list[str]) -> runner.Result:
        part_ctx = ctx_path.with_name(f"context-{i}.json")
        part_ctx.write_text(json.dumps({**ctx, "results_path": f"{ctx['results_path']}.{i}"}))
        argv = [sys.executable, "-m", "pytest", "-c", str(checks.DIR / "pytest.ini"), "--rootdir", str(checks.DIR),
                f"--junitxml={ctx_path.with_name(f'checks-{i}.xml')}", "-o",
                f"junit_suite_name=tfimg-checks-{spec.name}", *paths]
        env = {ENV: str(part_ctx), "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_ADDOPTS": "",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(checks.DIR.parents[1]), os.environ.get("PYTHONPATH")]))}
        return runner.run(argv, timeout=timeout, check=False, env=env)

    with ThreadPoolExecutor(len(parts)) as pool:
        done = list(pool.map(one, range(len(parts)), parts))
    text = "".join(r.stdout + r.stderr for r in done)
    (out_dir / "checks.log").write_text(text)
    bad = [r.returncode for r in done if r.returncode not in (0, 1)]
    if bad:
        raise TfimgError(f"the check suite could not run (pytest exit {bad[0]})",
                         hint="\n".join(text.strip().splitlines()[-15:]))
    _join_junit([ctx_path.with_name(f"checks-{i}.xml") for i in range(len(parts))], out_dir / "checks.xml")
    joined: dict[str, Any] = {"results": [], "records": {}}
    for i in range(len(parts)):
        part = Path(f"{ctx['results_path']}.{i}")
        data = datafile.load_json(part) if part.is_file() else {}
        joined["results"] += data.get("results") or []
        joined["records"].update(data.get("records") or {})
        joined["finished"] = max(joined.get("finished") or 0, data.get("finished") or 0)
    Path(ctx["results_path"]).write_text(json.dumps(joined, indent=2, default=str))
    return runner.Result(argv=["pytest", *checks.paths_for(spec)], returncode=max(r.returncode for r in done),
                         stdout="".join(r.stdout for r in done), stderr="".join(r.stderr for r in done))


def _join_junit(parts: list[Path], dest: Path) -> None:
    """One JUnit file from the groups' (their test cases in order, counts and times added)."""
    suites = [ET.parse(p).getroot() for p in parts if p.is_file()]
    if not suites:
        return
    root = suites[0]
    first = root if root.tag == "testsuite" else root.find("testsuite")
    assert first is not None
    for other in suites[1:]:
        suite = other if other.tag == "testsuite" else other.find("testsuite")
        if suite is None:
            continue
        for name in ("tests", "errors", "failures", "skipped"):
            first.set(name, str(int(first.get(name, "0")) + int(suite.get(name, "0"))))
        first.set("time", f"{float(first.get('time', '0')) + float(suite.get('time', '0')):.3f}")
        for case in suite:
            first.append(case)
    ET.ElementTree(root).write(dest, encoding="utf-8", xml_declaration=True)
