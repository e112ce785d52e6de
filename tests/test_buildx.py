"""tfimg on the real buildx (issue 20): the builder and its driver, the cache each can export, a named
builder that is a docker context of another engine, the legacy pre-23 client, and ``docker buildx bake``
on the file ``tfimg bake`` writes.

The second engines are scripts/engine2.sh's (26: overlay2, 26c: the containerd image store, 20.10:
Debian 12's engine with its pre-23 client); each is purged (an empty runner) before and after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.image import builders, buildkit
from builder.infra import report
from builder.infra.registry_client import Registry
from tests.conftest import ROOT, VARIANTS
from tests.test_engines import ENGINE2, Engines, copy_image, ok, run

pytestmark = [pytest.mark.docker]

REGISTRY = "127.0.0.1:5000"   # scripts/registry.sh
COMMITTED = 1_700_000_000      # the commit time of the tiny variant (SOURCE_DATE_EPOCH from git)


def tfimg(*args: str, env: dict[str, str] | None = None, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def engines(pytestconfig: pytest.Config) -> Iterator[Engines]:
    from tests.conftest_registry import _missing
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        _missing(pytestconfig, "second engines need root and dockerd")
    made = Engines()
    try:
        yield made
    finally:
        made.stop_all()


@pytest.fixture(scope="module")
def rootfs(standin_base: str) -> str:
    """A small base with a shell and apt (the stand-in's Debian rootfs, 124 MB)."""
    ref = standin_base.replace("tfimg-standin:tf2.9-", "tfimg-standin-rootfs:bullseye-")
    assert run("docker", "image", "inspect", ref).returncode == 0, f"{ref} is built with the stand-in"
    return ref


def tiny_variant(where: Path) -> Path:
    """A variant with no Python requirements, committed at COMMITTED in its own repository."""
    (where / "variants").mkdir(parents=True)
    spec = where / "variants/tiny.yaml"
    spec.write_text("description: tiny\nuser: {name: tiny, uid: 1500, gid: 1500}\n")
    env = {**os.environ, "GIT_AUTHOR_DATE": f"@{COMMITTED} +0000", "GIT_COMMITTER_DATE": f"@{COMMITTED} +0000",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for argv in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "tiny"]):
        subprocess.run(["git", "-C", str(where), *argv], check=True, env=env)
    return spec


def test_the_default_builder_is_buildx_on_the_engines_own_buildkit(docker_engine) -> None:
    """The first engine (Docker 26, overlay2): buildx's default builder, docker driver, classic store."""
    found = buildkit.find_builder()
    server = ok("docker", "version", "--format", "{{.Server.Version}}")
    assert found.kind == "buildx" and found.driver == "docker" and found.store == "classic", found
    assert found.buildkit == builders.ENGINE_BUILDKIT[int(server.split(".")[0])]
    assert not found.exports_cache and found.source_date_epoch


def test_bert_builds_through_buildx_with_secrets_progress_and_load(built) -> None:
    b = built("bert")
    assert b.builder is not None and b.builder.kind == "buildx" and b.builder.driver == "docker"
    assert b.builder.store == "classic" and b.builder.buildkit
    log = Path(str(b.log)).read_text()
    argv = log.splitlines()[0]
    assert " buildx build " in argv and "--load" in argv and "--progress=plain" in argv
    assert re.search(r"--secret id=ca_bundle,src=\S+", argv) and "SOURCE_DATE_EPOCH=" in argv
    assert re.search(r"^#\d+ \[stage-0 \d/\d\] RUN --mount=type=secret,id=ca_bundle", log, re.M)
    # the image's time is SOURCE_DATE_EPOCH, from the last commit of bert's files
    assert b.source_date is not None and b.source_date.source == "git"
    committed = ok("git", "-C", str(ROOT), "log", "-1", "--format=%ct", "--", "variants/bert.yaml",
                   "variants/base.yaml", "variants/requirements/bert.txt", "variants/keys/team.pub")
    assert b.source_date.epoch == int(committed)
    created = ok("docker", "image", "inspect", "-f", "{{.Created}}", b.image_id)
    assert created == b.labels["org.opencontainers.image.created"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(committed)))


def test_cache_to_with_a_type_on_the_docker_driver_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    res = tfimg("build", str(VARIANTS / "bert.yaml"), "--base", "127.0.0.1:1/standin@sha256:" + "ab" * 32,
                "--out", str(tmp_path), "--cache-to", f"type=registry,ref={REGISTRY}/cache/bert:bc,mode=max")
    assert res.returncode == 2, res.stdout + res.stderr
    text = " ".join(res.stderr.split())
    assert "buildx builder 'default' (docker driver, classic image store) cannot export a build cache" in text
    assert "docker-container" in text and "containerd-snapshotter" in text and "Traceback" not in text
    assert not (tmp_path / "bert").exists()


def test_registry_cache_on_the_containerd_store(engines: Engines, rootfs: str, tmp_path: Path) -> None:
    """The docker driver with the containerd image store exports a registry cache (mode=max)."""
    env = engines.start("26c")
    copy_image(rootfs, env)
    spec = tiny_variant(tmp_path)
    cache = f"{REGISTRY}/tfimg-test-h20/cache/{{name}}:bc"
    res = tfimg("build", str(spec), "--base", rootfs, "--out", str(tmp_path / "out"), "--no-test", "--no-scan",
                "--cache-to", cache, env={"DOCKER_HOST": env["DOCKER_HOST"]})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    b = report.load(tmp_path / "out/tiny").build
    assert b is not None and b.builder is not None and b.cache is not None
    assert (b.builder.driver, b.builder.store, b.cache.mode) == ("docker", "containerd", "registry")
    assert f"--cache-to type=registry,ref={cache.format(name='tiny')},mode=max" in Path(str(b.log)).read_text()
    found = Registry(REGISTRY).manifest("tfimg-test-h20/cache/tiny", "bc")
    assert found is not None
    layers = json.loads(found[0]).get("layers") or json.loads(found[0]).get("manifests") or []
    assert layers, found[0][:500]
    assert b.source_date is not None and (b.source_date.epoch, b.source_date.source) == (COMMITTED, "git")
    assert b.labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"


def test_a_named_builder_that_is_a_context_of_another_engine(engines: Engines, rootfs: str, tmp_path: Path) -> None:
    """`--builder NAME` where NAME is a docker context of a second engine: buildx's docker driver builds
    inside that engine. tfimg builds there when it talks to that engine too, and refuses otherwise."""
    env = engines.start("26")
    copy_image(rootfs, env)
    context = "tfimg-test-h20-e2"
    run("docker", "context", "rm", "-f", context)
    ok("docker", "context", "create", context, "--docker", f"host={env['DOCKER_HOST']}")
    try:
        spec = tiny_variant(tmp_path)
        argv = ["build", str(spec), "--builder", context, "--base", rootfs, "--no-test", "--no-scan"]
        mismatch = tfimg(*argv, "--out", str(tmp_path / "first"))
        assert mismatch.returncode == 2, mismatch.stdout + mismatch.stderr
        assert f"the docker driver of the context '{context}'" in " ".join(mismatch.stderr.split())
        assert not (tmp_path / "first/tiny").exists()
        res = tfimg(*argv, "--out", str(tmp_path / "there"), env={"DOCKER_HOST": env["DOCKER_HOST"]})
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        b = report.load(tmp_path / "there/tiny").build
        assert b is not None and b.builder is not None
        assert (b.builder.name, b.builder.driver, b.builder.store) == (context, "docker", "classic")
        # buildx refuses `buildx build --builder CONTEXT` ("use `docker --context=NAME buildx`")
        assert f"--context {context} buildx build --load" in Path(str(b.log)).read_text().splitlines()[0]
        assert run("docker", "image", "inspect", b.image_id, env=env).returncode == 0        # in engine2
        assert run("docker", "image", "inspect", b.image_id).returncode != 0                  # not in the first
    finally:
        run("docker", "context", "rm", "-f", context)


def test_the_legacy_client_builds_on_the_20_10_engine(engines: Engines, rootfs: str, tmp_path: Path) -> None:
    """Debian 12's situation: docker 20.10 without buildx, DOCKER_BUILDKIT=1 (BuildKit v0.8: no
    SOURCE_DATE_EPOCH, so the report warns that the digest is not reproducible)."""
    env = engines.start("20.10")
    copy_image(rootfs, env)
    client = ok(ENGINE2, "--engine", "20.10", "client", "--no-buildx")
    spec = tiny_variant(tmp_path)
    res = tfimg("build", str(spec), "--docker", client, "--base", rootfs, "--out", str(tmp_path / "out"),
                "--no-test", "--no-scan", env={"DOCKER_HOST": env["DOCKER_HOST"]})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    b = report.load(tmp_path / "out/tiny").build
    assert b is not None and b.builder is not None
    assert (b.builder.kind, b.builder.buildkit) == ("docker-buildkit", "0.8") and b.builder.version.startswith("20.10.")
    assert any("SOURCE_DATE_EPOCH needs v0.11" in w for w in b.warnings), b.warnings
    assert b.labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"   # the label still says it


def test_buildx_bake_builds_the_bake_file_then_tfimg_tests_and_scans_it(standin_base: str, demo_db: str,
                                                                         tmp_path: Path) -> None:
    """`tfimg bake` writes the file, the real `docker buildx bake` builds it, and `tfimg test` and
    `tfimg scan` take what it built."""
    file = tmp_path / "docker-bake.json"
    res = tfimg("bake", str(VARIANTS / "bert.yaml"), "--out", str(tmp_path / "build"), "--file", str(file),
                "--base", standin_base)
    assert res.returncode == 0, res.stderr[-3000:]
    target = json.loads(file.read_text())["target"]["bert"]
    res = subprocess.run(["docker", "buildx", "bake", "-f", str(file), "--progress=plain"], capture_output=True,
                         text=True, timeout=1500, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    image = target["tags"][0]
    labels = json.loads(ok("docker", "image", "inspect", "-f", "{{json .Config.Labels}}", image))
    assert labels["io.tfimg.input-hash"] == target["labels"]["io.tfimg.input-hash"]
    assert labels["org.opencontainers.image.created"] == target["args"]["TFIMG_CREATED"]
    out = tmp_path / "checked"
    res = tfimg("test", image, "--spec", str(VARIANTS / "bert.yaml"), "--out", str(out), "--gpu", "off")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    checks = report.load(out / "bert").checks
    assert checks is not None and checks.passed is True
    res = tfimg("scan", image, "--out", str(tmp_path / "scanned"), "--db-repository", demo_db,
                "--cache-dir", str(tmp_path / "trivy-cache"), "--timeout", "600")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    scan = report.load(tmp_path / "scanned").scan
    assert scan is not None and scan.status == "ok"
