"""Parsing real Trivy reports (tests/data/trivy/, see SOURCES.md there) of every shape."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import TfimgError
from builder.scan import trivy_report as scanreport

DATA = Path(__file__).parent / "data" / "trivy"

# What SOURCES.md says each report holds: (kind, severity) -> count.
EXPECTED = {
    "debian-buster.json.golden": {("vulnerability", "LOW"): 1, ("vulnerability", "CRITICAL"): 1},
    "debian-buster-ignore-unfixed.json.golden": {("vulnerability", "CRITICAL"): 1},
    "ubuntu-1804.json.golden": {("vulnerability", "LOW"): 1, ("vulnerability", "MEDIUM"): 4},
    "alpine-39.json.golden": {("vulnerability", "MEDIUM"): 4, ("vulnerability", "CRITICAL"): 2},
    "alpine-39-high-critical.json.golden": {("vulnerability", "CRITICAL"): 2},
    "alpine-310.json.golden": {("vulnerability", "MEDIUM"): 4},
    "pip.json.golden": {("vulnerability", "HIGH"): 1, ("vulnerability", "MEDIUM"): 1},
    "fluentd-gems.json.golden": {("vulnerability", "CRITICAL"): 1, ("vulnerability", "HIGH"): 1},
    "sl-micro-rancher5.4.json.golden": {},
    "alpine-39-skip.json.golden": {},
    "dockerfile.json.golden": {("misconfiguration", "HIGH"): 1},
    "secrets.json.golden": {("secret", "CRITICAL"): 1, ("secret", "HIGH"): 1},
    "license-cyclonedx.json.golden": {("license", "MEDIUM"): 1, ("license", "LOW"): 2},
    "older/v0.43.0/debian-buster.json.golden": {("vulnerability", "LOW"): 1, ("vulnerability", "CRITICAL"): 1},
    "older/v0.58.0/debian-buster.json.golden": {("vulnerability", "LOW"): 1, ("vulnerability", "CRITICAL"): 1},
    "older/v0.58.0/pip.json.golden": {("vulnerability", "HIGH"): 1, ("vulnerability", "MEDIUM"): 1},
    "older/v0.68.0/dockerfile.json.golden": {("misconfiguration", "HIGH"): 1},
}


def test_every_report_fixture_is_covered():
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*.json.golden")} - {"pom-cyclonedx.json.golden"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_match_what_the_report_holds(name):
    report = scanreport.load(DATA / name)
    got = Counter((f.kind, f.severity) for f in report.findings())
    assert dict(got) == EXPECTED[name]
    assert report.SchemaVersion == 2


def test_missing_results_key_gives_no_findings():
    report = scanreport.load(DATA / "alpine-39-skip.json.golden")
    assert "Results" not in json.loads((DATA / "alpine-39-skip.json.golden").read_text())
    assert report.Results == [] and report.findings() == []
    assert report.Metadata.OS.Family == "none"


def test_result_without_vulnerabilities_key():
    report = scanreport.load(DATA / "sl-micro-rancher5.4.json.golden")
    assert len(report.Results) == 1 and report.Results[0].Vulnerabilities == []


def test_missing_pkgid_and_comma_fixed_version():
    report = scanreport.load(DATA / "fluentd-gems.json.golden")
    gem = next(f for f in report.findings() if f.package == "activesupport")
    assert gem.pkg_id is None and gem.path.endswith("activesupport-6.0.2.1.gemspec")
    assert gem.fixed == "6.0.3.1, 5.2.4.3" and gem.has_fix
    assert gem.purl == "pkg:gem/activesupport@6.0.2.1"
    assert gem.layer == report.diff_ids[3]


def test_unfixed_vulnerability_has_no_fix():
    bash = next(f for f in scanreport.load(DATA / "debian-buster.json.golden").findings() if f.package == "bash")
    assert bash.fixed is None and bash.status == "affected" and not bash.has_fix


def test_v043_report_without_status_or_purl():
    report = scanreport.load(DATA / "older/v0.43.0/debian-buster.json.golden")
    vulns = report.Results[0].Vulnerabilities
    assert all(v.Status is None and v.PkgIdentifier is None for v in vulns)
    fixed = {f.id: f.has_fix for f in report.findings()}
    assert fixed == {"CVE-2019-18224": True, "CVE-2019-18276": False}
    assert report.Trivy is None and report.CreatedAt is None


def test_zero_valued_metadata_and_empty_layer():
    report = scanreport.load(DATA / "older/v0.58.0/pip.json.golden")
    assert report.Metadata.ImageConfig["created"] == "0001-01-01T00:00:00Z"
    assert report.diff_ids == []
    assert all(f.layer is None for f in report.findings())
    # unknown keys (Packages) are kept, never fatal
    assert len(report.Results[0].model_extra["Packages"]) == 7


@pytest.mark.parametrize("name,aliases", [
    ("dockerfile.json.golden", ()),
    ("older/v0.68.0/dockerfile.json.golden", ("AVD-DS-0002", "DS002")),
])
def test_old_and_new_check_ids_are_one(name, aliases):
    [f] = scanreport.load(DATA / name).findings()
    assert f.id == "DS-0002" and f.aliases == aliases and f.kind == "misconfiguration"


@pytest.mark.parametrize("raw,canonical", [("DS002", "DS-0002"), ("AVD-DS-0002", "DS-0002"),
                                           ("ds-0002", "DS-0002"), ("AVD-AWS-0104", "AWS-0104"),
                                           ("custom-rule", "CUSTOM-RULE")])
def test_check_id(raw, canonical):
    assert scanreport.check_id(raw) == canonical


def test_secret_findings_carry_no_secret_material():
    text = (DATA / "secrets.json.golden").read_text()
    assert "ghp_0123456789" in text  # the fixture really has a token in a context line
    findings = scanreport.load(DATA / "secrets.json.golden").findings()
    dumped = json.dumps([f.model_dump() for f in findings])
    assert "ghp_" not in dumped and "AWS_ACCESS_KEY_ID" not in dumped
    assert [(f.id, f.path, f.line) for f in findings] == [("aws-access-key-id", "deploy.sh", 3),
                                                          ("mysecret", "deploy.sh", 7)]


def test_redact_removes_code_lines_of_secrets_only():
    data = json.loads((DATA / "secrets.json.golden").read_text())
    red = scanreport.redact(data)
    assert "ghp_" not in json.dumps(red)
    assert red["Results"][0]["Secrets"][0]["RuleID"] == "aws-access-key-id"
    assert "ghp_" in json.dumps(data)  # the input is not changed
    misconf = json.loads((DATA / "dockerfile.json.golden").read_text())
    assert scanreport.redact(misconf) == misconf


def test_licenses():
    findings = scanreport.load(DATA / "license-cyclonedx.json.golden").findings()
    assert {(f.id, f.category) for f in findings} == {("EPL-1.0", "reciprocal"), ("BSD-3-Clause", "notice"),
                                                      ("MIT License", "notice")}


def test_unknown_fields_and_null_lists_are_tolerated():
    data = json.loads((DATA / "debian-buster.json.golden").read_text())
    data["FutureTopLevel"] = {"x": 1}
    data["Results"][0]["Vulnerabilities"][0]["FutureKey"] = [1, 2]
    data["Results"].append({"Target": "x", "Vulnerabilities": None, "Secrets": None})
    report = scanreport.from_data(data)
    assert report.model_extra["FutureTopLevel"] == {"x": 1}
    assert [f.severity for f in report.findings()] == ["LOW", "CRITICAL"]


# Every kind of finding, in a report Trivy wrote, with its severity replaced by anything that is not
# one of Trivy's five: never read as UNKNOWN (which a policy may let pass), always exit 2 naming it.
FINDINGS = [("debian-buster.json.golden", "Vulnerabilities", "VulnerabilityID"),
            ("secrets.json.golden", "Secrets", "RuleID"),
            ("dockerfile.json.golden", "Misconfigurations", "ID"),
            ("license-cyclonedx.json.golden", "Licenses", "Name")]
NOT_A_SEVERITY = st.one_of(
    st.text(max_size=40).filter(lambda s: s not in scanreport.SEVERITIES),
    st.sampled_from(["high", "Critical", "CRITICAL ", " LOW", "NONE", "", "INFO", "UNKNOWN\n", "HIGH\x00"]),
    st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(),
    st.lists(st.sampled_from(scanreport.SEVERITIES), max_size=2), st.just({"Severity": "HIGH"}))


@settings(max_examples=150, deadline=None)
@given(which=st.sampled_from(FINDINGS), severity=NOT_A_SEVERITY, drop=st.booleans(), pick=st.integers(0, 10))
def test_a_severity_trivy_does_not_write_is_refused_naming_the_finding(which, severity, drop, pick):
    name, key, ident = which
    data = json.loads((DATA / name).read_text())
    result = next(r for r in data["Results"] if r.get(key))
    item = result[key][pick % len(result[key])]
    if drop:
        del item["Severity"]
    else:
        item["Severity"] = severity
    with pytest.raises(TfimgError) as exc:
        scanreport.from_data(data, source="trivy.json")
    assert exc.value.exit_code == 2
    message = exc.value.message
    assert message.startswith("trivy.json: ") and key in message and "\n" not in message
    assert item[ident][:60] in message and "UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL" in message


def test_not_affected_is_not_a_finding():
    data = json.loads((DATA / "debian-buster.json.golden").read_text())
    data["Results"][0]["Vulnerabilities"][0]["Status"] = "not_affected"
    assert [f.id for f in scanreport.from_data(data).findings()] == ["CVE-2019-18224"]


@pytest.mark.parametrize("text,needle", [
    ("not json", "not JSON"),
    ("[]", "bare list"),
    ('{"Results": []}', "no 'SchemaVersion'"),
    ('{"SchemaVersion": 3}', "SchemaVersion 3"),
    ('{"SchemaVersion": 2, "Results": "oops"}', "not a valid Trivy report"),
])
def test_not_a_report(text, needle):
    with pytest.raises(TfimgError, match=needle) as exc:
        scanreport.parse(text, source="x.json")
    assert exc.value.exit_code == 2


def test_cyclonedx_is_not_a_trivy_report():
    with pytest.raises(TfimgError, match="CycloneDX"):
        scanreport.load(DATA / "pom-cyclonedx.json.golden")


def test_missing_file():
    with pytest.raises(TfimgError, match="not found"):
        scanreport.load(DATA / "nope.json")
