"""Fixtures for publishing tests: a real registry, docker logins, tiny images, built variants.

Load with ``pytest_plugins = ["tests.conftest_registry"]``. The registry is
Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 with a free
port, htpasswd (bcrypt) auth and deletes enabled, in a temp dir; it is
stopped at teardown. Logging in writes a temporary DOCKER_CONFIG.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from builder.infra import outdir, report, runner
from builder.infra.engine import Engine
from builder.infra.report_models import Report
from builder.pipeline import single
from builder.scan import trivy_report
from builder.spec import loader as spec
from tests import reports

USER, PASSWORD = "tfimg-ci", "s3cret-Pa55-" + uuid.uuid4().hex[:8]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RegistryServer:
    host: str
    root: Path
    user: str = USER
    password: str = PASSWORD

    def url(self, path: str = "/v2/") -> str:
        return f"http://{self.host}{path}"


def _docker_ok() -> bool:
    try:
        Engine.from_env()
        return True
    except Exception:
        return False


def _missing(config: pytest.Config, why: str) -> None:
    """Skip, or fail where CI must run these tests (CI=true or --require-docker)."""
    if config.getoption("--require-docker", default=bool(os.environ.get("CI"))):
        pytest.fail(why)
    pytest.skip(why)


@contextlib.contextmanager
def serve_registry(root: Path, *, htpasswd: Path | None = None, accesslog: bool = False) -> Iterator[str]:
    """Debian's docker-registry on a free 127.0.0.1 port, its data under ``root``: yields HOST:PORT and
    stops it on exit. ``htpasswd``: require basic auth; ``accesslog``: log each request to
    ``root/registry.log`` (a test reads which blobs a client fetched)."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    port = _free_port()
    config: dict[str, object] = {   # JSON is YAML
        "version": 0.1,
        "log": {"level": "info" if accesslog else "warn", "accesslog": {"disabled": not accesslog}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "tfimg-test", "path": str(htpasswd)}}
    (root / "config.yml").write_text(json.dumps(config))
    host = f"127.0.0.1:{port}"
    with open(root / "registry.log", "w") as log:
        env = {**os.environ, "REGISTRY_STORAGE_DELETE_ENABLED": "true"}
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=log, env=env)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if requests.get(f"http://{host}/v2/", timeout=1).status_code in (200, 401):
                        break
                except requests.ConnectionError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the registry did not start:\n" + (root / "registry.log").read_text()[-2000:])
                time.sleep(0.1)
            yield host
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def registry_binary_or_skip(config: pytest.Config, *, auth: bool = False) -> None:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists() or (auth and not shutil.which("htpasswd")):
        _missing(config, "docker-registry or htpasswd is not installed "
                         "(apt-get install docker-registry apache2-utils)")


@pytest.fixture
def registry_server(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
                    ) -> Iterator[RegistryServer]:
    """A registry with htpasswd (bcrypt) auth, for one test."""
    registry_binary_or_skip(pytestconfig, auth=True)
    root = tmp_path_factory.mktemp("registry")
    line = runner.run(["htpasswd", "-Bbn", USER, PASSWORD]).stdout.strip()
    (root / "htpasswd").write_text(line + "\n")
    with serve_registry(root, htpasswd=root / "htpasswd") as host:
        yield RegistryServer(host, root)


def _write_config(directory: Path, auths: dict[str, dict[str, str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return directory


@pytest.fixture
def docker_login(registry_server: RegistryServer, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[RegistryServer]:
    """Credentials for the test registry in a temporary DOCKER_CONFIG (the SDK is pointed at it)."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    cfg = _write_config(tmp_path / "docker-config", {registry_server.host: {"auth": token}})
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    yield registry_server


@pytest.fixture
def no_login(registry_server: RegistryServer, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[RegistryServer]:
    """An empty DOCKER_CONFIG: no credentials at all."""
    cfg = _write_config(tmp_path / "docker-config-empty", {})
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    yield registry_server


def import_tiny() -> str:
    """A new tiny image (docker import of a 2-file tar); returns its image id (the caller removes it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("etc/tfimg-test", uuid.uuid4().hex), ("README", "tiny test image\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    name = f"tfimg-test-tiny:{uuid.uuid4().hex[:12]}"
    proc = subprocess.run(["docker", "import", "-", name], input=buf.getvalue(), capture_output=True,
                          timeout=120, check=True)
    return proc.stdout.decode().strip()


def remove_image(image_id: str) -> None:
    """Remove an image and every tag on it (by id: a test may have untagged the name and left registry tags)."""
    engine = Engine.from_env()
    attrs = engine.image_attrs(image_id) or {}
    for tag in attrs.get("RepoTags") or []:
        engine.remove_image(tag, force=True)
    engine.remove_image(image_id, force=True)


@pytest.fixture
def tiny_image(pytestconfig: pytest.Config) -> Iterator[Callable[[], str]]:
    """Factory: a new tiny image (docker import of a 2-file tar); returns its image id."""
    if not _docker_ok():
        _missing(pytestconfig, "no Docker engine answers")
    made: list[str] = []

    def make() -> str:
        made.append(import_tiny())
        return made[-1]

    yield make
    for image_id in made:
        remove_image(image_id)


FACTS = {"tensorflow": "2.9.1+nv22.7", "python": "3.8.10", "cuda": "11.7", "cudnn": "8.4.1",
         "date": "20261126", "rev": "ab12cd3"}


# One new HIGH vulnerability with a fix: the default policy blocks it, a CRITICAL-only policy does not.
TRIVY = {"SchemaVersion": 2, "ArtifactName": "tiny", "ArtifactType": "container_image",
         "Results": [{"Target": "tiny (debian 11)", "Class": "os-pkgs", "Type": "debian",
                      "Vulnerabilities": [{"VulnerabilityID": "CVE-2099-0002", "PkgName": "openssl",
                                           "InstalledVersion": "1.1.1n", "FixedVersion": "1.1.1w",
                                           "Status": "fixed", "Severity": "HIGH"}]}]}


@dataclass
class Built:
    spec_file: Path
    out_root: Path
    name: str
    image_id: str
    facts: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.out_root / self.name

    def report(self) -> Report:
        return report.load(self.dir)


def make_gated(root: Path, image_id: str, name: str = "bert", *, checks: bool | None = True,
               decision: str | None = "pass", facts: dict | None = None, spec_text: str = "") -> Built:
    """A variant file plus build/<name>/report.json under ``root`` for an image (no real build).

    The report's sections are made with the report models (tests/reports.py), the scan
    section's counts from the Trivy report beside it, and tags.txt by the tags stage.
    """
    variants = root / "variants"
    variants.mkdir(parents=True, exist_ok=True)
    spec_file = variants / f"{name}.yaml"
    spec_file.write_text(f"name: {name}\nbase:\n  profile: ngc-22.07\n{spec_text}")
    out_root = root / "build"
    d = out_root / name
    all_facts = {**FACTS, **(facts or {}), "image_id": image_id}
    sections = [reports.build(image_id, name), reports.facts(**all_facts)]
    if checks is not None:
        sections.append(reports.checks(checks, image=image_id))
    if decision is not None:
        counts: dict[str, int] = {}
        for f in trivy_report.from_data(TRIVY, source="test").findings():
            counts[f.kind] = counts.get(f.kind, 0) + 1
        sections += [reports.scan(image_id, counts),
                     reports.gate(decision, [] if decision == "pass" else ["CVE-2099-0001 CRITICAL"])]
        outdir.claim(d)   # build/<name>, as the build stage leaves it
        report.write_json(d / "trivy.json", {**TRIVY, "Metadata": {"ImageID": image_id}})   # a scan of the image
    reports.write(d, *sections)
    single.tags(spec.load(spec_file), d, engine=Engine.from_env())   # `tfimg tags`: writes tags.txt
    return Built(spec_file, out_root, name, image_id, all_facts)


@pytest.fixture
def gated_variant(tmp_path: Path) -> Callable[..., Built]:
    """Factory: :func:`make_gated` in the test's tmp_path."""

    def make(image_id: str, name: str = "bert", **kwargs) -> Built:
        return make_gated(tmp_path, image_id, name, **kwargs)

    return make


class FlakyProxy:
    """A tiny HTTP proxy on 127.0.0.1 that answers 503 to the first ``failures`` requests."""

    def __init__(self, upstream: str, failures: int = 1, status: int = 503) -> None:
        self.upstream, self.failures, self.status = upstream, failures, status
        self.seen: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                if proxy.failures > 0:
                    proxy.failures -= 1
                    proxy.seen.append((self.command, self.path, proxy.status))
                    self.send_response(proxy.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
                resp = requests.request(self.command, f"http://{proxy.upstream}{self.path}", headers=hdrs,
                                        data=body, allow_redirects=False, timeout=30)
                proxy.seen.append((self.command, self.path, resp.status_code))
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_proxy(registry_server: RegistryServer) -> Iterator[Callable[..., FlakyProxy]]:
    made: list[FlakyProxy] = []

    def make(failures: int = 1, status: int = 503) -> FlakyProxy:
        p = FlakyProxy(registry_server.host, failures, status)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
