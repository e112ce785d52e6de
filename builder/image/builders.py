"""Which BuildKit a build runs on: the docker client, and buildx's builder with its driver.

    b = find_builder()                 # buildx where the client has it, else a pre-23 client
    b.driver, b.store, b.buildkit      # "docker", "classic" (or "containerd"), "0.13"

Before building, tfimg asks buildx for the builder (``docker buildx inspect [NAME]``): its driver
(``docker``, ``docker-container``, ``remote``, ``kubernetes``), its BuildKit version, and, for the
docker driver, the engine's image store: the worker of an engine with the containerd image store
(dockerd's ``containerd-snapshotter`` feature) has ``org.mobyproject.buildkit.worker.containerd.*``
labels. The docker driver on the classic store (overlay2) cannot export a build cache
(:func:`builder.image.buildkit.cache_mode`). A BuildKit version that the builder does not report
(Debian's dockerd says ``v0.0.0+unknown``) is taken from the engine's version (:data:`ENGINE_BUILDKIT`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from builder.errors import EnvError
from builder.infra import runner

DOCKER_ENV = "TFIMG_DOCKER"
CONTAINERD_LABEL = "org.mobyproject.buildkit.worker.containerd."
# The BuildKit inside dockerd, by engine major version (moby's vendor.mod at each release).
ENGINE_BUILDKIT = {20: "0.8", 23: "0.10", 24: "0.11", 25: "0.12", 26: "0.13", 27: "0.14", 28: "0.20", 29: "0.25"}


@dataclass(frozen=True)
class Builder:
    """A BuildKit-capable docker client, and the builder it builds on."""

    kind: str                   # "buildx" or "docker-buildkit" (a pre-23 client with DOCKER_BUILDKIT=1)
    docker: str                 # path of the docker client
    version: str                # the client's version
    name: str | None = None     # buildx: the named builder (`--builder`)
    driver: str = "docker"      # buildx's driver: docker, docker-container, remote, kubernetes
    store: str | None = None    # the docker driver: the engine's image store, "classic" or "containerd"
    buildkit: str | None = None   # BuildKit's version (major.minor), when known

    def argv(self) -> list[str]:
        if self.kind != "buildx":
            return [self.docker, "build"]
        if self.name and self.driver == "docker":   # a docker context: buildx build refuses `--builder CONTEXT`
            return [self.docker, "--context", self.name, "buildx", "build", "--load"]
        return [self.docker, "buildx", "build", *(["--builder", self.name] if self.name else []), "--load"]

    def env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1"} if self.kind == "docker-buildkit" else {}

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "docker": self.docker, "version": self.version, "driver": self.driver,
                **({"name": self.name} if self.name else {}), **({"store": self.store} if self.store else {}),
                **({"buildkit": self.buildkit} if self.buildkit else {})}

    @property
    def exports_cache(self) -> bool:
        """Can it export a build cache (``--cache-to type=registry``)? Not the docker driver on the
        classic image store, nor a pre-23 client: those have inline cache only."""
        return self.kind == "buildx" and (self.driver != "docker" or self.store == "containerd")

    @property
    def source_date_epoch(self) -> bool:
        """Does its BuildKit take SOURCE_DATE_EPOCH (v0.11 and later) for the image's times?"""
        return at_least(self.buildkit, "0.11")

    def what(self) -> str:
        """A few words for messages: ``buildx builder 'default' (docker driver, classic image store)``."""
        if self.kind != "buildx":
            return f"the docker {self.version} client without buildx (DOCKER_BUILDKIT=1)"
        store = f", {self.store} image store" if self.store else ""
        return f"buildx builder '{self.name or 'default'}' ({self.driver} driver{store})"


def at_least(version: str | None, minimum: str) -> bool:
    try:
        return version is not None and Version(version) >= Version(minimum)
    except InvalidVersion:
        return False


def find_builder(override: str | None = None, name: str | None = None) -> Builder:
    """Pick a BuildKit-capable client: ``override`` (``--docker`` / $TFIMG_DOCKER), else search; with
    buildx, ask it for the builder (``name``, else the current one) and its driver.

    Raises EnvError when no candidate can do BuildKit builds with secrets, or ``name`` cannot be
    used; never falls back to a build without secrets, or to another builder.
    """
    found = _find_client(override)
    if found.kind != "buildx":
        if name is not None:
            raise EnvError(f"--builder {name} needs buildx, and the docker client {found.docker} "
                           f"(version {found.version}) has none; nothing was built.",
                           hint=f"Install buildx (docker-buildx-plugin) or point {DOCKER_ENV} / --docker at a client "
                                "that has it; without --builder tfimg builds on the engine's own BuildKit.")
        return Builder(found.kind, found.docker, found.version, driver="docker", store=None,
                       buildkit=_engine_buildkit(found.docker, "default"))
    res = runner.run([found.docker, "buildx", "inspect", *([name] if name else [])], check=False, timeout=60)
    if res.returncode != 0:
        if name is None:
            raise EnvError(f"`{found.docker} buildx inspect` failed: {(res.stderr or res.stdout).strip()[-300:]}",
                           hint="Check the current builder (`docker buildx ls`, `docker buildx use default`).")
        raise EnvError(f"buildx has no builder named '{name}': {(res.stderr or res.stdout).strip()[-300:]}",
                       hint="`docker buildx ls` lists the builders; `docker buildx create --name NAME ...` adds one.")
    return from_inspect(found, name, res.stdout)


def from_inspect(client: Builder, name: str | None, text: str) -> Builder:
    """The builder that ``docker buildx inspect`` describes (its plain text output)."""
    fields = inspect_fields(text)
    driver = fields.get("Driver", "docker")
    buildkit = _major_minor(fields.get("BuildKit version") or fields.get("BuildKit") or "")
    store = None
    if driver == "docker":
        endpoint = fields.get("Endpoint") or "default"
        _same_engine(client.docker, fields.get("Name") or name or "default", endpoint)
        store = "containerd" if CONTAINERD_LABEL in text else "classic"
        if buildkit is None:
            buildkit = _engine_buildkit(client.docker, endpoint)
    return Builder("buildx", client.docker, client.version, name, driver, store, buildkit)


def _same_engine(docker: str, builder: str, endpoint: str) -> None:
    """A docker-driver builder builds inside the engine of its docker context, and ``--load`` leaves the
    image there; tfimg checks, scans and tags in the engine it talks to (DOCKER_HOST). Raises EnvError
    when those differ."""
    if endpoint == "default":   # the client's own engine: DOCKER_HOST's
        return
    res = runner.run([docker, "context", "inspect", endpoint, "--format", "{{.Endpoints.docker.Host}}"],
                     check=False, timeout=30)
    theirs = res.stdout.strip() if res.returncode == 0 else ""
    ours = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if theirs and theirs.replace("unix:///var/run/", "unix:///run/") != ours.replace("unix:///var/run/", "unix:///run/"):
        raise EnvError(f"buildx builder '{builder}' is the docker driver of the context '{endpoint}' ({theirs}): it "
                       f"builds inside that engine and leaves the image there, while tfimg checks, scans and tags "
                       f"in the engine at {ours}; nothing was built.",
                       hint=f"Run tfimg against that engine (DOCKER_HOST={theirs}), or build on a docker-container "
                            "builder, whose --load goes to tfimg's engine.")


def inspect_fields(text: str) -> dict[str, str]:
    """``Key: value`` lines of ``docker buildx inspect`` (the first of each key: the builder, then
    its first node)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith(" ") and key.strip() not in found:
            found[key.strip()] = value.strip()
    return found


def _major_minor(version: str) -> str | None:
    """``v0.13.2`` -> ``0.13``; None for ``v0.0.0+unknown`` (a distribution's build that does not say)."""
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return None if not m or (m.group(1), m.group(2)) == ("0", "0") else f"{m.group(1)}.{m.group(2)}"


def _engine_buildkit(docker: str, context: str) -> str | None:
    """The BuildKit inside the engine (the docker driver's), from the engine's version."""
    argv = [docker, *(["--context", context] if context != "default" else []),
            "version", "--format", "{{.Server.Version}}"]
    res = runner.run(argv, check=False, timeout=30)
    m = re.match(r"(\d+)\.", res.stdout.strip()) if res.returncode == 0 else None
    if not m:
        return None
    major = int(m.group(1))
    known = [v for k, v in sorted(ENGINE_BUILDKIT.items()) if k <= major]
    return known[-1] if known else None


def _find_client(override: str | None) -> Builder:
    candidates = [override] if override else _unique([runner.which("docker"), "/usr/bin/docker",
                                                      "/usr/local/bin/docker"])
    tried = []
    for cand in candidates:
        if not cand or not (Path(cand).exists() or runner.which(cand)):
            tried.append(f"{cand}: not found")
            continue
        version = _client_version(cand)
        res = runner.run([cand, "buildx", "version"], check=False, timeout=30)
        if res.returncode == 0:
            return Builder("buildx", cand, version)
        if _older_than_23(version):
            return Builder("docker-buildkit", cand, version)
        tried.append(f"{cand} (client {version}): no buildx, and clients from 23 on need buildx for BuildKit")
    raise EnvError("no docker client that can do BuildKit builds with secrets was found.\n  " + "\n  ".join(tried),
                   hint=f"Install buildx (docker-buildx-plugin), or point {DOCKER_ENV} / --docker at a "
                        "client that has it (on Debian: /usr/bin/docker from docker.io).")


def _unique(items: list[str | None]) -> list[str]:
    seen: list[str] = []
    for i in items:
        if i and os.path.realpath(i) not in [os.path.realpath(s) for s in seen]:
            seen.append(i)
    return seen


def _client_version(docker: str) -> str:
    res = runner.run([docker, "version", "--format", "{{.Client.Version}}"], check=False, timeout=30)
    return (res.stdout.strip().splitlines() or ["unknown"])[0]


def _older_than_23(version: str) -> bool:
    try:
        return Version(re.split(r"[+~-]", version)[0]) < Version("23")
    except InvalidVersion:
        return False
