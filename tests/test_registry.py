"""Registry curation against a real registry: promote, ls, show, prune; retries on transient errors."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest

from builder.errors import PublishRefused, RegistryError, TransientError
from builder.infra.engine import Engine
from builder.infra.registry_client import Ref, Registry, parse_ref, with_retry
from builder.pipeline import gatekeeping, record, single
from builder.publish import cosign_att, evidence, referrers, signing, statements, store
from builder.publish import curation as registry
from builder.publish.curation import Entry
from builder.spec import loader as spec
from tests import reports

pytest_plugins = ["tests.conftest_registry"]


# --------------------------------------------------------------------------- pure parts

def test_parse_ref() -> None:
    r = parse_ref("127.0.0.1:5000/team/bert@sha256:" + "a" * 64)
    assert (r.host, r.repo, r.tag, r.digest) == ("127.0.0.1:5000", "team/bert", None, "sha256:" + "a" * 64)
    assert parse_ref("reg.example.com/x/y:1.0") == Ref("reg.example.com", "x/y", "1.0")
    for bad in ("bert:latest", "127.0.0.1:5000/Team", "127.0.0.1:5000/x@sha256:abc"):
        with pytest.raises(RegistryError):
            parse_ref(bad)


def test_retry_backs_off_on_transient_and_stops_on_definitive() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503", status=503)
        return "ok"

    assert with_retry(flaky, attempts=5, base_delay=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    def denied() -> None:
        calls.append(1)
        raise RegistryError("HTTP 401", status=401)

    calls.clear()
    with pytest.raises(RegistryError):
        with_retry(denied, sleep=sleeps.append)
    assert len(calls) == 1

    calls.clear()
    with pytest.raises(TransientError):
        with_retry(lambda: (calls.append(1), (_ for _ in ()).throw(TransientError("x", status=502)))[0],
                   attempts=3, base_delay=1, max_delay=1.5, sleep=sleeps.append)
    assert len(calls) == 3 and sleeps[-2:] == [1, 1.5]


def _e(variant: str, digest: str, created: str, tags: list[str], *, promoted: bool = False,
       immutable: str | None = "imm") -> Entry:
    return Entry("h/r", variant, digest, tags, created, 1, "pass", promoted, immutable,
                 ["latest"] if immutable else [])


def test_retention_rules() -> None:
    items = [_e("a", "d5", "2026-05", ["imm5", "latest"], immutable="imm5"),
             _e("a", "d4", "2026-04", ["imm4"], immutable="imm4"),
             _e("a", "d3", "2026-03", ["imm3"], immutable="imm3", promoted=True),
             _e("a", "d2", "2026-02", ["imm2"], immutable="imm2"),
             _e("b", "e1", "2026-01", ["x"], immutable="x")]
    got = {e.digest: why.split(":")[0] for e, why in registry.retention(items, keep=2, protected=False)}
    assert got == {"d5": "keep", "d4": "keep", "d3": "keep", "d2": "delete", "e1": "keep"}
    got = {e.digest: why for e, why in registry.retention(items, keep=2, protected=True)}
    assert got["d2"].startswith("keep: immutable tag in a protected")


# --------------------------------------------------------------------------- against a registry

def _published(docker_login, tiny_image, gated_variant, ns: str = "dev", name: str = "bert", **kw) -> dict:
    b = gated_variant(tiny_image(), name=name, **kw)
    # each tiny image stands for a build of other inputs (the same inputs would be found published: ih- tag)
    record.write_section(b.dir, reports.build(b.image_id, name, input_hash="sha256:" + uuid.uuid4().hex * 2))
    rec = single.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/{ns}", push=True, engine=Engine.from_env())
    return rec.model_dump(mode="json")   # the publish section, as report.json holds it


def _set_verdict(reg: Registry, repo: str, digest: str, decision: str) -> None:
    """Attach a newer report statement (unsigned, as the publish was) with another gate decision."""
    doc = evidence.read(reg, repo, digest)
    assert doc is not None
    gate = {**doc.report["gate"], "decision": decision}
    stmt = statements.statement(f"{reg.host}/{repo}", digest, "report", {**doc.to_json(),
                                                                         "report": {**doc.report, "gate": gate}})
    store.attach(reg, repo, digest, [store.Item("report", signing.envelope(stmt, None), "report.json")],
                 "2999-01-01T00:00:00Z")
    assert evidence.read(reg, repo, digest).report["gate"]["decision"] == decision


@pytest.mark.docker
def test_show_reads_the_report_back_by_digest(docker_login, tiny_image, gated_variant) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    doc = registry.show(f"{rec['repository']}@{rec['digest']}")
    assert doc["digest"] == rec["digest"] and doc["tags"]["immutable"] == rec["immutable"]
    assert registry.show(f"{rec['repository']}:bert-latest")["digest"] == rec["digest"]
    with pytest.raises(RegistryError, match="no tfimg evidence"):
        registry.show(f"{rec['repository']}@sha256:" + "0" * 64)


@pytest.mark.docker
def test_promote_copies_digest_evidence_and_moving_tags(docker_login, tiny_image, gated_variant) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    res = gatekeeping.promote(f"{rec['repository']}@{rec['digest']}", f"{docker_login.host}/prod/bert")
    reg = Registry(docker_login.host)
    assert res.digest == rec["digest"]
    for tag in (rec["immutable"], *rec["moving"]):
        assert reg.digest_of("prod/bert", tag) == rec["digest"]
    assert sorted(t for t in reg.tags("prod/bert") if not evidence.is_evidence_tag(t)) == sorted(
        [rec["immutable"], *rec["moving"]])                          # nothing else re-tagged
    target = evidence.read(reg, "prod/bert", rec["digest"])
    source = evidence.read(reg, "dev/bert", rec["digest"])
    assert target is not None and target == source                     # the very statements, copied
    (promoted,) = evidence.promotions(reg, "dev/bert", rec["digest"])
    assert promoted.to == f"{docker_login.host}/prod/bert" and promoted.from_ == rec["repository"]
    assert evidence.promotions(reg, "prod/bert", rec["digest"]) == [promoted] and not promoted.signed
    assert not res.record_signed                                        # no --sign-key: an UNSIGNED record


@pytest.mark.docker
@pytest.mark.parametrize("decision", ["fail", "unscanned"])
def test_promote_refused_when_evidence_does_not_pass(docker_login, tiny_image, gated_variant, decision) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    reg = Registry(docker_login.host)
    _set_verdict(reg, "dev/bert", rec["digest"], decision)
    with pytest.raises(PublishRefused, match=f"decision '{decision}'"):
        gatekeeping.promote(f"{rec['repository']}@{rec['digest']}", f"{docker_login.host}/prod/bert")
    assert reg.tags("prod/bert") == []


@pytest.mark.docker
def test_promote_refused_without_evidence(docker_login, tiny_image, gated_variant) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    reg = Registry(docker_login.host)
    store.delete(reg, "dev/bert", rec["digest"])
    with pytest.raises(PublishRefused, match="no tfimg evidence"):
        gatekeeping.promote(f"{rec['repository']}@{rec['digest']}", f"{docker_login.host}/prod/bert")
    assert reg.tags("prod/bert") == []


@pytest.mark.docker
def test_promote_re_evaluates_the_target_policy(docker_login, tiny_image, gated_variant, tmp_path: Path) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    ref = f"{rec['repository']}@{rec['digest']}"
    trivy = evidence.read_trivy(Registry(docker_login.host), "dev/bert", rec["digest"])
    assert trivy is not None and trivy["Results"][0]["Vulnerabilities"][0]["Severity"] == "HIGH"
    # recorded decision is pass, but the shipped default policy blocks the new fixable HIGH
    with pytest.raises(PublishRefused, match="decision 'block'.*default.yaml"):
        gatekeeping.promote(ref, f"{docker_login.host}/prod/bert", policy=Path("policies/default.yaml").resolve())
    lenient = tmp_path / "critical-only.yaml"
    lenient.write_text("vulnerabilities:\n  new: {fixed: CRITICAL, unfixed: none}\n")
    res = gatekeeping.promote(ref, f"{docker_login.host}/prod/bert", policy=lenient)
    assert res.decision == "pass" and "re-evaluated with" in res.policy
    assert Registry(docker_login.host).digest_of("prod/bert", rec["immutable"]) == rec["digest"]
    assert evidence.read_trivy(Registry(docker_login.host), "prod/bert", rec["digest"]) is not None


@pytest.mark.docker
def test_ls_lists_variants_with_gate_status(docker_login, tiny_image, gated_variant) -> None:
    a = _published(docker_login, tiny_image, gated_variant, name="bert")
    b = _published(docker_login, tiny_image, gated_variant, name="resnet")
    rows = {r.digest: r for r in registry.ls(f"{docker_login.host}/dev")}
    assert set(rows) == {a["digest"], b["digest"]}
    ra = rows[a["digest"]]
    assert ra.variant == "bert" and ra.gate == "pass" and not ra.promoted
    assert sorted(ra.tags) == sorted([a["immutable"], *a["moving"]])
    assert ra.size and ra.size > 0 and ra.created
    assert not any(evidence.is_evidence_tag(t) for r in rows.values() for t in r.tags)


@pytest.mark.docker
def test_prune_keeps_newest_promoted_and_protected(docker_login, tiny_image, gated_variant) -> None:
    reg = Registry(docker_login.host)
    recs = []
    for i in range(4):                         # four builds of one variant, each on its own date
        recs.append(_published(docker_login, tiny_image, gated_variant, facts={"date": f"2026110{i + 1}"}))
    # the oldest build was promoted
    gatekeeping.promote(f"{recs[0]['repository']}@{recs[0]['digest']}", f"{docker_login.host}/prod/bert")
    plan = {e.digest: why for e, why in registry.prune(f"{docker_login.host}/dev/bert", keep=1)}
    assert plan[recs[3]["digest"]].startswith("keep: among the newest")
    assert plan[recs[0]["digest"]] == "keep: promoted"
    assert plan[recs[1]["digest"]].startswith("delete") and plan[recs[2]["digest"]].startswith("delete")
    assert reg.digest_of("dev/bert", recs[1]["immutable"]) == recs[1]["digest"]      # dry run: all still there
    protected = registry.prune(f"{docker_login.host}/dev/bert", keep=1, protect=["*/dev/*"])
    assert not any(why.startswith("delete") for _, why in protected)
    registry.prune(f"{docker_login.host}/dev/bert", keep=1, yes=True)
    left = {e.digest for e in registry.entries(reg, "dev/bert")}
    assert left == {recs[3]["digest"], recs[0]["digest"]}
    assert reg.manifest("dev/bert", recs[1]["digest"]) is None
    for tag in (cosign_att.tag_for(recs[1]["digest"]), referrers.fallback_tag(recs[1]["digest"])):
        assert reg.digest_of("dev/bert", tag) is None                               # its evidence went too
    assert referrers.list_referrers(reg, "dev/bert", recs[1]["digest"])[0] == []
    assert reg.digest_of("dev/bert", "bert-latest") == recs[3]["digest"]


@pytest.mark.docker
def test_transient_503_is_retried_through_a_real_proxy(docker_login, tiny_image, gated_variant, flaky_proxy,
                                                       tmp_path: Path, monkeypatch) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    proxy = flaky_proxy(failures=2, status=503)
    token = base64.b64encode(f"{docker_login.user}:{docker_login.password}".encode()).decode()
    cfg = tmp_path / "cfg-proxy"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {proxy.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    doc = registry.show(f"{proxy.host}/dev/bert@{rec['digest']}")
    assert doc["digest"] == rec["digest"]
    assert [s for _, _, s in proxy.seen[:2]] == [503, 503]
    assert proxy.seen[2][:2] == proxy.seen[0][:2] and proxy.seen[2][2] != 503   # the same request, retried


@pytest.mark.docker
def test_definitive_errors_are_not_retried(no_login, flaky_proxy) -> None:
    proxy = flaky_proxy(failures=0)
    reg = Registry(proxy.host, base_delay=0)
    with pytest.raises(RegistryError) as info:
        reg.tags("dev/bert")
    assert info.value.status == 401 and "docker login" in info.value.render()
    assert len(proxy.seen) == 1                                  # one request, no retry


@pytest.mark.docker
def test_cli_registry_ls_prune_promote(docker_login, tiny_image, gated_variant, capsys) -> None:
    from builder import cli
    rec = _published(docker_login, tiny_image, gated_variant)
    assert cli.main(["registry", "ls", f"{docker_login.host}/dev"]) == 0
    text = capsys.readouterr().out
    assert "bert" in text and rec["digest"][:19] in text and "pass" in text
    assert cli.main(["promote", f"{rec['repository']}@{rec['digest']}", "--to", f"{docker_login.host}/prod/bert"]) == 0
    assert f"promoted {rec['repository']}@{rec['digest']}" in capsys.readouterr().out
    assert cli.main(["registry", "prune", f"{docker_login.host}/dev/bert", "--keep", "1"]) == 0
    assert "0 digest(s) would be deleted" in capsys.readouterr().out
    assert cli.main(["promote", f"{rec['repository']}@sha256:" + "0" * 64, "--to", f"{docker_login.host}/p/x"]) == 1


@pytest.mark.docker
def test_credentials_from_a_credential_helper(docker_login, tiny_image, gated_variant, tmp_path: Path,
                                              monkeypatch) -> None:
    rec = _published(docker_login, tiny_image, gated_variant)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-tfimgtest"
    secret = json.dumps({"ServerURL": docker_login.host, "Username": docker_login.user,
                         "Secret": docker_login.password})
    helper.write_text(f"#!/bin/sh\nread host\n[ \"$host\" = \"{docker_login.host}\" ] || exit 1\n"
                      f"[ \"$1\" = get ] && echo '{secret}'\n")
    helper.chmod(0o755)
    cfg = tmp_path / "cfg-helper"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credHelpers": {docker_login.host: "tfimgtest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    assert registry.show(f"{rec['repository']}@{rec['digest']}")["digest"] == rec["digest"]
