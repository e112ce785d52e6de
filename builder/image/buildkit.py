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

from builder.errors import BuildFailed, EnvError
from builder.image import inputs
from builder.image.builders import DOCKER_ENV as DOCKER_ENV  # re-exported: which BuildKit builds
from builder.image.builders import Builder as Builder
from builder.image.builders import find_builder as find_builder
from builder.infra import labels, runner
from builder.infra.report_models import LayerSize
from builder.render.escape import buildx_csv
from builder.spec.loader import LoadedVariant

PROTECT_MARK = "TFIMG-PROTECT-BASE:"
ERROR_MARK = "TFIMG-ERROR:"   # a rendered RUN step explains its own failure on such a line


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
    """``registry`` (type=registry cache, mode=max) where the builder can export a cache, else ``inline``:
    a pre-23 client, and buildx's docker driver on the classic image store (:attr:`Builder.exports_cache`)."""
    return REGISTRY if builder.exports_cache else INLINE


def cache_args(builder: Builder, cache_from: list[str], cache_to: str | None) -> list[str]:
    """The build's cache flags. Raises EnvError (nothing is built) for a setting the builder cannot do.

    A builder that exports caches: ``--cache-from type=registry,ref=REF`` and ``--cache-to
    type=registry,ref=REF,mode=max`` (a value that already holds ``type=`` is passed as it is).
    Inline cache (:func:`cache_mode`): ``--cache-from REF`` and, for ``cache_to``, the cache metadata
    goes into the image's config (``BUILDKIT_INLINE_CACHE=1``) and the image is pushed to ``cache_to``
    after the build. An explicit ``type=`` other than inline is refused there.
    """
    registry = cache_mode(builder) == REGISTRY
    argv: list[str] = []
    for ref in cache_from:
        if builder.kind == "buildx":
            argv += ["--cache-from", ref if "type=" in ref else f"type=registry,ref={ref}"]
        else:
            argv += ["--cache-from", _inline_ref(builder, ref, "--cache-from")]
    if cache_to and registry:
        argv += ["--cache-to", cache_to if "type=" in cache_to else f"type=registry,ref={cache_to},mode=max"]
    elif cache_to:
        _inline_ref(builder, cache_to, "--cache-to")
        argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    return argv


def _inline_ref(builder: Builder, ref: str, option: str) -> str:
    if "type=" not in ref and "," not in ref:
        return ref
    if builder.kind != "buildx":
        raise EnvError(f"{option} '{ref}': the docker {builder.version} client (BuildKit without buildx) has "
                       "inline cache only: give an image reference (HOST/NAME:TAG); nothing was built.",
                       hint="Install buildx for type=registry/local/gha caches.")
    raise EnvError(f"{option} '{ref}': {builder.what()} cannot export a build cache (the docker driver on "
                   "Docker's classic image store has inline cache only); nothing was built.",
                   hint="Give a plain image reference (HOST/NAME:TAG) for inline cache (the image is pushed "
                        "there), build on a docker-container builder (`docker buildx create --driver "
                        "docker-container --name NAME`, then --builder NAME), or turn on the containerd image "
                        "store (\"features\": {\"containerd-snapshotter\": true} in /etc/docker/daemon.json).")


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


