"""The registry with the OCI 1.1 referrers API (scripts/referrers-registry), with the real clients.

docker pushes an image; Debian 13's oras 1.2.0 attaches artifacts and discovers them through
``GET /v2/<name>/referrers/<digest>`` (no tag-schema fallback tag is written); the listing
carries each artifact's own artifactType and honours ``?artifactType=``; cosign 2.5.0 attests
and verifies against it; the registry's access log shows that none of these clients fetched
a layer blob, while a real pull does; everything survives a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from tests.conftest import ROOT

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tests.conftest_referrers import ReferrersRegistry

pytest_plugins = ["tests.conftest_registry", "tests.conftest_referrers"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SCRIPT = ROOT / "scripts/referrers-registry/registry.sh"
Server = Callable[[Path], "AbstractContextManager[ReferrersRegistry]"]


@pytest.fixture(scope="module")
def clients(pytestconfig: pytest.Config) -> None:
    from tests.conftest_registry import _missing
    for tool in ("oras", "cosign"):
        if not shutil.which(tool):
            _missing(pytestconfig, f"{tool} is not installed (scripts/deps.sh installs it from Debian 13)")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def ok(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    __tracebackhide__ = True
    res = run(*args, env=env, cwd=cwd)
    assert res.returncode == 0, f"{args}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res.stdout


@dataclass
class Pushed:
    repo: str            # HOST:PORT/tfimg/tiny
    digest: str
    layers: list[str]
    image_id: str


@pytest.fixture
def pushed(referrers_registry: ReferrersRegistry, tiny_image: Callable[[], str]) -> Pushed:
    """A tiny image pushed with ``docker push`` (tiny_image removes it locally at teardown)."""
    repo = f"{referrers_registry.host}/tfimg/tiny"
    image_id = tiny_image()
    tag = image_id.split(":")[-1][:12]
    ok("docker", "tag", image_id, f"{repo}:{tag}")
    ok("docker", "push", f"{repo}:{tag}")
    manifest = requests.get(f"http://{referrers_registry.host}/v2/tfimg/tiny/manifests/{tag}",
                            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, timeout=10)
    assert manifest.status_code == 200, manifest.text
    return Pushed(repo, manifest.headers["Docker-Content-Digest"],
                  [layer["digest"] for layer in manifest.json()["layers"]], image_id)


def referrers(reg: ReferrersRegistry, name: str, digest: str, artifact_type: str | None = None) -> requests.Response:
    params = {"artifactType": artifact_type} if artifact_type else None
    res = requests.get(f"http://{reg.host}/v2/{name}/referrers/{digest}", params=params, timeout=10)
    assert res.status_code == 200 and res.headers["Content-Type"] == OCI_INDEX, (res.status_code, res.text)
    return res


@pytest.mark.docker
def test_oras_attach_is_listed_by_the_referrers_api_with_its_artifact_type(
        referrers_registry: ReferrersRegistry, pushed: Pushed, clients: None, tmp_path: Path) -> None:
    repo, digest = pushed.repo, pushed.digest
    (tmp_path / "f.json").write_text('{"kind": "test"}')
    (tmp_path / "g.json").write_text('{"kind": "other"}')
    mark = referrers_registry.mark()
    ok("oras", "attach", "--plain-http", "--artifact-type", "application/vnd.test+json",
       f"{repo}@{digest}", "f.json", cwd=tmp_path)
    ok("oras", "attach", "--plain-http", "--artifact-type", "application/vnd.other+json", "--annotation", "k=v",
       f"{repo}@{digest}", "g.json", cwd=tmp_path)

    listed = referrers(referrers_registry, "tfimg/tiny", digest).json()["manifests"]
    by_type = {d["artifactType"]: d for d in listed}
    assert sorted(by_type) == ["application/vnd.other+json", "application/vnd.test+json"], listed
    assert by_type["application/vnd.other+json"]["annotations"]["k"] == "v"
    assert all(d["mediaType"] == OCI_MANIFEST for d in listed)

    # The filter, and the header that says it was applied (clients then do not filter again).
    res = referrers(referrers_registry, "tfimg/tiny", digest, "application/vnd.test+json")
    assert res.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in res.json()["manifests"]] == [by_type["application/vnd.test+json"]["digest"]]
    assert referrers(referrers_registry, "tfimg/tiny", digest, "application/vnd.none").json()["manifests"] == []

    # oras discover finds it through the API; no sha256-<hex> tag-schema index was written.
    found = json.loads(ok("oras", "discover", "--plain-http", "--format", "json",
                          "--artifact-type", "application/vnd.test+json", f"{repo}@{digest}"))
    assert [m["digest"] for m in found["manifests"]] == [by_type["application/vnd.test+json"]["digest"]]
    assert ("GET", f"/v2/tfimg/tiny/referrers/{digest}?artifactType=application%2Fvnd.test%2Bjson", 200) \
        in referrers_registry.requests_since(mark)
    tags = requests.get(f"http://{referrers_registry.host}/v2/tfimg/tiny/tags/list", timeout=10).json()["tags"]
    assert not [t for t in tags if t.startswith("sha256-")], tags


@pytest.mark.docker
def test_cosign_attests_and_verifies_against_it_and_no_layer_is_fetched(
        referrers_registry: ReferrersRegistry, pushed: Pushed, clients: None, tmp_path: Path) -> None:
    digest, layers = pushed.digest, pushed.layers
    ref = f"{pushed.repo}@{digest}"
    env = {**os.environ, "COSIGN_PASSWORD": ""}   # a throwaway key, in the test's temp folder
    ok("cosign", "generate-key-pair", env=env, cwd=tmp_path)
    ok("cosign", "generate-key-pair", "--output-key-prefix", "other", env=env, cwd=tmp_path)
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}))
    insecure = ["--allow-insecure-registry", "--allow-http-registry"]
    mark = referrers_registry.mark()

    ok("cosign", "attest", "--yes", "--key", "cosign.key", "--type", "cyclonedx", "--predicate", str(sbom),
       "--tlog-upload=false", *insecure, ref, env=env, cwd=tmp_path)
    verify = ["cosign", "verify-attestation", "--insecure-ignore-tlog", *insecure]
    out = ok(*verify, "--key", "cosign.pub", "--type", "cyclonedx", ref, cwd=tmp_path)
    statement = json.loads(base64.b64decode(json.loads(out.splitlines()[0])["payload"]))
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    assert statement["subject"][0]["digest"]["sha256"] == digest.split(":")[1]
    # Not vacuous: another key, or another predicate type, is refused.
    assert run(*verify, "--key", "other.pub", "--type", "cyclonedx", ref, cwd=tmp_path).returncode != 0
    assert run(*verify, "--key", "cosign.pub", "--type", "spdxjson", ref, cwd=tmp_path).returncode != 0
    ok("oras", "discover", "--plain-http", ref)

    # None of these clients read a layer; the log does show layer reads when there are some.
    assert layers and not referrers_registry.blob_gets_since(mark) & set(layers)
    mark = referrers_registry.mark()
    ok("docker", "rmi", "-f", pushed.image_id)
    ok("docker", "pull", ref)
    assert set(layers) <= referrers_registry.blob_gets_since(mark)


def test_manifests_blobs_and_referrers_survive_a_restart(clients: None, referrers_server: Server,
                                                         tmp_path: Path) -> None:
    root = tmp_path / "reg"
    (tmp_path / "a.txt").write_text("artifact body\n")
    (tmp_path / "sig.json").write_text('{"sig": 1}')
    with referrers_server(root) as reg:
        out = ok("oras", "push", "--plain-http", "--artifact-type", "application/vnd.tfimg.test", "--format", "json",
                 f"{reg.host}/tfimg/art:v1", "a.txt", cwd=tmp_path)
        subject = json.loads(out)["digest"]
        ok("oras", "attach", "--plain-http", "--artifact-type", "application/vnd.tfimg.sig+json",
           f"{reg.host}/tfimg/art@{subject}", "sig.json", cwd=tmp_path)
        before = referrers(reg, "tfimg/art", subject).json()
    assert (root / "data" / "manifests.jsonl").stat().st_size > 0
    with referrers_server(root) as reg:
        assert referrers(reg, "tfimg/art", subject).json() == before
        assert before["manifests"][0]["artifactType"] == "application/vnd.tfimg.sig+json"
        (tmp_path / "out").mkdir()
        ok("oras", "pull", "--plain-http", f"{reg.host}/tfimg/art:v1", cwd=tmp_path / "out")
        assert (tmp_path / "out" / "a.txt").read_text() == "artifact body\n"


def test_uploads_check_the_digest_and_the_range(referrers_server: Server, tmp_path: Path) -> None:
    """Blob uploads are spooled to disk by the wrapper (not pkg/registry): a wrong digest or a
    chunk that does not continue the upload is refused and leaves no blob."""
    with referrers_server(tmp_path / "reg") as reg:
        base = f"http://{reg.host}"
        part1, part2 = b"a" * 1000, b"b" * 500
        good = "sha256:" + hashlib.sha256(part1 + part2).hexdigest()

        def session() -> str:
            res = requests.post(f"{base}/v2/tfimg/up/blobs/uploads/", timeout=10)
            assert res.status_code == 202, res.text
            return base + res.headers["Location"]

        loc = session()
        res = requests.patch(loc, data=part1, headers={"Content-Range": "0-999"}, timeout=10)
        assert res.status_code == 202 and res.headers["Range"] == "0-999"
        res = requests.patch(loc, data=part2, headers={"Content-Range": "500-999"}, timeout=10)
        assert res.status_code == 416, res.text
        bad = "sha256:" + "0" * 64
        res = requests.put(loc, params={"digest": bad}, data=part2, timeout=10)
        assert res.status_code == 400 and "DIGEST_INVALID" in res.text
        assert requests.head(f"{base}/v2/tfimg/up/blobs/{bad}", timeout=10).status_code == 404

        loc = session()
        requests.patch(loc, data=part1, timeout=10).raise_for_status()
        res = requests.put(loc, params={"digest": good}, data=part2, timeout=10)
        assert res.status_code == 201 and res.headers["Docker-Content-Digest"] == good
        assert requests.get(f"{base}/v2/tfimg/up/blobs/{good}", timeout=10).content == part1 + part2

        # Monolithic upload, and a mount of a blob the registry already has.
        mono = b"one request"
        digest = "sha256:" + hashlib.sha256(mono).hexdigest()
        res = requests.post(f"{base}/v2/tfimg/up/blobs/uploads/", params={"digest": digest}, data=mono, timeout=10)
        assert res.status_code == 201
        res = requests.post(f"{base}/v2/tfimg/other/blobs/uploads/", params={"mount": good, "from": "tfimg/up"},
                            timeout=10)
        assert res.status_code == 201 and res.headers["Location"] == f"/v2/tfimg/other/blobs/{good}"

        # A manifest with a subject is answered with OCI-Subject; an unknown repository has no referrers.
        config = json.dumps({}).encode()
        requests.post(f"{base}/v2/tfimg/up/blobs/uploads/", timeout=10,
                      params={"digest": "sha256:" + hashlib.sha256(config).hexdigest()}, data=config).raise_for_status()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.x",
                    "config": {"mediaType": EMPTY, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                               "size": len(config)},
                    "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": good, "size": 1500}}
        res = requests.put(f"{base}/v2/tfimg/up/manifests/sig", data=json.dumps(manifest),
                           headers={"Content-Type": OCI_MANIFEST}, timeout=10)
        assert res.status_code == 201 and res.headers.get("OCI-Subject") == good
        assert referrers(reg, "tfimg/nothing-here", good).json()["manifests"] == []


def test_the_script_is_idempotent_and_never_takes_a_port_it_does_not_own(tmp_path: Path,
                                                                          referrers_binary: Path) -> None:
    """start, status, url, log and stop (start finds the binary the referrers_binary fixture built)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TFIMG_STATE_DIR": str(tmp_path / "state"), "TFIMG_REFERRERS_PORT": str(port)}
    sh = str(SCRIPT)
    assert ok(sh, "url", env=env).strip() == f"127.0.0.1:{port}"
    assert run(sh, "status", env=env).returncode == 1
    try:
        ok(sh, "start", env=env)
        again = run(sh, "start", env=env)
        assert again.returncode == 0 and "already running" in again.stderr
        assert run(sh, "status", env=env).returncode == 0
        requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5).raise_for_status()
        assert '"GET /v2/ HTTP/1.1" 200' in Path(ok(sh, "log", env=env).strip()).read_text()
    finally:
        ok(sh, "stop", env=env)
    assert run(sh, "status", env=env).returncode == 1
    assert "nothing stopped" in run(sh, "stop", env=env).stderr

    with socket.socket() as other:   # someone else's server on the port
        other.bind(("127.0.0.1", port))
        other.listen()
        res = run(sh, "start", env=env)
        assert res.returncode == 2 and "is taken by something that is not this script's registry" in res.stderr
