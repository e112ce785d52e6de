"""``tfimg test`` (container checks) and ``tfimg probe`` (CUDA stack and GPU, no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from builder.cli.root import ALLOW_DIRS, app, console, out, settings
from builder.errors import ChecksFailed, EnvError
from builder.infra import labels as label_names
from builder.infra.paths import OUT_ROOT

if TYPE_CHECKING:
    from builder.check.probe_models import Row
    from builder.infra.engine import Engine, ImageInfo
    from builder.spec.loader import LoadedVariant

# Stage modules are imported inside the commands: `tfimg --help` imports none of them.


def _target(target: str, spec_file: Path | None, out_root: Path, engine: Engine,
            allow_dirs: list[Path]) -> tuple[LoadedVariant, str, Path]:
    """(variant, image, out dir) for a SPEC or IMAGE argument."""
    from builder.infra import report
    from builder.render import context as render
    from builder.spec import loader as spec

    if target.endswith((".yaml", ".yml")):
        loaded = spec.load(target, allow_dirs)
        built = report.load(out_root / loaded.name).build
        image = built.image_id if built else None
        found = engine.image(built.image) if built else None
        if built and found is not None and found.id == built.image_id:
            image = built.image
        if not image:
            raise EnvError(f"{loaded.name} has not been built here (no {out_root / loaded.name / report.REPORT})",
                           hint=f"Build it first (tfimg build {target}), or pass the image: "
                                f"tfimg test IMAGE --spec {target}")
        return loaded, image, out_root / loaded.name
    info = engine.image(target)
    if info is None and "@sha256:" in target:   # HOST/NAME@sha256:...: exactly that digest, pulled
        info = _pull_digest(target, engine)
    if info is None:
        raise EnvError(f"image {target} is not in the local engine", hint="Pull or build it first.")
    name = info.labels.get(label_names.VARIANT)
    if spec_file is None and name and Path(f"variants/{name}.yaml").is_file():
        spec_file = Path(f"variants/{name}.yaml")
    if spec_file is None:
        raise EnvError(f"cannot tell which variant {target} is (label {label_names.VARIANT}: {name or 'absent'}); "
                       "the checks need its spec", hint="Pass it: tfimg test IMAGE --spec variants/NAME.yaml")
    loaded = spec.load(spec_file, allow_dirs)
    built_hash = info.labels.get(label_names.SPEC_HASH)
    if built_hash and built_hash != render.spec_hash(loaded):
        console.print(f"tfimg: warning: {target} was built from another version of {spec_file} "
                      "(spec hash differs); the oci_labels check will fail", markup=False)
    return loaded, target, out_root / loaded.name


def _pull_digest(target: str, engine: Engine) -> ImageInfo | None:
    """Pull ``HOST/NAME@sha256:...`` (that digest, nothing else) into the engine; what it is."""
    from builder.errors import EngineError

    name = target.rpartition("@")[0]
    try:
        engine.pull(target)
    except EngineError as exc:   # the message says why
        raise EnvError(f"could not pull {target}: {exc.message.splitlines()[0][:300]}",
                       hint=f"Log in to its registry (docker login {name.split('/', 1)[0]}).") from None
    return engine.image(target)


@app.command("test")
def test_cmd(
    target: str = typer.Argument(..., help="Variant file (.yaml; its built image), an image reference, or "
                                 "HOST/NAME@sha256:... (pulled by digest).",
                                 show_default=False),
    spec_file: Path | None = typer.Option(None, "--spec", help="With an IMAGE: its variant file "
                                             "(default variants/<io.tfimg.variant label>.yaml)."),
    gpu: str = typer.Option("auto", "--gpu", help="GPU checks: auto (when the engine has an NVIDIA runtime), "
                            "on (fail without one), off."),
    ngc_flags: bool = typer.Option(False, "--ngc-run-flags", help="Run with NVIDIA's recommended "
                                   "--ipc=host --ulimit memlock=-1 --ulimit stack=67108864."),
    base: str | None = typer.Option(None, "--base", help="Base image to compare with (default: from "
                                       "report.json or the image's base label)."),
    out_root: Path = typer.Option(OUT_ROOT, "--out", help="Where build/<variant>/ goes."),
    timeout: float = typer.Option(900, "--timeout", help="Seconds the whole suite may take."),
    allow_dirs: list[Path] = ALLOW_DIRS,
) -> None:
    """Check a running container of the image against its spec (pytest-testinfra suite).

    Writes build/<variant>/checks.xml (JUnit), checks.log and report.json's
    `checks` and `facts` sections. Exit 0 when every check passed (skipped
    checks say why), 1 when one failed, 2 on bad input or environment
    (e.g. --gpu on without an NVIDIA runtime).
    """
    from builder.check import stage as testrun
    from builder.infra.engine import Engine
    from builder.pipeline import single

    engine = Engine.deferred()   # this command's engine: connects on first use
    loaded, image, where = _target(target, spec_file, out_root, engine, allow_dirs)
    section = single.test(loaded, image, where, gpu=gpu, base=base, engine=engine, ngc_run_flags=ngc_flags,
                          timeout=timeout, cache_root=settings().cache_root)
    out.print(testrun.table(section))
    if not section.passed:
        raise testrun.failure(section)


def probe_table(rows: list[Row], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("component", "detected", "expected", "status", "detail"):
        t.add_column(col)
    colours = {"ok": "green", "mismatch": "bold red", "missing": "bold red", "unverified": "bold red", "failed": "bold red",
               "recorded": "cyan", "skipped": "yellow"}
    for r in rows:
        t.add_row(r.component, Text(str(r.detected) if r.detected is not None else "-"),
                  Text(r.expected or "-"),
                  Text(r.status, style=colours.get(r.status, "")) if r.confirmed
                  else Text(f"{r.status} (unconfirmed)", style="yellow" if r.status == "mismatch" else "cyan"),
                  Text(r.detail or ("unconfirmed: recorded, not asserted" if r.status == "recorded" else "")))
    return t


@app.command("probe")
def probe_cmd(
    local: bool = typer.Option(False, "--local", help="Probe this host (no Docker). Required for now."),
    python: str = typer.Option("python3", "--python", help="Python that has TensorFlow (TensorFlow is optional)."),
    profile_name: str = typer.Option("ngc-22.07", "--profile", help="Base profile to compare with."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    timeout: float = typer.Option(300, "--timeout", help="Seconds the probe may take."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when a row is a mismatch, missing, unverified or "
                               "failed."),
) -> None:
    """Read CUDA, cuDNN, NCCL (from the libraries), the driver, TensorFlow and a GPU matmul on this host.

    Prints a table (or --json) and exits 0: a host without a GPU or without
    TensorFlow is reported, not an error (--check: exit 1 on a failed row). Inside an image, `tfimg test` runs
    the same probe.
    """
    from builder.check import probe
    from builder.spec import profiles

    if not local:
        raise EnvError("only --local is supported: `tfimg probe --local` probes this host; "
                       "`tfimg test` probes inside an image")
    if profile_name not in profiles.names():
        raise EnvError(f"unknown profile '{profile_name}'; known: {', '.join(profiles.names())}")
    prof = profiles.get(profile_name)
    raw = probe.run_local(python, timeout=timeout)
    summary = probe.summarize(raw)
    has_gpu = bool(summary.gpus)
    rows = probe.evaluate(summary, prof, gpu=has_gpu,
                          reason=f"no GPU on this host ({summary.smi or 'nvidia-smi not on PATH'})")
    if as_json:
        out.print_json(json.dumps({"summary": summary.model_dump(mode="json"),
                                   "rows": [r.model_dump(mode="json") for r in rows], "gpu": has_gpu,
                                   "profile": profile_name, "raw": raw.model_dump(mode="json", exclude_unset=True)}))
        return
    gpu_line = f"GPUs: {', '.join(summary.gpus)} (driver {summary.driver})" if has_gpu else \
        f"no GPU: {summary.smi or 'nvidia-smi not on PATH'}; GPU rows skipped"
    tf_line = f"TensorFlow {summary.tensorflow}" if summary.tensorflow else \
        f"TensorFlow absent ({summary.tf_error or 'not probed'})"
    out.print(probe_table(rows, f"probe: this host, profile {profile_name}"))
    out.print(f"Python {summary.python} ({python}); {tf_line}; {gpu_line}", markup=False)
    bad = probe.failed(rows)
    if check and bad:
        raise ChecksFailed("probe: " + "; ".join(f"{r.component} {r.detected}: {r.status} "
                                                 f"{r.detail or r.expected or ''}".strip() for r in bad))
