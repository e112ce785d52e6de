"""Large reports stay fast: the gate and every output it writes grow linearly with the findings.

The report is generated from real Trivy rows (tests/bigreport.py). Growth is asserted, not wall
time: 60,000 findings against 6,000 cost about 10x the CPU time and 10x the bytes (the SARIF
writer used to look each rule up in a list: 100x, and 40 s). The time target itself (under 5 s)
is a `make bench` row.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path

import pytest
from rich.console import Console

from builder.scan import gate, policy, trivy_report
from builder.scan import gate_outputs as gate_render
from builder.scan import stage as scan_stage
from tests import bigreport

pytestmark = pytest.mark.slow
TODAY = __import__("datetime").date(2026, 11, 27)


def gate_and_write(report: trivy_report.Report, out: Path) -> gate.GateResult:
    """What `tfimg gate` does after reading the report: evaluate, write every file, print the table."""
    result = gate.evaluate(report, policy.load(None), report.diff_ids[:1], TODAY, False,
                           scanners=["vuln", "secret", "license"], scanners_from="this scan")
    scan_stage.write_gate(out, result)
    Console(file=io.StringIO(), width=160).print(gate_render.table(result))
    return result


def cost(n: int) -> tuple[float, int, gate.GateResult, Path]:
    """(CPU seconds, the best of two runs; bytes written; the result; the folder)."""
    report = trivy_report.from_data(bigreport.generate(n))
    assert len(report.findings()) == n
    best, out = float("inf"), Path(tempfile.mkdtemp(prefix="tfimg-scale-"))
    for _ in range(2):
        start = time.process_time()
        result = gate_and_write(report, out)
        best = min(best, time.process_time() - start)
    size = sum(p.stat().st_size for p in out.iterdir() if p.name.startswith("gate."))
    return best, size, result, out


def test_gate_and_its_outputs_grow_linearly() -> None:
    small_t, small_b, _, _ = cost(6_000)
    big_t, big_b, result, out = cost(60_000)
    assert big_t / small_t < 25, f"60k findings cost {big_t:.2f}s, 6k {small_t:.2f}s: not linear"
    assert big_b / small_b < 12, f"60k findings wrote {big_b} bytes, 6k {small_b}: not linear"
    sarif = json.loads((out / "gate.sarif").read_text())["runs"][0]
    rules = sarif["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules)                      # each rule once
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in sarif["results"])
    assert len(sarif["results"]) == 60_000 == len(json.loads((out / "gate.json").read_text())["findings"])
    md = (out / "gate.md").read_text()
    assert len(md) < 200_000 and f"of {len(result.blocking)} blocking findings" in md


def test_gate_json_holds_the_whole_result() -> None:
    """gate.json (written compact, by pydantic-core) reads back as the same result: every finding,
    blocking and waived one, with its reason."""
    report = trivy_report.from_data(bigreport.generate(500))
    waivers = Path(tempfile.mkdtemp()) / "p.yaml"
    first = report.findings()[0]
    waivers.write_text(f"waivers:\n  - {{id: {first.id}, reason: accepted risk, owner: ops@example.com, "
                       "expires: 2099-01-01}\n")
    result = gate.evaluate(report, policy.load(waivers), None, TODAY, False,
                           scanners=["vuln"], scanners_from="scan record")
    assert result.waived and result.blocking
    out = Path(tempfile.mkdtemp())
    scan_stage.write_gate(out, result)
    assert gate.GateResult.model_validate_json((out / "gate.json").read_text()) == result
    assert json.loads((out / "gate.sarif").read_text())["runs"][0]["properties"]["decision"] == "block"


def test_many_waivers_cost_no_more_than_none() -> None:
    """Each finding is matched against the waivers naming one of its ids, not against every waiver."""
    report = trivy_report.from_data(bigreport.generate(6_000))
    vulns = [f for f in report.findings() if f.kind == "vulnerability"][::2]
    waivers = Path(tempfile.mkdtemp()) / "many.yaml"
    waivers.write_text("waivers:\n" + "".join(
        f"  - {{id: {f.id}, package: {f.package}, reason: accepted risk, owner: ops@example.com, "
        f"expires: 2099-01-01}}\n" for f in vulns))
    many = policy.load(waivers)
    timings = {}
    for name, pol in (("none", policy.load(None)), ("many", many)):
        best = float("inf")
        for _ in range(2):
            start = time.process_time()
            result = gate.evaluate(report, pol, None, TODAY, False, scanners=["vuln"], scanners_from="this scan")
            best = min(best, time.process_time() - start)
        timings[name] = best
    assert len(result.waived) == len(vulns) and not result.stale_waivers
    assert timings["many"] < 5 * timings["none"] + 0.5, timings   # every finding against every waiver: ~100x
