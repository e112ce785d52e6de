"""The main job end to end, as a user runs it: tfimg build, then publish to a real registry.

The scan stage runs ``tests/fakes/fake_trivy``, which writes a chosen real
Trivy report (a clean one, then one with a CRITICAL finding), so that one image
can be driven through both gate decisions; the real Trivy 0.76 against the demo
DB is tested in ``tests/test_trivy_real.py`` and run by ``make demo``.
Everything else is real: BuildKit build, containers checked over SSH and HTTP,
tags applied, push by digest to a registry with htpasswd auth, evidence read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.infra.engine import Engine

pytest_plugins = ["tests.conftest_registry"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
FAKE_TRIVY = ROOT / "tests/fakes/fake_trivy"
TRIVY_DATA = ROOT / "tests/data/trivy"


def tfimg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True,
                          env={**os.environ, "CI": "1", **(env or {})}, timeout=900)


def test_build_checks_scans_gates_tags_then_publishes(standin_base: str, tmp_path: Path,
                                                      docker_login, monkeypatch) -> None:
    out = tmp_path / "build"
    clean = {"FAKE_TRIVY_FIXTURE": str(TRIVY_DATA / "sl-micro-rancher5.4.json.golden")}
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--base", standin_base, "--out", str(out),
                "--trivy", str(FAKE_TRIVY), env=clean)
    assert res.returncode == 0, res.stderr[-4000:]
    rep = json.loads((out / "dev/report.json").read_text())
    assert set(rep) >= {"build", "checks", "scan", "gate", "facts", "tags", "local_tags", "timings"}
    assert {"render", "checks", "scan and gate", "tags"} <= set(rep["timings"])
    assert rep["checks"]["passed"] is True and rep["gate"]["decision"] == "pass"
    image_id = rep["build"]["image_id"]
    for ref in rep["local_tags"]:
        assert Engine.from_env().image_attrs(ref)["Id"] == image_id
    assert rep["tags"]["immutable"].startswith("dev-tf2.9.3-py3.9-cpu-")
    assert "checks    passed" in res.stdout and "gate      pass" in res.stdout

    registry = f"{docker_login.host}/ml"
    dry = tfimg("publish", str(ROOT / "variants/dev.yaml"), "--registry", registry, "--out", str(out),
                env={"DOCKER_CONFIG": os.environ["DOCKER_CONFIG"]})
    assert dry.returncode == 0, dry.stderr
    assert "publish" not in json.loads((out / "dev/report.json").read_text())   # a dry run pushes nothing
    pushed = tfimg("publish", str(ROOT / "variants/dev.yaml"), "--registry", registry, "--out", str(out),
                   "--push", env={"DOCKER_CONFIG": os.environ["DOCKER_CONFIG"]})
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads((out / "dev/report.json").read_text())["publish"]["digest"]
    assert digest.startswith("sha256:")
    shown = tfimg("registry", "show", f"{registry}/dev@{digest}",
                  env={"DOCKER_CONFIG": os.environ["DOCKER_CONFIG"]})
    assert shown.returncode == 0, shown.stderr
    evidence = json.loads(shown.stdout)
    assert json.dumps(evidence).count(image_id) >= 1
    for ref in rep["local_tags"]:
        Engine.from_env().remove_image(ref)
    Engine.from_env().remove_image(f"{registry}/dev:{rep['tags']['immutable']}", force=True)


def test_a_blocking_gate_leaves_the_image_untagged(standin_base: str, tmp_path: Path) -> None:
    out = tmp_path / "build"
    critical = {"FAKE_TRIVY_FIXTURE": str(TRIVY_DATA / "debian-buster.json.golden")}
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--base", standin_base, "--out", str(out),
                "--no-test", "--trivy", str(FAKE_TRIVY), env=critical)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "CVE-2019-18224" in res.stderr or "CVE-2019-18224" in (out / "dev/gate.md").read_text()
    rep = json.loads((out / "dev/report.json").read_text())
    assert rep["gate"]["decision"] == "block"
    assert "local_tags" not in rep and "tags" not in rep


def test_without_trivy_the_gate_fails_closed(standin_base: str, tmp_path: Path) -> None:
    out = tmp_path / "build"
    res = tfimg("build", str(ROOT / "variants/dev.yaml"), "--base", standin_base, "--out", str(out),
                "--no-test", "--trivy", str(tmp_path / "no-trivy-here"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    rep = json.loads((out / "dev/report.json").read_text())
    assert rep["gate"]["decision"] == "block" and "tags" not in rep
