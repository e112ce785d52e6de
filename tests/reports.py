"""Report sections for tests, built through the same models the stages write (never by hand).

Use these where a test needs a report for an image tfimg did not build (a tiny
image, a made-up id); a test that can afford a real build reads that report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.infra import outdir, report
from builder.infra.report_models import (
    BaseImage,
    BuildSection,
    CheckCounts,
    CheckRow,
    ChecksSection,
    FactsSection,
    GateSection,
    GpuInfo,
    Report,
    ScanSection,
)
from builder.pipeline import record


def build(image_id: str, name: str = "demo", *, base_layers: list[str] | None = None,
          revision: str = "norev", **changes: Any) -> BuildSection:
    """The ``build`` section the build stage writes, for ``image_id`` (nothing was built here)."""
    section = BuildSection(
        variant=name, spec=f"variants/{name}.yaml", spec_chain=[f"variants/{name}.yaml"],
        spec_hash="sha256:" + "5" * 64, dockerfile_hash="sha256:" + "6" * 64, context_hash="sha256:" + "7" * 64,
        input_hash="sha256:" + "8" * 64,
        base=BaseImage(ref="tfimg-standin:test", id="sha256:" + "9" * 64, digest=None, size=0),
        base_layers=base_layers or [], profile="ngc-22.07", image_id=image_id,
        image=f"tfimg/{name}:{'8' * 12}", size=0, added_bytes=0, layers=[], labels={}, builder=None,
        revision=revision, up_to_date=True, timings={}, warnings=[], log=None)
    return BuildSection.model_validate({**section.model_dump(), **changes}) if changes else section


def checks(passed: bool | None, image: str = "tfimg/demo:test") -> ChecksSection:
    """A ``checks`` section as the checks stage writes it: one check, passed or failed."""
    status = "passed" if passed else "failed"
    return ChecksSection(
        passed=passed, variant="demo", image=image,
        results=[CheckRow(check="test_user.py::test_runs_as_the_user", status=status, detail="", duration=0.1)],
        counts=CheckCounts(passed=int(bool(passed)), failed=int(not passed), error=0, skipped=0),
        gpu=GpuInfo(enabled=False, requested="auto", reason="no NVIDIA runtime in the Docker engine (--gpu auto)"))


def scan(image: str, findings: dict[str, int] | None = None) -> ScanSection:
    """A finished ``scan`` section, as :func:`builder.scan.trivy.scan_image` records it."""
    return ScanSection(status="ok", tool="trivy", trivy_version="0.58.1", image=image, image_id=None,
                       mode="archive", scanners=["vuln", "secret"], offline=False, report="trivy.json",
                       seconds=1.0, started_on="2026-11-26T10:00:00Z", finished_on="2026-11-26T10:00:01Z",
                       findings=findings if findings is not None else {"vulnerability": 1}, misconfig=False)


def gate(decision: str, reasons: list[str] | None = None) -> GateSection:
    return GateSection(decision=decision, policy="default",  # type: ignore[arg-type]
                       reasons=reasons if reasons is not None else
                       ([] if decision == "pass" else ["1 finding(s) block under policy 'default'"]))


def facts(**values: Any) -> FactsSection:
    return FactsSection.model_validate(values)


def write(directory: Path, *sections: Any) -> Report:
    """Write these sections to ``directory``/report.json, as the stages would (in a folder of tfimg's)."""
    outdir.claim(directory)
    rep = report.load(directory)
    for s in sections:
        rep = rep.with_section(s)
    return record.save(directory, rep)
