"""Broken images must be caught, each by exactly the check that names its fault.

Each image is built cheaply FROM a shipped variant built on the stand-in (a
1-3 line Dockerfile in tests/data/broken/), then the whole suite runs on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.check import stage as testrun
from builder.image import buildkit as build
from builder.infra import runner
from builder.infra.engine import Engine
from builder.pipeline import single
from builder.spec import loader as spec

BROKEN = Path(__file__).parent / "data" / "broken"
VARIANTS = Path(__file__).resolve().parent.parent / "variants"
CASES = [  # (Dockerfile, variant it is built from, the one check that must fail)
    ("root-user", "dev", "user::runs_as_spec_user"),
    ("baked-host-key", "bert", "image::no_host_keys"),
    ("ssh-password", "bert", "ssh::sshd_config_keys_only"),
    ("jupyter-open", "bert", "jupyter::api_refuses_unauthenticated"),
    ("tensorflow-replaced", "bert", "python::protected_packages_unchanged"),
]


def broken_image(name: str, parent: str) -> str:
    """Build tests/data/broken/<name>.Dockerfile FROM ``parent`` (tag keyed by both).

    The parent's ``io.tfimg.input-hash`` label is overwritten: otherwise `tfimg build`
    would find the broken image by that label and take it for an up-to-date build.
    """
    dockerfile = BROKEN / f"{name}.Dockerfile"
    parent_id = Engine.from_env().image_attrs(parent)["Id"]
    key = hashlib.sha256(dockerfile.read_bytes() + parent_id.encode()).hexdigest()[:12]
    tag = f"tfimg-test-broken/{name}:{key}"
    if Engine.from_env().image_attrs(tag) is None:
        b = build.find_builder()
        runner.run([*b.argv(), "-q", "--build-arg", f"FROM={parent}", "--label", f"io.tfimg.input-hash=broken-{name}",
                    "--label", "io.tfimg.temporary=1", "-t", tag, "-f", str(dockerfile), str(BROKEN)],
                   env=b.env(), timeout=600)
    return tag


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,expected", CASES, ids=[c[0] for c in CASES])
def test_broken_image_fails_exactly_its_check(name, variant, expected, built, standin_base, tmp_path):
    parent = built(variant).image
    image = broken_image(name, parent)
    loaded = spec.load(VARIANTS / f"{variant}.yaml")
    try:
        section = single.test(loaded, image, tmp_path, gpu="off", engine=Engine.from_env(), base=standin_base)
        labels = Engine.from_env().image_attrs(image)["Config"]["Labels"]
    finally:
        Engine.from_env().remove_image(image)      # never leave a broken image behind for others to find
    assert labels["io.tfimg.input-hash"] == f"broken-{name}"
    failed = {r.check: r.detail for r in section.results if r.status in ("failed", "error")}
    assert set(failed) == {expected}, f"expected only {expected} to fail, got: {failed}"
    assert section.passed is False
    err = testrun.failure(section)          # what `tfimg test` and `tfimg build` raise: exit 1
    assert expected in err.message and err.exit_code == 1
