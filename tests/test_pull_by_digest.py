"""A base pinned by digest is pulled by that digest from a real registry, and the report records it.

``image@sha256:...`` must not be split at its last colon (that makes the
repository ``image@sha256`` and the "tag" the hex digest). The registry is the
local one of :mod:`tests.conftest_registry`, with a docker login.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from builder.infra.engine import Engine

pytest_plugins = ["tests.conftest_registry"]


def _push(source: str, repository: str, tag: str) -> str:
    """Tag ``source`` as repository:tag, push it, and return the digest the registry gave it."""
    Engine.from_env().tag(source, repository, tag)
    digest = Engine.from_env().push(repository, tag)
    assert digest, f"the push of {repository}:{tag} reported no digest"
    return digest


def _forget(repository: str, tag: str, digest: str) -> None:
    """Remove the local tag and digest reference (the layers may stay: other tags use them)."""
    Engine.from_env().remove_image(f"{repository}:{tag}")
    Engine.from_env().remove_image(f"{repository}@{digest}")
    assert Engine.from_env().image_attrs(f"{repository}@{digest}") is None, "the digest reference is still known locally"


@pytest.mark.docker
def test_pull_by_digest_from_a_registry(docker_login, tiny_image) -> None:
    repository = f"{docker_login.host}/tfimg-test/tiny"
    image_id = tiny_image()
    digest = _push(image_id, repository, "pin")
    _forget(repository, "pin", digest)
    Engine.from_env().remove_image(image_id, force=True)          # nothing of it is left locally
    assert Engine.from_env().image_attrs(image_id) is None

    Engine.from_env().pull(f"{repository}@{digest}")

    attrs = Engine.from_env().image_attrs(f"{repository}@{digest}")
    assert attrs is not None and attrs["Id"] == image_id
    assert f"{repository}@{digest}" in attrs["RepoDigests"]
    Engine.from_env().remove_image(f"{repository}@{digest}", force=True)


@pytest.mark.docker
def test_pull_by_tag_still_works(docker_login, tiny_image) -> None:
    repository = f"{docker_login.host}/tfimg-test/tiny"
    image_id = tiny_image()
    _push(image_id, repository, "t1")
    Engine.from_env().remove_image(f"{repository}:t1", force=True)
    Engine.from_env().pull(f"{repository}:t1")
    assert (Engine.from_env().image_attrs(f"{repository}:t1") or {}).get("Id") == image_id
    Engine.from_env().remove_image(f"{repository}:t1", force=True)


@pytest.mark.docker
@pytest.mark.slow
def test_build_on_a_digest_pinned_base_pulls_it_and_records_the_digest(
        docker_login, standin_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.infra.ui import UI
    from builder.pipeline import orchestrator as pipeline
    from builder.spec import loader as spec

    monkeypatch.delenv("TFIMG_BASE", raising=False)          # the variant's own base.image@base.digest (only the CLI reads it)
    repository = f"{docker_login.host}/tfimg-test/standin"
    digest = _push(standin_base, repository, "pin")
    _forget(repository, "pin", digest)                       # not local by that reference: it must be pulled
    v = tmp_path / "pinned.yaml"
    v.write_text(textwrap.dedent(f"""\
        description: built on a base pinned by digest
        base:
          image: {repository}
          digest: {digest}
          profile: standin-cpu
        """))
    loaded = spec.load(v)
    out = tmp_path / "build"
    try:
        pipeline.build(loaded, pipeline.BuildOptions(out_root=out, force=True), UI(quiet=True), Engine.from_env())
        base = json.loads((out / "pinned" / "report.json").read_text())["build"]["base"]
        assert base["ref"] == f"{repository}@{digest}"
        assert base["digest"] == digest
        pulled = Engine.from_env().image_attrs(f"{repository}@{digest}")
        assert pulled is not None and pulled["Id"] == base["id"]
        assert f"{repository}@{digest}" in pulled["RepoDigests"]
    finally:
        Engine.from_env().remove_image(f"{repository}@{digest}")
        report_file = out / "pinned" / "report.json"
        if report_file.exists():
            Engine.from_env().remove_image(json.loads(report_file.read_text())["build"]["image"], force=True)
