"""Rendering: golden Dockerfiles, determinism, layer order, no secrets, hadolint clean.

Update the golden files after an intended template change with
``TFIMG_UPDATE_GOLDEN=1 pytest tests/test_render.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builder.cli.specs import hadolint
from builder.render import context as render
from builder.spec import loader as spec
from builder.spec import passwords

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests/data/golden"
SHIPPED = ["bert", "notebook", "worker", "dev"]


def load(name: str) -> spec.LoadedVariant:
    return spec.load(ROOT / "variants" / f"{name}.yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_golden_dockerfile(name: str) -> None:
    got = render.render(load(name)).dockerfile
    golden = GOLDEN / f"{name}.Dockerfile"
    if os.environ.get("TFIMG_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert golden.exists(), f"no golden file; run TFIMG_UPDATE_GOLDEN=1 pytest {__file__}"
    assert got == golden.read_text(), f"{name}: rendered Dockerfile differs from {golden} (update switch: TFIMG_UPDATE_GOLDEN=1)"


@pytest.mark.parametrize("name", SHIPPED)
def test_rendering_is_byte_identical(name: str, tmp_path: Path) -> None:
    a = render.render(load(name))
    b = render.render(load(name))
    assert a.files == b.files and a.context_hash() == b.context_hash()
    render.write(a, tmp_path / "a")
    render.write(b, tmp_path / "b")
    for f in a.files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        assert (tmp_path / "a" / f).stat().st_mode == (tmp_path / "b" / f).stat().st_mode


def test_rendering_does_not_depend_on_checkout_location(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "variants", copy / "variants")
    shutil.copytree(ROOT / "policies", copy / "policies")
    subprocess.run(["git", "init", "-q", str(copy)], check=True)   # the variants' repository (builder/spec/paths.py)
    here = render.render(load("bert"))
    there = render.render(spec.load(copy / "variants/bert.yaml"))
    assert here.files == there.files


def test_layer_order_apt_python_user_config() -> None:
    df = render.render(load("bert")).dockerfile
    order = [df.index(marker) for marker in (
        "apt-get", "pip-install.sh", "useradd", "source=entrypoint.sh", "/run/tfimg/ssh/authorized_keys",
        "cp -R /run/tfimg/jupyter/", "USER 1000:1000", "LABEL")]
    assert order == sorted(order)


def _instructions_before(df: str, marker: str) -> list[str]:
    return [ln for ln in df[: df.index(marker)].splitlines() if ln and not ln.startswith("#")]


def test_changing_a_key_or_password_hash_leaves_earlier_layers_alone(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "variants", tmp_path / "variants")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)   # the variants' repository
    before = render.render(spec.load(tmp_path / "variants/bert.yaml"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    shutil.copy(tmp_path / "k.pub", tmp_path / "variants/keys/team.pub")
    bert = tmp_path / "variants/bert.yaml"
    bert.write_text(bert.read_text().replace("jupyter:\n  enabled: true",
                                             f"jupyter:\n  enabled: true\n  password_hash: '{passwords.hash_password('x')}'"))
    after = render.render(spec.load(bert))
    assert before.files["etc/ssh/authorized_keys"] != after.files["etc/ssh/authorized_keys"]
    # Every instruction up to the config files is the same: apt, pip and user layers stay cached.
    assert _instructions_before(before.dockerfile, "RUN --mount=type=bind,source=entrypoint.sh") == \
        _instructions_before(after.dockerfile, "RUN --mount=type=bind,source=entrypoint.sh")
    for f in before.files:
        if f.startswith("python/"):
            assert before.files[f] == after.files[f]


def test_secrets_never_rendered(tmp_path: Path, monkeypatch) -> None:
    canary = "CANARY-7f3a9c-token"
    (tmp_path / "ca.pem").write_text(f"-----BEGIN CERTIFICATE-----\n{canary}-ca\n-----END CERTIFICATE-----\n")
    (tmp_path / "netrc").write_text(f"machine pypi.corp.example login bot password {canary}-netrc\n")
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    shutil.copy(ROOT / "variants/keys/team.pub", tmp_path / "team.pub")
    v = tmp_path / "v.yaml"
    v.write_text(textwrap.dedent("""
        python:
          requirements: [r.txt]
          index_url: https://pypi.corp.example/simple
        secrets:
          pip_index_url: {env: CANARY_INDEX}
          netrc: {file: netrc}
          ca_bundle: {file: ca.pem}
        ssh: {enabled: true, authorized_keys: [team.pub]}
        jupyter: {enabled: true}
    """))
    monkeypatch.setenv("CANARY_INDEX", f"https://bot:{canary}-index@pypi.corp.example/simple")
    rendered = render.render(spec.load(v))
    blob = json.dumps(rendered.files)
    assert canary not in blob
    df = rendered.dockerfile
    for sid in ("pip_index_url", "netrc", "ca_bundle"):
        assert f"--mount=type=secret,id={sid},required=true" in df
    assert "ARG" not in df.split("FROM", 1)[1].split("# --- labels")[0]  # no build args carry values


@pytest.mark.parametrize("name", SHIPPED)
def test_hadolint_clean(name: str, tmp_path: Path) -> None:
    ctx = render.write(render.render(load(name)), tmp_path / "ctx")
    findings = hadolint(ctx / "Dockerfile")
    assert findings == [], findings


def test_render_command_writes_context_and_stdout(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    res = subprocess.run([sys.executable, "-m", "builder", "render", str(ROOT / "variants/bert.yaml"),
                          "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "Dockerfile").read_text() == render.render(load("bert")).dockerfile
    assert os.access(out / "entrypoint.sh", os.X_OK)
    res = subprocess.run([sys.executable, "-m", "builder", "render", str(ROOT / "variants/dev.yaml"), "--stdout"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("# Rendered by tfimg")
    assert not (tmp_path / "build").exists()


def test_lint_command_passes_on_shipped_variants(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "builder", "lint",
                          *[str(ROOT / "variants" / f"{n}.yaml") for n in SHIPPED]],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("hadolint clean") == len(SHIPPED)
