"""The statements tfimg signs, checked against their schemas, and the verify policy's pure parts.

Schemas are checked by independent implementations: in-toto Statement v1 and SLSA provenance v1 by the
``in-toto-attestation`` protobuf bindings with strict JSON parsing (an unknown field or a timestamp that is
not RFC 3339 fails, as it does for Go consumers); CycloneDX by cyclonedx-python-lib's JSON validator at
the spec version the document declares, on an SBOM the real Trivy writes (``trivy convert`` of a
recorded report). Hostile statement content is a property test: the policy never crashes on it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from packageurl import PackageURL

from builder import cli
from builder.errors import TfimgError
from builder.infra.report_models import Report, TagsSection, TrivyDb
from builder.publish import attest, cosign_att, evidence, statements, verify
from tests import reports
from tests.conftest import ROOT

DIGEST = "sha256:" + "d" * 64
IMAGE = "sha256:" + "a" * 64
BASE = "sha256:" + "b" * 64
TRIVY_DATA = ROOT / "tests/data/trivy"


def _report(*, base_digest: str | None = BASE, base_ref: str = "127.0.0.1:5000/tfimg-demo/tfimg-standin:tf2.9-1"
            ) -> Report:
    build = reports.build(IMAGE, "bert", base={"ref": base_ref, "id": "sha256:" + "9" * 64, "digest": base_digest,
                                               "size": 0},
                          started_on="2026-11-26T09:00:00Z", finished_on="2026-11-26T09:05:00Z")
    scan = reports.scan(IMAGE).model_copy(update={"db": TrivyDb(Version=2, UpdatedAt="2026-11-25T06:00:00.123456789Z"),
                                                  "db_repository": "127.0.0.1:5000/tfimg/trivy-db:2"})
    return Report().with_section(build).with_section(reports.checks(True)).with_section(scan) \
        .with_section(reports.gate("pass", []))


def _trivy() -> dict:
    data = json.loads((TRIVY_DATA / "debian-buster.json.golden").read_text())
    data["Metadata"]["ImageID"] = IMAGE
    return data


def _stmts(rep: Report | None = None, sbom: dict | None = None) -> dict[str, dict]:
    rep = rep or _report()
    doc = evidence.document(rep, variant="bert", repository="127.0.0.1:5000/dev/bert", digest=DIGEST,
                            tags=TagsSection(immutable="bert-1", moving=["bert-latest"]))
    return attest.payloads(rep, repository="127.0.0.1:5000/dev/bert", digest=DIGEST,
                           chain=[ROOT / "variants/bert.yaml", ROOT / "variants/base.yaml"], doc=doc,
                           sbom=sbom or {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1}, trivy=_trivy())


def _strict_statement(stmt: dict) -> statement_pb2.Statement:
    pb = json_format.Parse(json.dumps(stmt), statement_pb2.Statement(), ignore_unknown_fields=False)
    Statement.copy_from_pb(pb).validate()
    return pb


def test_every_statement_is_a_strict_in_toto_statement_v1() -> None:
    for kind, stmt in _stmts().items():
        pb = _strict_statement(stmt)
        assert pb.predicate_type == statements.KINDS[kind].predicate_type
        assert pb.subject[0].digest["sha256"] == "d" * 64


def test_provenance_is_strict_slsa_v1_with_the_build_times_and_the_base_by_digest() -> None:
    prov = _stmts()["provenance"]["predicate"]
    pb = json_format.Parse(json.dumps(prov), provenance_pb2.Provenance(), ignore_unknown_fields=False)
    assert pb.build_definition.build_type == statements.BUILD_TYPE
    assert pb.run_details.builder.id == statements.BUILDER_ID
    assert pb.build_definition.external_parameters["variant"] == "bert"
    for dep in pb.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(dep).validate()
    base = pb.build_definition.resolved_dependencies[0]
    assert base.name == "base" and base.digest["sha256"] == "b" * 64
    purl = PackageURL.from_string(base.uri)   # purl-spec's OCI type, as its reference parser reads it
    assert (purl.type, purl.name, purl.version) == ("oci", "tfimg-standin", BASE)
    assert purl.qualifiers == {"repository_url": "127.0.0.1:5000/tfimg-demo/tfimg-standin", "tag": "tf2.9-1"}
    meta = prov["runDetails"]["metadata"]
    assert (meta["startedOn"], meta["finishedOn"]) == ("2026-11-26T09:00:00Z", "2026-11-26T09:05:00Z")  # the build's
    assert pb.run_details.metadata.started_on.ToJsonString() == "2026-11-26T09:00:00Z"
    assert statements.provenance_base_digest(prov) == BASE


def test_without_a_base_digest_the_provenance_claims_none() -> None:
    prov = _stmts(_report(base_digest=None, base_ref="tfimg-standin:tf2.9-1"))["provenance"]["predicate"]
    base = prov["buildDefinition"]["resolvedDependencies"][0]
    assert "digest" not in base and PackageURL.from_string(base["uri"]).version is None
    assert statements.provenance_base_digest(prov) is None
    assert verify.content_problems("provenance", {**_stmts()["provenance"], "predicate": prov}, DIGEST, IMAGE) == [
        "the provenance names no base image digest (resolvedDependencies 'base')"]


def test_vuln_predicate_has_the_scan_times_and_is_cosigns_shape() -> None:
    pred = _stmts()["vuln"]["predicate"]
    assert pred["metadata"] == {"scanStartedOn": "2026-11-26T10:00:00Z", "scanFinishedOn": "2026-11-26T10:00:01Z"}
    assert pred["scanner"]["db"] == {"uri": "127.0.0.1:5000/tfimg/trivy-db:2", "version": "2",
                                     "lastUpdate": "2026-11-25T06:00:00Z"}
    assert set(pred["invocation"]) == {"parameters", "uri", "event_id", "builder.id"}
    assert pred["scanner"]["result"]["Metadata"]["ImageID"] == IMAGE
    assert verify.content_problems("vuln", _stmts()["vuln"], DIGEST, IMAGE) == []


def _timestamps(value: object, path: str = "") -> list[tuple[str, str]]:
    """Every (path, value) of a key tfimg writes that holds a time."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _timestamps(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _timestamps(v, f"{path}[{i}]")]
    keys = ("On", "lastUpdate", "timestamp", "TFIMG_CREATED", "_on")
    return [(path, value)] if isinstance(value, str) and path.rsplit(".", 1)[-1].endswith(keys) else []


def test_every_timestamp_tfimg_writes_is_utc_with_z() -> None:
    stmts = _stmts(sbom={"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                         "metadata": {"timestamp": "2026-12-04T15:06:12+00:00"}})
    stmts["report"]["predicate"].pop("report")          # the report's sections are report.json's own
    found = [x for kind, s in stmts.items() if kind != "vuln" for x in _timestamps(s)]
    found += _timestamps({k: v for k, v in stmts["vuln"]["predicate"].items() if k != "scanner"})
    found += _timestamps(stmts["vuln"]["predicate"]["scanner"]["db"])
    assert len(found) >= 6, found
    assert all(statements.is_z(v) for _, v in found), found


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9998, 12, 30)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_z_keeps_the_instant_and_writes_utc_with_z(when: dt.datetime, minutes: int) -> None:
    aware = when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
    text = aware.isoformat()
    out = statements.z(text)
    assert out is not None and out.endswith("Z") and statements.is_z(out)
    assert statements.parse_time(out) == aware.replace(microsecond=0).astimezone(dt.timezone.utc)


@pytest.mark.parametrize("bad", ["2026-12-04", "2026-12-04T10:00:00", "yesterday", "", "2026-13-04T10:00:00Z"])
def test_a_date_or_a_time_without_zone_is_no_timestamp(bad: str) -> None:
    assert statements.parse_time(bad) is None and statements.z(bad) is None


def test_the_report_document_is_the_same_when_only_the_run_differs() -> None:
    rep = _report()
    again = rep.with_section(rep.build.model_copy(update={"up_to_date": not rep.build.up_to_date,
                                                          "timings": {"build": 9.0}, "log": "x.log"}))
    assert attest.canonical(_stmts(rep)["report"]) == attest.canonical(_stmts(again)["report"])
    assert attest.canonical(_stmts(rep)["provenance"]) == attest.canonical(_stmts(again)["provenance"])


@pytest.mark.trivy
def test_trivys_sbom_validates_as_cyclonedx_and_names_the_image(tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from builder.infra import runner
    trivy = runner.which("trivy")
    if trivy is None:
        pytest.skip("trivy is not installed (pip install -e .[scan])")
    (tmp_path / "trivy.json").write_text(json.dumps(_trivy()))
    out = subprocess.run([trivy, "convert", "--format", "cyclonedx", "--quiet", str(tmp_path / "trivy.json")],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    bom = json.loads(out)
    pred = _stmts(sbom=bom)["sbom"]["predicate"]
    version = SchemaVersion.from_version(pred["specVersion"])
    assert JsonStrictValidator(version).validate_str(json.dumps(pred)) is None
    assert statements.sbom_image_id(pred) == IMAGE
    assert verify.content_problems("sbom", _stmts(sbom=bom)["sbom"], DIGEST, IMAGE) == []
    assert verify.content_problems("sbom", _stmts(sbom=bom)["sbom"], DIGEST, "sha256:" + "0" * 64) == [
        f"the SBOM describes image {IMAGE}, not sha256:{'0' * 64}"]


def test_content_checks_name_what_is_inconsistent() -> None:
    stmts = _stmts()
    other = {**stmts["report"], "subject": [{"name": "x", "digest": {"sha256": "e" * 64}}]}
    assert verify.content_problems("report", other, DIGEST, IMAGE) == [f"its subject is not {DIGEST}"]
    assert verify.content_problems("report", stmts["report"], DIGEST, IMAGE) == []
    assert verify.content_problems("report", stmts["report"], DIGEST, "sha256:" + "1" * 64) == [
        f"the report is of digest {DIGEST}, image {IMAGE}"]
    vuln = json.loads(json.dumps(stmts["vuln"]))
    vuln["predicate"]["metadata"] = {"scanStartedOn": None, "scanFinishedOn": "2026-12-04"}
    assert verify.content_problems("vuln", vuln, DIGEST, IMAGE) == [
        "scanStartedOn/scanFinishedOn are not both RFC 3339 timestamps"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=12)


@settings(max_examples=200)
@given(st.sampled_from(list(statements.KINDS)), json_values, json_values)
def test_the_policy_never_crashes_on_hostile_statement_content(kind: str, predicate: object, subject: object) -> None:
    """A trusted key may still sign nonsense: every shape of predicate and subject is judged, not a crash."""
    stmt = {"_type": statements.STATEMENT_TYPE, "subject": subject, "predicateType": kind, "predicate": predicate}
    problems = verify.content_problems(kind, stmt, DIGEST, IMAGE)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    if kind in ("sbom", "vuln", "report", "provenance"):
        assert problems   # nothing random is consistent with this image


def test_unknown_required_kind_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify.required_kinds(None) == ("report", "sbom", "vuln", "provenance")
    assert verify.required_kinds(["sbom,vuln", "promotion"]) == ("sbom", "vuln", "promotion")
    with pytest.raises(TfimgError, match="unknown statement kind"):
        verify.required_kinds(["sbom,attestation"])
    assert cli.main(["verify", "127.0.0.1:1/x@" + DIGEST, "--key", str(ROOT / "variants/keys/team.pub"),
                     "--require", "sbom,nope"]) == 2
    assert "unknown statement kind(s) nope" in capsys.readouterr().err


def test_att_manifest_is_gos_json() -> None:
    """Layer annotations sorted, descriptor keys in go-containerregistry's order, ``<>&`` escaped."""
    layer = {"annotations": {"predicateType": "https://x/<a>&b", "dev.cosignproject.cosign/signature": ""},
             "digest": "sha256:" + "c" * 64, "size": 3, "mediaType": "application/vnd.dsse.envelope.v1+json"}
    manifest, config = cosign_att.image([layer])
    text = manifest.decode().partition('"layers":')[2]
    assert text.index('"mediaType":"application/vnd.dsse') < text.index('"size":3') < text.index('"digest":"sha256:c')
    assert text.index("dev.cosignproject") < text.index("predicateType")
    assert "\\u003ca\\u003e\\u0026b" in text
    assert json.loads(config)["rootfs"]["diff_ids"] == ["sha256:" + "c" * 64]
