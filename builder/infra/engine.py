"""The one module that talks to the Docker SDK (inspect, run, tag, push, save).

An :class:`Engine` holds one SDK client; there is no module-level client. The CLI
makes one per command that needs Docker (:meth:`Engine.deferred`: it connects on
first use, so a command that never reaches Docker never connects) and passes it
down explicitly to the pipeline and the stages::

    eng = Engine.from_env()        # connects now; EnvError when no engine answers
    eng.image_attrs("tfimg/bert:abc")

Builds do not come here: the SDK cannot drive BuildKit (docker-py issue 2230),
so :mod:`builder.image.buildkit` runs the docker CLI. ``DOCKER_HOST``, docker
contexts and the user's docker config (credential helpers included) are honoured
(:func:`endpoint`); an engine reads the docker config when it connects.

Nothing of the SDK leaves this module: images are described by :class:`ImageInfo`, running
containers by :class:`Container` handles, and the SDK's errors (and the socket's) become
:class:`~builder.errors.EngineError` (exit 2).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag
from pydantic import BaseModel, ConfigDict, Field

from builder.errors import EngineError, EnvError
from builder.infra import labels

log = logging.getLogger(__name__)
SDK_ERRORS = (docker.errors.DockerException, requests.RequestException)


class ImageInfo(BaseModel):
    """What tfimg reads of ``docker image inspect``."""

    model_config = ConfigDict(frozen=True)

    id: str
    size: int = 0
    created: str = ""
    repo_tags: list[str] = Field(default_factory=list)
    repo_digests: list[str] = Field(default_factory=list)
    layers: list[str] = Field(default_factory=list, description="RootFS.Layers: the layer DiffIDs.")
    config: dict[str, Any] = Field(default_factory=dict, description="Config, as the engine has it.")

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    @classmethod
    def from_inspect(cls, attrs: dict[str, Any]) -> ImageInfo:
        return cls(id=attrs["Id"], size=int(attrs.get("Size") or 0), created=str(attrs.get("Created") or ""),
                   repo_tags=list(attrs.get("RepoTags") or []), repo_digests=list(attrs.get("RepoDigests") or []),
                   layers=list((attrs.get("RootFS") or {}).get("Layers") or []), config=dict(attrs.get("Config") or {}))


@dataclass(frozen=True)
class ContainerState:
    """``State`` of a container: ``status`` (created, running, exited...; None when it is gone)."""

    status: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class Container:
    """A container this engine started: its id (the SDK object stays inside the engine)."""

    id: str
    _sdk: Any = field(repr=False, compare=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else 'no detail'}"


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """The SDK's and the socket's errors, as EngineError naming what was asked."""
    try:
        yield
    except EnvError:
        raise
    except SDK_ERRORS as exc:
        raise EngineError(f"{what} failed ({_first_line(exc)})") from None


def endpoint() -> tuple[str, ...]:
    """Which engine the docker CLI would talk to now: DOCKER_HOST (with its TLS settings), else the
    current docker context (DOCKER_CONTEXT or the config's currentContext), else the default socket."""
    if os.environ.get("DOCKER_HOST"):
        return ("env", os.environ["DOCKER_HOST"], os.environ.get("DOCKER_TLS_VERIFY", ""),
                os.environ.get("DOCKER_CERT_PATH", ""))
    try:
        from docker.context import ContextAPI
        ctx = ContextAPI.get_current_context()
    except (docker.errors.DockerException, OSError, ValueError):   # a broken context store: the default engine
        ctx = None
    if ctx is not None and ctx.Name != "default" and ctx.Host:
        return ("context", ctx.Name, ctx.Host)
    return ("default",)


def connect(key: tuple[str, ...]) -> docker.DockerClient:
    """A client for the engine at ``key`` (see :func:`endpoint`) that answered a ping. Raises EnvError."""
    try:
        c = (docker.DockerClient(base_url=key[2], timeout=120) if key[0] == "context"
             else docker.from_env(timeout=120))
        c.ping()
    except SDK_ERRORS as exc:
        where = {"env": f"DOCKER_HOST={key[1]}", "context": f"docker context '{key[1]}' ({key[-1]})"}.get(
            key[0], "the default socket")
        raise EnvError(
            f"no Docker engine answers at {where}"
            f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}).",
            hint="Start Docker (on Debian/Ubuntu as root: scripts/engine.sh), or point DOCKER_HOST "
                 "(or `docker context use`) at a running engine.") from None
    return c


class Engine:
    """One Docker engine: the SDK client every stage uses (passed down, never global).

    DOCKER_HOST and docker contexts are honoured by all stages (builds pass the same
    environment to the docker CLI).
    """

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._sdk = client

    @classmethod
    def from_env(cls) -> Engine:
        """The engine the docker CLI would use now (:func:`endpoint`), connected. Raises EnvError."""
        return cls(connect(endpoint()))

    @classmethod
    def deferred(cls) -> Engine:
        """Like :meth:`from_env`, but the endpoint is resolved and pinged on first use (once)."""
        return cls()

    @property
    def _client(self) -> docker.DockerClient:
        """The SDK client (connected on first use for a :meth:`deferred` engine). Raises EnvError."""
        if self._sdk is None:
            self._sdk = connect(endpoint())
        return self._sdk

    def require(self) -> None:
        """Connect now (a :meth:`deferred` engine): EnvError here when no engine answers."""
        _ = self._client

    # -- images
    def image_attrs(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect`` as the engine returns it, or None when there is no such image
        (an invalid reference names none). Raises EngineError."""
        client = self._client
        try:
            return dict(client.api.inspect_image(ref))
        except (docker.errors.NotFound, docker.errors.NullResource):
            return None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 404):   # 400: not a valid reference, so no image has it
                return None
            raise EngineError(f"inspecting {ref} failed ({_first_line(exc)})") from None
        except SDK_ERRORS as exc:
            raise EngineError(f"inspecting {ref} failed ({_first_line(exc)})") from None

    def image(self, ref: str) -> ImageInfo | None:
        """The image ``ref`` names, or None when there is none. Raises EngineError."""
        attrs = self.image_attrs(ref)
        return ImageInfo.from_inspect(attrs) if attrs is not None else None

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        with _engine_errors(f"`docker history {ref}`"):
            return list(self._client.api.history(ref))

    def tag(self, image: str, repository: str, tag_: str) -> None:
        with _engine_errors(f"tagging {image} as {repository}:{tag_}"):
            if not self._client.api.tag(image, repository, tag_, force=True):
                raise EngineError(f"could not tag {image} as {repository}:{tag_}")

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        with _engine_errors(f"removing {ref}"), contextlib.suppress(docker.errors.NotFound):
            self._client.api.remove_image(ref, force=force, noprune=False)

    def save(self, ref: str, path: str) -> None:
        """``docker save`` to a tar file. Raises EngineError."""
        with _engine_errors(f"`docker save {ref}`"), open(path, "wb") as fh:
            for chunk in self._client.images.get(ref).save(named=True):
                fh.write(chunk)

    def push(self, repository: str, tag_: str) -> str | None:
        """Push one tag; the digest the registry gave it (None when the engine reported none).
        Raises EngineError (an error line of the push, or the engine's)."""
        with _engine_errors(f"push of {repository}:{tag_}"):
            lines = list(self._client.api.push(repository, tag=tag_, stream=True, decode=True))
        for line in lines:
            if "error" in line or "errorDetail" in line:
                detail = line.get("errorDetail", {}).get("message") or line.get("error")
                raise EngineError(f"push of {repository}:{tag_} failed: {detail}")
        return next((str(ln["aux"]["Digest"]) for ln in lines
                     if isinstance(ln.get("aux"), dict) and ln["aux"].get("Digest")), None)

    def pull(self, ref: str) -> None:
        """Pull ``name``, ``name:tag`` or ``name@sha256:...`` (a registry's port is not a tag).

        The SDK's own reference parsing splits it: a digest is pulled by digest. Raises EngineError.
        """
        repository, tag_or_digest = parse_repository_tag(ref)
        with _engine_errors(f"pulling {ref}"):
            self._client.images.pull(repository, tag=tag_or_digest or "latest")

    # -- the engine
    def runtimes(self) -> tuple[list[str], str]:
        """The engine's container runtimes (sorted) and its default runtime (``docker info``)."""
        with _engine_errors("`docker info`"):
            info = self._client.info()
        return sorted((info.get("Runtimes") or {}).keys()), str(info.get("DefaultRuntime") or "")

    def gpu_available(self) -> bool:
        """Whether the engine has an NVIDIA runtime (a GPU device request can work)."""
        return "nvidia" in self.runtimes()[0]

    # -- containers
    @contextlib.contextmanager
    def running(self, image: str, *, command: list[str] | None = None, ports: list[int] | None = None,
                environment: dict[str, str] | None = None, gpu: bool = False,
                name: str | None = None, extra: dict[str, Any] | None = None,
                ready_timeout: float = 60) -> Iterator[tuple[Container, dict[int, int]]]:
        """Run a container with ports published on 127.0.0.1 only (random host ports).

        Yields the container and a map container port -> host port. The container
        is always force-removed, also on failure and Ctrl-C. Raises EngineError.
        """
        kwargs: dict[str, Any] = {"detach": True, "environment": environment or {},
                                  "ports": {f"{p}/tcp": ("127.0.0.1", None) for p in ports or []},
                                  "labels": {labels.TEMPORARY: "1"}}
        if command is not None:
            kwargs["command"] = command
        if name:
            kwargs["name"] = name
        if gpu:
            kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        kwargs.update(extra or {})
        with _engine_errors(f"starting a container of {image}"):
            container = self._client.containers.run(image, **kwargs)
        try:
            with _engine_errors(f"reading the ports of a container of {image}"):
                mapping = self._ports(container, ports or [], ready_timeout)
            yield Container(container.id, container), mapping
        finally:
            with contextlib.suppress(*SDK_ERRORS):
                container.remove(force=True)

    @staticmethod
    def _ports(container: Any, ports: list[int], timeout: float) -> dict[int, int]:
        mapping: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while ports and time.monotonic() < deadline:
            container.reload()
            bound = container.attrs["NetworkSettings"]["Ports"] or {}
            for p in ports:
                host = (bound.get(f"{p}/tcp") or [{}])[0].get("HostPort")
                if host:
                    mapping[p] = int(host)
            if len(mapping) == len(ports) or container.status == "exited":
                break
            time.sleep(0.2)
        return mapping

    def exec_run(self, container: Container, cmd: list[str] | str, *, user: str | None = None,
                 timeout: float = 60) -> tuple[int, str]:
        """Run a command in a container with a timeout; returns (exit code, output). Raises EngineError."""
        argv = ["timeout", "-k", "5", str(int(timeout))] + (cmd if isinstance(cmd, list) else ["sh", "-c", cmd])
        with _engine_errors(f"exec in container {container.id[:12]}"):
            res = container._sdk.exec_run(argv, user=user or "", demux=False)
        return res.exit_code, (res.output or b"").decode(errors="replace")

    def put_files(self, container: Container | str, directory: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` (name -> bytes) into ``directory`` of a container (or a container id), created
        where absent, through the engine's archive API (so a remote engine works too): root's, the folder
        0755, each file 0644."""
        parent, _, name = directory.rstrip("/").rpartition("/")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
            for fname, data in sorted(files.items()):
                info = tarfile.TarInfo(f"{name}/{fname}")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        where = container if isinstance(container, str) else container.id
        with _engine_errors(f"copying files into container {where[:12]}"):
            sdk = self._client.containers.get(container) if isinstance(container, str) else container._sdk
            sdk.put_archive(parent or "/", buf.getvalue())

    def run_to_exit(self, image: str, *, command: list[str] | None = None, environment: dict[str, str] | None = None,
                    timeout: float = 60, extra: dict[str, Any] | None = None) -> tuple[int | None, str]:
        """Run a container until it exits, at most ``timeout`` seconds; (exit code or None, logs).

        The container is always force-removed. None means it was still running. Raises EngineError.
        """
        kwargs: dict[str, Any] = {"environment": environment or {}, "labels": {labels.TEMPORARY: "1"},
                                  **(extra or {})}
        if command is not None:
            kwargs["command"] = command
        with _engine_errors(f"creating a container of {image}"):
            container = self._client.containers.create(image, **kwargs)
        try:
            with _engine_errors(f"running a container of {image}"):
                container.start()
                try:
                    code: int | None = int(container.wait(timeout=timeout).get("StatusCode", -1))
                except SDK_ERRORS:   # still running when the wait ended
                    code = None
                logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
            return code, logs
        finally:
            with contextlib.suppress(*SDK_ERRORS):
                container.remove(force=True)

    def container_logs(self, container: Container, tail: int = 40) -> str:
        """The last lines a container printed (stdout and stderr), or '' when it is gone."""
        try:
            return str(container._sdk.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace"))
        except SDK_ERRORS:
            return ""

    def container_state(self, container: Container) -> ContainerState:
        """The state of a container (an empty one when it is gone)."""
        try:
            container._sdk.reload()
            state = container._sdk.attrs.get("State") or {}
        except docker.errors.NotFound:
            return ContainerState()
        code = state.get("ExitCode")
        return ContainerState(state.get("Status"), int(code) if isinstance(code, int) else None)

    def containers_with_label(self, label: str, value: str) -> list[str]:
        """Ids of containers (running or not) carrying ``label=value``."""
        with _engine_errors("listing containers"):
            return [c.id for c in self._client.containers.list(all=True, filters={"label": f"{label}={value}"})]

    def remove_containers_with_label(self, label: str, value: str) -> int:
        """Force-remove every container carrying ``label=value`` (also created-but-never-started ones)."""
        removed = 0
        with _engine_errors("listing containers"):
            found = self._client.containers.list(all=True, filters={"label": f"{label}={value}"})
        for c in found:
            with contextlib.suppress(*SDK_ERRORS):
                c.remove(force=True)
                removed += 1
        return removed
