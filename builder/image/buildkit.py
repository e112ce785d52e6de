"""Build a rendered context with BuildKit through the docker CLI.

The Docker SDK cannot drive BuildKit (docker-py issue 2230), so this module
runs ``docker buildx build --load`` where buildx is installed, else a docker
client older than 23 with ``DOCKER_BUILDKIT=1`` (it has BuildKit built in and
takes ``--secret``). The image id is read from ``--iidfile``, never from log
text. Secrets are passed with ``--secret id=...,src=FILE``; a secret that
comes from an environment variable is written to a private temporary file
that is removed when the build ends. Secret values never reach the command
line, the log or the report.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from builder.errors import BuildFailed, EnvError
from builder.image import inputs
from builder.infra import labels, runner
from builder.infra.report_models import LayerSize
from builder.render.escape import buildx_csv
from builder.spec.loader import LoadedVariant

DOCKER_ENV = "TFIMG_DOCKER"
PROTECT_MARK = "TFIMG-PROTECT-BASE:"
ERROR_MARK = "TFIMG-ERROR:"   # a rendered RUN step explains its own failure on such a line


@dataclass(frozen=True)
class Builder:
    """A BuildKit-capable docker client."""

    kind: str            # "buildx" or "docker-buildkit"
    docker: str          # path of the docker client
    version: str
    name: str | None = None   # buildx: the named builder (`--builder`; remote, Kubernetes, docker-container)

    def argv(self) -> list[str]:
        if self.kind == "buildx":
            return [self.docker, "buildx", "build", *(["--builder", self.name] if self.name else []), "--load"]
        return [self.docker, "build"]

    def env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1"} if self.kind == "docker-buildkit" else {}

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "docker": self.docker, "version": self.version,
                **({"name": self.name} if self.name else {})}


def find_builder(override: str | None = None, name: str | None = None) -> Builder:
    """Pick a BuildKit-capable client: ``override`` (``--docker`` / $TFIMG_DOCKER), else search.

    ``name``: a buildx builder (``docker buildx ls``); it needs a client with buildx and must exist.
    Raises EnvError when no candidate can do BuildKit builds with secrets, or ``name`` cannot be
    used; never falls back to a build without secrets, or to another builder.
    """
    found = _find_client(override)
    if name is None:
        return found
    if found.kind != "buildx":
        raise EnvError(f"--builder {name} needs buildx, and the docker client {found.docker} "
                       f"(version {found.version}) has none; nothing was built.",
                       hint=f"Install buildx (docker-buildx-plugin) or point {DOCKER_ENV} / --docker at a client "
                            "that has it; without --builder tfimg builds on the engine's own BuildKit.")
    res = runner.run([found.docker, "buildx", "inspect", name], check=False, timeout=60)
    if res.returncode != 0:
        raise EnvError(f"buildx has no builder named '{name}': {(res.stderr or res.stdout).strip()[-300:]}",
                       hint="`docker buildx ls` lists the builders; `docker buildx create --name NAME ...` adds one.")
    return Builder(found.kind, found.docker, found.version, name)


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


# --------------------------------------------------------------------------- secrets

class SecretFiles:
    """``--secret`` arguments for a variant (:func:`builder.image.inputs.secret_choice` decides which);
    env secrets go through private temp files, removed on exit. Raises EnvError for an absent
    required secret."""

    def __init__(self, loaded: LoadedVariant) -> None:
        self.loaded = loaded
        self.tmp: str | None = None
        self.args: list[str] = []
        self.choice = inputs.secret_choice(loaded)

    @property
    def used(self) -> dict[str, str]:
        """id -> identity (never the value): part of the input hash."""
        return self.choice.used

    @property
    def skipped(self) -> tuple[str, ...]:
        return self.choice.skipped

    def __enter__(self) -> SecretFiles:
        for error in self.choice.missing.values():
            raise error
        for sid in self.choice.used:
            ref = dict(self.loaded.spec.secrets.items())[sid]
            if ref.file:
                src = ref.file
            else:
                if self.tmp is None:
                    self.tmp = tempfile.mkdtemp(prefix="tfimg-secrets-")
                src = os.path.join(self.tmp, sid)
                fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(os.environ[self.choice.sources[sid]])
            self.args += ["--secret", buildx_csv(f"id={sid}", f"src={src}")]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- build

@dataclass(frozen=True)
class BuildRequest:
    loaded: LoadedVariant
    context: Path
    base_ref: str
    base_id: str
    image_ref: str
    input_hash: str
    build_args: dict[str, str]
    log_path: Path


# --------------------------------------------------------------------------- registry cache

INLINE = "inline"
REGISTRY = "registry"


def cache_mode(builder: Builder) -> str:
    """``registry`` (buildx: type=registry cache, mode=max) or ``inline`` (docker 20.10 + BuildKit)."""
    return REGISTRY if builder.kind == "buildx" else INLINE


def cache_args(builder: Builder, cache_from: list[str], cache_to: str | None) -> list[str]:
    """The build's cache flags.

    buildx: ``--cache-from type=registry,ref=REF`` and ``--cache-to type=registry,ref=REF,mode=max``
    (a value that already holds ``type=`` is passed as it is). The classic client has inline
    cache only: ``--cache-from IMAGE`` and, for ``cache_to``, ``BUILDKIT_INLINE_CACHE=1`` (the
    cache metadata goes into the image's config; the image is pushed to ``cache_to`` after the
    build, see :func:`push_inline_cache`).
    """
    argv: list[str] = []
    if builder.kind == "buildx":
        for ref in cache_from:
            argv += ["--cache-from", ref if "type=" in ref else f"type=registry,ref={ref}"]
        if cache_to:
            argv += ["--cache-to", cache_to if "type=" in cache_to else f"type=registry,ref={cache_to},mode=max"]
        return argv
    for ref in [*cache_from, *([cache_to] if cache_to else [])]:
        if "type=" in ref or "," in ref:
            raise EnvError(f"cache setting '{ref}': the docker {builder.version} client (BuildKit without "
                           "buildx) has inline cache only: give an image reference (HOST/NAME:TAG)",
                           hint="Install buildx for type=registry/local/gha caches.")
    for ref in cache_from:
        argv += ["--cache-from", ref]
    if cache_to:
        argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    return argv


CACHED_STEP = re.compile(r"#\d+ CACHED\s*")   # always re.fullmatch


def cached_steps(log_text: str) -> int:
    """How many build steps BuildKit took from a cache (``#N CACHED`` in the plain progress log)."""
    return sum(1 for ln in log_text.splitlines() if CACHED_STEP.fullmatch(ln))


def run_build(req: BuildRequest, builder: Builder, secrets: SecretFiles,
              on_line: Callable[[str], None] | None = None, no_cache: bool = False,
              cache_from: list[str] | None = None, cache_to: str | None = None) -> str:
    """Run the build; return the image id. Raises BuildFailed with the log tail."""
    req.log_path.parent.mkdir(parents=True, exist_ok=True)
    iid = req.log_path.parent / "iid"
    iid.unlink(missing_ok=True)
    argv = builder.argv() + ["--progress=plain", "--iidfile", str(iid), *secrets.args]
    argv += cache_args(builder, list(cache_from or []), cache_to)
    if no_cache:
        argv.append("--no-cache")
    for k, v in sorted(req.build_args.items()):
        argv += ["--build-arg", f"{k}={v}"]
    argv += ["--label", f"{labels.INPUT_HASH}={req.input_hash}", "-t", req.image_ref, str(req.context)]
    tail: list[str] = []
    with open(req.log_path, "w") as log:
        log.write("$ " + " ".join(argv) + "\n")

        def line(text: str) -> None:
            nonlocal tail
            log.write(text + "\n")
            tail = (tail + [text])[-25:]
            if on_line:
                on_line(text)
        rc = runner.stream(argv, line, env=builder.env(), own_group=True)
    if rc != 0:
        text = req.log_path.read_text(errors="replace")
        raise _failure(text, tail, req.log_path)
    if not iid.exists():
        raise BuildFailed("the build ended without writing an image id", log_tail="\n".join(tail),
                          log_path=str(req.log_path))
    return iid.read_text().strip()


def _marked(text: str, mark: str) -> list[str]:
    """What a step printed after ``mark`` at the start of an output line (BuildKit prefixes output with
    ``#N SECONDS``; buildx repeats it without ``#N``), never the echo command that holds the mark."""
    pattern = re.compile(r"^(?:#\d+ )?(?:\d+\.\d+ )?" + re.escape(mark) + r"(.*)$")
    return [m.group(1).strip() for ln in text.splitlines() if (m := pattern.match(ln.strip()))]


def _failure(text: str, tail: list[str], log_path: Path) -> BuildFailed:
    errors = _marked(text, ERROR_MARK)
    if errors:   # a rendered step said exactly what is wrong
        return BuildFailed(errors[-1], log_tail="\n".join(tail[-8:]), log_path=str(log_path))
    marks = _marked(text, PROTECT_MARK)
    if marks:
        return BuildFailed("protect_base stopped the build: " + marks[-1], log_tail="\n".join(tail[-12:]),
                           log_path=str(log_path))
    missing = re.findall(r"No matching distribution found for (\S+)", text)
    if missing:
        return BuildFailed(f"pip found no distribution for '{missing[-1]}': check the name and version in the "
                           "requirements file, and that the index (python.index_url or the pip_index_url "
                           "secret) serves it", log_tail="\n".join(tail[-12:]), log_path=str(log_path))
    if re.search(r"Cannot connect to the Docker daemon|error during connect|connection refused", text, re.I):
        return BuildFailed("the Docker engine could not be reached during the build",
                           log_tail="\n".join(tail[-8:]), log_path=str(log_path),
                           hint="Start Docker (scripts/engine.sh) or check DOCKER_HOST.")
    return BuildFailed("the image build failed", log_tail="\n".join(tail[-20:]), log_path=str(log_path))


def layer_sizes(history: list[dict[str, Any]]) -> list[LayerSize]:
    """Per-layer sizes from ``docker history``, oldest first."""
    return [LayerSize(created_by=(h.get("CreatedBy") or "")[:160], size=int(h.get("Size") or 0))
            for h in reversed(history)]


