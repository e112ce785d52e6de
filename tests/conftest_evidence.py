"""Fixtures for the evidence tests: both kinds of registry, key pairs, and signed publishes.

Load with ``pytest_plugins = ["tests.conftest_registry", "tests.conftest_referrers", "tests.conftest_evidence"]``.

- ``target`` (parametrized): a registry of each kind, no auth, plain http on 127.0.0.1, for one test:
  ``distribution`` (Debian's docker-registry 2.8: no referrers API, the tag schema fallback) and
  ``referrers`` (go-containerregistry's pkg/registry: the referrers API); DOCKER_CONFIG is an empty one.
- ``keypair(name, kind)``: a PEM key pair in the test's folder (``p256``, ``p384``, ``ed25519``, ``rsa``).
- ``publish_signed(target, key)``: a tiny image published with signed evidence: its report is made with
  the report models (tests/reports.py), its base is another tiny image pushed to the target (so the
  base has a real registry digest), its SBOM is written by the real Trivy (``trivy convert`` of the
  image's scan record), and ``tfimg publish --push --sign-key`` attaches the statements.
- ``clients``: cosign and oras on PATH (scripts/deps.sh installs Debian 13's); skipped with the reason,
  failed under CI / --require-docker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from builder.infra import runner
from builder.infra.engine import Engine
from builder.pipeline import record, single
from builder.spec import loader as spec
from tests import reports
from tests.conftest_referrers import serve_referrers_registry
from tests.conftest_registry import Built, _missing, registry_binary_or_skip, serve_registry
from tests.evidence_tools import Published, Target, push


@pytest.fixture(scope="module")
def clients(pytestconfig: pytest.Config) -> None:
    for tool in ("oras", "cosign"):
        if not shutil.which(tool):
            _missing(pytestconfig, f"{tool} is not installed (scripts/deps.sh installs it from Debian 13)")


@pytest.fixture(params=["distribution", "referrers"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    cfg = tmp_path_factory.mktemp("docker-config")
    (cfg / "config.json").write_text(json.dumps({"auths": {}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "distribution":
        registry_binary_or_skip(request.config)
        with serve_registry(root) as host:
            yield Target("distribution", host)
    else:
        with serve_referrers_registry(request.getfixturevalue("referrers_binary"), root) as reg:
            yield Target("referrers", reg.host)


@pytest.fixture
def keypair(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    def make(name: str = "signing", kind: str = "p256") -> tuple[Path, Path]:
        key = {"p256": lambda: ec.generate_private_key(ec.SECP256R1()),
               "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
               "ed25519": ed25519.Ed25519PrivateKey.generate,
               "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)}[kind]()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        (tmp_path / f"{name}.pem").write_bytes(pem)
        (tmp_path / f"{name}.pub").write_bytes(pub)
        return tmp_path / f"{name}.pem", tmp_path / f"{name}.pub"
    return make


def real_sbom(config: pytest.Config, directory: Path) -> None:
    """``sbom.cdx.json`` beside the scan record, written by the real Trivy from it (as the scan stage does)."""
    trivy = runner.which("trivy")
    if trivy is None:
        _missing(config, "trivy is not installed (pip install -e .[scan])")
    subprocess.run([str(trivy), "convert", "--format", "cyclonedx", "--quiet", "--output",
                    str(directory / "sbom.cdx.json"), str(directory / "trivy.json")], check=True, timeout=120)


@pytest.fixture
def publish_signed(tiny_image: Callable[[], str], gated_variant: Callable[..., Built],
                   pytestconfig: pytest.Config) -> Callable[..., Published]:
    bases: dict[str, tuple[str, str]] = {}

    def make(target: Target, key: Path | None, *, image_id: str | None = None, ns: str = "dev",
             name: str = "bert") -> Published:
        if target.host not in bases:
            base_id = tiny_image()
            bases[target.host] = base_id, push(base_id, f"{target.host}/base/tiny:1")
        base_id, base_digest = bases[target.host]
        b = gated_variant(image_id or tiny_image(), name=name)
        record.write_section(b.dir, reports.build(
            b.image_id, name, base={"ref": f"{target.host}/base/tiny:1", "id": base_id, "digest": base_digest, "size": 0},
            started_on="2026-11-26T09:00:00Z", finished_on="2026-11-26T09:04:00Z"))
        real_sbom(pytestconfig, b.dir)
        rec = single.publish(spec.load(b.spec_file), b.dir, f"{target.host}/{ns}", push=True,
                             sign_key=str(key) if key else None, engine=Engine.from_env())
        return Published(rec.repository, rec.digest, b, base_digest)

    return make


