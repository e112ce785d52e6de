"""The one orchestrator: knows the order of the stages, which do not know each other.

    spec -> render -> build -> checks -> scan/gate -> tags

    ctx = context.make(loaded, BuildOptions(base="..."), ui, Engine.deferred())
    rep = run(ctx)          # the final report.json

Each stage returns a frozen result and leaves its files under ``build/<variant>/``; the
orchestrator records each result as a section of ``report.json`` (:mod:`builder.pipeline.record`),
reusing a stage's earlier result when its inputs have not changed (:mod:`builder.pipeline.steps`).
A failure stops the pipeline before tagging: no computed tag is applied to an image that did not
pass its checks and gate.
"""

from __future__ import annotations

import dataclasses

from builder.infra import outdir
from builder.infra.engine import Engine
from builder.infra.report_models import BuildSection, ChecksSection, LocalTags, Report, Timings
from builder.infra.ui import UI
from builder.pipeline import context, gatekeeping, record, steps
from builder.pipeline.context import BuildOptions, RunContext
from builder.publish import tags as tags_stage
from builder.spec.loader import LoadedVariant

__all__ = ["BuildOptions", "build", "run", "summary"]


def build(loaded: LoadedVariant, opts: BuildOptions, ui: UI, engine: Engine) -> BuildSection:
    """The build stage alone (render, build or find up to date), recorded: the ``build`` section."""
    ctx = context.make(loaded, dataclasses.replace(opts, checks=False, scan=False), ui, engine)
    return steps.build(ctx, record.Record(ctx.vdir, record.load_or_new(ctx.vdir, ui.warn)))


def run(ctx: RunContext) -> Report:
    """All stages in order; returns the final report.

    A failed check or a blocking gate raises before the tag stage, so no
    computed tag is applied to an image that did not pass.
    """
    opts, ui = ctx.opts, ctx.ui
    rec = record.Record(ctx.vdir, record.load_or_new(ctx.vdir, ui.warn))
    if opts.registry and not (opts.force or opts.no_cache):
        with ui.stage("registry lookup"):
            found = gatekeeping.already_published(ctx.loaded, opts.registry, ctx.base_ref, ctx.policy,
                                                  ctx.policy_file, ui, ctx.engine)
        if found is not None:
            ui.info(f"{ctx.loaded.name} is already published with passing evidence: {found.repository}@"
                    f"{found.digest}; nothing built, checked or scanned (--force rebuilds)")
            outdir.claim(ctx.vdir)
            rec.reset()
            (ctx.vdir / tags_stage.TAGS_FILE).unlink(missing_ok=True)
            return rec.add(found, Timings(dict(ui.timings)))
    built = steps.build(ctx, rec)
    if opts.checks and ctx.gpu is not None:   # each stage below is reused when its inputs have not changed
        steps.checks(ctx, rec, built)
    else:
        rec.add(ChecksSection(passed=None, skipped="--no-test"))
    if opts.scan:
        with ui.stage("scan and gate"):
            steps.scan_and_gate(ctx, rec, built)
    else:
        steps.unscanned(ctx, rec)
    if not (opts.checks and opts.scan):   # a skipped stage: computed tags would not be applied
        ui.info(f"not tagged: the {'checks' if not opts.checks else 'scan'} was skipped "
                f"(`tfimg tags {ctx.loaded.path}` shows the tags it would get)")
        return rec.add(LocalTags([]), Timings(dict(ui.timings)))
    with ui.stage("tags"):
        steps.tags(ctx, rec, built)   # compute (tags.txt), then apply (reads tags.txt)
    return rec.add(Timings(dict(ui.timings)))   # seconds per stage of this run


def summary(rep: Report) -> str:
    b = rep.build
    if b is None and rep.published is not None:
        p = rep.published
        return "\n".join([f"published {p.repository}@{p.digest}",
                          f"          same input hash ({p.tag}), gate {p.decision} ({p.how})",
                          "          nothing was built, checked or scanned here"])
    if b is None:
        return "variant   (not built)"
    lines = [f"variant   {b.variant}",
             f"image     {b.image} ({b.image_id[:19]})",
             f"base      {b.base.ref}",
             f"size      {b.size / 1e9:.2f} GB, {b.added_bytes / 1e6:.1f} MB over the base",
             "builder   " + (_builder(b) if b.builder else "none (up to date: nothing was built)")]
    passed = rep.checks.passed if rep.checks else None
    lines.append("checks    " + {True: "passed", False: "FAILED", None: "not run"}[passed])
    decision = rep.gate.decision if rep.gate else "not run"
    lines.append("gate      " + (decision.upper() if decision in ("unscanned", "block") else decision)
                 + (f" ({rep.gate.policy})" if rep.gate and rep.gate.policy else ""))
    for ref in rep.local_tags or []:
        lines.append(f"tag       {ref}")
    for w in b.warnings:
        lines.append(f"warning   {w}")
    return "\n".join(lines)


def _builder(b: BuildSection) -> str:
    assert b.builder is not None
    u = b.builder
    where = ", ".join(x for x in (f"builder {u.name}" if u.name else "", f"{u.driver} driver" if u.driver else "",
                                  f"{u.store} image store" if u.store else "",
                                  f"BuildKit {u.buildkit}" if u.buildkit else "") if x)
    epoch = f"; SOURCE_DATE_EPOCH {b.source_date.epoch} ({b.source_date.source})" if b.source_date else ""
    return f"{u.kind} ({u.docker}{': ' + where if where else ''}){epoch}"
