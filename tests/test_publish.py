"""Publishing against a real registry: refusal rules, dry run, push, digest, evidence, immutability."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from builder.errors import PublishRefused, RegistryError
from builder.infra import engine, report
from builder.publish import evidence
from builder.publish import push as publish
from builder.publish.registry_client import Registry
from builder.spec import loader as spec

pytest_plugins = ["tests.conftest_registry"]


# --------------------------------------------------------------------------- refusal rules (no Docker)

def _rep(checks: object = True, decision: object = "pass") -> dict:
    rep: dict = {"build": {"image_id": "sha256:" + "a" * 64}}
    if checks is not None:
        rep["checks"] = {"passed": checks}
    if decision is not None:
        rep["gate"] = {"decision": decision, "reasons": ["CVE-2099-0001: CRITICAL, fix available"]}
    return rep


def test_eligible_report_passes() -> None:
    assert publish.eligibility(_rep()) is None


@pytest.mark.parametrize("rep,match", [
    ({}, "no built image"),
    (_rep(checks=None), "not checked"),
    (_rep(checks=False), "failed its checks"),
    (_rep(checks="yes"), "failed its checks"),                # only a real True counts
    (_rep(decision="unscanned"), "not scanned"),
    (_rep(decision=None), "not scanned"),
    (_rep(decision="fail"), "gate decision is 'fail'"),
])
def test_refusals(rep: dict, match: str) -> None:
    with pytest.raises(PublishRefused, match=match) as info:
        publish.eligibility(rep)
    assert info.value.exit_code == 1


def test_failed_gate_lists_its_reasons() -> None:
    with pytest.raises(PublishRefused) as info:
        publish.eligibility(_rep(decision="fail"))
    assert "CVE-2099-0001" in info.value.message


# --------------------------------------------------------------------------- against a registry

@pytest.mark.docker
def test_dry_run_prints_plan_and_pushes_nothing(docker_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    loaded = spec.load(b.spec_file)
    res = publish.publish(loaded, b.dir, f"{docker_login.host}/team")
    assert res["dry_run"] is True and res["plan"]["state"] == "new"
    assert res["plan"]["tags"]["immutable"] == "bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3"
    assert res["lines"][1].endswith("(immutable) push")
    assert (b.dir / "tags.txt").read_text().splitlines()[0] == res["plan"]["tags"]["immutable"]
    assert json.loads((b.dir / "publish-plan.json").read_text())["repository"] == f"{docker_login.host}/team/bert"
    assert "publish" not in b.report()
    assert Registry(docker_login.host).tags("team/bert") == []


@pytest.mark.docker
def test_push_records_digest_moves_tags_and_attaches_evidence(docker_login, tiny_image, gated_variant,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    b = gated_variant(tiny_image())
    rec = publish.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", push=True)
    reg = Registry(docker_login.host)
    digest = rec["digest"]
    assert rec["refs"][0].endswith(":bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3")
    for tag in ("bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3", "bert-tf2.9", "bert-latest"):
        assert reg.digest_of("team/bert", tag) == digest
    manifest = json.loads(reg.manifest("team/bert", digest)[0])
    assert manifest["config"]["digest"] == b.image_id          # the pushed image is the gated one
    # the report records the publish, and the tags
    rep = b.report()
    assert rep["publish"]["digest"] == digest and rep["tags"]["moving"] == ["bert-tf2.9", "bert-latest"]
    assert rep["publish"]["evidence"]["tag"] == evidence.tag_for(digest)
    # the evidence is readable by digest and carries no secret and no bulky findings
    doc = evidence.read(reg, "team/bert", digest)
    assert doc["digest"] == digest and doc["report"]["gate"]["decision"] == "pass"
    assert doc["report"]["checks"]["passed"] is True and doc["report"]["facts"]["tensorflow"] == "2.9.1+nv22.7"
    assert "findings" not in doc["report"]["scan"] and doc["report"]["scan"]["summary"]["HIGH"] == 1
    raw = json.dumps(doc) + caplog.text + json.dumps(rep)
    assert docker_login.password not in raw
    art = json.loads(reg.manifest("team/bert", evidence.tag_for(digest))[0])
    assert art["artifactType"] == evidence.REPORT_TYPE and art["layers"][0]["mediaType"] == evidence.REPORT_TYPE


@pytest.mark.docker
def test_republishing_the_same_image_is_idempotent(docker_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    loaded = spec.load(b.spec_file)
    first = publish.publish(loaded, b.dir, f"{docker_login.host}/team", push=True)
    again = publish.publish(loaded, b.dir, f"{docker_login.host}/team", push=True)
    assert again["digest"] == first["digest"] and again["skipped_push"] is True


@pytest.mark.docker
def test_immutable_tag_is_never_moved(docker_login, tiny_image, gated_variant, tmp_path) -> None:
    first = gated_variant(tiny_image())
    rec = publish.publish(spec.load(first.spec_file), first.dir, f"{docker_login.host}/team", push=True)
    # another image with the same facts would get the same immutable tag
    second = gated_variant(tiny_image())
    with pytest.raises(PublishRefused, match="never moved") as info:
        publish.publish(spec.load(second.spec_file), second.dir, f"{docker_login.host}/team", push=True)
    assert rec["digest"] in info.value.message
    assert Registry(docker_login.host).digest_of("team/bert", "bert-latest") == rec["digest"]
    with pytest.raises(PublishRefused, match="never moved"):     # the dry run says so too
        publish.publish(spec.load(second.spec_file), second.dir, f"{docker_login.host}/team")


@pytest.mark.docker
@pytest.mark.parametrize("checks,decision,match", [(True, "unscanned", "not scanned"),
                                                   (False, "pass", "failed its checks"),
                                                   (True, "fail", "gate decision is 'fail'")])
def test_unscanned_or_failed_image_is_not_pushed(docker_login, tiny_image, gated_variant,
                                                 checks, decision, match) -> None:
    b = gated_variant(tiny_image(), checks=checks, decision=decision)
    with pytest.raises(PublishRefused, match=match):
        publish.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", push=True)
    assert Registry(docker_login.host).tags("team/bert") == []


@pytest.mark.docker
def test_push_without_credentials_fails_clearly(no_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    with pytest.raises(RegistryError) as info:
        publish.publish(spec.load(b.spec_file), b.dir, f"{no_login.host}/team", push=True)
    assert info.value.status == 401
    assert f"docker login {no_login.host}" in info.value.render()
    assert "publish" not in b.report()
    # the dry run still plans, and says the registry was not checked
    res = publish.publish(spec.load(b.spec_file), b.dir, f"{no_login.host}/team")
    assert res["plan"]["state"] == "unchecked" and "401" in res["plan"]["notes"][0]
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
    digest = report.load(b.dir)["publish"]["digest"]
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
    assert engine.image_attrs(b.image_id) is not None


def test_push_errors_are_classified_for_retry() -> None:
    from builder.errors import TfimgError
    assert publish.push_transient(TfimgError("push failed: received unexpected HTTP status: 503 Service Unavailable"))
    assert publish.push_transient(TfimgError("push failed: dial tcp 127.0.0.1:5000: connect: connection refused"))
    assert publish.push_transient(requests.ConnectionError("reset"))
    assert not publish.push_transient(TfimgError("push failed: unauthorized: authentication required"))
    assert not publish.push_transient(TfimgError("push failed: denied: requested access to the resource is denied"))


@pytest.mark.docker
def test_image_missing_from_the_engine_is_refused(docker_login, gated_variant) -> None:
    b = gated_variant("sha256:" + "9" * 64)
    res = publish.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team")
    assert any("not in the local engine" in n for n in res["plan"]["notes"])
    with pytest.raises(PublishRefused, match="not in the local Docker engine"):
        publish.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/team", push=True)
