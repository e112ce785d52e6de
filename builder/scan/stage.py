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
from typing import TYPE_CHECKING, Any

from builder.errors import EnvError, GateFailed, ReportMismatch, TfimgError
from builder.infra import datafile, outdir, report
from builder.infra.report_models import GateFiles, GateSection, ScanSection
from builder.scan import gate, trivy, trivy_report, trust
from builder.scan import gate_outputs as gate_render
from builder.scan.policy import Policy

if TYPE_CHECKING:   # the Docker SDK takes a second to import: `tfimg gate` never needs it
    from builder.infra.engine import Engine


@dataclass(frozen=True)
class Scanned:
    """What the scan and gate stage decided: its two sections, and why it failed when it did."""

    scan: ScanSection
    result: gate.GateResult
    gate: GateSection
    error: TfimgError | None = None    # the scan failed and the policy requires one (fails closed), or read another image
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
    image_id: str | None = None      # the build's image: a scan of another image is refused
    stage_in: Callable[[str], str] | None = None


def scan_and_gate(req: ScanRequest, engine: Engine) -> Scanned:
    """Scan ``req.image`` with Trivy and gate it under ``req.policy``.

    Writes trivy.json, gate.json, gate.sarif and gate.md in ``req.out_dir``. A blocking gate is a
    result (:func:`refused` makes its error); a failed scan is one too (``error`` or ``warning``).
    """
    out_dir, policy, opts, image_ref = outdir.claim(req.out_dir), req.policy, req.options, req.image
    try:
        if req.stage_in is not None:
            image_ref = req.stage_in(image_ref)
        run = trivy.scan_image(image_ref, out_dir / "trivy.json", opts, engine, tool=req.tool)
        rep = run.report
        trust.check_image(rep, req.image_id, source=f"the scan of {image_ref}",
                          where=str(out_dir / report.REPORT))
        if policy.scan.misconfig:
            context = next((d for d in (out_dir / "context", out_dir) if (d / "Dockerfile").is_file()),
                           out_dir / "context")
            cfg = trivy.scan_config(context, out_dir / "trivy-config.json", opts, tool=req.tool)
            rep = trivy.merge(rep, cfg)
    except ReportMismatch as exc:   # a scan of another image: never recorded, whatever the policy
        result = gate.failed_closed(policy, exc.message, today=req.today)
        return Scanned(discard(exc, image_ref, out_dir), result, write_gate(out_dir, result), error=exc)
    except TfimgError as exc:
        return _scan_failed(exc, policy, image_ref, out_dir, req.today)
    scanned = run.info.model_copy(update={"misconfig": policy.scan.misconfig})
    result = gate.evaluate(rep, policy, req.base_layers, req.today, req.pinned,
                           scanners=list(opts.scanners), scanners_from="this scan")
    return Scanned(scanned, result, write_gate(out_dir, result))


def gate_saved(out_dir: Path, *, policy: Policy, base_layers: list[str] | None, pinned: bool,
               today: dt.date, image_id: str | None, record: ScanSection | None
               ) -> tuple[gate.GateResult, GateSection]:
    """Gate the scan this directory holds (``trivy.json``, plus ``trivy-config.json`` when the policy
    wants the Dockerfile checks) without scanning again: the gate stage alone, when only the policy or
    the day changed. The report must be the one the recorded scan (``record``) wrote (its sha256) and
    of the recorded build's image (``image_id``).

    Raises ScanNotProven (no scan record vouches for trivy.json), ReportMismatch (a report of another
    image), TfimgError (no readable report)."""
    out_dir = Path(out_dir)
    path = out_dir / "trivy.json"
    rep, digest = trust.read(path)
    trust.check_image(rep, image_id, source=str(path), where=str(out_dir / report.REPORT))
    scanners = trust.scanners_of(path, digest, record, assume=False)
    if policy.scan.misconfig:
        cfg = out_dir / "trivy-config.json"
        if not cfg.is_file():
            raise TfimgError(f"{cfg} is missing: the Dockerfile checks must run again")
        rep = trivy.merge(rep, trivy_report.load(cfg))
    result = gate.evaluate(rep, policy, base_layers, today, pinned, scanners=scanners[0],
                           scanners_from=scanners[1])
    return result, write_gate(out_dir, result)


def refused(result: gate.GateResult, pol: Policy, out_dir: Path) -> GateFailed | None:
    """The error a command exits with for this result (exit 1): it blocks, or it is UNSCANNED under a
    policy that requires a scan. None when it may exit 0."""
    why = gate.refusal(result, pol)
    if why is None:
        return None
    if result.decision == "block":
        return blocked(result, out_dir)
    return GateFailed(f"{gate_render.headline(result)}: the gate {why}",
                      hint=f"Scan the image with the vulnerability scanner. Details: {out_dir / 'gate.md'}")


def blocked(result: gate.GateResult, out_dir: Path) -> GateFailed:
    """The error for a blocking gate: every reason (expired waivers name their owner)."""
    more = [f"- {r}" for r in result.reasons[1:]]
    return GateFailed(gate_render.headline(result), hint="\n".join([*more, f"What blocks and why: {out_dir / 'gate.md'}"]))


def _scan_failed(exc: TfimgError, pol: Policy, image_ref: str, out_dir: Path, today: dt.date) -> Scanned:
    scanned = discard(exc, image_ref, out_dir)
    if pol.scan.required:
        result = gate.failed_closed(pol, exc.message, today=today)
        error = EnvError(f"{exc.message}\nThe gate fails closed (policy '{pol.name}' requires a scan).", hint=exc.hint)
        return Scanned(scanned, result, write_gate(out_dir, result), error=error)
    result = gate.unscanned(pol, exc.message, today=today)
    return Scanned(scanned, result, write_gate(out_dir, result),
                   warning=f"{exc.message}\nGate UNSCANNED (policy '{pol.name}' has scan.required: false); "
                           "this image cannot be published.")


def discard(exc: TfimgError, image_ref: str, out_dir: Path) -> ScanSection:
    """The scan, as failed; never leave an older report (or SBOM) that looks current."""
    (out_dir / "trivy.json").unlink(missing_ok=True)
    (out_dir / "sbom.cdx.json").unlink(missing_ok=True)
    return ScanSection(status="failed", tool="trivy", image=image_ref, error=exc.message)


def write_gate(out_dir: Path, result: gate.GateResult) -> GateSection:
    """Write gate.json, gate.sarif and gate.md; the ``gate`` section of report.json (not written here)."""
    with trivy_report.gc_paused():
        report.write_json(out_dir / "gate.json", result, compact=True)
        report.write_json(out_dir / "gate.sarif", gate_render.sarif(result), compact=True)
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
    if not layers or not all(re.fullmatch(r"sha256:[0-9a-f]{64}", x) for x in layers):
        raise TfimgError(f"'{path}' holds no layer DiffIDs (sha256:<64 hex>)",
                         hint="Give `docker image inspect BASE` output, a JSON list, or one DiffID per line.")
    return layers
