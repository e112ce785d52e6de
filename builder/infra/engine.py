"""The one module that talks to the Docker SDK (inspect, run, tag, push, save).

Builds do not come here: the SDK cannot drive BuildKit (docker-py issue 2230),
so :mod:`builder.image.buildkit` runs the docker CLI. ``DOCKER_HOST`` and the user's
docker config (credential helpers included) are honoured through
``docker.from_env()``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from builder.errors import EngineError, EnvError
from builder.infra import labels

log = logging.getLogger(__name__)
_CLIENT: docker.DockerClient | None = None


def client() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket)."""
    global _CLIENT
    if _CLIENT is None:
        try:
            c = docker.from_env(timeout=120)
            c.ping()
        except Exception as exc:  # docker.errors.DockerException, requests errors
            raise EnvError(
                "no Docker engine answers"
                f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}).",
                hint="Start Docker (on Debian/Ubuntu as root: scripts/engine.sh), or point DOCKER_HOST "
                     "at a running engine.") from None
        _CLIENT = c
    return _CLIENT


def reset() -> None:
    """Forget the cached client (tests that change DOCKER_HOST)."""
    global _CLIENT
    _CLIENT = None


def image_attrs(ref: str) -> dict[str, Any] | None:
    """``docker image inspect`` as a dict, or None when the image is absent."""
    try:
        return client().images.get(ref).attrs
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            return None
        raise


def image_history(ref: str) -> list[dict[str, Any]]:
    return client().api.history(ref)


def tag(image: str, repository: str, tag_: str) -> None:
    if not client().api.tag(image, repository, tag_, force=True):
        raise EngineError(f"could not tag {image} as {repository}:{tag_}")


def remove_image(ref: str, *, force: bool = False) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.NotFound):
        client().api.remove_image(ref, force=force, noprune=False)


def save(ref: str, path: str) -> None:
    """``docker save`` to a tar file."""
    image = client().images.get(ref)
    with open(path, "wb") as fh:
        for chunk in image.save(named=True):
            fh.write(chunk)


def push(repository: str, tag_: str) -> list[dict[str, Any]]:
    """Push one tag; returns the decoded progress lines. Raises on an error line."""
    lines = list(client().api.push(repository, tag=tag_, stream=True, decode=True))
    for line in lines:
        if "error" in line or "errorDetail" in line:
            detail = line.get("errorDetail", {}).get("message") or line.get("error")
            raise EngineError(f"push of {repository}:{tag_} failed: {detail}")
    return lines


def pull(ref: str) -> None:
    repo, _, tg = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    client().images.pull(repo, tag=tg or "latest")


def gpu_available() -> bool:
    """Whether the engine has an NVIDIA runtime (a GPU device request can work)."""
    info = client().info()
    return "nvidia" in (info.get("Runtimes") or {})


@contextlib.contextmanager
def running(image: str, *, command: list[str] | None = None, ports: list[int] | None = None,
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
    container = client().containers.run(image, **kwargs)
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


def exec_run(container: Container, cmd: list[str] | str, *, user: str | None = None,
             timeout: float = 60) -> tuple[int, str]:
    """Run a command in a container with a timeout; returns (exit code, output)."""
    argv = ["timeout", "-k", "5", str(int(timeout))] + (cmd if isinstance(cmd, list) else ["sh", "-c", cmd])
    res = container.exec_run(argv, user=user or "", demux=False)
    return res.exit_code, (res.output or b"").decode(errors="replace")


def run_to_exit(image: str, *, command: list[str] | None = None, environment: dict[str, str] | None = None,
                timeout: float = 60, extra: dict[str, Any] | None = None) -> tuple[int | None, str]:
    """Run a container until it exits, at most ``timeout`` seconds; (exit code or None, logs).

    The container is always force-removed. None means it was still running.
    """
    kwargs: dict[str, Any] = {"environment": environment or {}, "labels": {labels.TEMPORARY: "1"},
                              **(extra or {})}
    if command is not None:
        kwargs["command"] = command
    container = client().containers.create(image, **kwargs)
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


def container_logs(container: Container, tail: int = 40) -> str:
    """The last lines a container printed (stdout and stderr), or '' when it is gone."""
    try:
        return container.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace")
    except docker.errors.APIError:
        return ""


def container_state(container: Container) -> dict[str, Any]:
    """``State`` of a container (Status, ExitCode, ...); {} when it is gone."""
    try:
        container.reload()
        return dict(container.attrs.get("State") or {})
    except docker.errors.NotFound:
        return {}


def containers_with_label(label: str, value: str) -> list[str]:
    """Ids of containers (running or not) carrying ``label=value``."""
    return [c.id for c in client().containers.list(all=True, filters={"label": f"{label}={value}"})]


def remove_containers_with_label(label: str, value: str) -> int:
    """Force-remove every container carrying ``label=value`` (also created-but-never-started ones)."""
    removed = 0
    for c in client().containers.list(all=True, filters={"label": f"{label}={value}"}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            c.remove(force=True)
            removed += 1
    return removed
