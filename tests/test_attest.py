"""Signed evidence against a real registry with auth (distribution 2.8: the referrers tag schema fallback).

Publish with a signing key to a registry that needs a login: the statements are referrers (one
artifactType per kind) listed in the ``sha256-<hex>`` index, and layers of cosign's ``sha256-<hex>.att``,
the same envelopes in both; no other evidence tag is written; `registry show` lists them. Unsigned
statements verify with no key. Two concurrent writers keep every referrer and every ``.att`` layer.
Promotion verifies (only statements that verify are judged), copies the image, its referrers and its
``.att``, and records a signed promotion statement on both sides; it refuses unsigned or tampered
evidence, and a policy that requires signatures refuses to promote without --sign-key. The SBOM
(Trivy's CycloneDX) lists a package the variant added; no secret reaches any attached document.
Cosign and oras reading all this: tests/test_evidence_cosign.py; reruns and the policy:
tests/test_evidence_rerun.py.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
import threading
import uuid
from pathlib import Path

import pytest

from builder import cli
from builder.errors import PublishRefused, TfimgError
from builder.infra import report as report_mod
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry
from builder.pipeline import gatekeeping as registry
from builder.pipeline import record
from builder.pipeline import single as publish
from builder.publish import cosign_att, evidence, referrers, signing, statements, store, verify
from builder.spec import loader as spec
from tests import reports
from tests.evidence_tools import Target

pytest_plugins = ["tests.conftest_registry", "tests.conftest_referrers", "tests.conftest_evidence"]

CANARY = "CANARY-5e1f-" + uuid.uuid4().hex[:8]
KINDS = ["provenance", "report", "sbom", "vuln"]


def _store(reg: Registry, repo: str, digest: str) -> tuple[dict[str, str], set[str]]:
    """({kind: artifactType} of the referrers, the .att layer digests), checking each referrer's shape."""
    refs, route = referrers.list_referrers(reg, repo, digest)
    assert route == "tag-schema"                        # distribution 2.8 serves no referrers API
    types, blobs = {}, set()
    for r in refs:
        art = json.loads(reg.manifest(repo, r.digest)[0])
        assert art["artifactType"] == r.artifact_type and art["subject"]["digest"] == digest
        assert art["config"]["mediaType"] == referrers.EMPTY_TYPE
        (layer,) = art["layers"]
        assert layer["mediaType"] == signing.DSSE_TYPE and layer["annotations"][referrers.TITLE].endswith(".json")
        types[r.annotations[store.KIND_ANNOTATION]] = r.artifact_type
        blobs.add(layer["digest"])
    att = {lyr["digest"] for lyr in cosign_att.layers(reg, repo, digest)}
    assert blobs == att                                 # one store: the same envelopes
    return types, att


@pytest.mark.docker
def test_signed_publish_to_a_registry_with_a_login(docker_login, keypair, publish_signed, capsys) -> None:
    key, pub = keypair()
    p = publish_signed(Target("distribution", docker_login.host), key)
    reg = Registry(docker_login.host)
    types, _ = _store(reg, "dev/bert", p.digest)
    assert types == {k: statements.KINDS[k].artifact_type for k in KINDS}
    assert len(set(types.values())) == 4
    evidence_tags = sorted(t for t in reg.tags("dev/bert") if evidence.is_evidence_tag(t))
    assert evidence_tags == sorted([referrers.fallback_tag(p.digest), cosign_att.tag_for(p.digest)])  # no .tfimg
    v = verify.verify(p.ref, [pub])
    assert v.ok, v.lines()
    rep = p.built.report()
    assert rep.publish.signed is True and sorted(a.kind for a in rep.publish.attestations) == KINDS
    assert rep.publish.evidence.tag == cosign_att.tag_for(p.digest)
    assert cli.main(["registry", "show", p.ref]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["digest"] == p.digest and shown["referrers_route"] == "tag-schema" and len(shown["referrers"]) == 4
    assert sorted(s["kind"] for s in shown["statements"]) == KINDS and shown["signatures_checked"] is False
    assert shown["report"]["scan"]["findings"] == {"vulnerability": 1}                 # the scan counts


@pytest.mark.docker
def test_unsigned_statements_do_not_verify(docker_login, keypair, publish_signed) -> None:
    _, pub = keypair()
    p = publish_signed(Target("distribution", docker_login.host), None, ns="unsigned")
    v = verify.verify(p.ref, [pub])
    assert sorted(v.missing) == [f"{k}: no envelope signed by a trusted key (1 unsigned)" for k in KINDS]
    assert p.built.report().publish.signed is False


@pytest.mark.docker
def test_two_concurrent_writers_keep_every_entry(docker_login, keypair, publish_signed) -> None:
    key, _ = keypair()
    p = publish_signed(Target("distribution", docker_login.host), key)
    reg = Registry(docker_login.host)
    before = {r.digest for r in referrers.list_referrers(reg, p.repo, p.digest)[0]}
    att_before = {lyr["digest"] for lyr in cosign_att.layers(reg, p.repo, p.digest)}
    results: dict[str, list[str]] = {}
    layers: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            reg = Registry(docker_login.host)
            notes = [json.dumps({"writer": name, "n": i}).encode() for i in range(3)]
            items = [("application/vnd.example.note.v1+json", [(n, "application/json", f"{name}-{i}.json")],
                      {"writer": name}) for i, n in enumerate(notes)]
            results[name] = [r.digest for r in referrers.attach_many(reg, p.repo, p.digest, items)]
            cosign_att.add(reg, p.repo, p.digest, [cosign_att.layer(n, "https://example.com/note") for n in notes])
            layers[name] = [cosign_att.layer(n, "x")["digest"] for n in notes]
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    listed = {r.digest for r in referrers.list_referrers(reg, p.repo, p.digest)[0]}
    assert before | set(results["a"]) | set(results["b"]) == listed
    att = {lyr["digest"] for lyr in cosign_att.layers(reg, p.repo, p.digest)}
    assert att_before | set(layers["a"]) | set(layers["b"]) == att


def _policy(tmp_path: Path, pub: Path | None) -> Path:
    p = tmp_path / "prod.yaml"
    text = "vulnerabilities:\n  new: {fixed: CRITICAL, unfixed: none}\npublish:\n  require_signatures: true\n"
    if pub is not None:
        text += f"  public_key: {pub}\n"
    p.write_text(text)
    return p


@pytest.mark.docker
def test_promotion_verifies_copies_the_evidence_and_signs_its_record(docker_login, keypair, publish_signed,
                                                                     tmp_path, capsys) -> None:
    key, pub = keypair()
    p = publish_signed(Target("distribution", docker_login.host), key)
    res = registry.promote(p.ref, f"{docker_login.host}/prod/bert", policy=_policy(tmp_path, pub),
                           signer=signing.load_signer(str(key)))
    assert "signatures verified with signing.pub" in res.policy and len(res.referrers) == 4 and res.record_signed
    reg = Registry(docker_login.host)
    assert reg.manifest("prod/bert", p.digest) is not None
    types, att = _store(reg, "prod/bert", p.digest)
    assert sorted(types) == ["promotion", *KINDS] and len(att) == 5
    target = f"{docker_login.host}/prod/bert@{p.digest}"
    for ref in (p.ref, target):                                       # the record, signed, on both sides
        v = verify.verify(ref, [pub], (*verify.DEFAULT_REQUIRED, "promotion"))
        assert v.ok, v.lines()
    (record_,) = evidence.promotions(reg, "prod/bert", p.digest)
    assert record_.to == f"{docker_login.host}/prod/bert" and record_.signed
    assert evidence.promotions(reg, "dev/bert", p.digest)[0].from_ == p.repository
    assert cli.main(["registry", "show", target]) == 0
    assert json.loads(capsys.readouterr().out)["promotions"][0]["to"] == f"{docker_login.host}/prod/bert"


def _tamper(reg: Registry, repo: str, digest: str, kind: str, change) -> None:
    """Alter the ``kind`` statement's payload in both stores (the signature stays)."""
    for f in store.read(reg, repo, digest, {kind})[0]:
        env = json.loads(f.raw)
        stmt = json.loads(base64.b64decode(env["payload"]))
        change(stmt["predicate"])
        env["payload"] = base64.b64encode(statements.canonical(stmt)).decode()
        new = statements.canonical(env)
        old = next(r for r in referrers.list_referrers(reg, repo, digest)[0] if r.digest == f.artifact)
        art, _ = referrers.push_artifact(reg, repo, referrers.subject_of(reg, repo, digest), old.artifact_type,
                                         [(new, signing.DSSE_TYPE, f"{kind}.json")], old.annotations)
        referrers.add_to_index(reg, repo, digest, [art], remove={old.digest})
        cosign_att.add(reg, repo, digest, [cosign_att.layer(new, statements.KINDS[kind].predicate_type)],
                       remove={f.blob})


@pytest.mark.docker
def test_promotion_refuses_unsigned_or_tampered_evidence_and_an_unsigned_record(
        docker_login, keypair, publish_signed, tmp_path) -> None:
    key, pub = keypair()
    policy = _policy(tmp_path, None)
    target = f"{docker_login.host}/prod/bert"
    p = publish_signed(Target("distribution", docker_login.host), None, ns="unsigned")
    with pytest.raises(PublishRefused, match="names no public key"):
        registry.promote(p.ref, target, policy=policy)
    with pytest.raises(PublishRefused, match=r"report: no envelope signed by a trusted key \(1 unsigned\)"):
        registry.promote(p.ref, target, policy=policy, keys=[pub])
    p = publish_signed(Target("distribution", docker_login.host), key)
    with pytest.raises(TfimgError, match="must be signed: pass --sign-key") as info:
        registry.promote(p.ref, target, policy=policy, keys=[pub])
    assert info.value.exit_code == 2
    _tamper(Registry(docker_login.host), "dev/bert", p.digest, "provenance",
            lambda pred: pred["buildDefinition"]["externalParameters"].update(variant="evil"))
    with pytest.raises(PublishRefused, match=r"provenance: no envelope signed by a trusted key \(1 other signer\)"):
        registry.promote(p.ref, target, policy=policy, keys=[pub], signer=signing.load_signer(str(key)))
    assert Registry(docker_login.host).tags("prod/bert") == []


def _image_with_package(name: str, version: str) -> str:
    """A tiny image whose only content is an installed Python distribution (as pip leaves it)."""
    buf = io.BytesIO()
    files = {f"usr/local/lib/python3.8/dist-packages/{name}-{version}.dist-info/METADATA":
             f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n",
             f"usr/local/lib/python3.8/dist-packages/{name}-{version}.dist-info/RECORD": "",
             "etc/tfimg-test": uuid.uuid4().hex}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tag = f"tfimg-test-pkg:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "import", "-", tag], input=buf.getvalue(), capture_output=True, timeout=120, check=True)
    return tag


@pytest.mark.docker
@pytest.mark.trivy
@pytest.mark.slow
def test_sbom_from_trivy_lists_the_added_package_with_its_version(docker_login, gated_variant, keypair) -> None:
    from builder.infra import runner
    if runner.which("trivy") is None:
        pytest.skip("trivy is not installed (pip install -e .[scan])")
    key, pub = keypair()
    tag = _image_with_package("transformers", "4.21.3")
    try:
        image_id = Engine.from_env().image_attrs(tag)["Id"]
        b = gated_variant(image_id)       # no sbom.cdx.json: publishing has Trivy make one of the image
        rec = publish.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/dev", push=True,
                              sign_key=str(key), engine=Engine.from_env())
        v = verify.verify(f"{rec.repository}@{rec.digest}", [pub], ("sbom",))
        assert v.ok, v.lines()                                  # signed, and names the image's config digest
        bom = next(j.predicate for j in v.judged if j.kind == "sbom")
        assert bom["bomFormat"] == "CycloneDX"
        found = [(c["name"], c.get("version"), c.get("purl")) for c in bom.get("components") or []]
        assert ("transformers", "4.21.3", "pkg:pypi/transformers@4.21.3") in found
    finally:
        Engine.from_env().remove_image(tag, force=True)


@pytest.mark.docker
def test_no_secret_in_any_attached_document(docker_login, tiny_image, gated_variant, keypair, monkeypatch,
                                            capsys, caplog) -> None:
    """The canary: credentials in the build inputs, the Trivy report and the SBOM, and the signing key
    itself, reach none of the attached documents (nor the output)."""
    key, pub = keypair("canary")
    pem = key.read_bytes()
    monkeypatch.setenv("TFIMG_TEST_SIGNING_KEY", pem.decode())
    b = gated_variant(tiny_image())
    rep = b.report()
    record.write_section(b.dir, reports.build(
        b.image_id, "bert", labels={"org.example.index": f"https://bot:{CANARY}-label@pypi.corp.example/simple"},
        base={**rep.build.base.model_dump(), "ref": f"https://bot:{CANARY}-base@registry.corp.example/base:1",
              "digest": "sha256:" + "b" * 64}))
    trivy = json.loads((b.dir / "trivy.json").read_text())
    trivy["Results"].append({"Target": "/root/.netrc", "Class": "secret", "Secrets": [
        {"RuleID": "generic", "Severity": "CRITICAL", "Title": "x", "Match": "password *****",
         "Code": {"Lines": [{"Number": 1, "IsCause": True, "Content": f"password {CANARY}-trivy"}]}}]})
    report_mod.write_json(b.dir / "trivy.json", trivy)
    sbom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "metadata": {"properties": [
        {"name": "aquasecurity:trivy:RepoTag", "value": f"https://bot:{CANARY}-sbom@registry.corp.example/x"}],
        "api_token": f"{CANARY}-sbomkey"}}
    report_mod.write_json(b.dir / "sbom.cdx.json", sbom)
    assert cli.main(["publish", str(b.spec_file), "--out", str(b.out_root), "--registry", f"{docker_login.host}/dev",
                     "--push", "--sign-key", "env:TFIMG_TEST_SIGNING_KEY"]) == 0
    digest = report_mod.load(b.dir).publish.digest
    reg = Registry(docker_login.host)
    found, _ = store.read(reg, "dev/bert", digest)
    assert len(found) == 4
    blobs = [f.raw.decode() + json.dumps(f.statement()) for f in found]
    blobs += [reg.manifest("dev/bert", t)[0].decode() for t in reg.tags("dev/bert")]
    blobs += [reg.manifest("dev/bert", r.digest)[0].decode() for r in referrers.list_referrers(reg, "dev/bert", digest)[0]]
    out = capsys.readouterr()
    haystack = "\n".join(blobs) + out.out + out.err + caplog.text + b.report().publish.model_dump_json()
    body = "".join(pem.decode().splitlines()[1:-1])
    for needle in (CANARY, body[:40], docker_login.password):
        assert needle not in haystack
    v = verify.verify(f"{docker_login.host}/dev/bert@{digest}", [pub], ("report", "vuln", "provenance"))
    assert v.ok, v.lines()                                                  # and it was really signed
