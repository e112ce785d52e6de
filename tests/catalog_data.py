"""Helpers for the catalog's tests and benchmark: a generated registry of N published digests without Docker,
the ``tfimg`` command as a user runs it, and what tests/conftest_catalog.py publishes (:class:`Published`).

Each digest is a small image (a config and two layers, pushed as blobs) in one of a few variant repositories,
tagged like a publish tags it, with evidence attached the way ``tfimg publish --push --sign-key`` attaches it:
the four signed statements (:func:`builder.publish.attest.attach_all`: referrers and cosign's ``.att``) of a
report made through the report models (tests/reports.py), its base named by a registry digest,
with an SBOM of a few hundred packages and a Trivy report of a few dozen findings. Only Docker's image build
and push are skipped: what the catalog reads is what a publish writes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from builder.infra.registry_client import OCI_MANIFEST, Registry, parse_ref
from builder.infra.report_models import Report, TagsSection
from builder.publish import attest, evidence, signing
from tests import reports

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("bert", "notebook", "worker", "dev", "vision")
BASE_LAYER = "base"


def _layer(text: str) -> tuple[bytes, str]:
    """A gzipped tar with one file: (compressed bytes, DiffID)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("etc/tfimg-generated")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def _sbom(n: int, own: str, base: str, image_id: str) -> dict:
    comps = [{"type": "library", "name": f"pkg{i}", "version": f"1.{i}.0", "purl": f"pkg:pypi/pkg{i}@1.{i}.0",
              "properties": [{"name": "aquasecurity:trivy:LayerDiffID", "value": own if i % 10 == 0 else base}]}
             for i in range(n)]
    meta = {"component": {"type": "container", "name": "generated", "properties": [
        {"name": "aquasecurity:trivy:ImageID", "value": image_id}]}}   # as Trivy names the image
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "metadata": meta, "components": comps}


def _trivy(n: int, own: str, base: str) -> dict:
    vulns = [{"VulnerabilityID": f"CVE-2099-{1000 + i}", "PkgName": f"pkg{i}", "InstalledVersion": f"1.{i}.0",
              "FixedVersion": f"1.{i}.1", "Status": "fixed", "Severity": ("LOW", "MEDIUM", "HIGH")[i % 3],
              "Layer": {"DiffID": own if i % 10 == 0 else base}} for i in range(n)]
    return {"SchemaVersion": 2, "ArtifactName": "generated", "ArtifactType": "container_image",
            "Results": [{"Target": "generated (debian 11)", "Class": "os-pkgs", "Type": "debian",
                         "Vulnerabilities": vulns}]}


def publish_one(host: str, namespace: str, i: int, signer: object) -> str:
    """Push generated image ``i`` with its evidence; returns its digest."""
    reg = Registry(host)
    variant = VARIANTS[i % len(VARIANTS)]
    repo = f"{namespace}/{variant}"
    base_gz, base_id = _layer(BASE_LAYER)
    own_gz, own_id = _layer(f"image {i}")
    created = (dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                         "config": {"Labels": {"io.tfimg.user": "ml:1000:1000", "io.tfimg.variant": variant},
                                    "ExposedPorts": {"2222/tcp": {}, "8888/tcp": {}}},
                         "rootfs": {"type": "layers", "diff_ids": [base_id, own_id]}}).encode()
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": reg.put_blob(repo, b),
               "size": len(b)} for b in (base_gz, own_gz)]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": reg.put_blob(repo, config),
        "size": len(config)}}).encode()
    tags = TagsSection(immutable=f"{variant}-tf2.9.3-py3.9-cpu-{created[:10].replace('-', '')}-g{i:04d}",
                       moving=[f"{variant}-latest"] if i >= len(VARIANTS) * 9 else [])
    digest = reg.put_manifest(repo, tags.immutable, manifest, OCI_MANIFEST)
    for tag in tags.moving:
        reg.put_manifest(repo, tag, manifest, OCI_MANIFEST)
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    rep = Report()
    base = {"ref": f"{host}/{namespace}-base/base:1", "id": "sha256:" + "9" * 64, "size": 0,
            "digest": "sha256:" + hashlib.sha256(b"generated base").hexdigest()}
    for section in (reports.build(image_id, variant, base_layers=[base_id], base=base,
                                  started_on=created, finished_on=created), reports.checks(True),
                    reports.facts(tensorflow="2.9.3", python="3.9.2", image_id=image_id),
                    reports.scan(image_id, {"vulnerability": 30}), reports.gate("pass"), tags):
        rep = rep.with_section(section)
    doc = evidence.document(rep, variant=variant, repository=f"{host}/{repo}", digest=digest, tags=tags)
    trivy = {**_trivy(30, own_id, base_id), "Metadata": {"ImageID": image_id}}
    attest.attach_all(reg, parse_ref(f"{host}/{repo}@{digest}"), rep, chain=[], doc=doc,
                      sbom=_sbom(300, own_id, base_id, image_id), trivy=trivy, signer=signer)
    return digest


def generate(host: str, namespace: str, n: int, sign_key: Path, *, workers: int = 8) -> list[str]:
    """Publish ``n`` generated digests under ``host/namespace``, signed with ``sign_key``; their digests."""
    signer = signing.load_signer(str(sign_key))
    # One thread per repository: the registry (distribution 2.8) can lose a blob's link when two uploads of the
    # same blob (the shared base layer, an artifact's empty config) to one repository race, and the manifest
    # PUT then fails with "blob unknown". Publishes to one repository are serial in tfimg's use too.
    by_variant = [list(range(n))[v::len(VARIANTS)] for v in range(len(VARIANTS))]

    def one_repo(indices: list[int]) -> list[tuple[int, str]]:
        return [(i, publish_one(host, namespace, i, signer)) for i in indices]

    with ThreadPoolExecutor(max(1, min(workers, len(VARIANTS)))) as pool:
        done = dict(pair for pairs in pool.map(one_repo, by_variant) for pair in pairs)
    return [done[i] for i in range(n)]


def tfimg(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TFIMG_TRIVY": str(Path(sys.executable).parent / "trivy")}
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@dataclass
class Published:
    host: str
    root: Path                     # the registry's folder: registry.log is its access log
    work: Path
    keys: dict[str, Path]          # a.pem, a.pub, b.pem, b.pub
    policy: Path                   # CRITICAL_ONLY
    bert: str                      # digests
    tiny: str

    @property
    def namespace(self) -> str:
        return f"{self.host}/team"

    def layers(self) -> set[str]:
        """The layer digests of every published image (what a catalog must never fetch)."""
        out = set()
        for repo, digest in (("team/bert", self.bert), ("team/tiny", self.tiny), ("team/prod/tiny", self.tiny)):
            resp = requests.get(f"http://{self.host}/v2/{repo}/manifests/{digest}", timeout=30, headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json, "
                          "application/vnd.docker.distribution.manifest.v2+json"})
            resp.raise_for_status()
            out |= {layer["digest"] for layer in resp.json()["layers"]}
        return out
