"""The scan and gate stage: scan an image with Trivy, gate the report under a policy.

Files written to the variant's directory: ``trivy.json`` (Trivy's report,
secret code lines redacted), ``gate.json``, ``gate.sarif`` and ``gate.md``.
The stage returns a frozen :class:`Scanned`; the orchestrator records its
``scan`` and ``gate`` sections in ``report.json``. Publishing reads
``gate.decision``: ``pass``, ``block`` or ``unscanned``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import EnvError, GateFailed, TfimgError
from builder.infra import datafile, report
from builder.infra.engine import Engine
from builder.infra.report_models import GateFiles, GateSection, ScanSection
from builder.scan import gate, trivy, trivy_report
from builder.scan import gate_outputs as gate_render
from builder.scan.policy import Policy


@dataclass(frozen=True)
class Scanned:
    """What the scan and gate stage decided: its two sections, and why it failed when it did."""

    scan: ScanSection
    result: gate.GateResult
    gate: GateSection
    error: EnvError | None = None      # the scan failed and the policy requires one: the gate fails closed
    warning: str | None = None         # the scan failed, the policy allows it: UNSCANNED

    @property
    def decision(self) -> str:
        return self.result.decision


def provisional(policy: Policy) -> GateSection:
    """The gate section to record before the stage runs: until it finishes, an older 'pass' must not
    stand (a crash or Ctrl-C leaves 'block')."""
    return GateSection(decision="block", policy=policy.name,
                       reasons=["the scan did not finish (interrupted or crashed)"])


@dataclass(frozen=True)
class ScanRequest:
    """What the stage scans and how it judges it.

    ``base_layers``: the base's layer DiffIDs (their findings are 'inherited'); ``pinned``: whether
    the base is pinned by digest (:func:`builder.spec.models.pinned`); ``tool``: the Trivy resolved
    for this run (resolved by the stage when not given). ``stage_in``: turns ``image`` into the
    reference Trivy reads (``tfimg build --scan-registry`` pushes the image and returns
    ``HOST/NAME@sha256:...``); its failure fails the scan closed, as Trivy's own would.
    """

    image: str
    out_dir: Path
    policy: Policy
    today: dt.date
    options: trivy.Options = field(default_factory=trivy.Options)
    tool: trivy.Trivy | None = None
    base_layers: list[str] | None = None
    pinned: bool = False
    stage_in: Callable[[str], str] | None = None


def scan_and_gate(req: ScanRequest, engine: Engine) -> Scanned:
    """Scan ``req.image`` with Trivy and gate it under ``req.policy``.

    Writes trivy.json, gate.json, gate.sarif and gate.md in ``req.out_dir``. A blocking gate is a
    result (:func:`blocked` makes its error); a failed scan is one too (``error`` or ``warning``).
    """
    out_dir, policy, opts, image_ref = Path(req.out_dir), req.policy, req.options, req.image
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if req.stage_in is not None:
            image_ref = req.stage_in(image_ref)
        run = trivy.scan_image(image_ref, out_dir / "trivy.json", opts, engine, tool=req.tool)
        rep = run.report
        if policy.scan.misconfig:
            context = next((d for d in (out_dir / "context", out_dir) if (d / "Dockerfile").is_file()),
                           out_dir / "context")
            cfg = trivy.scan_config(context, out_dir / "trivy-config.json", opts, tool=req.tool)
            rep = trivy.merge(rep, cfg)
    except TfimgError as exc:
        return _scan_failed(exc, policy, image_ref, out_dir, req.today)
    scanned = run.info.model_copy(update={"misconfig": policy.scan.misconfig})
    result = gate.evaluate(rep, policy, req.base_layers, req.today, req.pinned)
    return Scanned(scanned, result, write_gate(out_dir, result))


def gate_saved(out_dir: Path, *, policy: Policy, base_layers: list[str] | None, pinned: bool,
               today: dt.date) -> tuple[gate.GateResult, GateSection]:
    """Gate the scan this directory holds (``trivy.json``, plus ``trivy-config.json`` when the policy
    wants the Dockerfile checks) without scanning again: the gate stage alone, when only the policy or
    the day changed. Raises TfimgError (no readable report)."""
    out_dir = Path(out_dir)
    rep = trivy_report.load(out_dir / "trivy.json")
    if policy.scan.misconfig:
        cfg = out_dir / "trivy-config.json"
        if not cfg.is_file():
            raise TfimgError(f"{cfg} is missing: the Dockerfile checks must run again")
        rep = trivy.merge(rep, trivy_report.load(cfg))
    result = gate.evaluate(rep, policy, base_layers, today, pinned)
    return result, write_gate(out_dir, result)


def blocked(result: gate.GateResult, out_dir: Path) -> GateFailed:
    """The error for a blocking gate: every reason (expired waivers name their owner)."""
    more = [f"- {r}" for r in result.reasons[1:]]
    return GateFailed(gate_render.headline(result), hint="\n".join([*more, f"What blocks and why: {out_dir / 'gate.md'}"]))


def _scan_failed(exc: TfimgError, pol: Policy, image_ref: str, out_dir: Path, today: dt.date) -> Scanned:
    scanned = ScanSection(status="failed", tool="trivy", image=image_ref, error=exc.message)
    (out_dir / "trivy.json").unlink(missing_ok=True)   # never leave an older report that looks current
    (out_dir / "sbom.cdx.json").unlink(missing_ok=True)
    if pol.scan.required:
        result = gate.failed_closed(pol, exc.message, today=today)
        error = EnvError(f"{exc.message}\nThe gate fails closed (policy '{pol.name}' requires a scan).", hint=exc.hint)
        return Scanned(scanned, result, write_gate(out_dir, result), error=error)
    result = gate.unscanned(pol, exc.message, today=today)
    return Scanned(scanned, result, write_gate(out_dir, result),
                   warning=f"{exc.message}\nGate UNSCANNED (policy '{pol.name}' has scan.required: false); "
                           "this image cannot be published.")


def write_gate(out_dir: Path, result: gate.GateResult) -> GateSection:
    """Write gate.json, gate.sarif and gate.md; the ``gate`` section of report.json (not written here)."""
    report.write_json(out_dir / "gate.json", result.model_dump(mode="json"))
    report.write_json(out_dir / "gate.sarif", gate_render.sarif(result))
    (out_dir / "gate.md").write_text(gate_render.markdown(result))
    return result.summary(files=GateFiles(json_="gate.json", sarif="gate.sarif", markdown="gate.md"))


def base_layers_of(ref: str, engine: Engine) -> list[str] | None:
    """The base image's layer DiffIDs (``docker image inspect`` RootFS.Layers), None when absent
    (an invalid reference names no image). Raises EnvError (no engine)."""
    info = engine.image(ref)
    return (info.layers or None) if info is not None else None


def read_base_layers(path: Path) -> list[str]:
    """DiffIDs from a file: a JSON list, `docker image inspect` output, a Trivy report of the
    base, or one ``sha256:...`` per line. Raises TfimgError."""
    what = "the base layers file"
    text = datafile.read_text(path, limit=datafile.MAX_JSON_BYTES, what=what)
    data: Any = datafile.loads_json(text, path, what=what) if text.lstrip().startswith(("[", "{")) else \
        [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        data = (data.get("RootFS") or {}).get("Layers") or (data.get("Metadata") or {}).get("DiffIDs") or []
    layers = [x for x in data if isinstance(x, str)] if isinstance(data, list) else []
    if not layers or not all(re.match(r"^sha256:[0-9a-f]{64}$", x) for x in layers):
        raise TfimgError(f"'{path}' holds no layer DiffIDs (sha256:<64 hex>)",
                         hint="Give `docker image inspect BASE` output, a JSON list, or one DiffID per line.")
    return layers
