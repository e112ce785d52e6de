"""Publishing against a real registry: refusal rules, dry run, push, digest, evidence, immutability."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from builder.errors import PublishRefused, RegistryError, TfimgError
from builder.infra import report
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry
from builder.infra.report_models import Report, TagsSection
from builder.pipeline import record, single
from builder.publish import cosign_att, evidence, referrers, statements
from builder.publish import push as publish
from builder.spec import loader as spec
from tests import reports

pytest_plugins = ["tests.conftest_registry"]


# --------------------------------------------------------------------------- refusal rules (no Docker)

def _rep(checks: bool | None = True, decision: str | None = "pass") -> Report:
    image_id = "sha256:" + "a" * 64
    rep = Report().with_section(reports.build(image_id))
    if checks is not None:
        rep = rep.with_section(reports.checks(checks))
    if decision is not None:
        rep = rep.with_section(reports.gate(decision, ["CVE-2099-0001: CRITICAL, fix available"]))
    return rep


def test_eligible_report_passes() -> None:
    assert publish.eligibility(_rep()) is None


@pytest.mark.parametrize("rep,match", [
    (Report(), "no built image"),
    (_rep(checks=None), "not checked"),
    (_rep(checks=False), "failed its checks"),
    (_rep(decision="unscanned"), "not scanned"),
    (_rep(decision=None), "not scanned"),
    (_rep(decision="block"), "gate decision is 'block'"),
])
def test_refusals(rep: Report, match: str) -> None:
    with pytest.raises(PublishRefused, match=match) as info:
        publish.eligibility(rep)
    assert info.value.exit_code == 1


def test_only_a_real_true_counts_as_passed(tmp_path) -> None:
    data = _rep().to_json()
    data["checks"]["passed"] = "yes"
    report.write_json(tmp_path / report.REPORT, data)
    with pytest.raises(TfimgError, match=r"checks.passed: Input should be a valid boolean"):
        report.load(tmp_path)


def test_failed_gate_lists_its_reasons() -> None:
    with pytest.raises(PublishRefused) as info:
        publish.eligibility(_rep(decision="block"))
    assert "CVE-2099-0001" in info.value.message


@pytest.mark.parametrize("findings", [{"vulnerability": 3, "license": 1}, {"secret": 2}])
def test_evidence_keeps_the_scan_counts(findings: dict[str, int]) -> None:
    """The scan section's ``findings`` are its counts per kind (bug: the evidence dropped them as bulky)."""
    image_id = "sha256:" + "a" * 64
    rep = _rep().with_section(reports.scan(image_id, findings))
    doc = evidence.document(rep, variant="demo", repository="registry.example.com/team/demo",
                            digest="sha256:" + "d" * 64, tags=TagsSection(immutable="demo-1", moving=["demo-latest"]))
    assert doc.report["scan"] == rep.to_json()["scan"]
    assert doc.report["scan"]["findings"] == findings


# --------------------------------------------------------------------------- against a registry

@pytest.mark.docker
def test_dry_run_prints_plan_and_pushes_nothing(docker_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    loaded = spec.load(b.spec_file)
    res = single.publish(loaded, b.dir, f"{docker_login.host}/team", engine=Engine.from_env())
    assert isinstance(res, publish.Plan) and res.state == "new"
    assert res.tags.immutable == "bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3"
    assert res.lines()[1].endswith("(immutable) push")
    assert (b.dir / "tags.txt").read_text().splitlines()[0] == res.tags.immutable
    assert json.loads((b.dir / "publish-plan.json").read_text())["repository"] == f"{docker_login.host}/team/bert"
    assert b.report().publish is None
    assert Registry(docker_login.host).tags("team/bert") == []


@pytest.mark.docker
def test_push_records_digest_moves_tags_and_attaches_evidence(docker_login, tiny_image, gated_variant,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    b = gated_variant(tiny_image())
    rec = single.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
    reg = Registry(docker_login.host)
    digest = rec.digest
    assert rec.refs[0].endswith(":bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3")
    for tag in ("bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3", "bert-tf2.9", "bert-latest"):
        assert reg.digest_of("team/bert", tag) == digest
    manifest = json.loads(reg.manifest("team/bert", digest)[0])
    assert manifest["config"]["digest"] == b.image_id          # the pushed image is the gated one
    # the report records the publish, and the tags
    rep = b.report()
    assert rep.publish.digest == digest and rep.tags.moving == ["bert-tf2.9", "bert-latest"]
    assert rep.publish.evidence.tag == cosign_att.tag_for(digest)
    # the evidence is readable by digest, keeps the scan's counts and carries no secret
    doc = evidence.read(reg, "team/bert", digest)
    assert doc is not None
    assert doc.digest == digest and doc.report["gate"]["decision"] == "pass"
    assert doc.report["checks"]["passed"] is True and doc.report["facts"]["tensorflow"] == "2.9.1+nv22.7"
    assert doc.report["scan"]["findings"] == {"vulnerability": 1}
    raw = json.dumps(doc.to_json()) + caplog.text + json.dumps(rep.to_json())
    assert docker_login.password not in raw
    (ref,) = referrers.list_referrers(reg, "team/bert", digest, statements.KINDS["report"].artifact_type)[0]
    assert ref.annotations["in-toto.io/predicate-type"] == statements.KINDS["report"].predicate_type
    assert not rep.publish.signed


@pytest.mark.docker
def test_republishing_the_same_image_is_idempotent(docker_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    loaded = spec.load(b.spec_file)
    first = single.publish(loaded, b.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
    again = single.publish(loaded, b.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
    assert again.digest == first.digest and again.skipped_push is True


@pytest.mark.docker
def test_immutable_tag_is_never_moved(docker_login, tiny_image, gated_variant, tmp_path) -> None:
    first = gated_variant(tiny_image())
    rec = single.publish(spec.load(first.spec_file), first.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
    # another image with the same facts (built from other inputs) would get the same immutable tag
    second = gated_variant(tiny_image())
    record.write_section(second.dir, reports.build(second.image_id, "bert", input_hash="sha256:" + "3" * 64))
    with pytest.raises(PublishRefused, match="never moved") as info:
        single.publish(spec.load(second.spec_file), second.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
    assert rec.digest in info.value.message
    assert Registry(docker_login.host).digest_of("team/bert", "bert-latest") == rec.digest
    with pytest.raises(PublishRefused, match="never moved"):     # the dry run says so too
        single.publish(spec.load(second.spec_file), second.dir, f"{docker_login.host}/team", engine=Engine.from_env())


@pytest.mark.docker
@pytest.mark.parametrize("checks,decision,match", [(True, "unscanned", "not scanned"),
                                                   (False, "pass", "failed its checks"),
                                                   (True, "block", "gate decision is 'block'")])
def test_unscanned_or_failed_image_is_not_pushed(docker_login, tiny_image, gated_variant,
                                                 checks, decision, match) -> None:
    b = gated_variant(tiny_image(), checks=checks, decision=decision)
    with pytest.raises(PublishRefused, match=match):
        single.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
    assert Registry(docker_login.host).tags("team/bert") == []


@pytest.mark.docker
def test_push_without_credentials_fails_clearly(no_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    with pytest.raises(RegistryError) as info:
        single.publish(spec.load(b.spec_file), b.dir, f"{no_login.host}/team", push=True, engine=Engine.from_env())
    assert info.value.status == 401
    assert f"docker login {no_login.host}" in info.value.render()
    assert b.report().publish is None
    # the dry run still plans, and says the registry was not checked
    res = single.publish(spec.load(b.spec_file), b.dir, f"{no_login.host}/team", engine=Engine.from_env())
    assert res.state == "unchecked" and "401" in res.notes[0]
    r = requests.get(no_login.url("/v2/team/bert/tags/list"), auth=(no_login.user, no_login.password), timeout=5)
    assert r.status_code == 404                                     # nothing was pushed


@pytest.mark.docker
def test_cli_publish_and_show(docker_login, tiny_image, gated_variant, capsys) -> None:
    from builder import cli
    b = gated_variant(tiny_image(), name="resnet")
    argv = ["publish", str(b.spec_file), "--out", str(b.out_root), "--registry", f"{docker_login.host}/team"]
    assert cli.main(argv) == 0
    assert "dry run: nothing pushed" in capsys.readouterr().out
    assert cli.main([*argv, "--push"]) == 0
    digest = report.load(b.dir).publish.digest
    assert f"published {docker_login.host}/team/resnet@{digest}" in capsys.readouterr().out
    assert cli.main(["registry", "show", f"{docker_login.host}/team/resnet@{digest}"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["digest"] == digest and shown["variant"] == "resnet"
    assert cli.main(["tags", str(b.spec_file), "--out", str(b.out_root)]) == 0
    assert capsys.readouterr().out.splitlines() == ["resnet-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3",
                                                    "resnet-tf2.9", "resnet-latest"]


@pytest.mark.docker
def test_cli_refusal_exit_code(docker_login, tiny_image, gated_variant, capsys) -> None:
    from builder import cli
    b = gated_variant(tiny_image(), decision="unscanned")
    code = cli.main(["publish", str(b.spec_file), "--out", str(b.out_root), "--registry",
                     f"{docker_login.host}/team", "--push"])
    assert code == 1
    assert "not scanned" in capsys.readouterr().err
    assert Engine.from_env().image_attrs(b.image_id) is not None


def test_push_errors_are_classified_for_retry() -> None:
    assert publish.push_transient(TfimgError("push failed: received unexpected HTTP status: 503 Service Unavailable"))
    assert publish.push_transient(TfimgError("push failed: dial tcp 127.0.0.1:5000: connect: connection refused"))
    assert publish.push_transient(requests.ConnectionError("reset"))
    assert not publish.push_transient(TfimgError("push failed: unauthorized: authentication required"))
    assert not publish.push_transient(TfimgError("push failed: denied: requested access to the resource is denied"))


@pytest.mark.docker
def test_image_missing_from_the_engine_is_refused(docker_login, gated_variant) -> None:
    b = gated_variant("sha256:" + "9" * 64)
    res = single.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", engine=Engine.from_env())
    assert any("not in the local engine" in n for n in res.notes)
    with pytest.raises(PublishRefused, match="not in the local Docker engine"):
        single.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", push=True, engine=Engine.from_env())
