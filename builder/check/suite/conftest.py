"""Fixtures and the results writer of the check suite.

Fixtures: ``ctx`` (the runner's :class:`~builder.check.suite.context.Context`),
``variant`` (the spec), ``host`` (testinfra ``docker://`` on the running
services container, as the image's user), ``programs`` (where tfimg's
in-container programs were copied in that container), ``user_host`` (the same, as the
spec's uid:gid), ``image_host`` / ``base_host`` (root in a container of the
image, or of its base, whose entrypoint never ran), ``note`` (the detail
shown for a passing check) and ``record`` (data for report.json).

Each check's outcome is written to ``ctx.results_path`` as JSON.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra

from builder.check.suite.context import Context
from builder.check.suite.helpers import sh
from builder.spec.loader import Variant

_RESULTS: dict[str, dict[str, Any]] = {}
_RECORDS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def docker_engine() -> Any:
    """The Docker engine the runner used (this process's environment: DOCKER_HOST, context)."""
    from builder.infra.engine import Engine
    return Engine.from_env()


@pytest.fixture(scope="session")
def ctx() -> Context:
    return Context.read()


@pytest.fixture(scope="session")
def variant(ctx: Context) -> Variant:
    return Variant.model_validate(ctx.spec)


@pytest.fixture(scope="session")
def host(ctx: Context) -> Any:
    if not ctx.services:
        pytest.fail(f"the services container did not start: {ctx.services_note}")
    return testinfra.get_host(f"docker://{ctx.services}")


@pytest.fixture(scope="session")
def programs(ctx: Context, docker_engine: Any) -> str:
    """Where tfimg's in-container programs (:mod:`builder.check.incontainer`) are in the services
    container: copied there once per session."""
    if not ctx.services:
        pytest.fail(f"the services container did not start: {ctx.services_note}")
    from builder.check import incontainer
    return incontainer.install(docker_engine, ctx.services)


@pytest.fixture(scope="session")
def user_host(ctx: Context, variant: Variant) -> Any:
    if not ctx.services:
        pytest.fail(f"the services container did not start: {ctx.services_note}")
    return testinfra.get_host(f"docker://{variant.user.uid}:{variant.user.gid}@{ctx.services}")


@pytest.fixture(scope="session")
def image_host(ctx: Context) -> Any:
    if not ctx.pristine:
        pytest.fail("no container of the image could be started")
    return testinfra.get_host(f"docker://root@{ctx.pristine}")


@pytest.fixture(scope="session")
def base_host(ctx: Context) -> Any:
    if not ctx.base_container:
        pytest.skip(f"cannot run: no base image to compare with ({ctx.base_note or 'unknown base'})")
    return testinfra.get_host(f"docker://root@{ctx.base_container}")


@pytest.fixture(scope="session")
def base_run(ctx: Context, request: pytest.FixtureRequest):
    """``base_run(cmd, timeout) -> (rc, stdout)``: a read-only command in the base's container, its
    answer kept in ``ctx.base_cache`` (named by the base's image id), so the base's inventory (setuid
    files, private keys, pip state) is read once per base, not once per variant. A command that timed
    out is not kept."""
    def _run(cmd: str, timeout: float) -> tuple[int, str]:
        path = Path(ctx.base_cache) if ctx.base_cache else None
        cache = _read_cache(path)
        if cmd in cache:
            return int(cache[cmd]["rc"]), str(cache[cmd]["stdout"])
        res = sh(request.getfixturevalue("base_host"), cmd, timeout)
        if path is not None and res.rc not in (124, 137):
            cache = {**_read_cache(path), cmd: {"rc": res.rc, "stdout": res.stdout}}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, path)   # atomic: variants checked side by side share the file
        return res.rc, res.stdout
    return _run


def _read_cache(path: Path | None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@pytest.fixture
def note(request: pytest.FixtureRequest):
    def _note(text: str) -> None:
        _RESULTS.setdefault(request.node.nodeid, {})["note"] = text
    return _note


@pytest.fixture
def record():
    def _record(key: str, value: Any) -> None:
        _RECORDS[key] = value
    return _record


def check_id(nodeid: str) -> str:
    """``test_ssh.py::test_login`` -> ``ssh::login``."""
    module, _, name = nodeid.rpartition("/")[2].partition("::")
    return f"{Path(module).stem.removeprefix('test_')}::{name.removeprefix('test_')}"


def _detail(report: pytest.TestReport) -> str:
    lr = report.longrepr
    if isinstance(lr, tuple):                      # skipped: (file, line, "Skipped: reason")
        return str(lr[2]).removeprefix("Skipped: ")
    crash = getattr(lr, "reprcrash", None)
    text = crash.message if crash is not None else str(lr)
    text = text.split("\nassert ", 1)[0]
    for prefix in ("AssertionError: ", "Failed: "):
        text = text.removeprefix(prefix)
    return text.strip()[:2000]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = _RESULTS.setdefault(report.nodeid, {})
    row.setdefault("check", check_id(report.nodeid))
    row["duration"] = round(row.get("duration", 0.0) + report.duration, 3)
    if report.when == "call" or report.outcome != "passed":
        if row.get("status") in ("failed", "error") and report.when == "teardown":
            return
        status: str = report.outcome
        if report.outcome == "failed" and report.when != "call":
            status = "error"
        row["status"] = status
        row["detail"] = row.get("note", "") if status == "passed" else _detail(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    try:
        path = Context.read().results_path
    except (RuntimeError, OSError):
        return
    rows = [{k: r.get(k) for k in ("check", "status", "detail", "duration")}
            for r in _RESULTS.values() if r.get("status")]
    Path(path).write_text(json.dumps({"results": rows, "records": _RECORDS,
                                      "finished": time.time()}, indent=2, default=str))


@pytest.fixture(scope="session")
def profile(ctx: Context, variant: Variant) -> Any:
    """The base profile versions are compared with (the spec's, or the stand-in's on the stand-in)."""
    from builder.spec import profiles
    return profiles.get(ctx.profile).with_overrides(variant.base.expect)
