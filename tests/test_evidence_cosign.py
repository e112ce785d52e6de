"""The published evidence, read by the tools users run: Debian 13's cosign 2.5.0 and oras 1.2.0.

Against both registries (Debian's distribution 2.8, no referrers API; go-containerregistry's registry
with it): cosign verify-attestation finds and verifies every statement with the PEM public key as it
is, and cosign tree lists them; oras discover tells the kinds apart by artifactType; the referrers
API's ``?artifactType=`` filter does too; the envelopes are the same bytes in both stores; each
statement fetched back is a strict in-toto Statement v1 (SLSA v1, CycloneDX). The ``.att`` image tfimg
writes is byte for byte what ``cosign attest --key`` writes, and tfimg keeps cosign's own layers.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from builder.infra.registry_client import Registry
from builder.publish import cosign_att, referrers, statements, verify
from tests.evidence_tools import INSECURE, Published, Target, cosign_verify, ok, push, run

pytest_plugins = ["tests.conftest_registry", "tests.conftest_referrers", "tests.conftest_evidence"]
pytestmark = [pytest.mark.docker]

KEY_KINDS = ["report", "sbom", "vuln", "provenance"]


def _validate(stmt: dict) -> None:
    """Strict schema checks of one statement (in-toto v1; SLSA v1; CycloneDX at its declared version)."""
    pb = json_format.Parse(json.dumps(stmt), statement_pb2.Statement(), ignore_unknown_fields=False)
    Statement.copy_from_pb(pb).validate()
    if stmt["predicateType"] == statements.KINDS["provenance"].predicate_type:
        json_format.Parse(json.dumps(stmt["predicate"]), provenance_pb2.Provenance(), ignore_unknown_fields=False)
    if stmt["predicateType"] == statements.KINDS["sbom"].predicate_type:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
        version = SchemaVersion.from_version(stmt["predicate"]["specVersion"])
        assert JsonStrictValidator(version).validate_str(json.dumps(stmt["predicate"])) is None


def test_cosign_and_oras_find_verify_and_tell_apart_every_statement(
        target: Target, clients: None, keypair: Callable[..., tuple[Path, Path]],
        publish_signed: Callable[..., Published]) -> None:
    key, pub = keypair()
    _, other = keypair("other")
    p = publish_signed(target, key)
    reg = Registry(target.host)

    # cosign: every kind, by its --type, with the PEM public key as it is; not with another key
    for kind in KEY_KINDS:
        kind_type = statements.KINDS[kind].cosign_type
        res = cosign_verify(p.ref, pub, kind_type)
        assert res.returncode == 0, f"{kind}: {res.stderr[-2000:]}"
        payloads = [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in res.stdout.splitlines()]
        assert [s["predicateType"] for s in payloads] == [statements.KINDS[kind].predicate_type]
        assert payloads[0]["subject"][0]["digest"]["sha256"] == p.digest.split(":")[1]
        _validate(payloads[0])
        assert cosign_verify(p.ref, other, kind_type).returncode != 0
    tree = ok("cosign", "tree", *INSECURE, p.ref)
    att_layers = [lyr["digest"] for lyr in cosign_att.layers(reg, p.repo, p.digest)]
    assert cosign_att.tag_for(p.digest) in tree and len(att_layers) == 4
    assert all(d in tree for d in att_layers), tree

    # oras: one artifactType per kind; each artifact's one layer is an envelope named .json
    blobs = set()
    for kind in KEY_KINDS:
        art_type = statements.KINDS[kind].artifact_type
        found = json.loads(ok("oras", "discover", "--plain-http", "--format", "json", "--artifact-type", art_type,
                              p.ref))["manifests"]
        assert [m["artifactType"] for m in found] == [art_type], found
        manifest = json.loads(ok("oras", "manifest", "fetch", "--plain-http", f"{p.repository}@{found[0]['digest']}"))
        (layer,) = manifest["layers"]
        title = layer["annotations"][referrers.TITLE]
        assert title.startswith(f"{kind}.") and title.endswith(".json") and not title.endswith(".jsonl")
        assert manifest["subject"]["digest"] == p.digest
        blobs.add(layer["digest"])
    assert blobs == set(att_layers)                      # one store: the same envelopes, byte for byte

    # the referrers API's own filter (where there is one); the tag schema index where there is not
    if target.kind == "referrers":
        res = requests.get(f"http://{target.host}/v2/{p.repo}/referrers/{p.digest}",
                           params={"artifactType": statements.KINDS["sbom"].artifact_type}, timeout=10)
        assert res.headers.get("OCI-Filters-Applied") == "artifactType"
        assert len(res.json()["manifests"]) == 1
        assert referrers.fallback_tag(p.digest) not in reg.tags(p.repo)
    else:
        assert referrers.fallback_tag(p.digest) in reg.tags(p.repo)

    v = verify.verify(p.ref, [pub])
    assert v.ok and v.route == target.route, v.lines()
    assert sorted(j.kind for j in v.judged if j.ok) == sorted(KEY_KINDS)


def _cosign_keys(directory: Path) -> dict[str, str]:
    env = {"COSIGN_PASSWORD": ""}   # a throwaway key, in the test's folder
    ok("cosign", "generate-key-pair", cwd=directory, env=env)
    return env


def test_the_att_image_is_what_cosign_attest_writes_and_cosigns_layers_stay(
        target: Target, clients: None, keypair: Callable[..., tuple[Path, Path]],
        publish_signed: Callable[..., Published], tiny_image: Callable[[], str], tmp_path: Path) -> None:
    reg = Registry(target.host)
    env = _cosign_keys(tmp_path)
    (tmp_path / "bom.json").write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1}))
    (tmp_path / "note.json").write_text(json.dumps({"note": "<made by cosign & kept>"}))
    digest = push(tiny_image(), f"{target.host}/cosign/only:1")
    ref = f"{target.host}/cosign/only@{digest}"
    for ptype, pred in (("cyclonedx", "bom.json"), ("https://example.com/note/v1", "note.json")):
        ok("cosign", "attest", "--yes", "--key", "cosign.key", "--type", ptype, "--predicate", pred,
           "--tlog-upload=false", *INSECURE, ref, cwd=tmp_path, env=env)
    raw, _, _ = reg.manifest("cosign/only", cosign_att.tag_for(digest))
    layers = json.loads(raw)["layers"]
    envelopes = [(reg.blob("cosign/only", lyr["digest"]), lyr["annotations"]["predicateType"]) for lyr in layers]
    manifest, config = cosign_att.image([cosign_att.layer(e, t) for e, t in envelopes])
    assert manifest == raw                                               # byte for byte
    assert config == reg.blob("cosign/only", json.loads(raw)["config"]["digest"])

    # tfimg publishes, cosign attests beside it, tfimg publishes again: every layer stays, both verify
    key, pub = keypair()
    p = publish_signed(target, key)
    ok("cosign", "attest", "--yes", "--key", "cosign.key", "--type", "https://example.com/note/v1", "--predicate",
       "note.json", "--tlog-upload=false", *INSECURE, p.ref, cwd=tmp_path, env=env)
    before = {lyr["digest"] for lyr in cosign_att.layers(reg, p.repo, p.digest)}
    key2, pub2 = keypair("second")
    again = publish_signed(target, key2, image_id=p.built.image_id)
    assert again.digest == p.digest
    after = {lyr["digest"] for lyr in cosign_att.layers(reg, p.repo, p.digest)}
    assert before < after and len(after) == 9                            # 4 + cosign's 1 + the second key's 4
    assert cosign_verify(p.ref, tmp_path / "cosign.pub", "https://example.com/note/v1").returncode == 0
    for k in (pub, pub2):
        assert cosign_verify(p.ref, k, "slsaprovenance1").returncode == 0
    v = verify.verify(p.ref, [pub])
    assert v.ok, v.lines()
    assert [j.status for j in v.judged if j.kind == "?"] == ["other signer"]   # cosign's note: listed, no failure


@pytest.mark.parametrize("target", ["distribution"], indirect=True)
@pytest.mark.parametrize("kind,cosign_accepts", [("ed25519", True), ("rsa", True), ("p384", False)])
def test_key_types_cosign_verifies_as_they_are(kind: str, cosign_accepts: bool, target: Target, clients: None,
                                               keypair: Callable[..., tuple[Path, Path]],
                                               publish_signed: Callable[..., Published]) -> None:
    """Ed25519 and RSA (signed PKCS#1 v1.5, as cosign checks RSA) work with cosign as they are; cosign checks
    ECDSA with SHA-256 only, so a P-384 key's statements verify with tfimg and not with cosign."""
    key, pub = keypair(kind, kind)
    p = publish_signed(target, key)
    assert verify.verify(p.ref, [pub]).ok
    res = cosign_verify(p.ref, pub, "vuln")
    assert (res.returncode == 0) is cosign_accepts, res.stderr[-1500:]


def test_cosign_verifies_what_the_cli_published(target: Target, clients: None,
                                                keypair: Callable[..., tuple[Path, Path]],
                                                publish_signed: Callable[..., Published],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`tfimg verify` prints VERIFIED and exits 0 for the key, 1 naming each missing kind for another."""
    from builder import cli
    key, pub = keypair()
    _, other = keypair("other")
    p = publish_signed(target, key)
    assert cli.main(["verify", p.ref, "--key", str(pub)]) == 0
    out = capsys.readouterr().out
    assert f"{p.ref}: VERIFIED" in out and out.count("  ok ") == 4
    assert cli.main(["verify", p.ref, "--key", str(other)]) == 1
    captured = capsys.readouterr()
    assert [line.split()[2] for line in captured.out.splitlines() if line.startswith("  other signer")] == KEY_KINDS
    for kind in KEY_KINDS:
        assert f"{kind}: no envelope signed by a trusted key (1 other signer)" in captured.err
    assert os.environ.get("COSIGN_PASSWORD") is None
    assert run("cosign", "verify-attestation", "--key", str(pub), "--insecure-ignore-tlog", *INSECURE,
               "--type", "vuln", p.ref).returncode == 0
