"""Two CI runners that share work through one registry (issue 12).

Runner A is the first engine; runner B is a second, empty dockerd
(scripts/engine2.sh) reached through DOCKER_HOST. The registry is Debian's
docker-registry on 127.0.0.1 without auth. The stand-in base is pushed to it
once per session (about 3 minutes), so both engines build on the same base by
registry name, as two real runners would.
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

import docker
import pytest

from builder import cli
from builder.infra import report
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry
from builder.infra.report_models import Report
from builder.infra.ui import UI
from builder.pipeline import bake, context, record, single, steps
from builder.pipeline import orchestrator as pipeline
from builder.publish import push
from builder.spec import loader as spec
from tests import reports
from tests.conftest import ROOT, VARIANTS
from tests.conftest_registry import _missing, registry_binary_or_skip, serve_registry

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENGINE2 = str(ROOT / "scripts/engine2.sh")


@pytest.fixture(scope="module")
def open_registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the open registry keeps its data and ``registry.log`` (one line per request)."""
    return tmp_path_factory.mktemp("open-registry")


@pytest.fixture(scope="module")
def open_registry(open_registry_dir: Path, pytestconfig: pytest.Config) -> Iterator[str]:
    """HOST:PORT of a registry without auth, for the whole module; it logs each request."""
    registry_binary_or_skip(pytestconfig)
    with serve_registry(open_registry_dir, accesslog=True) as host:
        yield host


@pytest.fixture(scope="module")
def registry_base(standin_base: str, open_registry: str) -> Iterator[str]:
    """The stand-in base pushed to the registry (once): HOST:PORT/tfimg-standin:TAG."""
    name, tag = f"{open_registry}/tfimg-standin", standin_base.rsplit(":", 1)[-1] or "latest"
    Engine.from_env().tag(standin_base, name, tag)
    digest = Engine.from_env().push(name, tag)
    assert digest
    yield f"{name}:{tag}"
    Engine.from_env().remove_image(f"{name}:{tag}")
    Engine.from_env().remove_image(f"{name}@{digest}")   # leave the stand-in without this registry's RepoDigest


@pytest.fixture(scope="module")
def runner_b(pytestconfig: pytest.Config) -> Iterator[str]:
    """DOCKER_HOST of a second, empty engine (scripts/engine2.sh), purged at the end."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        _missing(pytestconfig, "a second engine needs root and dockerd")
    subprocess.run([ENGINE2, "stop", "--purge"], capture_output=True, timeout=300)
    res = subprocess.run([ENGINE2, "start"], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        pytest.fail(f"scripts/engine2.sh start failed:\n{res.stderr[-2000:]}")
    host = subprocess.run([ENGINE2, "host"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield host
    finally:
        subprocess.run([ENGINE2, "stop", "--purge"], capture_output=True, timeout=300)


def _passed(out_root: Path, name: str, image_id: str) -> None:
    """Checks and gate sections that pass (the real stages are tested elsewhere), plus tags.txt."""
    d = out_root / name
    reports.write(d, reports.checks(True, image=image_id), reports.scan(image_id, {}), reports.gate("pass"))
    report.write_json(d / "trivy.json", {"SchemaVersion": 2, "ArtifactName": name, "ArtifactType": "container_image",
                                         "Metadata": {"ImageID": image_id},   # a scan of that image (the gate's trust)
                                         "Results": [{"Target": f"{name} (ubuntu 20.04)", "Class": "os-pkgs",
                                                      "Type": "ubuntu"}]})
    steps.tags_and_facts(spec.load(VARIANTS / f"{name}.yaml"), d, record.Record(d), engine=Engine.from_env())


def _steps(log: str, needle: str) -> list[str]:
    """Step numbers (#N) of the build steps whose header mentions ``needle``."""
    return sorted({m.group(1) for m in re.finditer(r"^#(\d+) \[[^\]]*\] .*" + re.escape(needle), log, re.M)})


def test_runner_b_reuses_what_runner_a_pushed(registry_base: str, open_registry: str, runner_b: str,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = spec.load(VARIANTS / "bert.yaml")
    cache = f"{open_registry}/cache/{{name}}:buildcache"
    ns = f"{open_registry}/team"

    # Runner A: build with --cache-to (inline: the image is pushed as the cache), then publish.
    a_out = tmp_path / "a"
    opts_a = pipeline.BuildOptions(out_root=a_out, base=registry_base, force=True, cache_to=cache)
    a = pipeline.build(loaded, opts_a, UI(quiet=True), Engine.from_env())
    assert a.cache is not None and a.cache.to == cache.format(name="bert") and a.cache.pushed
    assert a.base.digest and a.input_hash
    _passed(a_out, "bert", a.image_id)
    published = single.publish(loaded, a_out / "bert", ns, push=True, engine=Engine.from_env())
    assert not isinstance(published, push.Plan)
    a_layers = Engine.from_env().image_attrs(a.image_id)["RootFS"]["Layers"]

    # Runner B: empty engine.
    monkeypatch.setenv("DOCKER_HOST", runner_b)
    assert docker.from_env().images.list() == []

    # Already published: nothing is pulled, built, checked or scanned; the report names A's digest.
    b_out = tmp_path / "b"
    t0 = time.monotonic()
    rep = pipeline.run(context.make(loaded, pipeline.BuildOptions(out_root=b_out, base=registry_base, registry=ns),
                                    UI(quiet=True), Engine.from_env()))
    skip_s = time.monotonic() - t0
    assert rep.published is not None and rep.published.digest == published.digest, rep
    assert rep.published.input_hash == a.input_hash and rep.published.decision == "pass"
    assert rep.build is None and rep.checks is None and rep.scan is None
    assert docker.from_env().images.list() == []
    assert skip_s < 30, skip_s
    fields = bake.ci_fields(loaded, pipeline.BuildOptions(base=registry_base, registry=ns, cache_from=(cache,)), Engine.from_env())
    assert fields == {"cache_from": [cache.format(name="bert")], "cache_to": None, "registry": ns,
                      "published": published.digest}

    # Cold build with --cache-from: the pip step is not re-run, the layers are A's.
    opts_b = pipeline.BuildOptions(out_root=b_out, base=registry_base, force=True,
                                   cache_from=(cache,))
    t0 = time.monotonic()
    b = pipeline.build(loaded, opts_b, UI(quiet=True), Engine.from_env())
    cold_s = time.monotonic() - t0
    log = Path(str(b.log)).read_text()
    pip = _steps(log, "pip-install")
    assert pip, "no pip step found in the build log"
    for n in pip:
        assert re.search(rf"^#{n} CACHED\s*$", log, re.M), f"pip step #{n} was re-run:\n{log[-3000:]}"
    assert b.cache is not None and b.cache.cached_steps and b.cache.mode == "inline"
    assert b.input_hash == a.input_hash
    assert Engine.from_env().image_attrs(b.image_id)["RootFS"]["Layers"] == a_layers
    print(f"runner B: already-published lookup {skip_s:.1f}s; cold build with --cache-from {cold_s:.1f}s "
          f"including the base pull ({b.cache.cached_steps} steps cached); stages {b.timings}")

    # A separate job checks exactly what A pushed, by digest (pulled into runner B's engine).
    pushed = f"{published.repository}@{published.digest}"
    assert Engine.from_env().image_attrs(pushed) is None
    rc = cli.main(["test", pushed, "--spec", str(VARIANTS / "bert.yaml"), "--out", str(tmp_path / "t"),
                   "--gpu", "off"])
    assert rc == 0
    checks = report.load(tmp_path / "t" / "bert").checks
    assert checks is not None and checks.passed is True


# --------------------------------------------------------------------------- reproducible images

def test_another_runner_rebuilds_the_same_image_and_reproduce_says_so(registry_base: str, open_registry: str,
                                                                      runner_b: str, tmp_path: Path) -> None:
    """Runner A builds and publishes bert; runner B (another engine, no layer cache: --reproduce builds
    with --no-cache) runs `tfimg build --reproduce REF@DIGEST`, which rebuilds the inputs A's provenance
    records: the same image, to the config digest and every layer."""
    loaded = spec.load(VARIANTS / "bert.yaml")
    a_out = tmp_path / "a"
    # A builds afresh like B (the file's first test left an image of the same inputs, and layers in the cache)
    a = pipeline.build(loaded, pipeline.BuildOptions(out_root=a_out, base=registry_base, force=True, no_cache=True),
                       UI(quiet=True), Engine.from_env())
    assert a.source_date is not None and a.source_date.source == "git"
    _passed(a_out, "bert", a.image_id)
    published = single.publish(loaded, a_out / "bert", f"{open_registry}/repro", push=True, engine=Engine.from_env())
    assert not isinstance(published, push.Plan)
    ref = f"{published.repository}@{published.digest}"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "builder", "build", str(VARIANTS / "bert.yaml"), "--reproduce", ref,
                          "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=2400, cwd=ROOT,
                         env={**os.environ, "DOCKER_HOST": runner_b})
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"reproduced {ref}: the rebuilt image is the same" in res.stdout
    assert "(from its provenance)" in res.stdout + res.stderr
    b = report.load(tmp_path / "b" / "bert").build
    assert b is not None and b.builder is not None and b.source_date is not None
    assert b.image_id == a.image_id and b.input_hash == a.input_hash
    assert (b.source_date.epoch, b.source_date.source) == (a.source_date.epoch, "recorded")
    log = Path(str(b.log)).read_text()
    assert "--no-cache" in log.splitlines()[0] and not re.search(r"^#\d+ CACHED", log, re.M)
    print(f"rebuild on another runner (no layer cache, base pulled): {took:.0f}s, same image {b.image_id[:19]}")


# --------------------------------------------------------------------------- the scan, through the registry

def _layers(host: str, repo: str, ref: str) -> list[str]:
    found = Registry(host, attempts=2).manifest(repo, ref)
    assert found is not None, f"{host}/{repo}:{ref} is not in the registry"
    return [layer["digest"] for layer in json.loads(found[0])["layers"]]


def test_scan_through_the_registry_fetches_only_layers_trivy_has_not_analysed(
        registry_base: str, open_registry: str, open_registry_dir: Path, demo_db: str, tmp_path: Path) -> None:
    """`tfimg build --scan-registry`: the image is pushed to a quarantine namespace and Trivy reads it
    by digest. Which blobs Trivy fetched is read from the registry's own access log: with a cold cache
    the base's layers too; after a change to a late layer (an authorized key), only the new layers."""
    variants = tmp_path / "variants"
    shutil.copytree(VARIANTS, variants)
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)   # the variants' repository (builder/spec/paths.py)
    quarantine = f"{open_registry}/quarantine"
    log = open_registry_dir / "registry.log"
    base_blobs = set(_layers(open_registry, "tfimg-standin", registry_base.rsplit(":", 1)[1]))

    def build() -> tuple[Report, set[str]]:
        mark = log.stat().st_size
        res = subprocess.run(
            [sys.executable, "-m", "builder", "--quiet", "build", str(variants / "bert.yaml"), "--base", registry_base,
             "--out", str(tmp_path / "out"), "--no-test", "--scan-registry", quarantine,
             "--trivy-db-repository", demo_db, "--trivy-cache-dir", str(tmp_path / "trivy-cache"),
             "--policy", str(ROOT / "policies/demo-bert-waivers.yaml")],
            capture_output=True, text=True, timeout=1500, cwd=ROOT)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        with open(log) as fh:
            fh.seek(mark)
            fetched = set(re.findall(r'"GET /v2/quarantine/bert/blobs/(sha256:[0-9a-f]{64})', fh.read()))
        return report.load(tmp_path / "out" / "bert"), fetched

    first, fetched = build()
    assert first.build is not None and first.scan is not None and first.gate is not None
    tag = f"scan-{first.build.input_hash.split(':')[-1][:12]}"
    digest = Registry(open_registry, attempts=2).digest_of("quarantine/bert", tag)
    assert first.scan.mode == "remote" and first.scan.image == f"{quarantine}/bert@{digest}", first.scan
    assert first.scan.image_id == first.build.image_id
    assert Engine.from_env().image_attrs(f"{quarantine}/bert:{tag}") is None   # the push's local tag is gone
    assert first.gate.decision == "pass" and first.gate.base_layers_known
    assert sum((first.gate.counts.get("vulnerability") or {}).get("inherited", {}).values()) > 0, first.gate.counts
    assert base_blobs & fetched, "a cold cache must read the base's layers (or the log shows no fetch at all)"

    (variants / "keys" / "team.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "newkey")], check=True)
    shutil.copy(tmp_path / "newkey.pub", variants / "keys" / "team.pub")
    second, fetched2 = build()
    assert second.build is not None and second.scan is not None and second.scan.reuse is not None
    assert second.build.image_id != first.build.image_id and not second.scan.reuse.reused
    new_blobs = set(_layers(open_registry, "quarantine/bert", second.scan.image.rsplit("@", 1)[1]))
    new_blobs -= set(_layers(open_registry, "quarantine/bert", first.scan.image.rsplit("@", 1)[1]))
    assert new_blobs, "changing a key must add a layer"
    layers_fetched = fetched2 - {second.build.image_id}   # the config blob is read too
    assert layers_fetched and layers_fetched <= new_blobs, (layers_fetched, new_blobs)
    assert not fetched2 & base_blobs
    print(f"scan through the registry: cold cache {first.scan.seconds}s ({len(fetched)} blobs fetched); after a "
          f"key change {second.scan.seconds}s ({len(layers_fetched)} new layer(s) fetched)")
