"""``tfimg scan`` and ``tfimg gate`` (the stage itself is :mod:`builder.scan.stage`)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from builder.cli.root import ALLOW_DIRS, app, console, out, settings, warn
from builder.errors import EnvError, TfimgError
from builder.infra.paths import OUT_ROOT

if TYPE_CHECKING:
    from builder.infra import report_models
    from builder.scan import gate, trivy
    from builder.spec.loader import LoadedVariant

# Stage modules are imported inside the commands: `tfimg --help` imports none of them.


def _show(result: gate.GateResult, out_dir: Path) -> None:
    from builder.scan import gate_outputs as gate_render

    if settings().quiet:
        out.print(gate_render.headline(result), markup=False)
        return
    if result.blocking or result.reasons:
        console.print(gate_render.table(result))
    out.print(f"{gate_render.headline(result)}\n{gate_render.counts_line(result)}\n"
              f"written: {out_dir / 'gate.json'}, gate.sarif, gate.md", markup=False)


def _options(trivy_path: str, timeout: float, cache_dir: Path | None, offline: bool,
             by_reference: bool, db_repository: str | None = None) -> trivy.Options:
    from builder.scan import trivy

    return trivy.Options(binary=trivy_path, timeout=timeout, cache_dir=cache_dir, offline=offline,
                         mode="reference" if by_reference else "archive", db_repository=db_repository)


def _target(target: str, out_dir: Path | None, allow_dirs: list[Path]) -> tuple[LoadedVariant | None, str, Path]:
    """(variant or None, image reference, output directory) for a SPEC or IMAGE argument.

    A variant is scanned as the image its last build recorded in ``<out>/report.json``
    (``--out`` or ``build/<variant>``); without one there is nothing to scan.
    """
    from builder.infra import report
    from builder.spec import loader as spec

    if target.endswith((".yaml", ".yml")):
        loaded = spec.load(target, allow_dirs)
        where = out_dir or OUT_ROOT / loaded.name
        built = report.load(where).build
        image = built.image_id if built else None
        if not image:
            raise TfimgError(f"no build of '{loaded.name}' recorded in {where / 'report.json'}",
                             hint=f"Build it first (tfimg build {target}"
                                  f"{f' --out {out_dir}' if out_dir else ''}), or scan an image reference.")
        return loaded, image, where
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("_") or "image"
    return None, target, out_dir or OUT_ROOT / slug


@app.command("scan")
def scan_cmd(
    target: str = typer.Argument(..., help="Variant file (.yaml), local image reference, or HOST/NAME@sha256:... "
                                 "(read from the registry).", show_default=False),
    out_dir: Path | None = typer.Option(None, "--out", help="Output directory (default build/<variant>)."),
    trivy_path: str = typer.Option("trivy", "--trivy", envvar="TFIMG_TRIVY", help="Trivy executable."),
    timeout: float = typer.Option(900, "--timeout", help="Seconds Trivy may take."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Trivy cache (holds db/trivy.db)."),
    offline: bool = typer.Option(False, "--offline", help="Air-gapped: use the pre-downloaded DB in --cache-dir, no network."),
    by_reference: bool = typer.Option(False, "--by-reference", help="Let Trivy read the image from the engine instead of a `docker save` archive."),
    no_gate: bool = typer.Option(False, "--no-gate", help="With a variant file: scan only, do not gate."),
    db_repository: str | None = typer.Option(None, "--db-repository", envvar="TFIMG_TRIVY_DB_REPOSITORY",
                                             help="Pull Trivy's vulnerability DB from this OCI repository "
                                                  "(an internal trivy-db mirror)."),
    allow_dirs: list[Path] = ALLOW_DIRS,
) -> None:
    """Scan a built variant (or any local image) with Trivy and write trivy.json.

    With a variant file the report is also gated under the variant's policy
    (gate.json, gate.sarif, gate.md; exit 1 when it blocks). An image
    reference is only scanned: gate it with `tfimg gate --report DIR/trivy.json`.
    Exit 2 when Trivy is missing, fails, times out or writes no report.
    """
    from builder.infra import report
    from builder.infra.engine import Engine
    from builder.pipeline import single
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage

    engine = Engine.deferred()   # connects only to save the image (archive mode) or read the base's layers
    loaded, image, where = _target(target, out_dir, allow_dirs)
    opts = _options(trivy_path, timeout, cache_dir, offline, by_reference, db_repository)
    if loaded is None and "@sha256:" in image:   # HOST/NAME@sha256:...: Trivy reads it from the registry
        opts = opts.model_copy(update={"mode": "remote"})
    if loaded is not None and not no_gate:
        built = report.load(where).build
        base_ref = (built.base.ref if built else None) or loaded.spec.base.ref
        scanned = single.scan_variant(loaded, image, where, policies.load(loaded.spec.policy), base_ref=base_ref,
                                      options=opts, engine=engine, warn=warn)
        _show(scanned.result, where)
        error = scan_stage.refused(scanned.result, policies.load(loaded.spec.policy), where)
        if error is not None:   # blocks, or UNSCANNED under a policy that requires a scan
            raise error
        return
    run = single.scan_image(image, where, opts, engine, what="--out" if out_dir else "output folder")
    counts = ", ".join(f"{k} {n}" for k, n in (run.info.findings or {}).items()) or "no findings"
    out.print(f"scanned {image} with Trivy {run.info.trivy_version}: {counts}\nwritten: {run.path}\n"
              f"gate it with: tfimg gate --report {run.path}", markup=False)


@app.command("gate")
def gate_cmd(
    report_file: Path = typer.Option(..., "--report", help="A Trivy JSON report (trivy image --format json).", show_default=False),
    policy_file: str | None = typer.Option(None, "--policy", help="Policy file or shipped name (default, strict)."),
    base: str | None = typer.Option(None, "--base", help="Base image in the local engine: its layers are 'inherited'."),
    base_layers_file: Path | None = typer.Option(None, "--base-layers", help="File with the base's layer DiffIDs."),
    out_dir: Path | None = typer.Option(None, "--out", help="Where gate.* go (default: beside the report)."),
    on_date: str | None = typer.Option(None, "--date", help="Judge waiver expiry on this day (YYYY-MM-DD)."),
    assume_vuln_scanned: bool = typer.Option(False, "--assume-vuln-scanned",
                                             help="Accept a report no tfimg scan record vouches for as made by "
                                                  "Trivy's vulnerability scanner, without filters."),
    vex_sources: list[str] = typer.Option([], "--vex", help="OpenVEX file, or HOST/NAME@sha256:... whose attached "
                                          "VEX documents apply: their not_affected and fixed statements waive "
                                          "the findings they cover (repeatable: yours and a vendor's)."),
) -> None:
    """Gate a saved Trivy report under a policy.

    The report must be one a tfimg scan wrote (report.json's scan section beside it names the file
    and its sha256), or pass --assume-vuln-scanned: Trivy's JSON does not show which scanners ran.
    It must be a scan of the build recorded in report.json, where there is one.
    Exit 0 pass; 1 it blocks, or is UNSCANNED and the policy requires a scan; 2 bad input;
    4 no record shows the vulnerability scanner ran (see --assume-vuln-scanned).
    """
    from builder.infra import clock, report
    from builder.pipeline import single
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage
    from builder.scan import trust

    rep, digest = trust.read(report_file)
    pol = policies.load(policy_file)
    try:
        today = dt.date.fromisoformat(on_date) if on_date else clock.today()
    except ValueError:
        raise TfimgError(f"--date '{on_date}' is not a date (YYYY-MM-DD)") from None
    where = out_dir or report_file.parent
    beside = report.load(report_file.parent)
    built = report.load(where).build if where != report_file.parent else beside.build
    base_ref = base or (built.base.ref if built else "")
    layers = _base_layers(base, base_layers_file, built)
    for folder, build in ((where, built), (report_file.parent, beside.build)):   # exit 2: another image
        trust.check_image(rep, build.image_id if build else None, source=str(report_file),
                          where=str(folder / report.REPORT))
    scanners = trust.scanners_of(report_file, digest, beside.scan, assume=assume_vuln_scanned)   # exit 4
    if vex_sources:   # the documents' statements become waivers of the findings they cover
        from builder.pipeline import watching
        from builder.scan import vex

        images = watching.images_of(rep, built.base.digest if built else None)
        made = vex.waivers(watching.load_vex(vex_sources), rep.findings(), images)
        pol = pol.model_copy(update={"waivers": [*pol.waivers, *made]})
    result = single.gate_report(rep, pol, where, base_layers=layers, base_ref=base_ref, today=today,
                                scanners=scanners, claim="--out" if out_dir is not None else None)
    _show(result, where)
    error = scan_stage.refused(result, pol, where)
    if error is not None:
        raise error


def _base_layers(base: str | None, base_layers_file: Path | None,
                 built: report_models.BuildSection | None) -> list[str] | None:
    """The base's layer DiffIDs: --base-layers, --base (from the engine), else the recorded build's."""
    from builder.scan import stage as scan_stage

    if base_layers_file:
        return scan_stage.read_base_layers(base_layers_file)
    if base:
        from builder.infra.engine import Engine
        layers = scan_stage.base_layers_of(base, Engine.deferred())
        if layers is None:
            raise EnvError(f"base image '{base}' is not in the local Docker engine",
                           hint="Pull or load it, or pass its DiffIDs with --base-layers FILE.")
        return layers
    return (built.base_layers if built else None) or None
