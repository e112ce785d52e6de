"""A hostile-but-valid variant builds for real, and its values stay inert (docker).

The property tests (tests/test_render_properties.py) prove the rendered files keep
their structure with real parsers; this builds such a variant with BuildKit on the
stand-in base and reads the image back: the values are in the image config exactly
as written, nothing in them ran at build time or when the container starts, and
a secret file path with a comma cannot make buildx mount another file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.image import buildkit
from builder.infra.engine import Engine
from builder.spec import loader as spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENV = {
    "PWN_CMD": "$(touch /tmp/pwned-env)",
    "PWN_VARS": '${HOME} $HOME \\$ \\\\ " \' `touch /tmp/pwned-tick`',
    "PWN_DOCKERFILE": '" \\ RUN touch /tmp/pwned-run <<EOF {{ 7*7 }} %h',
}
LABELS = {"com.example.pwn": '"; LABEL x=1 \\ $(touch /tmp/pwned-label) ${TFIMG_CREATED} %h'}
DESCRIPTION = "it's \"quoted\" $(touch /tmp/pwned-desc) ${TFIMG_BASE} # not a comment"
HOME = "/home/ml+a@b.c-d_e"
HASH_FILE = "/run/secrets/odd+name@x.y"


def _variant(folder: Path) -> Path:
    data = {
        "name": "hostile", "description": DESCRIPTION,
        "user": {"home": HOME}, "env": ENV, "labels": LABELS,
        "jupyter": {"enabled": True, "password_hash_file": HASH_FILE},
    }
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_hostile_values_are_built_literally_and_never_run(built, tmp_path: Path) -> None:
    section = built(_variant(tmp_path))
    engine = Engine.from_env()
    attrs = engine.image_attrs(section.image_id)
    assert attrs is not None
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    labels = attrs["Config"]["Labels"]
    for key, value in ENV.items():
        assert env[key] == value, key
    assert labels["com.example.pwn"] == LABELS["com.example.pwn"]
    assert labels["org.opencontainers.image.description"] == DESCRIPTION
    assert "x" not in labels and not any(k.startswith("RUN") for k in labels)
    assert labels["org.opencontainers.image.created"] != "${TFIMG_CREATED}"   # tfimg's build args still expand

    # Start the container through the real entrypoint (Jupyter enabled, no hash given): it must
    # refuse with exit 64 naming the odd path literally, and nothing in any value may have run.
    run = subprocess.run(["docker", "run", "--rm", section.image_id], capture_output=True, text=True, timeout=120)
    assert run.returncode == 64, run.stderr[-2000:]
    assert f"mount {HASH_FILE}," in run.stderr
    probe = subprocess.run(
        ["docker", "run", "--rm", section.image_id, "bash", "-c",
         'ls -a /tmp; getent passwd ml | cut -d: -f6; printf "%s" "$PWN_CMD"'],
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert "pwned" not in probe.stdout.replace(ENV["PWN_CMD"], ""), probe.stdout
    assert HOME in probe.stdout.splitlines()
    assert probe.stdout.endswith(ENV["PWN_CMD"])


def test_a_comma_in_a_secret_path_cannot_mount_another_file(standin_base: str, tmp_path: Path) -> None:
    """buildx reads --secret as CSV: tfimg quotes the field, so 'x,src=/other' is one path."""
    decoy = tmp_path / "decoy"
    decoy.write_text("STOLEN\n")
    named = tmp_path / f"x,src={tmp_path}" / "decoy"
    named.parent.mkdir(parents=True)
    named.write_text("INNOCENT\n")
    variant = tmp_path / "v.yaml"
    variant.write_text(yaml.safe_dump({"secrets": {"netrc": {"file": str(named)}}}))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {standin_base}\nRUN --mount=type=secret,id=netrc cat /run/secrets/netrc\n")
    builder = buildkit.find_builder()
    iid = tmp_path / "iid"
    with buildkit.SecretFiles(spec.load(variant)) as secrets:
        argv = builder.argv() + ["--no-cache", "--progress=plain", "--iidfile", str(iid), *secrets.args, str(ctx)]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**os.environ, **builder.env()})
    try:
        assert res.returncode == 0, res.stderr[-2000:]
        assert "INNOCENT" in res.stderr and "STOLEN" not in res.stderr
    finally:
        if iid.exists():
            subprocess.run(["docker", "rmi", iid.read_text().strip()], capture_output=True, timeout=60)
