"""The pure gate on real Trivy reports: block, pass, waive, expire, go stale; inherited vs new."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from builder.scan import gate, policy
from builder.scan import gate_outputs as gate_render
from builder.scan import trivy_report as scanreport

DATA = Path(__file__).parent / "data" / "trivy"
TODAY = dt.date(2026, 11, 27)
# what tfimg's own scan records (report.json's scan section): the report was made with these scanners
SCANNED = {"scanners": ("vuln", "secret", "license"), "scanners_from": "this scan"}


def rep(name: str) -> scanreport.Report:
    return scanreport.load(DATA / name)


def pol(tmp_path: Path, text: str) -> policy.Policy:
    p = tmp_path / "policy.yaml"
    p.write_text(textwrap.dedent(text))
    return policy.load(p)


def blocking_ids(result: gate.GateResult) -> list[str]:
    return [b.finding.id for b in result.blocking]


# --------------------------------------------------------------------------- new vs inherited

def test_default_blocks_new_fixable_critical_and_high_when_base_unknown():
    result = gate.evaluate(rep("fluentd-gems.json.golden"), policy.load(None), None, TODAY, False, **SCANNED)
    assert result.decision == "block" and not result.base_layers_known
    assert blocking_ids(result) == ["CVE-2019-18224", "CVE-2020-8165"]
    assert all(b.origin == "new" for b in result.blocking)


def test_base_layers_split_inherited_from_new():
    report = rep("fluentd-gems.json.golden")
    base = report.diff_ids[:2]          # libidn2-0 lives in layer 0, activesupport in layer 3
    result = gate.evaluate(report, policy.load(None), base, TODAY, False, **SCANNED)
    assert result.base_layers_known
    assert blocking_ids(result) == ["CVE-2020-8165"]
    vulns = result.counts["vulnerability"]
    assert vulns["inherited"]["CRITICAL"] == 1 and vulns["new"]["HIGH"] == 1
    assert sum(vulns["new"].values()) + sum(vulns["inherited"].values()) == 2


def test_only_inherited_findings_pass_the_default_but_not_strict():
    report = rep("debian-buster.json.golden")
    base = report.diff_ids
    assert gate.evaluate(report, policy.load(None), base, TODAY, False, **SCANNED).decision == "pass"
    strict = gate.evaluate(report, policy.load("strict"), base, TODAY, False, **SCANNED)
    assert strict.decision == "block"
    assert blocking_ids(strict) == ["CVE-2019-18224"] and strict.blocking[0].origin == "inherited"
    assert any("pinned by digest" in r for r in strict.reasons)
    pinned = gate.evaluate(report, policy.load("strict"), base, TODAY, True, **SCANNED)
    assert not any("digest" in r for r in pinned.reasons) and pinned.decision == "block"


def test_unfixed_low_does_not_block_but_is_counted():
    result = gate.evaluate(rep("debian-buster.json.golden"), policy.load(None), None, TODAY, False, **SCANNED)
    assert blocking_ids(result) == ["CVE-2019-18224"]
    assert result.counts["vulnerability"]["new"]["LOW"] == 1


def test_allowances_are_counts(tmp_path):
    report = rep("alpine-39.json.golden")   # 4 MEDIUM, 2 CRITICAL, all fixed
    four = pol(tmp_path, "vulnerabilities: {new: {fixed: {MEDIUM: 4}}}")
    assert gate.evaluate(report, four, None, TODAY, False, **SCANNED).decision == "pass"
    three = pol(tmp_path, "vulnerabilities: {new: {fixed: {MEDIUM: 3}}}")
    result = gate.evaluate(report, three, None, TODAY, False, **SCANNED)
    assert len(result.blocking) == 4 and "4 found, policy allows 3" in result.blocking[0].reason


def test_nothing_found_passes():
    result = gate.evaluate(rep("sl-micro-rancher5.4.json.golden"), policy.load("strict"), None, TODAY, True, **SCANNED)
    assert result.decision == "pass" and result.blocking == []


def test_a_report_without_a_vulnerability_scan_is_unscanned_never_pass():
    # no package result at all (every file skipped): nothing shows vulnerabilities were looked up
    result = gate.evaluate(rep("alpine-39-skip.json.golden"), policy.load("strict"), None, TODAY, True, **SCANNED)
    assert result.decision == "unscanned" and "not scanned for vulnerabilities" in result.reasons[-1]
    # a secret-only report (trivy image --scanners secret) of a clean image
    secret_only = scanreport.from_data({"SchemaVersion": 2, "Results": [
        {"Target": "/app/x", "Class": "secret", "Secrets": []}]})
    assert gate.evaluate(secret_only, policy.load(None), None, TODAY, True, **SCANNED).decision == "unscanned"


def test_older_report_formats_give_the_same_decision():
    p = policy.load(None)
    decisions = {n: (r.decision, tuple(blocking_ids(r))) for n in
                 ("debian-buster.json.golden", "older/v0.43.0/debian-buster.json.golden",
                  "older/v0.58.0/debian-buster.json.golden")
                 for r in [gate.evaluate(rep(n), p, None, TODAY, False, **SCANNED)]}
    assert set(decisions.values()) == {("block", ("CVE-2019-18224",))}


# --------------------------------------------------------------------------- waivers

WAIVERS = """\
    waivers:
      - {id: CVE-2019-18224, package: libidn2-0, reason: not reachable, owner: alice, expires: 2026-12-31}
      - {id: CVE-2020-8165, purl: "pkg:gem/activesupport", reason: tooling only, owner: bob, expires: 2026-11-27}
      - {id: CVE-2000-0001, reason: long gone, owner: carol, expires: 2027-06-01}
    """


def test_waivers_pass_and_stale_is_reported(tmp_path):
    result = gate.evaluate(rep("fluentd-gems.json.golden"), pol(tmp_path, WAIVERS), None, TODAY, False, **SCANNED)
    assert result.decision == "pass"
    assert sorted((w.waiver, w.owner) for w in result.waived) == [("CVE-2019-18224", "alice"),
                                                                   ("CVE-2020-8165", "bob")]
    assert [w.id for w in result.stale_waivers] == ["CVE-2000-0001"]
    assert result.expired_waivers == []
    # report.json's gate section (and so the published evidence) names each waiver that waived something,
    # with its owner and expiry: the catalog shows them (issue 22)
    section = result.summary().model_dump(mode="json")
    assert [(w["id"], w["owner"], w["expires"], w["findings"]) for w in section["waivers"]] == [
        ("CVE-2019-18224", "alice", "2026-12-31", 1), ("CVE-2020-8165", "bob", "2026-11-27", 1)]
    assert section["waivers"][0]["package"] == "libidn2-0" and section["waivers"][1]["purl"] == "pkg:gem/activesupport"


def test_expired_waiver_blocks_loudly_naming_its_owner(tmp_path):
    later = TODAY + dt.timedelta(days=1)      # bob's waiver expired yesterday (expiry day is inclusive)
    result = gate.evaluate(rep("fluentd-gems.json.golden"), pol(tmp_path, WAIVERS), None, later, False, **SCANNED)
    assert result.decision == "block"
    assert [w.owner for w in result.expired_waivers] == ["bob"]
    assert blocking_ids(result) == ["CVE-2020-8165"]
    assert "owner: bob" in result.blocking[0].reason
    assert any("waiver CVE-2020-8165 expired on 2026-11-27 (owner: bob)" in r for r in result.reasons)


def test_expired_waiver_blocks_even_when_it_matches_nothing(tmp_path):
    p = pol(tmp_path, """\
        waivers:
          - {id: CVE-1999-0001, reason: old, owner: dave, expires: 2020-01-01}
        """)
    result = gate.evaluate(rep("alpine-39-skip.json.golden"), p, None, TODAY, False, **SCANNED)
    assert result.decision == "block" and "dave" in result.reasons[0]
    assert result.stale_waivers == []


def test_waiver_for_another_package_does_not_match(tmp_path):
    p = pol(tmp_path, """\
        waivers:
          - {id: CVE-2019-18224, package: bash, reason: wrong package, owner: erin, expires: 2027-01-01}
          - {id: CVE-2020-8165, purl: "pkg:gem/activesupport@9.9.9", reason: wrong version, owner: erin, expires: 2027-01-01}
        """)
    result = gate.evaluate(rep("fluentd-gems.json.golden"), p, None, TODAY, False, **SCANNED)
    assert blocking_ids(result) == ["CVE-2019-18224", "CVE-2020-8165"]
    assert len(result.stale_waivers) == 2


def test_misconfiguration_ids_match_across_trivy_versions(tmp_path):
    p = pol(tmp_path, """\
        misconfigurations: {block: HIGH}
        waivers:
          - {id: DS002, reason: user set at run time, owner: frank, expires: 2027-01-01}
        """)
    for name in ("dockerfile.json.golden", "older/v0.68.0/dockerfile.json.golden"):
        assert gate.evaluate(rep(name), policy.load("strict"), None, TODAY, True, **SCANNED).decision == "block"
        result = gate.evaluate(rep(name), p, None, TODAY, False, **SCANNED)
        # a Dockerfile-only report never passes: no vulnerability scan (unscanned), but nothing blocks
        assert result.decision == "unscanned" and not result.blocking
        assert [w.waiver for w in result.waived] == ["DS002"]


def test_secrets_always_block_and_need_a_path_to_be_waived(tmp_path):
    report = rep("secrets.json.golden")
    lax = pol(tmp_path, "vulnerabilities: {new: {fixed: none}}\n")
    assert blocking_ids(gate.evaluate(report, lax, None, TODAY, False, **SCANNED)) == ["aws-access-key-id", "mysecret"]
    no_path = pol(tmp_path, """\
        waivers:
          - {id: mysecret, reason: test fixture, owner: gina, expires: 2027-01-01}
        """)
    assert len(gate.evaluate(report, no_path, None, TODAY, False, **SCANNED).blocking) == 2
    with_path = pol(tmp_path, """\
        waivers:
          - {id: mysecret, path: "deploy.*", reason: test fixture, owner: gina, expires: 2027-01-01}
        """)
    assert blocking_ids(gate.evaluate(report, with_path, None, TODAY, False, **SCANNED)) == ["aws-access-key-id"]


def test_license_categories(tmp_path):
    report = rep("license-cyclonedx.json.golden")
    # license-only report: nothing blocks, but without a vulnerability scan it is unscanned, never pass
    assert gate.evaluate(report, policy.load(None), None, TODAY, False, **SCANNED).decision == "unscanned"
    p = pol(tmp_path, "licenses: {block_categories: [reciprocal]}\n")
    assert blocking_ids(gate.evaluate(report, p, None, TODAY, False, **SCANNED)) == ["EPL-1.0"]


# --------------------------------------------------------------------------- purity and special results

def test_evaluate_is_pure_and_deterministic():
    report = rep("fluentd-gems.json.golden")
    before = report.model_dump()
    a = gate.evaluate(report, policy.load(None), report.diff_ids[:1], TODAY, False, **SCANNED)
    b = gate.evaluate(report, policy.load(None), report.diff_ids[:1], TODAY, False, **SCANNED)
    assert a == b and report.model_dump() == before
    with pytest.raises(ValidationError, match="frozen"):
        a.decision = "pass"


def test_unscanned_and_failed_closed():
    p = policy.load(None)
    u = gate.unscanned(p, "trivy not found")
    assert u.decision == "unscanned" and u.label == "UNSCANNED" and u.summary().decision == "unscanned"
    f = gate.failed_closed(p, "trivy not found")
    assert f.decision == "block" and "requires" in f.reasons[0]


# --------------------------------------------------------------------------- renderers

def test_sarif_2_1_0(tmp_path):
    result = gate.evaluate(rep("fluentd-gems.json.golden"), pol(tmp_path, WAIVERS.replace("alice", "al|ce")),
                           None, TODAY, False, **SCANNED)
    doc = json.loads(json.dumps(gate_render.sarif(result)))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len(run["results"]) == 2
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
        assert res["suppressions"][0]["kind"] == "external"
    assert all(float(r["properties"]["security-severity"]) > 0 for r in rules)


def test_sarif_levels_follow_blocking():
    result = gate.evaluate(rep("debian-buster.json.golden"), policy.load(None), None, TODAY, False, **SCANNED)
    levels = {r["ruleId"]: r["level"] for r in gate_render.sarif(result)["runs"][0]["results"]}
    assert levels == {"vulnerability/CVE-2019-18224": "error", "vulnerability/CVE-2019-18276": "note"}


def test_markdown_and_table_say_what_blocks(tmp_path):
    later = TODAY + dt.timedelta(days=40)
    result = gate.evaluate(rep("fluentd-gems.json.golden"), pol(tmp_path, WAIVERS.replace("tooling only", "a|b")),
                           None, later, False, **SCANNED)
    md = gate_render.markdown(result)
    assert md.startswith("## ❌ Vulnerability gate: BLOCK")
    assert "| CRITICAL | CVE-2019-18224 |" in md and "### Expired waivers (blocking)" in md
    assert "alice" in md and "a\\|b" not in md.split("### What blocks")[0]
    from rich.console import Console
    console = Console(record=True, width=200)
    console.print(gate_render.table(result))
    text = console.export_text()
    assert "CVE-2020-8165" in text and "BLOCK" in text


def test_no_secret_material_in_any_output():
    result = gate.evaluate(rep("secrets.json.golden"), policy.load(None), None, TODAY, False, **SCANNED)
    outputs = [json.dumps(result.model_dump(mode="json")), json.dumps(gate_render.sarif(result)),
               gate_render.markdown(result), json.dumps(result.summary().model_dump(mode="json"))]
    for text in outputs:
        assert "ghp_" not in text and "AWS_ACCESS_KEY_ID" not in text and "********" not in text
