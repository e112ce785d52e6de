"""Each stage as ``tfimg build`` runs it: reused when its inputs have not changed, else run; recorded.

This is the one place of the reuse bookkeeping (:mod:`builder.pipeline.reuse` computes the keys
and decides): for each of checks, scan, gate and tags, the key of the stage's inputs is computed,
compared with the one its section recorded, and either that section is recorded again with
``reuse.reused: true``, or the stage runs and its result is recorded with the new key. A stage
that failed records no key, so it is never reused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from builder.check import imagefacts
from builder.check import stage as checks_stage
from builder.errors import TfimgError
from builder.image import stage as image_stage
from builder.infra import outdir
from builder.infra.engine import Engine
from builder.infra.report_models import (
    BuildSection,
    FactsSection,
    LocalTags,
    Report,
    StageReuse,
    TagsSection,
    TrivyDb,
)
from builder.infra.ui import UI
from builder.pipeline import record, reuse
from builder.pipeline.context import RunContext
from builder.publish import push, tagging
from builder.publish import tags as tags_stage
from builder.scan import gate, trivy
from builder.scan import stage as scan_stage
from builder.spec.loader import LoadedVariant
from builder.spec.models import pinned


def _forced(ctx: RunContext, flag: bool, name: str) -> str | None:
    return name if flag else ("--force" if ctx.opts.force else None)


# --------------------------------------------------------------------------- build

def build(ctx: RunContext, rec: record.Record) -> BuildSection:
    """The build stage; a new image voids every section (and tags.txt) of an older one."""
    built = image_stage.build(ctx.loaded, ctx.vdir, ctx.base_ref, ctx.opts.build_settings(),
                              find_builder=lambda: ctx.tools.builder, previous=rec.report, ui=ctx.ui,
                              engine=ctx.engine)
    if built.new_image:   # older stages' results (and its tags.txt) are void
        rec.reset()
        (ctx.vdir / tags_stage.TAGS_FILE).unlink(missing_ok=True)
    rec.add(built.section)
    return built.section


# --------------------------------------------------------------------------- checks

def checks(ctx: RunContext, rec: record.Record, built: BuildSection) -> None:
    """The checks, or their earlier result when its inputs (:func:`reuse.checks_key`) have not changed.
    Raises ChecksFailed (a check failed), TfimgError (the suite could not run)."""
    assert ctx.gpu is not None
    prev = rec.report
    key = reuse.checks_key(built, built.spec_hash, ctx.gpu.requested, ctx.gpu.enabled,
                           reuse.engine_gpu_facts(*ctx.engine.runtimes()))
    done = prev.checks
    passed = bool(done and done.passed is True and prev.facts is not None and (ctx.vdir / "checks.xml").is_file())
    d = reuse.decide("checks", key, done.reuse if done else None, passed, _forced(ctx, ctx.opts.recheck, "--recheck"))
    ctx.ui.info(d.message)
    if d.reuse and done is not None:
        rec.add(done.model_copy(update={"reuse": d.record()}))
        return
    with ctx.ui.stage("checks"):   # a failure raises: no key is recorded, so it is never reused
        found = checks_stage.run_checks(ctx.loaded, built.image_id, ctx.vdir, ctx.gpu, built.base.ref,
                                        engine=ctx.engine, cache_root=ctx.cache_root)
        record_checks(rec, found, ctx.ui)
    rec.add(found.checks.model_copy(update={"reuse": d.record()}))


def record_checks(rec: record.Record, found: checks_stage.Checked, ui: UI | None = None) -> None:
    """Record the checks' sections (and print their table on ``ui``); raise when they did not pass."""
    rec.add(found.checks, *([found.facts] if found.facts is not None else []))
    if found.error is not None:
        raise found.error
    if ui is not None:
        ui.console.print(checks_stage.table(found.checks))
    if not found.checks.passed:
        raise checks_stage.failure(found.checks)


# --------------------------------------------------------------------------- scan and gate

def _scan_key(ctx: RunContext, built: BuildSection, misconfig: str, tool: trivy.Trivy,
              db: TrivyDb | None) -> dict[str, str]:
    options = ctx.trivy
    return reuse.scan_key(built.image_id, trivy_version=tool.version, trivy_binary=tool.fingerprint, db=db,
                          db_repository=trivy.recorded_db_repository(options), scanners=list(options.scanners),
                          options={"mode": options.mode, "config": list(options.image_config_scanners),
                                   "sbom": options.sbom, "offline": options.offline},
                          misconfig=misconfig)


def _known(previous: StageReuse | None) -> tuple[str, str] | None:
    """The (Trivy fingerprint, version) an earlier scan recorded, so the version is not read again."""
    if previous is None or not previous.key.get("trivy_binary"):
        return None
    return previous.key["trivy_binary"], previous.key.get("trivy", "")


def scan_and_gate(ctx: RunContext, rec: record.Record, built: BuildSection) -> None:
    """Scan and gate; each reused when its inputs have not changed (a newer DB always re-scans).
    Raises GateFailed (the gate blocks), EnvError (the scan failed and the policy requires one)."""
    misconfig = f"on:{built.context_hash}" if ctx.policy.scan.misconfig else "off"
    prev = rec.report
    done = prev.scan
    forced = _forced(ctx, ctx.opts.rescan, "--rescan")
    key: dict[str, str] = {}
    if not forced:
        try:
            tool = ctx.tools.trivy_tool(ctx.trivy, _known(done.reuse if done else None))
            key = _scan_key(ctx, built, misconfig, tool, trivy.current_db(ctx.trivy, tool))
        except TfimgError as exc:
            forced = f"the DB the scan would use could not be told: {exc.message}"
    passed = bool(done and done.status == "ok" and (ctx.vdir / "trivy.json").is_file())
    d = reuse.decide("scan", key, done.reuse if done else None, passed, forced)
    ctx.ui.info(d.message)
    if d.reuse and done is not None:
        rec.add(done.model_copy(update={"reuse": d.record()}))
        try:
            if _gate(ctx, rec, built, d.record()):
                return
        except TfimgError as exc:
            if exc.exit_code == 1:   # the gate blocks
                raise
            ctx.ui.warn(f"{exc.message}; scanning again")
    _scan(ctx, rec, built, misconfig)


def _scan(ctx: RunContext, rec: record.Record, built: BuildSection, misconfig: str) -> None:
    """Run the scan and gate stage; record it with the key of the DB this scan used."""
    stage_in = None
    if ctx.opts.scan_registry:
        scan_registry = ctx.opts.scan_registry

        def stage_in(image_id: str) -> str:
            ctx.ui.info(f"pushing {ctx.loaded.name} to {scan_registry} for the scan (only layers the registry lacks)")
            return push.push_for_scan(image_id, scan_registry, ctx.loaded.name, built.input_hash, engine=ctx.engine)
    tool = None
    with contextlib.suppress(TfimgError):   # else the stage meets the same error and records it
        tool = ctx.tools.trivy_tool(ctx.trivy)
    req = scan_stage.ScanRequest(image=built.image_id, out_dir=ctx.vdir, policy=ctx.policy, today=ctx.today,
                                 options=ctx.trivy, tool=tool, base_layers=built.base_layers,
                                 pinned=pinned(built.base.ref), image_id=built.image_id, stage_in=stage_in)
    scanned = scan(rec, req, ctx.engine, ctx.ui.warn)
    if scanned.scan.status == "ok" and tool is not None:
        try:   # the key of the DB this scan used
            scan_record = StageReuse(reused=False, key=_scan_key(ctx, built, misconfig, tool, scanned.scan.db))
            rec.add(scanned.scan.model_copy(update={"reuse": scan_record}))
            if scanned.decision == "pass":
                gkey = _gate_key(ctx, built, scan_record)
                rec.add(scanned.gate.model_copy(update={"reuse": StageReuse(reused=False, key=gkey)}))
        except TfimgError as exc:
            ctx.ui.warn(f"the scan's inputs could not be recorded ({exc.message}); it will run again next time")
    error = scan_stage.refused(scanned.result, ctx.policy, ctx.vdir)   # blocks, or UNSCANNED where a scan is required
    if error is not None:
        raise error


def scan(rec: record.Record, req: scan_stage.ScanRequest, engine: Engine,
         warn: Callable[[str], None]) -> scan_stage.Scanned:
    """The scan and gate stage, recorded: a provisional 'block' first (an interrupted scan leaves no
    'pass' behind), then its sections. Raises EnvError when it failed closed; warns when UNSCANNED."""
    outdir.claim(req.out_dir)   # before the first record: the folder must be tfimg's
    rec.add(scan_stage.provisional(req.policy))
    scanned = scan_stage.scan_and_gate(req, engine)
    rec.add(scanned.scan, scanned.gate)
    if scanned.error is not None:
        raise scanned.error
    if scanned.warning is not None:
        warn(scanned.warning)
    return scanned


def _gate_key(ctx: RunContext, built: BuildSection, scan_reuse: StageReuse) -> dict[str, str]:
    return reuse.gate_key(scan_reuse, ctx.vdir, ctx.policy_file, ctx.today.isoformat(), built.base_layers,
                          pinned(built.base.ref))


def _gate(ctx: RunContext, rec: record.Record, built: BuildSection, scan_reuse: StageReuse) -> bool:
    """The gate on a reused scan: reused when the scan, policy and day are the same, else evaluated
    again from the saved report. True when done; raises GateFailed when it blocks (or is UNSCANNED
    under a policy that requires a scan), ScanNotProven / ReportMismatch when the saved report is not
    the recorded scan of this build (the caller scans again)."""
    previous = rec.report.gate
    key = _gate_key(ctx, built, scan_reuse)
    d = reuse.decide("gate", key, previous.reuse if previous else None,
                     bool(previous and previous.decision == "pass"))
    ctx.ui.info(d.message)
    if d.reuse and previous is not None:
        rec.add(previous.model_copy(update={"reuse": d.record()}))
        return True
    result, section = scan_stage.gate_saved(ctx.vdir, policy=ctx.policy, base_layers=built.base_layers,
                                            pinned=pinned(built.base.ref), today=ctx.today,
                                            image_id=built.image_id, record=rec.report.scan)
    error = scan_stage.refused(result, ctx.policy, ctx.vdir)
    if error is not None:
        rec.add(section)
        raise error
    rec.add(section.model_copy(update={"reuse": d.record()}) if result.decision == "pass" else section)
    return True


def unscanned(ctx: RunContext, rec: record.Record) -> None:
    """``--no-scan``: the gate is UNSCANNED (the image cannot be published)."""
    rec.add(scan_stage.write_gate(ctx.vdir, gate.unscanned(ctx.policy, "scan skipped (--no-scan)")))


# --------------------------------------------------------------------------- tags

def compute_tags(loaded: LoadedVariant, out_dir: Path, report: Report, *, engine: Engine,
                 image: str | None = None) -> tuple[tagging.TagSet, FactsSection]:
    """Facts of the image (:func:`builder.check.imagefacts.read`) and the variant's tags; writes
    ``tags.txt`` (and nothing else): ``tfimg tags``, and the tag stage. ``image``: instead of the
    built one (report.json's ``build``)."""
    image = image or push.require_build(report)
    found = imagefacts.read(image, loaded.path, report, engine)
    ts = tags_stage.compute(loaded, found)
    tags_stage.write(out_dir, ts)
    return ts, found


def tags_and_facts(loaded: LoadedVariant, vdir: Path, rec: record.Record, *, engine: Engine) -> TagsSection:
    """The tag stage: tags.txt, and report.json's ``facts`` (when they changed) and ``tags`` sections."""
    _, found = compute_tags(loaded, vdir, rec.report, engine=engine)
    current = rec.report.facts
    if current is None or current.model_dump(exclude_unset=True) != found.model_dump(exclude_unset=True):
        rec.add(found)
    section = tags_stage.read(vdir)
    rec.add(section)
    return section


def tags(ctx: RunContext, rec: record.Record, built: BuildSection) -> LocalTags:
    """Compute tags.txt (or reuse it when the facts and the tag templates have not changed); apply it."""
    prev = rec.report
    templates = [ctx.loaded.name, ctx.loaded.spec.base.profile, ctx.loaded.spec.tags.model_dump(mode="json")]
    key = reuse.tags_key(built, prev.facts.model_dump(mode="json") if prev.facts else None, templates)
    try:
        passed = prev.tags is not None and tags_stage.read(ctx.vdir) == prev.tags.model_copy(update={"reuse": None})
    except TfimgError:
        passed = False
    d = reuse.decide("tags", key, prev.tags.reuse if prev.tags else None, passed, _forced(ctx, False, ""))
    ctx.ui.info(d.message)
    if d.reuse and prev.tags is not None:
        rec.add(prev.tags.model_copy(update={"reuse": d.record()}))
    else:
        section = tags_and_facts(ctx.loaded, ctx.vdir, rec, engine=ctx.engine)
        now = rec.report   # the key of the facts the tags were computed from
        key = reuse.tags_key(built, now.facts.model_dump(mode="json") if now.facts else None, templates)
        rec.add(section.model_copy(update={"reuse": StageReuse(reused=False, key=key)}))
    local = tags_stage.apply(built.image_id, ctx.loaded.name, ctx.vdir, ctx.engine)   # apply: reads tags.txt
    rec.add(local)
    return local
