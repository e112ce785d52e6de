"""``tfimg build``: render, build, check, scan, gate and tag one variant."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import pipeline, spec
from .cli import STATE, app, out
from .ui import UI


@app.command("build")
def build_cmd(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="Variant file (variants/NAME.yaml).", show_default=False),
    base: Optional[str] = typer.Option(None, "--base", envvar=pipeline.BASE_ENV,
                                       help="Build on this base image instead of the spec's (air-gapped and test use)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when an image with the same inputs exists."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer (implies --force)."),
    docker: Optional[str] = typer.Option(None, "--docker", envvar="TFIMG_DOCKER",
                                         help="BuildKit-capable docker client to use."),
    out_root: Path = typer.Option(Path("build"), "--out", help="Where build/<variant>/ goes."),
    no_test: bool = typer.Option(False, "--no-test", help="Skip the container checks stage."),
    no_scan: bool = typer.Option(False, "--no-scan", help="Skip scan and gate: the image is UNSCANNED and cannot be published."),
    gpu: str = typer.Option("auto", "--gpu", help="GPU checks: auto, on or off."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Gate under this policy file instead of the variant's."),
    trivy_path: Optional[str] = typer.Option(None, "--trivy", envvar="TFIMG_TRIVY", help="Trivy executable to scan with."),
    trivy_cache: Optional[Path] = typer.Option(None, "--trivy-cache-dir", help="Trivy cache (a pre-downloaded DB for air-gapped use)."),
    offline: bool = typer.Option(False, "--offline", help="Scan without updating Trivy's DB (needs --trivy-cache-dir)."),
) -> None:
    """Render, build (BuildKit, secrets mounted), check, scan, gate and tag a variant.

    Writes build/<variant>/: context/, build.log, report.json (and the later
    stages' files). Exit 0 when every stage passed, 1 when a build, check or
    gate failed, 2 on bad input or environment.
    """
    loaded = spec.load(spec_file)
    opts = pipeline.BuildOptions(out_root=out_root, base=base, force=force, no_cache=no_cache, docker=docker,
                                 checks=not no_test, scan=not no_scan, gpu=gpu, policy=policy,
                                 trivy=trivy_path, trivy_cache=trivy_cache, offline=offline)
    ui = UI(quiet=STATE["quiet"])
    result = pipeline.run(loaded, opts, ui)
    out.print(pipeline.summary(result))
