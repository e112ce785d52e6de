"""``tfimg scan`` and ``tfimg gate``, and :func:`run_scan_and_gate` for ``tfimg build``.

Files written to the variant's directory: ``trivy.json`` (Trivy's report,
secret code lines redacted), ``gate.json``, ``gate.sarif``, ``gate.md``, and
the ``scan`` and ``gate`` sections of ``report.json``. Publishing reads
``gate.decision``: ``pass``, ``block`` or ``unscanned``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Optional

import typer

from . import engine, gate, gate_render, policy as policies, report, scanreport, spec, trivy
from .cli import STATE, app, console, out
from .errors import EnvError, GateFailed, TfimgError
from .spec import LoadedVariant

LOCAL_IMAGE = "tfimg/{name}:latest"


def run_scan_and_gate(loaded: LoadedVariant, image_ref: str, out_dir: Path, base_ref: str | None, *,
                      options: trivy.Options | None = None, base_layers: list[str] | None = None,
                      today: dt.date | None = None, raise_on_block: bool = True) -> gate.GateResult:
    """Scan ``image_ref`` with Trivy and gate it under the variant's policy.

    Writes trivy.json, gate.json, gate.sarif, gate.md and report.json's
    ``scan`` and ``gate`` sections in ``out_dir``. Returns the result for
    pass and UNSCANNED.

    Raises:
        GateFailed: the gate blocks (unless ``raise_on_block`` is False).
        EnvError: Trivy could not scan and the policy requires a scan (the
            gate is recorded as ``block``: it fails closed).
        SpecErrors: the policy file is invalid.
    """
    today = today or dt.date.today()
    pol = policies.load(loaded.spec.policy)
    opts = options or trivy.Options()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Until this stage finishes, an older 'pass' must not stand (a crash or Ctrl-C leaves 'block').
    report.update(out_dir, "gate", {"decision": "block", "policy": pol.name,
                                    "reasons": ["the scan did not finish (interrupted or crashed)"]})
    try:
        run = trivy.scan_image(image_ref, out_dir / "trivy.json", opts)
        rep = run.report
        if pol.scan.misconfig:
            context = next((d for d in (out_dir / "context", out_dir) if (d / "Dockerfile").is_file()),
                           out_dir / "context")
            cfg = trivy.scan_config(context, out_dir / "trivy-config.json", opts)
            rep = trivy.merge(rep, cfg)
    except TfimgError as exc:
        return _scan_failed(exc, pol, image_ref, out_dir, today)
    report.update(out_dir, "scan", {**run.info, "misconfig": pol.scan.misconfig})
    if base_layers is None:
        base_layers = base_layers_of(base_ref) if base_ref else None
    if base_layers is None:
        base_layers = report.load(out_dir).get("build", {}).get("base_layers") or None
    pinned = bool(loaded.spec.base.digest) or "@sha256:" in (base_ref or "")
    result = gate.evaluate(rep, pol, base_layers, today, pinned)
    write_gate(out_dir, result)
    if result.decision == "block" and raise_on_block:
        raise blocked(result, out_dir)
    return result


def blocked(result: gate.GateResult, out_dir: Path) -> GateFailed:
    """The error for a blocking gate: every reason (expired waivers name their owner)."""
    more = [f"- {r}" for r in result.reasons[1:]]
    return GateFailed(gate_render.headline(result), hint="\n".join([*more, f"What blocks and why: {out_dir / 'gate.md'}"]))


def _scan_failed(exc: TfimgError, pol: policies.Policy, image_ref: str, out_dir: Path,
                 today: dt.date) -> gate.GateResult:
    report.update(out_dir, "scan", {"status": "failed", "tool": "trivy", "image": image_ref, "error": exc.message})
    (out_dir / "trivy.json").unlink(missing_ok=True)   # never leave an older report that looks current
    if pol.scan.required:
        write_gate(out_dir, gate.failed_closed(pol, exc.message, today=today))
        raise EnvError(f"{exc.message}\nThe gate fails closed (policy '{pol.name}' requires a scan).",
                       hint=exc.hint) from None
    result = gate.unscanned(pol, exc.message, today=today)
    write_gate(out_dir, result)
    console.print(f"[bold yellow]tfimg: warning:[/] {exc.message}\nGate UNSCANNED (policy '{pol.name}' has "
                  "scan.required: false); this image cannot be published.", highlight=False)
    return result


def write_gate(out_dir: Path, result: gate.GateResult) -> None:
    """gate.json, gate.sarif, gate.md and the ``gate`` section of report.json."""
    report.write_json(out_dir / "gate.json", result.model_dump(mode="json"))
    report.write_json(out_dir / "gate.sarif", gate_render.sarif(result))
    (out_dir / "gate.md").write_text(gate_render.markdown(result))
    report.update(out_dir, "gate", {**result.summary(),
                                    "files": {"json": "gate.json", "sarif": "gate.sarif", "markdown": "gate.md"}})


def base_layers_of(ref: str) -> list[str] | None:
    """The base image's layer DiffIDs (``docker image inspect`` RootFS.Layers), None when absent."""
    try:
        attrs = engine.image_attrs(ref)
    except EnvError:
        raise
    except Exception:  # an invalid reference: treat as absent
        return None
    layers = list(((attrs or {}).get("RootFS") or {}).get("Layers") or [])
    return layers or None


def read_base_layers(path: Path) -> list[str]:
    """DiffIDs from a file: a JSON list, `docker image inspect` output, a Trivy report of the
    base, or one ``sha256:...`` per line. Raises TfimgError."""
    if not path.is_file():
        raise TfimgError(f"base layers file '{path}' not found")
    text = path.read_text()
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        data = (data.get("RootFS") or {}).get("Layers") or (data.get("Metadata") or {}).get("DiffIDs") or []
    layers = [x for x in data if isinstance(x, str)] if isinstance(data, list) else []
    if not layers or not all(re.match(r"^sha256:[0-9a-f]{64}$", x) for x in layers):
        raise TfimgError(f"'{path}' holds no layer DiffIDs (sha256:<64 hex>)",
                         hint="Give `docker image inspect BASE` output, a JSON list, or one DiffID per line.")
    return layers


def _show(result: gate.GateResult, out_dir: Path) -> None:
    if STATE["quiet"]:
        out.print(gate_render.headline(result), markup=False)
        return
    if result.blocking or result.reasons:
        console.print(gate_render.table(result))
    out.print(f"{gate_render.headline(result)}\n{gate_render.counts_line(result)}\n"
              f"written: {out_dir / 'gate.json'}, gate.sarif, gate.md", markup=False)


def _options(trivy_path: str, timeout: float, cache_dir: Optional[Path], offline: bool,
             by_reference: bool) -> trivy.Options:
    return trivy.Options(binary=trivy_path, timeout=timeout, cache_dir=cache_dir, offline=offline,
                         mode="reference" if by_reference else "archive")


def _target(target: str) -> tuple[LoadedVariant | None, str, str]:
    """(variant or None, image reference, directory name) for a SPEC or IMAGE argument."""
    if target.endswith((".yaml", ".yml")):
        loaded = spec.load(target)
        built = report.load(Path("build") / loaded.name).get("build", {})
        return loaded, built.get("image_id") or LOCAL_IMAGE.format(name=loaded.name), loaded.name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("_") or "image"
    return None, target, slug


@app.command("scan")
def scan_cmd(
    target: str = typer.Argument(..., help="Variant file (.yaml) or local image reference.", show_default=False),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (default build/<variant>)."),
    trivy_path: str = typer.Option("trivy", "--trivy", envvar="TFIMG_TRIVY", help="Trivy executable."),
    timeout: float = typer.Option(900, "--timeout", help="Seconds Trivy may take."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Trivy cache (holds db/trivy.db)."),
    offline: bool = typer.Option(False, "--offline", help="Air-gapped: use the pre-downloaded DB in --cache-dir, no network."),
    by_reference: bool = typer.Option(False, "--by-reference", help="Let Trivy read the image from the engine instead of a `docker save` archive."),
    no_gate: bool = typer.Option(False, "--no-gate", help="With a variant file: scan only, do not gate."),
) -> None:
    """Scan a built variant (or any local image) with Trivy and write trivy.json.

    With a variant file the report is also gated under the variant's policy
    (gate.json, gate.sarif, gate.md; exit 1 when it blocks). An image
    reference is only scanned: gate it with `tfimg gate --report DIR/trivy.json`.
    Exit 2 when Trivy is missing, fails, times out or writes no report.
    """
    loaded, image, name = _target(target)
    where = out_dir or Path("build") / name
    opts = _options(trivy_path, timeout, cache_dir, offline, by_reference)
    if loaded is not None and not no_gate:
        base = loaded.spec.base
        base_ref = (report.load(where).get("build", {}).get("base") or {}).get("ref") or \
            (f"{base.image}@{base.digest}" if base.digest else base.image)
        result = run_scan_and_gate(loaded, image, where, base_ref, options=opts, raise_on_block=False)
        _show(result, where)
        if result.decision == "block":
            raise blocked(result, where)
        return
    where.mkdir(parents=True, exist_ok=True)
    try:
        run = trivy.scan_image(image, where / "trivy.json", opts)
    except TfimgError as exc:
        report.update(where, "scan", {"status": "failed", "tool": "trivy", "image": image, "error": exc.message})
        raise
    report.update(where, "scan", run.info)
    counts = ", ".join(f"{k} {n}" for k, n in run.info["findings"].items()) or "no findings"
    out.print(f"scanned {image} with Trivy {run.info['trivy_version']}: {counts}\nwritten: {run.path}\n"
              f"gate it with: tfimg gate --report {run.path}", markup=False)


@app.command("gate")
def gate_cmd(
    report_file: Path = typer.Option(..., "--report", help="A Trivy JSON report (trivy image --format json).", show_default=False),
    policy_file: Optional[str] = typer.Option(None, "--policy", help="Policy file or shipped name (default, strict)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base image in the local engine: its layers are 'inherited'."),
    base_layers_file: Optional[Path] = typer.Option(None, "--base-layers", help="File with the base's layer DiffIDs."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where gate.* go (default: beside the report)."),
    on_date: Optional[str] = typer.Option(None, "--date", help="Judge waiver expiry on this day (YYYY-MM-DD)."),
) -> None:
    """Gate a saved Trivy report under a policy. Exit 1 when it blocks, 2 on bad input."""
    rep = scanreport.load(report_file)
    pol = policies.load(policy_file)
    where = out_dir or report_file.parent
    built = report.load(where).get("build", {})
    base_ref = base or (built.get("base") or {}).get("ref") or ""
    layers: list[str] | None = None
    if base_layers_file:
        layers = read_base_layers(base_layers_file)
    elif base:
        layers = base_layers_of(base)
        if layers is None:
            raise EnvError(f"base image '{base}' is not in the local Docker engine",
                           hint="Pull or load it, or pass its DiffIDs with --base-layers FILE.")
    else:
        layers = built.get("base_layers") or None
    try:
        today = dt.date.fromisoformat(on_date) if on_date else dt.date.today()
    except ValueError:
        raise TfimgError(f"--date '{on_date}' is not a date (YYYY-MM-DD)") from None
    result = gate.evaluate(rep, pol, layers, today, base_digest_pinned="@sha256:" in base_ref)
    where.mkdir(parents=True, exist_ok=True)
    write_gate(where, result)
    _show(result, where)
    if result.decision == "block":
        raise blocked(result, where)
