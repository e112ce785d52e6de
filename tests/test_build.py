"""Real builds on the stand-in base: report contents, up-to-date skip, failures, secret canaries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import docker
import pytest

from builder.infra.engine import Engine
from builder.spec import passwords

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def tfimg(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
          timeout: float = 900) -> subprocess.CompletedProcess[str]:
    # variants written in tmp_path extend the shipped ones: allow the checkout (builder/spec/paths.py)
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "CI": "1", "TFIMG_ALLOW_DIRS": str(ROOT), **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("name", ["dev", "worker"])
def test_report_matches_docker_inspect(built, build_root: Path, name: str) -> None:
    section = built(name)
    attrs = Engine.from_env().image_attrs(section.image_id)
    assert attrs is not None
    report = json.loads((build_root / name / "report.json").read_text())["build"]
    assert report == section.model_dump(mode="json", exclude_unset=True)   # the keys the stage wrote
    assert report["size"] == attrs["Size"]
    assert report["added_bytes"] == attrs["Size"] - Engine.from_env().image_attrs(report["base"]["ref"])["Size"]
    assert report["added_bytes"] > 0
    assert len(report["layers"]) == len(Engine.from_env().image_history(section.image_id))
    labels = attrs["Config"]["Labels"]
    assert labels["io.tfimg.input-hash"] == report["input_hash"]
    assert labels["io.tfimg.spec-hash"] == report["spec_hash"]
    assert labels["org.opencontainers.image.title"] == name
    assert labels["org.opencontainers.image.base.name"] == report["base"]["ref"]
    assert labels["org.opencontainers.image.created"] != "unknown"
    assert attrs["Config"]["User"] == "1000:1000"
    assert report["builder"]["kind"] in ("buildx", "docker-buildkit")
    assert report["image"] in attrs["RepoTags"]
    if not report["up_to_date"]:
        assert (build_root / name / "build.log").stat().st_size > 0
    assert (build_root / name / "context" / "Dockerfile").exists()


def test_up_to_date_skip_and_force(built, build_root: Path, standin_base: str) -> None:
    first = built("dev")
    spec_file = str(ROOT / "variants/dev.yaml")
    common = ["--base", standin_base, "--out", str(build_root), "--no-test", "--no-scan"]
    start = time.monotonic()
    res = tfimg("build", spec_file, *common)
    took = time.monotonic() - start
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stderr
    report = json.loads((build_root / "dev" / "report.json").read_text())["build"]
    assert report["image_id"] == first.image_id and report["up_to_date"] is True
    assert took < 30
    # checks and scan were skipped: the image is not tagged
    assert "not tagged" in res.stderr
    assert json.loads((build_root / "dev" / "report.json").read_text())["local_tags"] == []
    res = tfimg("build", spec_file, *common, "--force")
    assert res.returncode == 0, res.stderr
    assert "up to date" not in res.stderr
    forced = json.loads((build_root / "dev" / "report.json").read_text())["build"]
    assert forced["up_to_date"] is False
    assert forced["input_hash"] == first.input_hash


def _variant(tmp: Path, requirements: str, extra: str = "") -> Path:
    (tmp / "r.txt").write_text(requirements)
    v = tmp / "broken.yaml"
    v.write_text(textwrap.dedent(f"""
        extends: {ROOT / 'variants/base.yaml'}
        python: {{requirements: [r.txt]}}
    """) + textwrap.dedent(extra))
    return v


def _assert_nothing_left(name: str) -> None:
    images = docker.from_env().images.list(name=f"tfimg/{name}")
    assert images == [], f"a failed build left images behind: {images}"
    left = docker.from_env().containers.list(all=True, filters={"ancestor": f"tfimg/{name}"})
    assert left == []


def test_missing_requirement_fails_clearly(tmp_path: Path, standin_base: str) -> None:
    v = _variant(tmp_path, "tfimg-no-such-package-xyz==1.0\n")
    res = tfimg("build", str(v), "--base", standin_base, "--out", str(tmp_path / "out"), "--no-test", "--no-scan")
    assert res.returncode == 1, res.stderr
    assert "pip found no distribution for 'tfimg-no-such-package-xyz==1.0'" in res.stderr
    assert "Full log:" in res.stderr and "Traceback" not in res.stderr
    _assert_nothing_left("broken")


def test_protect_base_stops_a_tensorflow_replacement(tmp_path: Path, standin_base: str) -> None:
    v = _variant(tmp_path, "tensorflow==2.10.0\n")
    res = tfimg("build", str(v), "--base", standin_base, "--out", str(tmp_path / "out"), "--no-test", "--no-scan")
    assert res.returncode == 1, res.stderr
    assert "protect_base stopped the build" in res.stderr
    assert "tensorflow==2.9.3" in res.stderr
    _assert_nothing_left("broken")


def test_engine_unreachable_is_an_environment_error(tmp_path: Path, standin_base: str) -> None:
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--base", standin_base, "--out", str(tmp_path),
                env={"DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert res.returncode == 2
    assert "no Docker engine answers" in res.stderr and "DOCKER_HOST" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_docker_client_is_an_environment_error(tmp_path: Path, standin_base: str) -> None:
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--base", standin_base, "--out", str(tmp_path),
                "--docker", str(tmp_path / "no-docker-here"))
    assert res.returncode == 2
    assert "BuildKit" in res.stderr and "not found" in res.stderr


def test_secrets_never_reach_image_history_labels_report_or_logs(tmp_path: Path, standin_base: str) -> None:
    """Canaries for every kind of secret; zero hits in `docker save`, history, labels, report and logs."""
    canary = {
        "index": "CanaryIdx5e1d9",
        "ca": "CanaryCa77b3e",
        "netrc": "CanaryNetrc0c4f",
        "jupyter": "CanaryJupyterPw91",
    }
    ca = tmp_path / "corp-ca.pem"
    ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text() + f"\n# {canary['ca']}\n")
    (tmp_path / "netrc").write_text(f"machine canary.invalid login bot password {canary['netrc']}\n")
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id_ed25519")], check=True)
    private_body = (keys / "id_ed25519").read_text().splitlines()[2]
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    hashed = passwords.hash_password(canary["jupyter"])
    v = tmp_path / "canary.yaml"
    v.write_text(textwrap.dedent(f"""
        extends: {ROOT / 'variants/base.yaml'}
        python: {{requirements: [r.txt]}}
        secrets:
          pip_index_url: {{env: CANARY_PIP_INDEX_URL}}
          netrc: {{file: netrc}}
          ca_bundle: {{file: corp-ca.pem}}
        ssh: {{enabled: true, authorized_keys: [keys/id_ed25519.pub]}}
        jupyter: {{enabled: true, password_hash: '{hashed}'}}
    """))
    out = tmp_path / "out"
    res = tfimg("build", str(v), "--base", standin_base, "--out", str(out), "--no-test", "--no-scan", "--no-cache",
                env={"CANARY_PIP_INDEX_URL": f"https://tfimgbot:{canary['index']}@pypi.org/simple"})
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "canary" / "report.json").read_text())
    image_id = report["build"]["image_id"]
    archive = tmp_path / "image.tar"
    Engine.from_env().save(image_id, str(archive))
    haystacks = {
        "docker save archive": archive.read_bytes(),
        "history": json.dumps(Engine.from_env().image_history(image_id)).encode(),
        "inspect": json.dumps(Engine.from_env().image_attrs(image_id)).encode(),
        "report": (out / "canary" / "report.json").read_bytes(),
        "build log": (out / "canary" / "build.log").read_bytes(),
        "stdout+stderr": (res.stdout + res.stderr).encode(),
    }
    haystacks.update({f"context/{p.relative_to(out)}": p.read_bytes()
                      for p in (out / "canary" / "context").rglob("*") if p.is_file()})
    needles = {**canary, "private key": private_body}
    hits = [(what, where) for what, needle in needles.items() for where, hay in haystacks.items()
            if needle.encode() in hay]
    assert hits == []
    # the secrets were really used: the build installed six through the canary index
    assert "six" in (out / "canary" / "build.log").read_text()
    Engine.from_env().remove_image(image_id, force=True)
    shutil.rmtree(out)


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default disposition, whatever the test run's was.

    A parent that ignores SIGINT (a background job, ``trap "" INT``, some CI runners)
    passes that on through exec; Python then keeps ignoring it and no KeyboardInterrupt
    ever comes, so the test would test its caller instead of tfimg.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_a_build_exits_130_and_leaves_no_image(tmp_path: Path, standin_base: str) -> None:
    v = _variant(tmp_path, "six==1.16.0\n", extra="apt: {packages: [rsync]}\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "builder", "build", str(v), "--base", standin_base,
                             "--out", str(out), "--no-cache", "--no-test", "--no-scan"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1", "TFIMG_ALLOW_DIRS": str(ROOT)},   # it extends ROOT's
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not (out / "broken" / "build.log").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)                      # the build is under way (apt-get)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _assert_nothing_left("broken")
    assert not (out / "broken" / "report.json").exists()


def test_several_variants_build_side_by_side_and_one_failure_fails_the_run(tmp_path: Path, standin_base: str) -> None:
    bad = _variant(tmp_path, "tfimg-no-such-package-xyz==1.0\n")
    out = tmp_path / "out"
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), str(bad), "--jobs", "2", "--base", standin_base,
                "--out", str(out), "--no-test", "--no-scan")
    assert res.returncode == 1, res.stderr
    assert "[broken] tfimg: build failed" in res.stderr and "[dev]" in res.stderr
    assert "dev                  ok" in res.stdout and "broken               exit 1" in res.stdout
    assert json.loads((out / "dev/report.json").read_text())["build"]["image_id"].startswith("sha256:")
    _assert_nothing_left("broken")


def test_one_invalid_spec_among_several_builds_nothing(tmp_path: Path, standin_base: str) -> None:
    (tmp_path / "bad.yaml").write_text("usr: {}\n")
    out = tmp_path / "out"
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), str(tmp_path / "bad.yaml"), "--base", standin_base,
                "--out", str(out))
    assert res.returncode == 2 and "unknown key 'usr'" in res.stderr
    assert not out.exists()


def test_gpu_on_without_a_gpu_fails_before_building(tmp_path: Path, standin_base: str) -> None:
    if Engine.from_env().gpu_available():
        pytest.skip("this engine has an NVIDIA runtime: --gpu on is valid here")
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--gpu", "on", "--base", standin_base,
                "--out", str(tmp_path))
    assert res.returncode == 2 and "no NVIDIA runtime" in res.stderr
    assert not (tmp_path / "dev").exists()


def test_a_base_that_already_uses_the_uid_fails_with_a_clear_message(tmp_path: Path, standin_base: str) -> None:
    ctx = tmp_path / "base"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {standin_base}\nRUN useradd --uid 1000 --user-group ubuntu\n")
    ref = "tfimg-test-base-uid1000:latest"
    subprocess.run(["/usr/bin/docker", "build", "-q", "-t", ref, str(ctx)], check=True, capture_output=True,
                   env={**os.environ, "DOCKER_BUILDKIT": "1"})
    try:
        res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--base", ref, "--out", str(tmp_path / "out"),
                    "--no-test", "--no-scan")
        assert res.returncode == 1, res.stderr[-2000:]
        assert "the base image already has the user or group (name:id) ubuntu:1000; set user.name" in res.stderr
        images = docker.from_env().images.list(filters={"label": "io.tfimg.variant=dev", "reference": "tfimg/dev"})
        assert all(Engine.from_env().image_attrs(i.id)["Config"]["Labels"].get("org.opencontainers.image.base.name") != ref
                   for i in images)
    finally:
        Engine.from_env().remove_image(ref, force=True)
