"""``tfimg watch``'s comparison and outputs, on real scans of bert (tests/data/watch/SOURCES.md): the
report it was published with under the demo DB's first edition, and ``trivy sbom`` of its SBOM under
the later edition, which adds CVE-2025-5197 (transformers < 4.53.0, disclosed 2025-08-06).

The registry side (no layer fetched, signed statements, concurrency, the DB fetched once) is in
tests/test_watch_registry.py.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from builder.scan import policy, trivy_report, watch
from builder.scan import watch_outputs as render

DATA = Path(__file__).parent / "data" / "watch"
ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 12, 4)
REF = "127.0.0.1:5000/h21-smoke/bert@sha256:e2341eade8a07772e9e731aa1f21a3b8603726b4ddd442b51fe772613de2552f"


def _report(name: str) -> trivy_report.Report:
    return trivy_report.from_data(json.loads(gzip.decompress((DATA / name).read_bytes())), source=name)


PUBLISHED = _report("bert-published.trivy.json.gz")
LATER = _report("bert-later.trivy.json.gz")
BASE = json.loads((DATA / "standin-base-layers.json").read_text())
DEMO = policy.load(ROOT / "policies/demo-bert-waivers.yaml")


def _published(base: list[str] | None = None) -> watch.Published:
    return watch.Published(reference=REF, variant="bert", tags=["bert-latest"], decision="pass",
                           base_layers=BASE if base is None else base, scanners=["license", "secret", "vuln"],
                           report=PUBLISHED)


def _assess(pol: policy.Policy = DEMO, *, today: dt.date = TODAY, warn_days: int = 30,
            base: list[str] | None = None) -> watch.DigestWatch:
    return watch.assess(_published(base), LATER, pol, today=today, warn_days=warn_days)


def _policy(tmp_path: Path, text: str) -> policy.Policy:
    (tmp_path / "p.yaml").write_text(text)
    return policy.load(tmp_path / "p.yaml")


def test_the_later_advisory_is_new_since_publishing_and_the_rest_known() -> None:
    d = _assess()
    assert [(f.id, f.package, f.installed, f.severity, f.fixed) for f in d.new] == [
        ("CVE-2025-5197", "transformers", "4.21.3", "MEDIUM", "4.53.0")]
    known = {(f.id, f.package) for f in d.findings if f.since == "known"}
    published = {(f.id, f.package) for f in PUBLISHED.findings() if f.kind == "vulnerability"}
    assert known == published and ("CVE-2023-6730", "transformers") in known
    assert d.resolved == []                           # nothing the first edition had is gone
    assert d.status == "pass" and not d.alert         # a MEDIUM with a fix does not block new findings by default


def test_inherited_from_the_base_versus_introduced_by_the_variant() -> None:
    origin = {(f.id, f.package): f.origin for f in _assess().findings}
    assert origin[("CVE-2025-5197", "transformers")] == "introduced"      # bert's own pip layer
    assert origin[("CVE-2023-6730", "transformers")] == "introduced"
    assert origin[("CVE-2024-5535", "libssl1.1")] == "inherited"          # the stand-in's Debian layer
    assert origin[("CVE-2023-25668", "tensorflow")] == "inherited"        # the stand-in's pip layer
    # without the base's layers nothing can be called inherited, as the gate decides
    assert {f.origin for f in _assess(base=[]).findings} == {"introduced"}


def test_the_decision_is_the_gates_under_the_current_policy(tmp_path: Path) -> None:
    default = _assess(policy.load(None))
    assert default.status == "block" and default.alert                    # the known CRITICAL, unwaived
    assert [f.id for f in default.findings if f.blocking] == ["CVE-2023-6730"]
    stricter = _policy(tmp_path, "vulnerabilities:\n  new: {fixed: MEDIUM}\nwaivers:\n"
                       + "\n".join("  " + line for line in (ROOT / "policies/demo-bert-waivers.yaml")
                                   .read_text().split("waivers:\n", 1)[1].splitlines() if line.strip()))
    d = _assess(stricter)
    assert d.status == "block" and [f.id for f in d.findings if f.blocking] == ["CVE-2025-5197"]
    assert "1 finding(s) block" in d.reasons[0]
    assert next(f for f in d.findings if f.id == "CVE-2023-6730").waived_by == "CVE-2023-6730"


def test_the_published_reports_other_findings_still_count() -> None:
    d = _assess()
    assert d.gate is not None
    licenses = sum(sum(row.values()) for row in d.gate.counts["license"].values())
    published = len({f.key for f in PUBLISHED.findings() if f.kind == "license"})   # the gate counts each once
    assert licenses == published > 0                 # the SBOM scan has no licenses; the published report does


def test_waivers_that_expire_soon_or_expired_name_their_owner(tmp_path: Path) -> None:
    assert _assess(warn_days=30).waivers == []                                # 117 days left
    soon = _assess(warn_days=180).waivers
    assert [(w.id, w.owner, w.state, w.days_left) for w in soon] == [
        ("CVE-2023-6730", "ml-platform@example.com", "expiring", 117)]
    gone = _assess(today=dt.date(2027, 4, 2))
    assert [(w.id, w.state, w.days_left) for w in gone.waivers] == [("CVE-2023-6730", "expired", -2)]
    assert gone.status == "block" and any("expired on 2027-03-31 (owner: ml-platform@example.com)" in r
                                          for r in gone.reasons)
    other = _policy(tmp_path, "waivers:\n  - {id: CVE-2099-0001, reason: not in bert, owner: x@y, expires: 2026-12-05}\n")
    assert _assess(other, warn_days=30).waivers == []     # a waiver that covers none of its findings


def test_outputs_say_what_is_new_and_who_renews(tmp_path: Path) -> None:
    ok, bad = _assess(warn_days=180), watch.assess(_published(), LATER, policy.load(None), today=TODAY, warn_days=180)
    broken = watch.failed(watch.Published(reference=REF.replace("bert@", "dev@")), "no SBOM is attached to it")
    report = watch.WatchReport(namespace="127.0.0.1:5000/h21-smoke", watched_at="2026-12-04T15:21:06Z",
                               policy="demo", warn_days=180, digests=[ok, bad, broken])
    assert report.exit_code == 1 and [d.status for d in report.alerts] == ["block", "error"]
    md = render.markdown(report)
    assert "| CVE-2025-5197 | MEDIUM | `transformers@4.21.3` | introduced | 4.53.0 |" in md
    assert "ml-platform@example.com" in md and "expiring in 117 days" in md and "no SBOM is attached" in md
    assert md.index("now BLOCKS") < md.index("still passes")          # alerts first
    sarif = render.sarif(report)
    assert sarif["version"] == "2.1.0" and len(sarif["runs"]) == 3
    since = {r["ruleId"]: r["properties"]["since"] for r in sarif["runs"][0]["results"]}
    assert since["vulnerability/CVE-2025-5197"] == "new" and since["vulnerability/CVE-2023-6730"] == "known"
    back = json.loads(report.model_dump_json())
    assert back["digests"][0]["findings"][0]["id"] == "CVE-2025-5197" and "gate" not in back["digests"][0]
    assert watch.WatchReport.model_validate(back).exit_code == 1
    assert watch.WatchReport(namespace="n", watched_at="t", policy="p", warn_days=1, digests=[ok]).exit_code == 0


@pytest.mark.parametrize("findings", [0, 1, 500])
def test_markdown_of_many_new_findings_is_bounded(findings: int) -> None:
    d = _assess()
    many = [d.findings[0].model_copy(update={"id": f"CVE-2099-{i:05d}"}) for i in range(findings)]
    report = watch.WatchReport(namespace="n", watched_at="t", policy="p", warn_days=1,
                               digests=[d.model_copy(update={"findings": many})])
    md = render.markdown(report)
    assert md.count("| CVE-2099-") == min(findings, render.MD_ROWS)
    assert (f"{findings - render.MD_ROWS} more" in md) == (findings > render.MD_ROWS)


def test_a_watch_statement_is_told_by_its_signed_content() -> None:
    """What tfimg watch attaches is a watch by its signed predicate (invocation.uri), not by an annotation;
    the vuln predicate tfimg publish attaches is not one."""
    from builder.infra.report_models import Report
    from builder.pipeline import watching
    from builder.publish import evidence, statements

    made = watching.statement(_assess(), {"Results": []}, None, "0.76.0", None, DEMO, "HOST/tfimg/trivy-db:2-later")
    assert evidence.is_watch(made) and made["invocation"]["parameters"]["new"] == ["CVE-2025-5197"]
    assert not evidence.is_watch(statements.vuln_predicate(Report(), {"Results": []}))
