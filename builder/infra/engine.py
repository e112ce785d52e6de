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
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tarfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.utils import parse_repository_tag

from builder.errors import EngineError, EnvError
from builder.infra import labels

log = logging.getLogger(__name__)


def endpoint() -> tuple[str, ...]:
    """Which engine the docker CLI would talk to now: DOCKER_HOST (with its TLS settings), else the
    current docker context (DOCKER_CONTEXT or the config's currentContext), else the default socket."""
    if os.environ.get("DOCKER_HOST"):
        return ("env", os.environ["DOCKER_HOST"], os.environ.get("DOCKER_TLS_VERIFY", ""),
                os.environ.get("DOCKER_CERT_PATH", ""))
    try:
        from docker.context import ContextAPI
        ctx = ContextAPI.get_current_context()
    except Exception:  # a broken context store: fall back to the default engine
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
    except Exception as exc:  # docker.errors.DockerException, requests errors
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
        self._client = client

    @classmethod
    def from_env(cls) -> Engine:
        """The engine the docker CLI would use now (:func:`endpoint`), connected. Raises EnvError."""
        return cls(connect(endpoint()))

    @classmethod
    def deferred(cls) -> Engine:
        """Like :meth:`from_env`, but the endpoint is resolved and pinged on first use (once)."""
        return cls()

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client (connected on first use for a :meth:`deferred` engine). Raises EnvError."""
        if self._client is None:
            self._client = connect(endpoint())
        return self._client

    def require(self) -> None:
        """Connect now (a :meth:`deferred` engine): EnvError here when no engine answers."""
        _ = self.client

    def image_attrs(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect`` as a dict, or None when the image is absent."""
        try:
            return self.client.images.get(ref).attrs
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        return self.client.api.history(ref)

    def tag(self, image: str, repository: str, tag_: str) -> None:
        if not self.client.api.tag(image, repository, tag_, force=True):
            raise EngineError(f"could not tag {image} as {repository}:{tag_}")

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.NotFound):
            self.client.api.remove_image(ref, force=force, noprune=False)

    def save(self, ref: str, path: str) -> None:
        """``docker save`` to a tar file."""
        image = self.client.images.get(ref)
        with open(path, "wb") as fh:
            for chunk in image.save(named=True):
                fh.write(chunk)

    def push(self, repository: str, tag_: str) -> list[dict[str, Any]]:
        """Push one tag; returns the decoded progress lines. Raises on an error line."""
        lines = list(self.client.api.push(repository, tag=tag_, stream=True, decode=True))
        for line in lines:
            if "error" in line or "errorDetail" in line:
                detail = line.get("errorDetail", {}).get("message") or line.get("error")
                raise EngineError(f"push of {repository}:{tag_} failed: {detail}")
        return lines

    def pull(self, ref: str) -> None:
        """Pull ``name``, ``name:tag`` or ``name@sha256:...`` (a registry's port is not a tag).

        The SDK's own reference parsing splits it: a digest is pulled by digest.
        """
        repository, tag_or_digest = parse_repository_tag(ref)
        self.client.images.pull(repository, tag=tag_or_digest or "latest")

    def gpu_available(self) -> bool:
        """Whether the engine has an NVIDIA runtime (a GPU device request can work)."""
        info = self.client.info()
        return "nvidia" in (info.get("Runtimes") or {})

    @contextlib.contextmanager
    def running(self, image: str, *, command: list[str] | None = None, ports: list[int] | None = None,
                environment: dict[str, str] | None = None, gpu: bool = False,
                name: str | None = None, extra: dict[str, Any] | None = None,
                ready_timeout: float = 60) -> Iterator[tuple[Container, dict[int, int]]]:
        """Run a container with ports published on 127.0.0.1 only (random host ports).

        Yields the container and a map container port -> host port. The container
        is always force-removed, also on failure and Ctrl-C.
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
        container = self.client.containers.run(image, **kwargs)
        try:
            mapping: dict[int, int] = {}
            deadline = time.monotonic() + ready_timeout
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
            yield container, mapping
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def exec_run(self, container: Container, cmd: list[str] | str, *, user: str | None = None,
                 timeout: float = 60) -> tuple[int, str]:
        """Run a command in a container with a timeout; returns (exit code, output)."""
        argv = ["timeout", "-k", "5", str(int(timeout))] + (cmd if isinstance(cmd, list) else ["sh", "-c", cmd])
        res = container.exec_run(argv, user=user or "", demux=False)
        return res.exit_code, (res.output or b"").decode(errors="replace")

    def put_files(self, container: Container | str, directory: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` (name -> bytes) into ``directory`` of a container (or a container id), created
        where absent, through the engine's archive API (so a remote engine works too): root's, the folder
        0755, each file 0644."""
        if isinstance(container, str):
            container = self.client.containers.get(container)
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
        container.put_archive(parent or "/", buf.getvalue())

    def run_to_exit(self, image: str, *, command: list[str] | None = None, environment: dict[str, str] | None = None,
                    timeout: float = 60, extra: dict[str, Any] | None = None) -> tuple[int | None, str]:
        """Run a container until it exits, at most ``timeout`` seconds; (exit code or None, logs).

        The container is always force-removed. None means it was still running.
        """
        kwargs: dict[str, Any] = {"environment": environment or {}, "labels": {labels.TEMPORARY: "1"},
                                  **(extra or {})}
        if command is not None:
            kwargs["command"] = command
        container = self.client.containers.create(image, **kwargs)
        try:
            container.start()
            try:
                code: int | None = int(container.wait(timeout=timeout).get("StatusCode", -1))
            except Exception:
                code = None
            logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
            return code, logs
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def container_logs(self, container: Container, tail: int = 40) -> str:
        """The last lines a container printed (stdout and stderr), or '' when it is gone."""
        try:
            return container.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace")
        except docker.errors.APIError:
            return ""

    def container_state(self, container: Container) -> dict[str, Any]:
        """``State`` of a container (Status, ExitCode, ...); {} when it is gone."""
        try:
            container.reload()
            return dict(container.attrs.get("State") or {})
        except docker.errors.NotFound:
            return {}

    def containers_with_label(self, label: str, value: str) -> list[str]:
        """Ids of containers (running or not) carrying ``label=value``."""
        return [c.id for c in self.client.containers.list(all=True, filters={"label": f"{label}={value}"})]

    def remove_containers_with_label(self, label: str, value: str) -> int:
        """Force-remove every container carrying ``label=value`` (also created-but-never-started ones)."""
        removed = 0
        for c in self.client.containers.list(all=True, filters={"label": f"{label}={value}"}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                c.remove(force=True)
                removed += 1
        return removed
