"""The referrers API route, against a small FAKE registry written here.

No registry that serves ``GET /v2/<name>/referrers/<digest>`` can run on this machine
(Debian ships distribution 2.8, which has no referrers API; zot and distribution 3.x are
not packaged in Debian or on PyPI), so this route is tested against :class:`FakeOciRegistry`:
an in-memory, no-auth HTTP server that implements just enough of the distribution spec 1.1
(blob upload, manifests by tag and digest, ``OCI-Subject`` on a manifest PUT with a subject,
the referrers API with ``artifactType`` filtering). The tag schema fallback is tested against
the real registry in tests/test_attest.py.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.infra.registry_client import OCI_INDEX, OCI_MANIFEST, Ref, Registry
from builder.infra.report_models import Report
from builder.publish import attest, evidence, referrers
from tests import reports


class FakeOciRegistry:
    """In-memory OCI distribution 1.1 subset with the referrers API (tests only)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}   # (repo, digest) -> (body, type)
        self.tags: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _any(self) -> None:
                url = urlparse(self.path)
                fake.calls.append(f"{self.command} {url.path}")
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if url.path == "/v2/":
                    return self._reply(200, b"{}")
                m = re.match(r"^/v2/(.+)/(blobs/uploads/?|blobs|manifests|referrers)/?(.*)$", url.path)
                if not m:
                    return self._reply(404)
                repo, kind, ref = m.groups()
                if kind.startswith("blobs/uploads"):
                    if self.command == "POST":
                        return self._reply(202, headers={"Location": f"/v2/{repo}/blobs/uploads/u1"})
                    digest = parse_qs(url.query)["digest"][0]
                    fake.blobs[digest] = data
                    return self._reply(201, headers={"Docker-Content-Digest": digest})
                if kind == "blobs":
                    if ref not in fake.blobs:
                        return self._reply(404)
                    return self._reply(200, fake.blobs[ref], {"Docker-Content-Digest": ref})
                if kind == "manifests":
                    if self.command == "PUT":
                        digest = "sha256:" + hashlib.sha256(data).hexdigest()
                        fake.manifests[(repo, digest)] = (data, self.headers.get("Content-Type", ""))
                        if not ref.startswith("sha256:"):
                            fake.tags[(repo, ref)] = digest
                        hdrs = {"Docker-Content-Digest": digest}
                        subject = json.loads(data).get("subject")
                        if subject:
                            hdrs["OCI-Subject"] = subject["digest"]
                        return self._reply(201, headers=hdrs)
                    digest = ref if ref.startswith("sha256:") else fake.tags.get((repo, ref), "")
                    if (repo, digest) not in fake.manifests:
                        return self._reply(404)
                    if self.command == "DELETE":
                        del fake.manifests[(repo, digest)]
                        return self._reply(202)
                    body, media = fake.manifests[(repo, digest)]
                    return self._reply(200, body, {"Content-Type": media, "Docker-Content-Digest": digest})
                # referrers API
                want = parse_qs(url.query).get("artifactType", [None])[0]
                found = []
                for (r, digest), (body, media) in fake.manifests.items():
                    doc = json.loads(body)
                    if r == repo and (doc.get("subject") or {}).get("digest") == ref:
                        atype = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
                        if want and atype != want:
                            continue
                        found.append({"mediaType": media, "digest": digest, "size": len(body),
                                      "artifactType": atype, "annotations": doc.get("annotations") or {}})
                index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}).encode()
                return self._reply(200, index, {"Content-Type": OCI_INDEX})

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeOciRegistry]:
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text('{"auths": {}}')
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    fake = FakeOciRegistry()
    yield fake
    fake.close()


def _image(reg: Registry, repo: str) -> str:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": reg.put_blob(repo, config), "size": len(config)},
                           "layers": []}).encode()
    return reg.put_manifest(repo, "v1", manifest, OCI_MANIFEST)


def test_referrers_api_route_attach_list_verify_copy(fake_registry: FakeOciRegistry, tmp_path: Path) -> None:
    reg = Registry(fake_registry.host, attempts=1)
    digest = _image(reg, "dev/bert")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    pub = tmp_path / "k.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    image_id = "sha256:" + "a" * 64
    rep = Report().with_section(reports.build(image_id, "bert")).with_section(reports.gate("pass", []))
    subject = Ref(fake_registry.host, "dev/bert", digest=digest)
    attached = attest.attach_all(reg, subject, rep, chain=[],
                                 doc=evidence.Evidence.model_validate({"schema": "tfimg.evidence/v1", "digest": digest}),
                                 sbom={"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []},
                                 trivy={"Results": []}, signer=attest.load_signer(str(tmp_path / "k.pem")),
                                 started="2026-11-28T00:00:00+00:00")
    assert sorted(a.kind for a in attached) == ["provenance", "report", "sbom", "vuln"]
    # the registry indexed them itself: no fallback tag was written
    assert ("dev/bert", referrers.fallback_tag(digest)) not in fake_registry.tags
    found, route = referrers.list_referrers(reg, "dev/bert", digest)
    assert route == "api" and {r.digest for r in found} == {a.digest for a in attached}
    assert any(c == f"GET /v2/dev/bert/referrers/{digest}" for c in fake_registry.calls)
    v = attest.verify(f"{fake_registry.host}/dev/bert@{digest}", pub)
    assert v.ok and v.route == "api", v.problems
    # promotion's copy: the referrers follow the digest to the target repository
    manifest, media, _ = reg.manifest("dev/bert", digest)
    reg.put_blob("prod/bert", reg.blob("dev/bert", json.loads(manifest)["config"]["digest"]))
    reg.put_manifest("prod/bert", digest, manifest, media)
    copied = referrers.copy_referrers(reg, "dev/bert", reg, "prod/bert", digest)
    assert len(copied) == 4
    assert attest.verify(f"{fake_registry.host}/prod/bert@{digest}", pub).ok
