"""Results of a check run: the report's ``checks`` and ``facts`` sections, the table, the error."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from builder.check import probe
from builder.check.probe_models import Summary
from builder.check.suite import modules_for
from builder.check.suite.context import Context
from builder.errors import ChecksFailed
from builder.infra.report_models import ChecksSection, FactsSection
from builder.spec import profiles
from builder.spec.loader import LoadedVariant


def section(loaded: LoadedVariant, image_ref: str, attrs: dict[str, Any], mode: Any, ctx: Context,
            outcome: dict[str, Any], returncode: int, out_dir: Path, took: float, *,
            run_id: str | None = None) -> ChecksSection:
    """The ``checks`` section: passed, one row per check (check, status, detail), GPU mode, probe."""
    results = outcome.get("results") or []
    counts = {s: sum(r["status"] == s for r in results) for s in ("passed", "failed", "error", "skipped")}
    passed = returncode == 0 and bool(results) and not counts["failed"] and not counts["error"]
    prof = profiles.get(ctx.profile).with_overrides(loaded.spec.base.expect)
    return ChecksSection.model_validate({
        "passed": passed, "variant": loaded.name, "image": image_ref, "image_id": attrs["Id"],
        "results": results, "counts": counts, "records": outcome.get("records") or {},
        "gpu": asdict(mode), "profile": ctx.profile, "profile_note": ctx.profile_note,
        "base": ctx.base_ref, "base_note": ctx.base_note, "services_note": ctx.services_note,
        "probe": {"summary": ctx.probe.model_dump(mode="json") if ctx.probe else {}, "error": ctx.probe_error,
                  "rows": [r.model_dump(mode="json") for r in probe.evaluate(
                      ctx.probe, prof, gpu=mode.enabled, reason=f"GPU mode is off: {mode.reason}")]
                  if ctx.probe else []},
        "modules": modules_for(loaded.spec), "junit": str(out_dir / "checks.xml"),
        "log": str(out_dir / "checks.log"), "duration": round(took, 1),
        **({"run_id": run_id} if run_id is not None else {}),
    })


def facts(summary: Summary | None, image_id: str, profile: str) -> FactsSection:
    """The ``facts`` section: versions detected in the image (read by tagging); none where the probe failed."""
    keys = {"tensorflow", "python", "cuda", "cudnn", "nccl", "driver", "gpus", "tf_cuda_build", "tf_build_cuda"}
    found = summary.model_dump(include=keys) if summary else dict.fromkeys(keys)
    return FactsSection.model_validate({
        **found, "image_id": image_id, "profile": profile,
        "source": "tfimg test: probe in the container (CUDA/cuDNN/NCCL from the libraries)"})


def failure(section: ChecksSection) -> ChecksFailed:
    bad = [r for r in section.results if r.status in ("failed", "error")]
    lines = [f"  {r.check}: {r.detail.splitlines()[0] if r.detail else r.status}" for r in bad]
    msg = f"{len(bad)} of {len(section.results)} checks failed on {section.image}"
    if not section.results:
        msg = f"no check ran on {section.image}"
    return ChecksFailed(msg + (":\n" + "\n".join(lines) if lines else ""),
                        hint=f"Details: {section.junit}, {section.log}")


def table(section: ChecksSection) -> Any:
    """A rich table: check, status, detail."""
    from rich.table import Table
    from rich.text import Text
    style = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "yellow"}
    t = Table(title=f"checks: {section.variant} ({section.image})", title_justify="left")
    t.add_column("check", no_wrap=True)
    t.add_column("status")
    t.add_column("detail", overflow="fold")
    for r in section.results:
        status = r.status.upper() if r.status != "passed" else "passed"
        t.add_row(Text(r.check), Text(status, style=style.get(r.status, "")), Text(r.detail or ""))
    c, gpu = section.counts, section.gpu
    if c is not None and gpu is not None:
        t.caption = (f"{c.passed} passed, {c.failed} failed, {c.error} errors, {c.skipped} skipped; "
                     f"GPU: {'on' if gpu.enabled else 'off'} ({gpu.reason})")
    return t
