"""One stage on its own (``tfimg test``, ``scan``, ``gate``, ``tags``, ``publish``): run it, record it.

The same stages as ``tfimg build`` runs (:mod:`builder.pipeline.steps`), without reuse: each runs
and its sections are recorded in ``<out>/report.json`` by the pipeline, as in a build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from builder.check import stage as checks_stage
from builder.errors import TfimgError
from builder.infra import clock, datafile, outdir, report
from builder.infra.engine import Engine
from builder.infra.report_models import ChecksSection, JsonObject, PublishSection
from builder.pipeline import record, steps, watching
from builder.publish import attest, signing, tagging
from builder.publish import push as push_stage
from builder.scan import gate, trivy, trivy_report, trust
from builder.scan import stage as scan_stage
from builder.scan.policy import Policy
from builder.spec.loader import LoadedVariant
from builder.spec.models import pinned


def test(loaded: LoadedVariant, image: str, vdir: Path, *, gpu: str, engine: Engine, base: str | None = None,
         cache_root: Path | None = None, ngc_run_flags: bool = False, timeout: float = 900) -> ChecksSection:
    """``tfimg test``: the checks, recorded (``checks`` and ``facts``). A failed check is a result (its
    section says so); raises TfimgError when the suite could not run, EnvError for a bad ``gpu``."""
    rec = record.Record(vdir)
    built = rec.report.build
    mode = checks_stage.gpu_mode(gpu, engine.gpu_available)
    found = checks_stage.run_checks(loaded, image, vdir, mode, base or (built.base.ref if built else None),
                                    engine=engine, cache_root=cache_root, ngc_run_flags=ngc_run_flags,
                                    timeout=timeout)
    rec.add(found.checks, *([found.facts] if found.facts is not None else []))
    if found.error is not None:
        raise found.error
    return found.checks


def scan_variant(loaded: LoadedVariant, image: str, vdir: Path, policy: Policy, *, base_ref: str | None,
                 options: trivy.Options, engine: Engine, warn: Callable[[str], None],
                 stage_in: Callable[[str], str] | None = None) -> scan_stage.Scanned:
    """``tfimg scan SPEC``: scan the image and gate it under the policy, recorded. The base's layers come
    from the engine (``base_ref``), else from the recorded build. A blocking gate is a result."""
    rec = record.Record(vdir)
    built = rec.report.build
    layers = (scan_stage.base_layers_of(base_ref, engine) if base_ref else None) \
        or (built.base_layers if built else None) or None
    req = scan_stage.ScanRequest(image=image, out_dir=vdir, policy=policy, today=clock.today(), options=options,
                                 base_layers=layers, pinned=pinned(base_ref or loaded.spec.base.ref),
                                 image_id=built.image_id if built else None, stage_in=stage_in)
    return steps.scan(rec, req, engine, warn)


def scan_image(image: str, out: Path, options: trivy.Options, engine: Engine, *,
               what: str = "output folder") -> trivy.ScanRun:
    """``tfimg scan IMAGE``: Trivy only (no gate); the ``scan`` section recorded, also when it failed.
    A folder whose report.json records the build of another image is refused (ReportMismatch)."""
    outdir.claim(out, what)
    rec = record.Record(out)
    built = rec.report.build
    try:
        run = trivy.scan_image(image, out / "trivy.json", options, engine)
        trust.check_image(run.report, built.image_id if built else None, source=f"the scan of {image}",
                          where=str(out / report.REPORT))   # --out of another image's build
    except TfimgError as exc:
        rec.add(scan_stage.discard(exc, image, out))
        raise
    rec.add(run.info)
    return run


def gate_report(rep: trivy_report.Report, policy: Policy, out: Path, *, base_layers: list[str] | None,
                base_ref: str, today: dt.date, scanners: tuple[list[str], gate.ScannersFrom],
                claim: str | None = None) -> gate.GateResult:
    """``tfimg gate``: a saved Trivy report gated under the policy; gate.* written, the section recorded.
    ``scanners``: which scanners made it and who says so (:func:`builder.scan.trust.scanners_of`);
    ``claim``: the option that named ``out`` (claimed as tfimg's output folder), None for the folder
    of the report itself."""
    result = gate.evaluate(rep, policy, base_layers, today, base_digest_pinned=pinned(base_ref),
                           scanners=scanners[0], scanners_from=scanners[1])
    if claim is not None:
        outdir.claim(out, claim)
    record.Record(out).add(scan_stage.write_gate(out, result))
    return result


def _trivy_doc(out: Path) -> JsonObject | None:
    """The gate's Trivy report as it is attached (redacted again: never a secret in evidence)."""
    path = out / "trivy.json"
    return trivy_report.redact(datafile.load_json(path, what="the Trivy report")) if path.is_file() else None


def publish(loaded: LoadedVariant, out: Path, registry: str, *, engine: Engine, push: bool = False,
            sign_key: str | None = None, key_password: str | None = None, attempts: int = 5,
            base_delay: float = 1.0) -> push_stage.Plan | PublishSection:
    """``tfimg publish``: the plan, and with ``push`` the push, recorded (``tags`` and ``publish``).

    ``sign_key``: a PEM private key file or ``env:NAME`` (:func:`builder.publish.signing.load_signer`);
    a bad key fails before anything is pushed.
    """
    signer = signing.load_signer(sign_key, key_password) if sign_key and push else None
    rec = record.Record(out)

    def sbom() -> JsonObject:
        found = attest.sbom(out)
        if found is not None:
            return found
        image = push_stage.require_build(rec.report)
        return trivy.cyclonedx(image, trivy.Options())

    attached = push_stage.Evidence(trivy=_trivy_doc(out), sbom=sbom, signer=signer,
                                   vex=watching.publish_vex(out, rec.report))
    done = push_stage.publish(loaded, rec.report, out, registry, engine=engine, push=push, attached=attached,
                              attempts=attempts, base_delay=base_delay)
    if isinstance(done, push_stage.Plan):
        return done
    rec.add(done.plan.tags, done.record)
    return done.record


def tags(loaded: LoadedVariant, out: Path, *, engine: Engine, image: str | None = None) -> str:
    """``tfimg tags``: tags.txt (and nothing else); its text."""
    ts, _ = steps.compute_tags(loaded, out, record.Record(out).report, engine=engine, image=image)
    return tagging.tags_text(ts)
