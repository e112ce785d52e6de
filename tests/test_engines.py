"""Second Docker engines of both versions (scripts/engine2.sh), real dockerd each.

- ``20.10``: Debian 12's docker.io 20.10, unpacked (never installed) beside the system's
  Docker 26, builds with its own pre-23 client, no buildx in sight, and ``DOCKER_BUILDKIT=1 docker build``
  (BuildKit secrets, the network through the engine's own bridge and NAT), while the
  ``26`` instance answers at the same time.
- ``26c`` and ``26c-b``: two Docker 26 engines with the containerd image store build the
  same inputs to the same OCI manifest digest (SOURCE_DATE_EPOCH + rewrite-timestamp=true),
  and do not without rewrite-timestamp (so the equality is not a cache hit).
- After they stop, the first engine still has docker0 and starts containers, and no NAT
  rule of theirs is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENGINE2 = str(ROOT / "scripts/engine2.sh")
SYSTEM_DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def run(*args: str, env: dict[str, str] | None = None, timeout: int = 600, **kw: object
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env, **kw)  # type: ignore[call-overload]


def ok(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    __tracebackhide__ = True
    res = run(*args, env=env, timeout=timeout)
    assert res.returncode == 0, f"{args}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout.strip()


class Engines:
    """Starts engine2 instances (purged first: empty runners) and purges them at the end."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, name: str) -> dict[str, str]:
        """The environment for a client of that engine (DOCKER_HOST set); CLIENT in it is its docker."""
        run(ENGINE2, "--engine", name, "stop", "--purge")
        ok(ENGINE2, "--engine", name, "start")
        self.started.append(name)
        return {**os.environ, "DOCKER_HOST": ok(ENGINE2, "--engine", name, "host"),
                "CLIENT": ok(ENGINE2, "--engine", name, "client")}

    def stop_all(self) -> None:
        for name in reversed(self.started):
            ok(ENGINE2, "--engine", name, "stop", "--purge")
        self.started.clear()


@pytest.fixture(scope="module")
def engines(pytestconfig: pytest.Config) -> Iterator[Engines]:
    from tests.conftest_registry import _missing
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("apt-get"):
        _missing(pytestconfig, "second engines need root, dockerd and apt-get (Debian)")
    made = Engines()
    try:
        yield made
    finally:
        made.stop_all()


@pytest.fixture(scope="module")
def small_base(standin_base: str) -> str:
    """A small image with a shell (the stand-in's debootstrapped rootfs, 124 MB), else the stand-in."""
    rootfs = standin_base.replace("tfimg-standin:tf2.9-", "tfimg-standin-rootfs:bullseye-")
    return rootfs if run(SYSTEM_DOCKER, "image", "inspect", rootfs).returncode == 0 else standin_base


def copy_image(ref: str, env: dict[str, str]) -> None:
    """docker save from the first engine | docker load into another (no registry needed)."""
    save = subprocess.Popen([SYSTEM_DOCKER, "save", ref], stdout=subprocess.PIPE)
    load = subprocess.run([env["CLIENT"], "load"], stdin=save.stdout, capture_output=True, text=True,
                          env=env, timeout=900)
    assert save.wait(timeout=900) == 0 and load.returncode == 0, load.stderr


def test_legacy_20_10_engine_builds_with_the_pre_23_client_beside_a_26_one(
        engines: Engines, small_base: str, tmp_path: Path) -> None:
    legacy = engines.start("20.10")
    current = engines.start("26")
    assert ok(legacy["CLIENT"], "version", "--format", "{{.Server.Version}} {{.Client.Version}}",
              env=legacy).split() == [ok(ENGINE2, "--engine", "20.10", "version")] * 2
    assert ok(legacy["CLIENT"], "version", "--format", "{{.Server.Version}}", env=legacy).startswith("20.10.")
    assert ok(SYSTEM_DOCKER, "version", "--format", "{{.Server.Version}}", env=current).startswith("26.")
    # Unpacked beside the system's Docker, not installed over it.
    assert "/dist/docker-20.10/" in legacy["CLIENT"]
    assert ok("dpkg-query", "-W", "-f", "${Version}", "docker.io").startswith("26.")

    copy_image(small_base, legacy)
    (tmp_path / "secret.txt").write_text("s3cret-value")
    digest = hashlib.sha256(b"s3cret-value").hexdigest()   # the Dockerfile names the hash, never the value
    (tmp_path / "Dockerfile").write_text(
        f"FROM {small_base}\n"
        f"RUN --mount=type=secret,id=tok test \"$(sha256sum </run/secrets/tok | cut -c1-64)\" = {digest} "
        "&& echo secret-seen\n"
        "RUN apt-get update -qq -o Acquire::Retries=1 -o Acquire::http::Timeout=30 && echo network-reached\n")
    # Debian 12's situation: the 20.10 client with no buildx plugin in sight (the system's
    # docker-buildx would otherwise be found by it), the path tfimg takes for such a client.
    client = ok(ENGINE2, "--engine", "20.10", "client", "--no-buildx")
    assert run(client, "buildx", "version", env=legacy).returncode != 0
    if Path("/usr/libexec/docker/cli-plugins/docker-buildx").exists():   # Debian 13's docker-buildx
        assert run(legacy["CLIENT"], "buildx", "version", env=legacy).returncode == 0
    env = {**legacy, "DOCKER_BUILDKIT": "1"}
    res = run(client, "build", "--progress", "plain", "--secret", f"id=tok,src={tmp_path / 'secret.txt'}",
              "-t", "tfimg-legacy-test:1", str(tmp_path), env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "secret-seen" in res.stderr and "network-reached" in res.stderr
    assert "s3cret-value" not in ok(legacy["CLIENT"], "history", "--no-trunc", "tfimg-legacy-test:1", env=legacy)


def test_two_containerd_store_engines_build_the_same_digest(engines: Engines, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /etc/a.txt\n")
    (tmp_path / "a.txt").write_text("same input\n")

    def build(name: str, mtime: int, rewrite: bool) -> str:
        env = engines.start(name) if name not in engines.started else \
            {**os.environ, "DOCKER_HOST": ok(ENGINE2, "--engine", name, "host")}
        os.utime(tmp_path / "a.txt", (mtime, mtime))   # another checkout: another file time
        out = tmp_path / f"{name}-{mtime}-{rewrite}.tar"
        ok(SYSTEM_DOCKER, "buildx", "build", "--no-cache", "--provenance=false", "--build-arg",
           "SOURCE_DATE_EPOCH=1700000000", "--output",
           f"type=oci,dest={out}" + (",rewrite-timestamp=true" if rewrite else ""), str(tmp_path), env=env)
        with tarfile.open(out) as tar:
            index = tar.extractfile("index.json")
            assert index is not None
            return str(json.load(index)["manifests"][0]["digest"])

    a = build("26c", 1_750_000_000, rewrite=True)
    b = build("26c-b", 1_760_000_000, rewrite=True)
    assert a == b
    assert build("26c", 1_750_000_000, rewrite=False) != build("26c-b", 1_760_000_000, rewrite=False)


def test_the_first_engine_still_starts_containers_after_the_second_ones_stop(
        engines: Engines, small_base: str) -> None:
    if not engines.started:
        engines.start("26")
    engines.stop_all()   # stop --purge: also deletes their bridges
    assert run("ip", "link", "show", "docker0").returncode == 0
    assert ok(SYSTEM_DOCKER, "run", "--rm", small_base, "echo", "still-runs", env={
        k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}) == "still-runs"
    rules = ok("iptables", "-S") + ok("iptables", "-t", "nat", "-S")
    assert "TFIMG-E2" not in rules and "10.213." not in rules


def test_other_is_the_version_the_first_engine_is_not() -> None:
    first = ok(SYSTEM_DOCKER, "version", "--format", "{{.Server.Version}}",
               env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    other = ok(ENGINE2, "--engine", "other", "host")
    want = "20.10" if int(first.split(".")[0]) >= 23 else "26"
    assert other == ok(ENGINE2, "--engine", want, "host")
