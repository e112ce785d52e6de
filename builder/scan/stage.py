"""The scan and gate stage: scan an image with Trivy, gate the report under the variant's policy.

Files written to the variant's directory: ``trivy.json`` (Trivy's report,
secret code lines redacted), ``gate.json``, ``gate.sarif``, ``gate.md``, and
the ``scan`` and ``gate`` sections of ``report.json``. Publishing reads
``gate.decision``: ``pass``, ``block`` or ``unscanned``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import EnvError, GateFailed, ReportMismatch, TfimgError
from builder.infra import clock, datafile, outdir, report
from builder.infra.report_models import GateFiles, GateSection, ScanSection
from builder.scan import gate, trivy, trivy_report, trust
from builder.scan import gate_outputs as gate_render
from builder.scan import policy as policies
from builder.spec.loader import LoadedVariant

if TYPE_CHECKING:   # the Docker SDK takes a second to import: `tfimg gate` never needs it
    from builder.infra.engine import Engine

log = logging.getLogger(__name__)


def run_scan_and_gate(loaded: LoadedVariant, image_ref: str, out_dir: Path, base_ref: str | None, *,
                      engine: Engine, options: trivy.Options | None = None, base_layers: list[str] | None = None,
                      today: dt.date | None = None, raise_on_block: bool = True,
                      warn: Callable[[str], None] = log.warning,
                      stage_in: Callable[[str], str] | None = None) -> gate.GateResult:
    """Scan ``image_ref`` with Trivy and gate it under the variant's policy.

    ``stage_in``: turns ``image_ref`` into the reference Trivy reads (``tfimg build --scan-registry``
    pushes the image and returns ``HOST/NAME@sha256:...``); its failure fails the scan closed, as
    Trivy's own would.

    Writes trivy.json, gate.json, gate.sarif, gate.md and report.json's
    ``scan`` and ``gate`` sections in ``out_dir``. Returns the result for
    pass and UNSCANNED.

    Raises:
        GateFailed: the gate blocks (unless ``raise_on_block`` is False).
        EnvError: Trivy could not scan and the policy requires a scan (the
            gate is recorded as ``block``: it fails closed).
        SpecErrors: the policy file is invalid.
    """
    today = today or clock.today()
    pol = policies.load(loaded.spec.policy)
    opts = options or trivy.Options()
    out_dir = outdir.claim(out_dir)
    # Until this stage finishes, an older 'pass' must not stand (a crash or Ctrl-C leaves 'block').
    report.write_section(out_dir, GateSection(decision="block", policy=pol.name,
                                              reasons=["the scan did not finish (interrupted or crashed)"]))
    try:
        if stage_in is not None:
            image_ref = stage_in(image_ref)
        run = trivy.scan_image(image_ref, out_dir / "trivy.json", opts, engine)
        rep = run.report
        built = report.load(out_dir).build
        trust.check_image(rep, built.image_id if built else None, source=f"the scan of {image_ref}",
                          where=str(out_dir / report.REPORT))
        if pol.scan.misconfig:
            context = next((d for d in (out_dir / "context", out_dir) if (d / "Dockerfile").is_file()),
                           out_dir / "context")
            cfg = trivy.scan_config(context, out_dir / "trivy-config.json", opts)
            rep = trivy.merge(rep, cfg)
    except ReportMismatch as exc:   # a scan of another image: never recorded, whatever the policy
        discard(exc, image_ref, out_dir)
        write_gate(out_dir, gate.failed_closed(pol, exc.message, today=today))
        raise
    except TfimgError as exc:
        return _scan_failed(exc, pol, image_ref, out_dir, today, warn)
    report.write_section(out_dir, run.info.model_copy(update={"misconfig": pol.scan.misconfig}))
    if base_layers is None:
        base_layers = base_layers_of(base_ref, engine) if base_ref else None
    if base_layers is None:
        built = report.load(out_dir).build
        base_layers = (built.base_layers if built else None) or None
    return _decide(loaded, rep, pol, base_layers, base_ref, today, out_dir, raise_on_block,
                   (list(opts.scanners), "this scan"))


def gate_saved(loaded: LoadedVariant, out_dir: Path, base_ref: str | None, *,
               base_layers: list[str] | None = None, today: dt.date | None = None,
               raise_on_block: bool = True) -> gate.GateResult:
    """Gate the scan this directory holds (``trivy.json``, plus ``trivy-config.json`` when the policy
    wants the Dockerfile checks) without scanning again: the gate stage alone, when only the policy or
    the day changed. The report must be the one the recorded scan wrote (its sha256) and of the
    recorded build's image.

    Raises GateFailed (blocks, or UNSCANNED under a policy that requires a scan), ScanNotProven (no
    scan record vouches for trivy.json), ReportMismatch (a report of another image), TfimgError (no
    readable report)."""
    today = today or clock.today()
    pol = policies.load(loaded.spec.policy)
    out_dir = Path(out_dir)
    saved = report.load(out_dir)
    rep, digest = trust.read(out_dir / "trivy.json")
    trust.check_image(rep, saved.build.image_id if saved.build else None, source=str(out_dir / "trivy.json"),
                      where=str(out_dir / report.REPORT))
    scanners = trust.scanners_of(out_dir / "trivy.json", digest, saved.scan, assume=False)
    if pol.scan.misconfig:
        cfg = out_dir / "trivy-config.json"
        if not cfg.is_file():
            raise TfimgError(f"{cfg} is missing: the Dockerfile checks must run again")
        rep = trivy.merge(rep, trivy_report.load(cfg))
    return _decide(loaded, rep, pol, base_layers, base_ref, today, out_dir, raise_on_block, scanners)


def _decide(loaded: LoadedVariant, rep: trivy_report.Report, pol: policies.Policy, base_layers: list[str] | None,
            base_ref: str | None, today: dt.date, out_dir: Path, raise_on_block: bool,
            scanners: tuple[list[str], gate.ScannersFrom]) -> gate.GateResult:
    """Gate a report under the policy, write gate.json, gate.sarif, gate.md and the section; raise when
    the result must not exit 0 (:func:`refused`)."""
    pinned = bool(loaded.spec.base.digest) or "@sha256:" in (base_ref or "")
    result = gate.evaluate(rep, pol, base_layers, today, pinned, scanners=scanners[0], scanners_from=scanners[1])
    write_gate(out_dir, result)
    error = refused(result, pol, out_dir)
    if error is not None and raise_on_block:
        raise error
    return result


def refused(result: gate.GateResult, pol: policies.Policy, out_dir: Path) -> GateFailed | None:
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


def _scan_failed(exc: TfimgError, pol: policies.Policy, image_ref: str, out_dir: Path,
                 today: dt.date, warn: Callable[[str], None]) -> gate.GateResult:
    discard(exc, image_ref, out_dir)
    if pol.scan.required:
        write_gate(out_dir, gate.failed_closed(pol, exc.message, today=today))
        raise EnvError(f"{exc.message}\nThe gate fails closed (policy '{pol.name}' requires a scan).",
                       hint=exc.hint) from None
    result = gate.unscanned(pol, exc.message, today=today)
    write_gate(out_dir, result)
    warn(f"{exc.message}\nGate UNSCANNED (policy '{pol.name}' has scan.required: false); "
         "this image cannot be published.")
    return result


def discard(exc: TfimgError, image_ref: str, out_dir: Path) -> None:
    """Record the scan as failed; never leave an older report (or SBOM) that looks current."""
    report.write_section(out_dir, ScanSection(status="failed", tool="trivy", image=image_ref, error=exc.message))
    (out_dir / "trivy.json").unlink(missing_ok=True)
    (out_dir / "sbom.cdx.json").unlink(missing_ok=True)


def write_gate(out_dir: Path, result: gate.GateResult) -> None:
    """gate.json, gate.sarif, gate.md and the ``gate`` section of report.json."""
    with trivy_report.gc_paused():
        report.write_json(out_dir / "gate.json", result, compact=True)
        report.write_json(out_dir / "gate.sarif", gate_render.sarif(result), compact=True)
        (out_dir / "gate.md").write_text(gate_render.markdown(result))
    report.write_section(out_dir, result.summary(
        files=GateFiles(json_="gate.json", sarif="gate.sarif", markdown="gate.md")))


def base_layers_of(ref: str, engine: Engine) -> list[str] | None:
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
