"""A real registry with the OCI 1.1 referrers API, for tests (scripts/referrers-registry).

Load with ``pytest_plugins = ["tests.conftest_registry", "tests.conftest_referrers"]``. The registry is
go-containerregistry's ``pkg/registry`` with referrers support, built from Debian's
source package with Debian's Go (cached in ``build/referrers-registry/``; the first
build takes about a minute). Fixtures: ``referrers_registry`` (one per module),
``referrers_server`` (a factory: a registry on a free 127.0.0.1 port with its data under
a folder of the test's, stopped at the end of the ``with``), ``referrers_binary``; ``access.log`` there has one
line a request, in the common log format (``"GET /v2/<name>/blobs/<digest> HTTP/1.1" 200``).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.conftest_registry import _missing

SCRIPT = ROOT / "scripts/referrers-registry/registry.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ReferrersRegistry:
    host: str
    root: Path

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    def mark(self) -> int:
        """The access log's size now: pass it to :meth:`requests_since`."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def requests_since(self, mark: int) -> list[tuple[str, str, int]]:
        """(method, request URI, status) of each request logged after ``mark``."""
        with open(self.access_log) as fh:
            fh.seek(mark)
            return [(m[1], m[2], int(m[3])) for m in re.finditer(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) ', fh.read())]

    def blob_gets_since(self, mark: int) -> set[str]:
        """Digests of the blobs a client fetched (GET) after ``mark``."""
        return {m[1] for method, uri, _ in self.requests_since(mark) if method == "GET"
                for m in [re.search(r"/blobs/(sha256:[0-9a-f]{64})", uri)] if m}


def build_referrers_binary(config: pytest.Config) -> Path:
    """Build (cached by source hash) and return the registry binary."""
    if not shutil.which("go") or not shutil.which("apt-get"):
        _missing(config, "the referrers registry needs Debian's golang-go and apt-get (scripts/deps.sh)")
    res = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        pytest.fail(f"scripts/referrers-registry/registry.sh build failed:\n{res.stderr[-3000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def serve_referrers_registry(binary: Path, root: Path) -> Iterator[ReferrersRegistry]:
    """The referrers registry on a free port, data under ``root``; stopped on exit."""
    host = f"127.0.0.1:{_free_port()}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "registry.log", "a") as log:
        proc = subprocess.Popen([str(binary), "-addr", host, "-data", str(root / "data"),
                                 "-access-log", str(root / "access.log")], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if requests.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the referrers registry did not start:\n" + (root / "registry.log").read_text()[-2000:])
                time.sleep(0.1)
            yield ReferrersRegistry(host, root)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def referrers_binary(pytestconfig: pytest.Config) -> Path:
    """The registry binary (scripts/referrers-registry/registry.sh build)."""
    return build_referrers_binary(pytestconfig)


@pytest.fixture
def referrers_server(referrers_binary: Path) -> Callable[[Path], contextlib.AbstractContextManager[ReferrersRegistry]]:
    """Factory: ``with referrers_server(root) as reg:`` runs a registry with its data under ``root``."""
    return lambda root: serve_referrers_registry(referrers_binary, root)


@pytest.fixture(scope="module")
def referrers_registry(tmp_path_factory: pytest.TempPathFactory, referrers_binary: Path
                       ) -> Iterator[ReferrersRegistry]:
    """A referrers registry for the whole module (no auth, plain http on 127.0.0.1)."""
    with serve_referrers_registry(referrers_binary, tmp_path_factory.mktemp("referrers-registry")) as reg:
        yield reg
