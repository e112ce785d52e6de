"""Signed evidence against a real registry (distribution 2.8: the referrers tag schema fallback).

Publish with a signing key, then: the ``sha256-<hex>`` index lists the report, SBOM, provenance
and Trivy report; each verifies with the public key; an altered statement fails naming which and
why; a second publish (and two concurrent writers) only add to the index; promotion copies the
image and its referrers and refuses unsigned or tampered evidence under a policy that requires
signatures; the SBOM (Trivy's CycloneDX) lists a package the variant added, with its version; no
secret reaches any attached document. The referrers *API* route is in tests/test_referrers_fake_api.py.
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder import cli
from builder.errors import PublishRefused, VerificationFailed
from builder.infra import report as report_mod
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry
from builder.pipeline import gatekeeping as registry
from builder.pipeline import record
from builder.pipeline import single as publish
from builder.publish import attest, evidence, referrers
from builder.spec import loader as spec
from tests import reports

pytest_plugins = ["tests.conftest_registry"]

CANARY = "CANARY-5e1f-" + uuid.uuid4().hex[:8]
SBOM = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "components": [{"type": "library", "name": "six", "version": "1.16.0", "purl": "pkg:pypi/six@1.16.0"}]}


def _keypair(directory: Path, name: str = "signing") -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (directory / f"{name}.pem").write_bytes(pem)
    (directory / f"{name}.pub").write_bytes(pub)
    return directory / f"{name}.pem", directory / f"{name}.pub", pem


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, bytes]:
    return _keypair(tmp_path)


def _publish(login, image_id: str, gated_variant, *, sign_key: str | None, sbom: dict | None = SBOM,
             ns: str = "dev") -> tuple[str, str]:
    repository, digest, _ = _publish_b(login, image_id, gated_variant, sign_key=sign_key, sbom=sbom, ns=ns)
    return repository, digest


def _publish_b(login, image_id: str, gated_variant, *, sign_key: str | None, sbom: dict | None = SBOM,
               ns: str = "dev"):
    b = gated_variant(image_id)
    if sbom is not None:   # skip the Trivy run where the SBOM's content is not the point
        report_mod.write_json(b.dir / "sbom.cdx.json", sbom)
    rec = publish.publish(spec.load(b.spec_file), b.dir, f"{login.host}/{ns}", push=True, sign_key=sign_key, engine=Engine.from_env())
    return rec.repository, rec.digest, b


def _kinds(reg: Registry, repo: str, digest: str) -> list[str]:
    refs, route = referrers.list_referrers(reg, repo, digest)
    assert route == "tag-schema"                        # distribution 2.8 serves no referrers API
    return sorted(r.annotations[attest.KIND_ANNOTATION] for r in refs)


@pytest.mark.docker
def test_signed_publish_attaches_four_statements_that_verify(docker_login, tiny_image, gated_variant, keys,
                                                             capsys) -> None:
    key, pub, _ = keys
    repository, digest, b = _publish_b(docker_login, tiny_image(), gated_variant, sign_key=str(key))
    reg = Registry(docker_login.host)
    assert _kinds(reg, "dev/bert", digest) == ["provenance", "report", "sbom", "vuln"]
    index = json.loads(reg.manifest("dev/bert", referrers.fallback_tag(digest))[0])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    for entry in index["manifests"]:                   # OCI 1.1 artifacts with artifactType and subject
        art = json.loads(reg.manifest("dev/bert", entry["digest"])[0])
        assert art["artifactType"] == attest.DSSE_TYPE == entry["artifactType"]
        assert art["subject"]["digest"] == digest and art["config"]["mediaType"] == referrers.EMPTY_TYPE
        env = json.loads(reg.blob("dev/bert", art["layers"][0]["digest"]))
        assert env["payloadType"] == "application/vnd.in-toto+json" and env["signatures"]
        stmt = attest.envelope_b64_payload(env)
        assert stmt["_type"] == "https://in-toto.io/Statement/v1"
        assert stmt["subject"][0]["digest"]["sha256"] == digest.split(":")[1]
    v = attest.verify(f"{repository}@{digest}", pub)
    assert v.ok, v.problems
    assert sorted(c.kind for c in v.checked if c.ok) == ["provenance", "report", "sbom", "vuln"]
    prov = next(c.predicate for c in v.checked if c.kind == "provenance")
    assert prov["buildDefinition"]["externalParameters"]["variantFiles"]
    assert prov["buildDefinition"]["internalParameters"]["renderedContext"]["sha256"] == "7" * 64
    assert {d["name"] for d in prov["runDetails"]["byproducts"]} == {"report", "sbom", "vuln"}
    report_stmt = next(c.predicate for c in v.checked if c.kind == "report")
    assert report_stmt["report"]["scan"]["findings"] == {"vulnerability": 1}          # the scan counts
    vuln = next(c.predicate for c in v.checked if c.kind == "vuln")
    assert vuln["scanner"]["result"]["Results"][0]["Vulnerabilities"][0]["VulnerabilityID"] == "CVE-2099-0002"
    # the CLI and `registry show`
    assert cli.main(["verify", f"{repository}@{digest}", "--key", str(pub)]) == 0
    assert "VERIFIED (4 statement(s), referrers by tag-schema)" in capsys.readouterr().out
    assert cli.main(["registry", "show", f"{repository}@{digest}"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["referrers_route"] == "tag-schema" and len(shown["referrers"]) == 4
    assert shown["digest"] == digest                                                   # the legacy .tfimg tag
    assert sorted(t for t in reg.tags("dev/bert") if evidence.is_evidence_tag(t)) == sorted(
        [evidence.tag_for(digest), referrers.fallback_tag(digest)])
    # report.json records the attached statements
    rep = b.report()
    assert rep.publish.signed is True and sorted(a.kind for a in rep.publish.attestations) == [
        "provenance", "report", "sbom", "vuln"]


def _tamper(reg: Registry, repo: str, digest: str, kind: str, change) -> str:
    """Alter one attached statement's payload (the signature stays) and swap it into the index."""
    refs, _ = referrers.list_referrers(reg, repo, digest)
    old = next(r for r in refs if r.annotations[attest.KIND_ANNOTATION] == kind)
    art = json.loads(reg.manifest(repo, old.digest)[0])
    env = json.loads(reg.blob(repo, art["layers"][0]["digest"]))
    stmt = attest.envelope_b64_payload(env)
    change(stmt["predicate"])
    env["payload"] = base64.b64encode(attest.canonical(stmt)).decode()
    subject = referrers.subject_of(reg, repo, digest)
    new, _ = referrers.push_artifact(reg, repo, subject, attest.DSSE_TYPE,
                                     [(attest.canonical(env), attest.DSSE_TYPE, f"{kind}.intoto.jsonl")],
                                     old.annotations)
    referrers.add_to_index(reg, repo, digest, [new], remove={old.digest})
    return new.digest


@pytest.mark.docker
def test_altered_statement_fails_naming_which_and_why(docker_login, tiny_image, gated_variant, keys,
                                                      capsys) -> None:
    key, pub, _ = keys
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=str(key))
    reg = Registry(docker_login.host)
    altered = _tamper(reg, "dev/bert", digest, "sbom",
                      lambda p: p["components"][0].update(version="9.9.9"))
    v = attest.verify(f"{repository}@{digest}", pub)
    assert not v.ok
    assert any(p.startswith(f"sbom ({altered[:19]}): the signature does not verify") for p in v.problems)
    assert not any(p.startswith(("report", "vuln", "provenance (")) for p in v.problems)
    with pytest.raises(VerificationFailed, match="sbom .*signature does not verify"):
        attest.require(f"{repository}@{digest}", pub)
    assert cli.main(["verify", f"{repository}@{digest}", "--key", str(pub)]) == 1
    captured = capsys.readouterr()
    assert "FAIL sbom" in captured.out and "signature does not verify" in captured.err


@pytest.mark.docker
def test_validly_signed_but_swapped_statement_fails_the_provenance_hash(docker_login, tiny_image, gated_variant,
                                                                        keys) -> None:
    """A statement re-signed with the right key but not the one published: the provenance's hash catches it."""
    key, pub, _ = keys
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=str(key))
    reg = Registry(docker_login.host)
    refs, _ = referrers.list_referrers(reg, "dev/bert", digest)
    old = next(r for r in refs if r.annotations[attest.KIND_ANNOTATION] == "report")
    stmt = attest.statement(repository, digest, "report", {"schema": "forged"})
    env = attest.envelope(stmt, attest.load_signer(str(key)))
    new, _ = referrers.push_artifact(reg, "dev/bert", referrers.subject_of(reg, "dev/bert", digest),
                                     attest.DSSE_TYPE, [(attest.canonical(env), attest.DSSE_TYPE, "r")], old.annotations)
    referrers.add_to_index(reg, "dev/bert", digest, [new], remove={old.digest})
    v = attest.verify(f"{repository}@{digest}", pub)
    assert [p for p in v.problems if p.startswith("report: no attached report statement has the sha256")], v.problems


@pytest.mark.docker
def test_wrong_key_and_unsigned_fail(docker_login, tiny_image, gated_variant, keys, tmp_path) -> None:
    key, _, _ = keys
    _, other_pub, _ = _keypair(tmp_path, "other")
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=str(key))
    v = attest.verify(f"{repository}@{digest}", other_pub)
    assert len([p for p in v.problems if "signature does not verify" in p]) == 4
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=None, ns="unsigned")
    v = attest.verify(f"{repository}@{digest}", other_pub)
    assert len([p for p in v.problems if "not signed" in p]) == 4


@pytest.mark.docker
def test_second_publish_adds_to_the_index(docker_login, tiny_image, gated_variant, keys) -> None:
    key, pub, _ = keys
    image = tiny_image()
    repository, digest = _publish(docker_login, image, gated_variant, sign_key=str(key))
    reg = Registry(docker_login.host)
    first = {r.digest for r in referrers.list_referrers(reg, "dev/bert", digest)[0]}
    again, digest2 = _publish(docker_login, image, gated_variant, sign_key=str(key))
    assert digest2 == digest
    second = {r.digest for r in referrers.list_referrers(reg, "dev/bert", digest)[0]}
    assert first < second and len(second) == 8
    assert attest.verify(f"{repository}@{digest}", pub).ok


@pytest.mark.docker
def test_two_concurrent_writers_keep_every_entry(docker_login, tiny_image, gated_variant) -> None:
    b = gated_variant(tiny_image())
    report_mod.write_json(b.dir / "sbom.cdx.json", SBOM)
    rec = publish.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/dev", push=True, engine=Engine.from_env())
    before = {r.digest for r in referrers.list_referrers(Registry(docker_login.host), "dev/bert", rec.digest)[0]}
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            reg = Registry(docker_login.host)
            items = [("application/vnd.example.note.v1+json",
                      [(json.dumps({"writer": name, "n": i}).encode(), "application/json", f"{name}-{i}")],
                      {"writer": name}) for i in range(3)]
            results[name] = [r.digest for r in referrers.attach_many(reg, "dev/bert", rec.digest, items)]
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    listed = {r.digest for r in referrers.list_referrers(Registry(docker_login.host), "dev/bert", rec.digest)[0]}
    assert before | set(results["a"]) | set(results["b"]) == listed


def _policy(tmp_path: Path, pub: Path | None) -> Path:
    p = tmp_path / "prod.yaml"
    text = "vulnerabilities:\n  new: {fixed: CRITICAL, unfixed: none}\npublish:\n  require_signatures: true\n"
    if pub is not None:
        text += f"  public_key: {pub}\n"
    p.write_text(text)
    return p


@pytest.mark.docker
def test_promotion_verifies_and_copies_referrers(docker_login, tiny_image, gated_variant, keys, tmp_path) -> None:
    key, pub, _ = keys
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=str(key))
    res = registry.promote(f"{repository}@{digest}", f"{docker_login.host}/prod/bert", policy=_policy(tmp_path, pub))
    assert "signatures verified" in res.policy and len(res.referrers) == 4
    reg = Registry(docker_login.host)
    assert reg.manifest("prod/bert", digest) is not None
    assert _kinds(reg, "prod/bert", digest) == ["provenance", "report", "sbom", "vuln"]
    assert attest.verify(f"{docker_login.host}/prod/bert@{digest}", pub).ok       # evidence followed the digest


@pytest.mark.docker
def test_promotion_refuses_unsigned_or_tampered(docker_login, tiny_image, gated_variant, keys, tmp_path) -> None:
    key, pub, _ = keys
    policy = _policy(tmp_path, None)
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=None, ns="unsigned")
    with pytest.raises(PublishRefused, match="names no public key"):
        registry.promote(f"{repository}@{digest}", f"{docker_login.host}/prod/bert", policy=policy)
    with pytest.raises(PublishRefused, match=r"report .*not signed"):
        registry.promote(f"{repository}@{digest}", f"{docker_login.host}/prod/bert", policy=policy, key=pub)
    repository, digest = _publish(docker_login, tiny_image(), gated_variant, sign_key=str(key))
    _tamper(Registry(docker_login.host), "dev/bert", digest, "provenance",
            lambda p: p["buildDefinition"]["externalParameters"].update(variant="evil"))
    with pytest.raises(PublishRefused, match=r"provenance \(sha256:.*signature does not verify"):
        registry.promote(f"{repository}@{digest}", f"{docker_login.host}/prod/bert", policy=policy, key=pub)
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
def test_sbom_from_trivy_lists_the_added_package_with_its_version(docker_login, gated_variant, keys) -> None:
    from builder.infra import runner
    if runner.which("trivy") is None:
        pytest.skip("trivy is not installed (pip install -e .[scan])")
    key, pub, _ = keys
    tag = _image_with_package("transformers", "4.21.3")
    try:
        image_id = Engine.from_env().image_attrs(tag)["Id"]
        repository, digest = _publish(docker_login, image_id, gated_variant, sign_key=str(key), sbom=None)
        v = attest.verify(f"{repository}@{digest}", pub)
        assert v.ok, v.problems
        bom = next(c.predicate for c in v.checked if c.kind == "sbom")
        assert bom["bomFormat"] == "CycloneDX"
        found = [(c["name"], c.get("version"), c.get("purl")) for c in bom.get("components") or []]
        assert ("transformers", "4.21.3", "pkg:pypi/transformers@4.21.3") in found
    finally:
        Engine.from_env().remove_image(tag, force=True)


@pytest.mark.docker
def test_no_secret_in_any_attached_document(docker_login, tiny_image, gated_variant, tmp_path, monkeypatch,
                                            capsys, caplog) -> None:
    """The canary: credentials in the build inputs, the Trivy report and the SBOM, and the signing key
    itself, reach none of the attached documents (nor the output)."""
    _, pub, pem = _keypair(tmp_path, "canary")
    monkeypatch.setenv("TFIMG_TEST_SIGNING_KEY", pem.decode())
    b = gated_variant(tiny_image())
    rep = b.report()
    record.write_section(b.dir, reports.build(
        b.image_id, "bert", labels={"org.example.index": f"https://bot:{CANARY}-label@pypi.corp.example/simple"},
        base={**rep.build.base.model_dump(), "ref": f"https://bot:{CANARY}-base@registry.corp.example/base:1"}))
    trivy = json.loads((b.dir / "trivy.json").read_text())
    trivy["Results"].append({"Target": "/root/.netrc", "Class": "secret", "Secrets": [
        {"RuleID": "generic", "Severity": "CRITICAL", "Title": "x", "Match": "password *****",
         "Code": {"Lines": [{"Number": 1, "IsCause": True, "Content": f"password {CANARY}-trivy"}]}}]})
    report_mod.write_json(b.dir / "trivy.json", trivy)
    sbom = {**SBOM, "metadata": {"properties": [
        {"name": "aquasecurity:trivy:RepoTag", "value": f"https://bot:{CANARY}-sbom@registry.corp.example/x"}],
        "api_token": f"{CANARY}-sbomkey"}}
    report_mod.write_json(b.dir / "sbom.cdx.json", sbom)
    assert cli.main(["publish", str(b.spec_file), "--out", str(b.out_root), "--registry", f"{docker_login.host}/dev",
                     "--push", "--sign-key", "env:TFIMG_TEST_SIGNING_KEY"]) == 0
    digest = report_mod.load(b.dir).publish.digest
    reg = Registry(docker_login.host)
    blobs = []
    refs, _ = referrers.list_referrers(reg, "dev/bert", digest)
    assert len(refs) == 4
    for r in refs:
        art = json.loads(reg.manifest("dev/bert", r.digest)[0])
        env = json.loads(reg.blob("dev/bert", art["layers"][0]["digest"]))
        blobs.append(json.dumps(attest.envelope_b64_payload(env)) + json.dumps(env) + json.dumps(art))
    legacy = json.loads(reg.manifest("dev/bert", evidence.tag_for(digest))[0])
    blobs += [reg.blob("dev/bert", lyr["digest"]).decode() for lyr in legacy["layers"]]
    out = capsys.readouterr()
    haystack = "\n".join(blobs) + out.out + out.err + caplog.text + b.report().publish.model_dump_json()
    body = "".join(pem.decode().splitlines()[1:-1])
    for needle in (CANARY, body[:40], docker_login.password):
        assert needle not in haystack
    assert attest.verify(f"{docker_login.host}/dev/bert@{digest}", pub).ok   # and it was really signed
