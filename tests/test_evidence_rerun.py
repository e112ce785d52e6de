"""A main job that can run again, and `tfimg verify` as a policy (against both kinds of registry).

Publish-and-verify twice with two keys: the second run's statements are "other signer" for the first
key, and verify passes for either key (and for both). Publishing again with the same key attaches
nothing new. A second checkout that rebuilt the same inputs into another image gets the digest already
published (exit 0, says so), and pushes nothing. The policy fails, naming what is missing, when a
statement is altered in both stores (one intact copy is enough), or when a statement signed by the
trusted key is not consistent with the image (a vuln report of another image, a provenance whose base
is not the report's).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.infra import report
from builder.infra.registry_client import Registry
from builder.pipeline import record
from builder.publish import cosign_att, referrers, signing, statements, store, verify
from tests import reports
from tests.evidence_tools import Published, Target

pytest_plugins = ["tests.conftest_registry", "tests.conftest_referrers", "tests.conftest_evidence"]
pytestmark = [pytest.mark.docker]

KINDS = ["report", "sbom", "vuln", "provenance"]


def _statuses(v: verify.Verdict) -> list[tuple[str, str]]:
    return sorted((j.kind, "ok" if j.ok else j.status) for j in v.judged)


def test_publish_and_verify_twice_with_two_keys(target: Target, keypair: Callable[..., tuple[Path, Path]],
                                                publish_signed: Callable[..., Published]) -> None:
    k1, pub1 = keypair("first")
    k2, pub2 = keypair("second")
    first = publish_signed(target, k1)
    assert verify.verify(first.ref, [pub1]).ok
    second = publish_signed(target, k2, image_id=first.built.image_id)     # the same image, another key
    assert second.digest == first.digest
    one, two = verify.verify(first.ref, [pub1]), verify.verify(first.ref, [pub2])
    assert one.ok and two.ok, (one.lines(), two.lines())
    assert _statuses(one) == sorted([(k, "ok") for k in KINDS] + [(k, "other signer") for k in KINDS])
    assert _statuses(two) == _statuses(one)
    both = verify.verify(first.ref, [pub1, pub2])
    assert both.ok and sum(j.ok for j in both.judged) == 8
    assert {j.signer for j in both.judged} == {"first.pub", "second.pub"}
    reg = Registry(target.host)
    assert len(referrers.list_referrers(reg, first.repo, first.digest)[0]) == 8
    assert len(cosign_att.layers(reg, first.repo, first.digest)) == 8


def test_publishing_again_with_the_same_key_attaches_nothing_new(
        target: Target, keypair: Callable[..., tuple[Path, Path]], publish_signed: Callable[..., Published],
        capsys: pytest.CaptureFixture[str]) -> None:
    key, pub = keypair()
    p = publish_signed(target, key)
    reg = Registry(target.host)
    listed = {r.digest for r in referrers.list_referrers(reg, p.repo, p.digest)[0]}
    att = reg.digest_of(p.repo, cosign_att.tag_for(p.digest))
    assert cli.main(["publish", str(p.built.spec_file), "--out", str(p.built.out_root), "--registry",
                     p.repository.rsplit("/", 1)[0], "--push", "--sign-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "(already there: push skipped)" in out and out.count("already attached") == 4
    rec = report.load(p.built.dir).publish
    assert rec.skipped_push and all(a.existing for a in rec.attestations)
    assert {a.digest for a in rec.attestations} == listed
    assert {r.digest for r in referrers.list_referrers(reg, p.repo, p.digest)[0]} == listed
    assert reg.digest_of(p.repo, cosign_att.tag_for(p.digest)) == att == rec.evidence.digest
    assert verify.verify(p.ref, [pub]).ok


def test_a_second_checkout_with_the_same_inputs_gets_the_published_digest(
        target: Target, keypair: Callable[..., tuple[Path, Path]], publish_signed: Callable[..., Published],
        gated_variant: Callable[..., Any], tiny_image: Callable[[], str], capsys: pytest.CaptureFixture[str]) -> None:
    key, pub = keypair()
    first = publish_signed(target, key)
    reg = Registry(target.host)
    tags_before = {t: reg.digest_of(first.repo, t) for t in reg.tags(first.repo)}
    rebuilt = gated_variant(tiny_image())               # same inputs (input hash), another image id and digest
    assert report.load(rebuilt.dir).build.input_hash == first.built.report().build.input_hash
    argv = ["publish", str(rebuilt.spec_file), "--out", str(rebuilt.out_root), "--registry",
            first.repository.rsplit("/", 1)[0]]
    assert cli.main(argv) == 0
    assert f"already published from the same inputs: {first.ref}" in capsys.readouterr().out   # the plan says so
    assert cli.main([*argv, "--push", "--sign-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert f"already published from the same inputs: {first.ref}" in out and "was not pushed" in out
    rec = report.load(rebuilt.dir).publish
    assert rec.digest == first.digest and rec.same_inputs == first.built.image_id and rec.attestations == []
    assert {t: reg.digest_of(first.repo, t) for t in reg.tags(first.repo)} == tags_before   # nothing moved
    assert len(referrers.list_referrers(reg, first.repo, first.digest)[0]) == 4              # nothing attached
    assert verify.verify(first.ref, [pub]).ok


def _replace(reg: Registry, p: Published, kind: str, change: Callable[[dict], None], *,
             signer: Any | None = None, where: str = "both") -> None:
    """Alter the ``kind`` statement's payload in one store or both: re-signed with ``signer`` when given,
    else keeping the old signature (an altered statement)."""
    for f in store.read(reg, p.repo, p.digest, {kind})[0]:
        env = json.loads(f.raw)
        stmt = json.loads(base64.b64decode(env["payload"]))
        change(stmt)
        if signer is not None:
            new = signing.envelope(stmt, signer)
        else:
            env["payload"] = base64.b64encode(statements.canonical(stmt)).decode()
            new = statements.canonical(env)
        if where in ("both", "referrers"):
            old = next(r for r in referrers.list_referrers(reg, p.repo, p.digest)[0] if r.digest == f.artifact)
            art, _ = referrers.push_artifact(reg, p.repo, referrers.subject_of(reg, p.repo, p.digest),
                                             old.artifact_type, [(new, signing.DSSE_TYPE, f"{kind}.json")],
                                             old.annotations)
            reg.delete_manifest(p.repo, old.digest)
            referrers.add_to_index(reg, p.repo, p.digest, [art], remove={old.digest}) \
                if referrers.api_referrers(reg, p.repo, p.digest) is None else None
        if where in ("both", "att"):
            reg.put_blob(p.repo, new)
            cosign_att.add(reg, p.repo, p.digest, [cosign_att.layer(new, statements.KINDS[kind].predicate_type)],
                           remove={f.blob})


def _bump(stmt: dict) -> None:
    stmt["predicate"].setdefault("metadata", {})["tampered"] = True


def test_an_altered_statement_fails_only_when_no_intact_copy_is_left(
        target: Target, keypair: Callable[..., tuple[Path, Path]], publish_signed: Callable[..., Published],
        capsys: pytest.CaptureFixture[str]) -> None:
    key, pub = keypair()
    p = publish_signed(target, key)
    reg = Registry(target.host)
    _replace(reg, p, "sbom", _bump, where="referrers")
    v = verify.verify(p.ref, [pub])
    assert v.ok and ("sbom", "other signer") in _statuses(v)       # the .att copy is intact and signed
    _replace(reg, p, "sbom", _bump, where="att")
    v = verify.verify(p.ref, [pub])
    assert not v.ok and v.missing == ["sbom: no envelope signed by a trusted key (1 other signer)"]
    assert cli.main(["verify", p.ref, "--key", str(pub)]) == 1
    assert "sbom: no envelope signed by a trusted key" in capsys.readouterr().err
    assert cli.main(["verify", p.ref, "--key", str(pub), "--require", "report,vuln,provenance"]) == 0


def test_a_trusted_but_inconsistent_statement_fails_naming_why(
        target: Target, keypair: Callable[..., tuple[Path, Path]], publish_signed: Callable[..., Published]) -> None:
    key, pub = keypair()
    p = publish_signed(target, key)
    reg = Registry(target.host)
    signer = signing.load_signer(str(key))
    other = "sha256:" + "0" * 64

    def another_image(stmt: dict) -> None:
        stmt["predicate"]["scanner"]["result"]["Metadata"]["ImageID"] = other

    def another_base(stmt: dict) -> None:
        stmt["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"] = {"sha256": "1" * 64}

    _replace(reg, p, "vuln", another_image, signer=signer)
    _replace(reg, p, "provenance", another_base, signer=signer)
    v = verify.verify(p.ref, [pub])
    assert v.missing == [f"vuln: signed by a trusted key but the vulnerability report is of image {other}",
                         f"provenance: signed by a trusted key but its base digest sha256:{'1' * 64} is not the one "
                         f"the report records ({p.base_digest})"], v.lines()


def test_require_names_what_is_missing(target: Target, keypair: Callable[..., tuple[Path, Path]],
                                       publish_signed: Callable[..., Published], capsys: pytest.CaptureFixture[str],
                                       gated_variant: Callable[..., Any], tiny_image: Callable[[], str]) -> None:
    key, pub = keypair()
    p = publish_signed(target, key)
    assert cli.main(["verify", p.ref, "--key", str(pub), "--require", "sbom", "--require", "promotion"]) == 1
    assert "promotion: no envelope signed by a trusted key (none attached)" in capsys.readouterr().err
    # a build on a base with no registry digest: the provenance cannot name it, so verify says so
    b = gated_variant(tiny_image(), name="local")
    record.write_section(b.dir, reports.build(b.image_id, "local", input_hash="sha256:" + "4" * 64))
    (b.dir / "sbom.cdx.json").write_bytes((p.built.dir / "sbom.cdx.json").read_bytes())   # (not the point here)
    assert cli.main(["publish", str(b.spec_file), "--out", str(b.out_root), "--registry", f"{target.host}/dev",
                     "--push", "--sign-key", str(key)]) == 0
    digest = report.load(b.dir).publish.digest
    v = verify.verify(f"{target.host}/dev/local@{digest}", [pub], ("report", "provenance"))
    assert v.missing == ["provenance: signed by a trusted key but the provenance names no base image digest "
                         "(resolvedDependencies 'base')"]


def test_promotion_copies_the_evidence_on_either_registry(target: Target, keypair: Callable[..., tuple[Path, Path]],
                                                          publish_signed: Callable[..., Published]) -> None:
    """skopeo copies the digest; the referrers (by the API, or the tag schema's index) and the ``.att``
    image follow; both sides get the signed promotion record."""
    from builder.pipeline import gatekeeping
    key, pub = keypair()
    p = publish_signed(target, key)
    res = gatekeeping.promote(p.ref, f"{target.host}/prod/bert", keys=[pub], signer=signing.load_signer(str(key)))
    assert res.record_signed and len(res.referrers) == 4
    reg = Registry(target.host)
    promoted = f"{target.host}/prod/bert@{p.digest}"
    v = verify.verify(promoted, [pub], (*verify.DEFAULT_REQUIRED, "promotion"))
    assert v.ok and v.route == target.route, v.lines()
    assert len(cosign_att.layers(reg, "prod/bert", p.digest)) == 5
    assert verify.verify(p.ref, [pub], ("promotion",)).ok
