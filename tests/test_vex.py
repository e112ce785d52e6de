"""Waivers as OpenVEX v0.2.0 (``tfimg vex``, ``tfimg publish``) and OpenVEX as waivers (``tfimg gate --vex``,
``tfimg watch --vex``), on the real scan bert is published with (tests/data/watch/SOURCES.md).

Every document tfimg writes validates against the OpenVEX JSON schema (tests/data/openvex/SOURCES.md);
any document given to ``--vex`` is read or refused as bad input (exit 2), never a crash (hypothesis).
That the real Trivy honours the document (``trivy sbom --vex``) is in tests/test_watch_registry.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from builder import cli
from builder.errors import TfimgError
from builder.pipeline import watching
from builder.scan import gate, policy, trivy_report, vex

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
SCHEMA = Draft202012Validator(json.loads((DATA / "openvex/openvex_json_schema.json").read_text()),
                              format_checker=FormatChecker())
TODAY = dt.date(2026, 12, 4)
NOW = dt.datetime(2026, 12, 4, 15, 0, 0, tzinfo=dt.timezone.utc)
REPO, DIGEST = "127.0.0.1:5000/h21-smoke/bert", "sha256:" + "e2" * 32
BASE = json.loads((DATA / "watch/standin-base-layers.json").read_text())
RAW = json.loads(gzip.decompress((DATA / "watch/bert-published.trivy.json.gz").read_bytes()))
REPORT = trivy_report.from_data(RAW, source="bert")
SCANNED = {"scanners": ["license", "secret", "vuln"], "scanners_from": "scan record"}


def _policy(tmp_path: Path, waiver: str) -> policy.Policy:
    (tmp_path / "p.yaml").write_text("waivers:\n" + waiver)
    return policy.load(tmp_path / "p.yaml")


def _document(pol: policy.Policy) -> vex.Document | None:
    result = gate.evaluate(REPORT, pol, BASE, TODAY, False, **SCANNED)
    return vex.document(result.waived, pol.waivers, repository=REPO, digest=DIGEST, author="ml-platform",
                        now=NOW, tooling="tfimg test")


def test_a_justified_waiver_is_not_affected_for_the_image_and_the_package() -> None:
    doc = _document(policy.load(ROOT / "policies/demo-bert-waivers.yaml"))
    assert doc is not None
    data = doc.to_json()
    SCHEMA.validate(data)
    (s,) = data["statements"]
    assert s["vulnerability"] == {"name": "CVE-2023-6730", "aliases": ["GHSA-3863-2447-669p"]}
    assert s["status"] == "not_affected" and s["justification"] == "vulnerable_code_cannot_be_controlled_by_adversary"
    assert s["impact_statement"].startswith("Demo only.")
    assert s["status_notes"] == "tfimg waiver CVE-2023-6730: owner ml-platform@example.com, expires 2027-03-31"
    image, package = s["products"]
    assert image["@id"] == f"pkg:oci/bert@{DIGEST}?repository_url={REPO}"
    assert [c["@id"] for c in image["subcomponents"]] == ["pkg:pypi/transformers@4.21.3"] == [package["@id"]]
    assert data["timestamp"] == "2026-12-04T15:00:00Z" and data["@context"] == vex.CONTEXT


def test_an_unjustified_waiver_is_an_accepted_risk_with_owner_expiry_and_fix(tmp_path: Path) -> None:
    pol = _policy(tmp_path, "  - {id: CVE-2024-5535, package: libssl1.1, reason: TLS is terminated outside the "
                            "container, owner: sec@example.com, expires: 2027-01-15}\n")
    data = _document(pol).to_json()
    SCHEMA.validate(data)
    (s,) = data["statements"]
    assert s["status"] == "affected" and "justification" not in s
    assert s["action_statement"] == ("Accepted risk until 2027-01-15 (owner sec@example.com): TLS is terminated "
                                     "outside the container. Fix: upgrade libssl1.1 1.1.1w-0+deb11u2.")
    assert [p["@id"] for p in s["products"][1:]] == [   # as Trivy writes the package's purl
        "pkg:deb/debian/libssl1.1@1.1.1w-0%2Bdeb11u1?arch=amd64&distro=debian-11.11"]


def test_no_document_when_no_waiver_applies(tmp_path: Path) -> None:
    assert _document(policy.load(None)) is None
    stale = _policy(tmp_path, "  - {id: CVE-2099-0001, reason: elsewhere, owner: a@b, expires: 2027-01-01}\n")
    assert _document(stale) is None
    expired = _policy(tmp_path, "  - {id: CVE-2023-6730, reason: was fine, owner: a@b, expires: 2026-01-01}\n")
    assert _document(expired) is None                     # an expired waiver waives nothing


def test_a_document_waives_what_it_covers_and_the_gate_passes(tmp_path: Path) -> None:
    doc = vex.Document.model_validate(_document(policy.load(ROOT / "policies/demo-bert-waivers.yaml")).to_json())
    assert gate.evaluate(REPORT, policy.load(None), BASE, TODAY, False, **SCANNED).decision == "block"
    made = vex.waivers([doc], REPORT.findings(), {DIGEST: REPO})
    assert [(w.id, w.purl, w.owner, w.expires) for w in made] == [
        ("CVE-2023-6730", "pkg:pypi/transformers@4.21.3", "ml-platform", dt.date.max)]
    pol = policy.load(None)
    result = gate.evaluate(REPORT, pol.model_copy(update={"waivers": made}), BASE, TODAY, False, **SCANNED)
    assert result.decision == "pass" and [w.finding.id for w in result.waived] == ["CVE-2023-6730"]
    assert result.stale_waivers == []


def _statement(status: str, products: list[dict], when: str, **extra: str) -> dict:
    base = {"vulnerability": {"name": "CVE-2024-5535"}, "products": products, "status": status, "timestamp": when}
    return {**base, **extra}


def _doc(*statements: dict) -> vex.Document:
    return vex.Document.model_validate({"@context": vex.CONTEXT, "@id": "https://vendor.example/vex/1",
                                        "author": "vendor", "timestamp": "2026-01-01T00:00:00Z", "version": 1,
                                        "statements": list(statements)})


def test_products_the_latest_statement_and_the_image_digest_decide() -> None:
    ssl = [{"@id": "pkg:deb/debian/libssl1.1@1.1.1w-0+deb11u1"}]   # '+' unencoded: matched all the same
    not_affected = _statement("not_affected", ssl, "2026-01-01T00:00:00Z", justification="vulnerable_code_not_present")
    later_affected = _statement("affected", ssl, "2026-02-01T00:00:00Z", action_statement="upgrade")
    findings = REPORT.findings()
    assert [w.purl for w in vex.waivers([_doc(not_affected)], findings, {})] == [
        "pkg:deb/debian/libssl1.1@1.1.1w-0%2Bdeb11u1"]
    assert vex.waivers([_doc(not_affected, later_affected)], findings, {}) == []      # the newer one decides
    assert len(vex.waivers([_doc(later_affected, not_affected)], findings, {})) == 0
    base = "sha256:" + "ab" * 32
    image = [{"@id": f"pkg:oci/tensorflow@{base}", "subcomponents": [{"@id": "pkg:deb/debian/libssl1.1"}]}]
    fixed = _statement("fixed", image, "2026-01-01T00:00:00Z")
    assert vex.waivers([_doc(fixed)], findings, {"sha256:" + "cd" * 32: "other"}) == []   # another image
    (w,) = vex.waivers([_doc(fixed)], findings, {base: "nvcr.io/nvidia/tensorflow"})
    assert w.purl == "pkg:deb/debian/libssl1.1" and "VEX fixed" in w.reason


def test_gate_vex_option_file_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_dir = tmp_path / "scan"
    report_dir.mkdir()
    (report_dir / "trivy.json").write_text(json.dumps(RAW))
    shutil.copy(DATA / "watch/standin-base-layers.json", tmp_path / "layers.json")
    vex_file = tmp_path / "bert.vex.json"
    vex_file.write_text(json.dumps(_document(policy.load(ROOT / "policies/demo-bert-waivers.yaml")).to_json()))
    args = ["gate", "--report", str(report_dir / "trivy.json"), "--assume-vuln-scanned", "--base-layers",
            str(tmp_path / "layers.json"), "--date", "2026-12-04"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 1                          # CVE-2023-6730 blocks
    assert cli.main([*args, "--out", str(tmp_path / "b"), "--vex", str(vex_file)]) == 0   # the VEX waives it
    md = (tmp_path / "b/gate.md").read_text()
    assert "VEX not_affected (vulnerable_code_cannot_be_controlled_by_adversary)" in md and "no expiry (VEX)" in md
    capsys.readouterr()
    assert cli.main([*args, "--out", str(tmp_path / "c"), "--vex", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text('{"@context": "x", "statements": []}')
    assert cli.main([*args, "--out", str(tmp_path / "d"), "--vex", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "not an OpenVEX v0.2.0 document" in err and "Traceback" not in err


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12)
VALID = _document(policy.load(ROOT / "policies/demo-bert-waivers.yaml")).to_json()


def _mutate(doc: dict, path: list[str | int], value: object) -> dict:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


PATHS = [["author"], ["version"], ["statements"], ["statements", 0, "status"], ["statements", 0, "products"],
         ["statements", 0, "vulnerability"], ["statements", 0, "justification"], ["statements", 0, "products", 0, "@id"],
         ["@context"], ["timestamp"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(JSON, st.tuples(st.sampled_from(PATHS), JSON).map(lambda pv: _mutate(VALID, *pv))))
def test_any_vex_input_is_read_or_refused_as_bad_input(tmp_path: Path, data: object) -> None:
    path = tmp_path / "in.vex.json"
    path.write_text(json.dumps(data))
    try:
        docs = watching.load_vex([str(path)])
    except TfimgError as exc:
        assert exc.exit_code == 2 and str(path) in exc.message
        return
    vex.waivers(docs, REPORT.findings(), {DIGEST: REPO})   # what was accepted can be applied
