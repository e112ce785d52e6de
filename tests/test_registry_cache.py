"""Registry build cache flags, the engine-independent input hash, and the already-published lookup (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import EnvError
from builder.image import buildkit as build
from builder.image import inputs
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry
from builder.infra.report_models import BuildCache
from builder.pipeline import gatekeeping, single
from builder.publish import curation, evidence
from builder.publish import push as publish
from builder.scan import policy as policies
from builder.scan import trivy
from builder.spec import loader as spec
from tests.test_trivy_real import tiny  # noqa: F401  (a session fixture: a tiny image)

pytest_plugins = ["tests.conftest_registry"]

BUILDX = build.Builder("buildx", "/usr/bin/docker", "27.0.0", driver="docker-container", buildkit="0.13")
CONTAINERD = build.Builder("buildx", "/usr/bin/docker", "26.1.5", driver="docker", store="containerd", buildkit="0.13")
DOCKER_DRIVER = build.Builder("buildx", "/usr/bin/docker", "26.1.5", driver="docker", store="classic", buildkit="0.13")
CLASSIC = build.Builder("docker-buildkit", "/usr/bin/docker", "20.10.24", buildkit="0.8")


@pytest.mark.parametrize("builder", [BUILDX, CONTAINERD], ids=["docker-container", "containerd-store"])
def test_builders_that_export_caches_use_registry_cache_with_mode_max(builder: build.Builder) -> None:
    assert build.cache_args(builder, ["r:5000/c/bert:buildcache"], "r:5000/c/bert:buildcache") == [
        "--cache-from", "type=registry,ref=r:5000/c/bert:buildcache",
        "--cache-to", "type=registry,ref=r:5000/c/bert:buildcache,mode=max"]
    assert build.cache_args(builder, ["type=gha"], "type=local,dest=/tmp/c") == [
        "--cache-from", "type=gha", "--cache-to", "type=local,dest=/tmp/c"]
    assert build.cache_mode(builder) == "registry"


def test_the_docker_driver_on_the_classic_store_gets_inline_cache() -> None:
    """buildx's docker driver on overlay2 cannot export a cache ("Cache export is not supported for the
    docker driver"): a plain reference becomes inline cache (as on 20.10); an explicit type= is refused
    before anything is built, naming the driver and the two ways to a registry cache."""
    assert build.cache_mode(DOCKER_DRIVER) == "inline"
    assert build.cache_args(DOCKER_DRIVER, ["r:5000/c:1"], "r:5000/c:1") == [
        "--cache-from", "type=registry,ref=r:5000/c:1", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    with pytest.raises(EnvError) as exc:
        build.cache_args(DOCKER_DRIVER, [], "type=registry,ref=r:5000/c:1,mode=max")
    text = exc.value.render()
    assert "docker driver" in text and "classic image store" in text and "nothing was built" in text
    assert "docker-container" in text and "containerd-snapshotter" in text


def test_classic_client_uses_inline_cache() -> None:
    assert build.cache_args(CLASSIC, ["r:5000/a:1", "r:5000/b:2"], None) == [
        "--cache-from", "r:5000/a:1", "--cache-from", "r:5000/b:2"]
    assert build.cache_args(CLASSIC, [], "r:5000/c:1") == ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    assert build.cache_args(CLASSIC, [], None) == []
    assert build.cache_mode(CLASSIC) == "inline"
    with pytest.raises(EnvError, match="inline cache only"):
        build.cache_args(CLASSIC, ["type=registry,ref=r:5000/c"], None)


def test_a_named_buildx_builder_goes_to_buildx_build() -> None:
    named = build.Builder("buildx", "/usr/bin/docker", "27.0.0", "k8s-fleet", driver="kubernetes")
    assert named.argv() == ["/usr/bin/docker", "buildx", "build", "--builder", "k8s-fleet", "--load"]
    assert named.describe()["name"] == "k8s-fleet" and "name" not in BUILDX.describe()


@pytest.fixture(scope="module")
def legacy_client(pytestconfig: pytest.Config) -> str:
    """Debian 12's docker 20.10 client with no buildx plugin in sight (scripts/engine2.sh unpacks it,
    never installs it, and runs it in a mount namespace where the plugin folders are empty)."""
    import os
    import shutil
    import subprocess

    from tests.conftest import ROOT
    from tests.conftest_registry import _missing
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("apt-get"):
        _missing(pytestconfig, "the legacy 20.10 client needs root, unshare and apt-get (Debian)")
    res = subprocess.run([str(ROOT / "scripts/engine2.sh"), "--engine", "20.10", "client", "--no-buildx"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip().splitlines()[-1]


def test_builder_without_buildx_is_bad_input_and_nothing_is_built(legacy_client: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Debian 12's docker 20.10 client has no buildx: `--builder NAME` is refused (exit 2) before any
    build, never quietly replaced by the engine's own BuildKit."""
    from builder import cli
    from tests.conftest import VARIANTS
    found = build.find_builder(legacy_client)
    assert found.kind == "docker-buildkit" and found.version.startswith("20.10.") and not found.exports_cache
    with pytest.raises(EnvError, match="needs buildx"):
        build.find_builder(legacy_client, "k8s-fleet")
    rc = cli.main(["build", str(VARIANTS / "bert.yaml"), "--docker", legacy_client, "--builder", "k8s-fleet",
                   "--base", "127.0.0.1:1/standin@sha256:" + "ab" * 32, "--out", str(tmp_path), "--no-test"])
    err = capsys.readouterr().err
    assert rc == 2 and "--builder k8s-fleet needs buildx" in err and "Traceback" not in err, err
    assert not (tmp_path / "bert").exists()   # checked before rendering: nothing written, nothing built


def test_cached_steps_are_counted_from_the_plain_log() -> None:
    log = "#5 [2/4] RUN apt-get\n#5 CACHED\n\n#6 [3/4] RUN pip\n#6 CACHED\n#7 [4/4] COPY x\n#7 DONE 0.1s\n"
    assert build.cached_steps(log) == 2
    assert inputs.cache_ref("r:5000/cache/{name}:bc", "bert") == "r:5000/cache/bert:bc"


def test_cache_record_json_uses_from() -> None:
    rec = BuildCache.model_validate({"mode": "inline", "from": ["r:5000/c:1"], "to": None})
    assert rec.model_dump(mode="json", by_alias=True, exclude_unset=True) == {
        "mode": "inline", "from": ["r:5000/c:1"], "to": None}


def test_base_key_prefers_the_registry_digest() -> None:
    d = "sha256:" + "a" * 64
    assert inputs.base_key(f"r:5000/base@{d}", "sha256:" + "b" * 64, "sha256:" + "c" * 64) == d
    assert inputs.base_key("r:5000/base:1", d, "sha256:" + "c" * 64) == d
    assert inputs.base_key("local:1", None, "sha256:" + "c" * 64) == "sha256:" + "c" * 64
    # two engines with different local ids but the same base digest: the same input hash
    one = inputs.input_hash("sha256:ctx", inputs.base_key("r:5000/base:1", d, "sha256:" + "1" * 64), {}, "r:5000/base:1")
    two = inputs.input_hash("sha256:ctx", inputs.base_key("r:5000/base:1", d, "sha256:" + "2" * 64), {}, "r:5000/base:1")
    assert one == two


def test_input_tag() -> None:
    tag = evidence.input_tag("sha256:" + "0123456789abcdef" * 4)
    assert tag == "ih-0123456789abcdef0123" and evidence.is_input_tag(tag)
    assert not evidence.is_input_tag("ih-latest")


def test_retention_does_not_count_the_input_tag_as_moving() -> None:
    old = curation.Entry("r/dev/bert", "bert", "sha256:" + "1" * 64, ["20260101-x", "ih-" + "a" * 20],
                         "2026-01-01", 1, "pass", False, "20260101-x", [])
    new = curation.Entry("r/dev/bert", "bert", "sha256:" + "2" * 64, ["20260102-x"],
                         "2026-01-02", 1, "pass", False, "20260102-x", [])
    decided = curation.retention([new, old], keep=1, protected=False)
    assert decided[1][1].startswith("delete")


def test_matrix_adds_what_a_ci_job_needs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from builder import cli
    from tests.conftest import VARIANTS
    base = "127.0.0.1:1/standin@sha256:" + "ab" * 32     # pinned and loopback: nothing is pulled
    assert cli.main(["matrix", str(VARIANTS), "--base", base, "--registry", "127.0.0.1:1/ns",   # nothing listens
                     "--cache-from", "127.0.0.1:1/cache/{name}:bc", "--cache-to", "127.0.0.1:1/cache/{name}:bc"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for item in data["include"]:
        assert item["cache_from"] == [f"127.0.0.1:1/cache/{item['variant']}:bc"]
        assert item["cache_to"] == f"127.0.0.1:1/cache/{item['variant']}:bc"
        assert item["registry"] == "127.0.0.1:1/ns" and item["published"] is None   # unreachable: the job builds


@pytest.mark.docker
def test_publish_tags_the_input_hash_and_build_registry_finds_it(docker_login, tiny_image, gated_variant,
                                                                 tmp_path: Path) -> None:
    b = gated_variant(tiny_image())
    rec = single.publish(spec.load(b.spec_file), b.dir, f"{docker_login.host}/dev", push=True, engine=Engine.from_env())
    assert not isinstance(rec, publish.Plan)
    ihash = b.report().build.input_hash
    reg = Registry(docker_login.host)
    assert reg.digest_of("dev/bert", evidence.input_tag(ihash)) == rec.digest
    lenient = tmp_path / "critical-only.yaml"
    lenient.write_text("vulnerabilities:\n  new: {fixed: CRITICAL, unfixed: none}\n")
    found = publish.find_published(f"{docker_login.host}/dev", "bert", ihash,
                                   gatekeeping.judge(policies.load(lenient), lenient))
    assert found is not None and found.digest == rec.digest and found.decision == "pass"
    assert found.repository == f"{docker_login.host}/dev/bert"
    # the recorded gate passed, but the current (default) policy blocks the fixable HIGH: no reuse
    strict = publish.find_published(f"{docker_login.host}/dev", "bert", ihash,
                                    gatekeeping.judge(policies.load(Path("policies/default.yaml"))))
    assert strict is not None and strict.decision == "block"
    # other inputs: nothing found
    assert publish.find_published(f"{docker_login.host}/dev", "bert", "sha256:" + "f" * 64,
                                  gatekeeping.judge(policies.load(lenient), lenient)) is None


@pytest.mark.docker
@pytest.mark.trivy
@pytest.mark.slow
def test_scan_by_digest_reads_the_image_from_the_registry(demo_db: str, tiny: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """`tfimg scan HOST/NAME@sha256:...`: Trivy reads exactly that digest from the registry (no engine)."""
    import json

    from builder.infra.engine import Engine
    from tests.test_trivy_real import tfimg

    host = demo_db.split("/")[0]                     # the local registry that serves the demo DB
    name = f"{host}/tfimg-test/scan-by-digest"
    Engine.from_env().tag(tiny, name, "t")
    digest = Engine.from_env().push(name, "t")
    Engine.from_env().remove_image(f"{name}:t")
    ref = f"{name}@{digest}"
    res = tfimg("scan", ref, "--cache-dir", str(tmp_path / "cache"), "--db-repository", demo_db,
                "--out", str(tmp_path / "out"), "--timeout", "300")
    assert res.returncode == 0, res.stdout + res.stderr
    scan = json.loads((tmp_path / "out/report.json").read_text())["scan"]
    assert scan["status"] == "ok" and scan["mode"] == "remote" and scan["image"] == ref
    assert json.loads((tmp_path / "out/trivy.json").read_text())["ArtifactName"] == ref


@pytest.mark.docker
def test_scan_registry_that_refuses_the_push_fails_the_scan_closed(no_login, tiny_image, tmp_path: Path) -> None:
    """`--scan-registry` without credentials: the push is refused, nothing is scanned, the gate blocks
    (fails closed) naming the cause, and no local tag made for the push is left behind."""
    from tests.test_scan_pipeline import rendered, variant

    image = tiny_image()
    quarantine = f"{no_login.host}/quarantine"

    def stage_in(ref: str) -> str:
        return publish.push_for_scan(ref, quarantine, "demo", "sha256:" + "a" * 64, engine=Engine.from_env())

    out = rendered(tmp_path / "out")
    loaded = variant(tmp_path)
    with pytest.raises(EnvError, match="not logged in") as exc:
        single.scan_variant(loaded, image, out, policies.load(loaded.spec.policy), base_ref=None,
                            options=trivy.Options(), engine=Engine.from_env(), warn=print, stage_in=stage_in)
    assert "fails closed" in exc.value.message
    from builder.infra import report
    rep = report.load(out)
    assert rep.gate is not None and rep.gate.decision == "block" and rep.scan is not None
    assert rep.scan.status == "failed" and not (out / "trivy.json").exists()
    assert Engine.from_env().image(f"{quarantine}/demo:scan-{'a' * 12}") is None


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--scan-registry", "127.0.0.1:5000/quarantine:latest", "--scan-registry takes HOST[:PORT]/NAMESPACE without a tag"),
    ("--registry", "team", "--registry: 'team' does not name a registry host"),
])
def test_malformed_registry_options_are_bad_input_before_anything_is_built(
        option: str, value: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from builder import cli
    from tests.conftest import VARIANTS
    rc = cli.main(["build", str(VARIANTS / "bert.yaml"), option, value, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "bert").exists()
