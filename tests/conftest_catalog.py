"""A real registry with real published images, for the catalog tests (loaded with ``pytest_plugins``).

Once per session, into a registry of its own (Debian's docker-registry, its access log on):

- ``team/bert``: the shipped bert variant built for real on the stand-in base (pushed to ``base/`` first, so
  its provenance names the base by digest), checked, scanned with the real
  Trivy against the demo DB and gated under ``policies/demo-bert-waivers.yaml`` (as ``make demo`` does), then
  published with signed evidence (key A);
- ``team/tiny``: a tiny image with a report made through the report models (tests/conftest_registry.py), one
  HIGH finding and an SBOM with ``six 1.16.0`` and a package named like markup (:data:`HOSTILE`), published
  signed with key B, then promoted (skopeo) to ``team/prod/tiny``.

A catalog made ``--key A.pub --policy`` :data:`CRITICAL_ONLY` therefore has bert verified but BLOCKED (its
CRITICAL transformers advisory has no waiver in that policy) and tiny passing but unverifiable (signed with
another key): each status made the real way.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.infra import report as report_mod
from builder.infra.engine import Engine
from builder.pipeline import gatekeeping
from builder.pipeline import single as publish
from builder.spec import loader as spec
from tests.catalog_data import Published, tfimg
from tests.conftest_registry import import_tiny, make_gated, registry_binary_or_skip, remove_image, serve_registry

ROOT = Path(__file__).resolve().parent.parent
CRITICAL_ONLY = "description: blocks new fixable CRITICAL findings only\n" \
                "vulnerabilities:\n  new: {fixed: CRITICAL, unfixed: none}\n"
HOSTILE = "<img src=x onerror=window.__pwned=1>"   # a package name: whoever pushes writes the evidence
SBOM = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "components": [{"type": "library", "name": "six", "version": "1.16.0", "purl": "pkg:pypi/six@1.16.0"},
                       {"type": "library", "name": HOSTILE, "version": "6.6.6"}]}


def _keypair(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / f"{name}.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / f"{name}.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return directory / f"{name}.pem", directory / f"{name}.pub"


def _publish_bert(host: str, work: Path, standin: str, db: str, key: Path) -> str:
    out = work / "build"
    base = f"{host}/base/tfimg-standin:1"   # pushed first, as make demo does: the provenance names it by digest
    for cmd in (["docker", "tag", standin, base], ["docker", "push", "--quiet", base]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    res = tfimg("build", "variants/bert.yaml", "--base", base, "--trivy-db-repository", db, "--trivy-cache-dir",
                str(work / "trivy-cache"), "--policy", "policies/demo-bert-waivers.yaml", "--out", str(out))
    subprocess.run(["docker", "rmi", base], capture_output=True, timeout=60)   # the tag only: standin keeps it
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = tfimg("publish", "variants/bert.yaml", "--out", str(out), "--registry", f"{host}/team", "--push",
                "--sign-key", str(key))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return str(json.loads((out / "bert" / "report.json").read_text())["publish"]["digest"])


def _publish_tiny(host: str, work: Path, image_id: str, key: Path) -> str:
    b = make_gated(work / "tiny", image_id, "tiny")
    report_mod.write_json(b.dir / "sbom.cdx.json", SBOM)
    rec = publish.publish(spec.load(b.spec_file), b.dir, f"{host}/team", push=True, sign_key=str(key),
                          engine=Engine.from_env())
    gatekeeping.promote(f"{rec.repository}@{rec.digest}", f"{host}/team/prod/tiny")
    return str(rec.digest)


@pytest.fixture(scope="session")
def published(standin_base: str, demo_db: str, tmp_path_factory: pytest.TempPathFactory,
              pytestconfig: pytest.Config) -> Iterator[Published]:
    registry_binary_or_skip(pytestconfig)
    root = tmp_path_factory.mktemp("catalog-registry")
    work = tmp_path_factory.mktemp("catalog-work")
    keys: dict[str, Path] = {}
    for name in ("a", "b"):
        keys[f"{name}.pem"], keys[f"{name}.pub"] = _keypair(work, name)
    policy = work / "critical-only.yaml"
    policy.write_text(CRITICAL_ONLY)
    tiny = import_tiny()
    try:
        with serve_registry(root, accesslog=True) as host:
            bert = _publish_bert(host, work, standin_base, demo_db, keys["a.pem"])
            tiny_digest = _publish_tiny(host, work, tiny, keys["b.pem"])
            yield Published(host, root, work, keys, policy, bert, tiny_digest)
    finally:
        remove_image(tiny)
