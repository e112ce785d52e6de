"""``tfimg build``: render, build, check, scan, gate and tag variants; ``tfimg bake``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from builder.cli.root import ALLOW_DIRS, app, out, settings
from builder.errors import TfimgError
from builder.infra.paths import OUT_ROOT

if TYPE_CHECKING:
    from builder.pipeline.context import BuildOptions
    from builder.spec.loader import LoadedVariant

# Stage modules are imported inside the commands: `tfimg --help` imports none of them.


@app.command("build")
def build_cmd(
    spec_files: list[Path] = typer.Argument(..., metavar="SPEC...", help="Variant file(s) (variants/NAME.yaml).",
                                            show_default=False),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="With several variants: how many build at once."),
    base: str | None = typer.Option(None, "--base", envvar="TFIMG_BASE",
                                       help="Build on this base image instead of the spec's (air-gapped and test use)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when an image with the same inputs exists."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer (implies --force)."),
    docker: str | None = typer.Option(None, "--docker", envvar="TFIMG_DOCKER",
                                         help="BuildKit-capable docker client to use."),
    builder: str | None = typer.Option(None, "--builder", envvar="TFIMG_BUILDER",
                                       help="A named buildx builder (remote, Kubernetes, docker-container; "
                                            "`docker buildx ls`). Needs buildx."),
    out_root: Path = typer.Option(OUT_ROOT, "--out", help="Where build/<variant>/ goes."),
    no_test: bool = typer.Option(False, "--no-test", help="Skip the container checks stage."),
    no_scan: bool = typer.Option(False, "--no-scan", help="Skip scan and gate: the image is UNSCANNED and cannot be published."),
    recheck: bool = typer.Option(False, "--recheck", help="Run the checks even when their inputs have not changed."),
    rescan: bool = typer.Option(False, "--rescan", help="Scan (and gate) even when the scan's inputs have not changed."),
    gpu: str = typer.Option("auto", "--gpu", help="GPU checks: auto, on or off."),
    policy: Path | None = typer.Option(None, "--policy", help="Gate under this policy file instead of the variant's."),
    trivy_path: str | None = typer.Option(None, "--trivy", envvar="TFIMG_TRIVY", help="Trivy executable to scan with."),
    trivy_cache: Path | None = typer.Option(None, "--trivy-cache-dir", help="Trivy cache (a pre-downloaded DB for air-gapped use)."),
    offline: bool = typer.Option(False, "--offline", help="Scan without updating Trivy's DB (needs --trivy-cache-dir)."),
    trivy_db: str | None = typer.Option(None, "--trivy-db-repository", envvar="TFIMG_TRIVY_DB_REPOSITORY",
                                        help="Pull Trivy's vulnerability DB from this OCI repository (an "
                                             "internal trivy-db mirror, e.g. registry.corp/aquasec/trivy-db:2)."),
    cache_from: list[str] = typer.Option([], "--cache-from", envvar="TFIMG_CACHE_FROM",
                                         help="Import BuildKit's layer cache from this registry reference "
                                              "(repeatable; {name} is the variant's name)."),
    cache_to: str | None = typer.Option(None, "--cache-to", envvar="TFIMG_CACHE_TO",
                                        help="Export the layer cache to this registry reference ({name}: the "
                                             "variant's name); inline cache pushes the image there."),
    registry: str | None = typer.Option(None, "--registry", envvar="TFIMG_REGISTRY",
                                        help="HOST/NAMESPACE: skip everything when the same inputs are "
                                             "already published there with evidence that passes the policy."),
    scan_registry: str | None = typer.Option(None, "--scan-registry", envvar="TFIMG_SCAN_REGISTRY",
                                             help="HOST/NAMESPACE (a quarantine namespace): push the image there "
                                                  "before the gate and let Trivy read it by digest, so a scan "
                                                  "fetches and analyses only layers it has not seen."),
    reproduce: str | None = typer.Option(None, "--reproduce", metavar="REF@DIGEST",
                                         help="Build the variant again from the inputs that published digest "
                                              "records (input hash, base, revision, SOURCE_DATE_EPOCH), with no "
                                              "layer cache, and compare: exit 0 the same image, 1 different "
                                              "(which layers), 2 not the same inputs. Nothing else runs."),
    allow_dirs: list[Path] = ALLOW_DIRS,
) -> None:
    """Render, build (BuildKit, secrets mounted), check, scan, gate and tag variants.

    Writes build/<variant>/: context/, build.log, report.json (and the later
    stages' files). Several variants build --jobs at a time, each on its own.
    Exit 0 when every stage passed, 1 when a build, check or gate failed, 2 on
    bad input or environment.
    """
    from builder import errors
    from builder.infra.engine import Engine
    from builder.infra.ui import UI
    from builder.pipeline import context, fanout, orchestrator
    from builder.spec import loader as spec

    variants = spec.load_all(spec_files, allow_dirs)   # every spec is validated before anything is built
    if dupes := fanout.duplicate_names(variants):
        raise TfimgError(f"several files define the variant(s) {', '.join(dupes)}; their build/ folders would clash")
    opts = context.BuildOptions(out_root=out_root, base=base, force=force, no_cache=no_cache, docker=docker,
                                builder=builder, checks=not no_test, scan=not no_scan, recheck=recheck,
                                rescan=rescan, gpu=gpu, policy=policy, trivy=trivy_path, trivy_cache=trivy_cache,
                                offline=offline, trivy_db_repository=trivy_db, cache_from=tuple(cache_from),
                                cache_to=cache_to, registry=registry, scan_registry=scan_registry,
                                allow_dirs=tuple(allow_dirs))
    root = settings()
    if reproduce:
        _reproduce(variants, reproduce, opts, root.quiet)
        return
    if len(variants) > 1:
        results = fanout.build_many(variants, opts, jobs, debug=root.debug, quiet=root.quiet, cache=root.cache)
        for name, rc, why in results:
            out.print(f"{name:<20} {'ok' if rc == 0 else f'exit {rc}'}  {why}".rstrip())
        code = errors.worst([rc for _, rc, _ in results])
        if code:
            raise typer.Exit(code)
        return
    ui = UI(quiet=root.quiet)
    engine = Engine.deferred()   # connects when a stage needs Docker
    ctx = context.make(variants[0], opts, ui, engine, cache_root=root.cache_root)
    out.print(orchestrator.summary(orchestrator.run(ctx)))


def _reproduce(variants: list[LoadedVariant], reference: str, opts: BuildOptions, quiet: bool) -> None:
    from builder.infra.engine import Engine
    from builder.infra.ui import UI
    from builder.pipeline import reproduce

    if len(variants) != 1:
        raise TfimgError("--reproduce takes one variant file (the one the digest was built from)")
    outcome = reproduce.run(variants[0], reference, opts, UI(quiet=quiet), Engine.from_env())
    for line in outcome.lines():
        out.print(line, markup=False)
    if not outcome.same:
        raise typer.Exit(1)


@app.command("bake")
def bake_cmd(
    targets: list[Path] = typer.Argument([Path("variants")], metavar="[SPEC...|DIR]",
                                         help="Variant files, or a folder of them (default: variants)."),
    file: Path = typer.Option(OUT_ROOT / "docker-bake.json", "--file", "-f", help="Where the bake file goes."),
    out_root: Path = typer.Option(OUT_ROOT, "--out", help="Where build/<variant>/context goes."),
    base: str | None = typer.Option(None, "--base", envvar="TFIMG_BASE", help="Build on this base image."),
    cache_from: list[str] = typer.Option([], "--cache-from", envvar="TFIMG_CACHE_FROM",
                                         help="Registry cache to import ({name}: the variant's name)."),
    cache_to: str | None = typer.Option(None, "--cache-to", envvar="TFIMG_CACHE_TO",
                                        help="Registry cache to export (type=registry, mode=max)."),
    allow_dirs: list[Path] = ALLOW_DIRS,
) -> None:
    """Write a `docker buildx bake` file (JSON): one target per variant, as `tfimg build` would build it.

    Renders each context to build/<variant>/context. Build with
    `docker buildx bake -f FILE [--builder NAME]`, then `tfimg test`/`scan`/`publish`.
    """
    import json

    from builder.infra.engine import Engine
    from builder.pipeline import bake, fanout
    from builder.pipeline.context import BuildOptions
    from builder.spec import loader as spec
    from builder.spec import matrix

    files: list[Path] = []
    for t in targets:
        files += matrix.variant_files(t) if t.is_dir() else [t]
    variants = spec.load_all(files, allow_dirs)
    if dupes := fanout.duplicate_names(variants):
        raise TfimgError(f"several files define the variant(s) {', '.join(dupes)}")
    opts = BuildOptions(out_root=out_root, base=base, cache_from=tuple(cache_from), cache_to=cache_to)
    doc, warnings = bake.bake_file(variants, opts, Engine.deferred())   # only to look up local bases
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    for w in warnings:
        out.print(f"warning: {w}", markup=False)
    out.print(f"wrote {file}: {len(doc['target'])} target(s): {', '.join(doc['target'])}", markup=False)
