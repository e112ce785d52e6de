"""Helpers for checks: commands with a timeout that fail pointing at the check line."""

from __future__ import annotations

import json
import shlex
from typing import Any

from builder.check import incontainer
from builder.infra import runner


def sh(host: Any, cmd: str, timeout: float = 60) -> Any:
    """Run ``cmd`` with ``sh -c`` in the container, killed after ``timeout`` seconds."""
    return host.run(f"timeout -k 5 {int(timeout)} sh -c {shlex.quote(cmd)}")


def out(host: Any, cmd: str, timeout: float = 60) -> str:
    """stdout of ``cmd``; fails the check with the command and its output when it exits non-zero."""
    __tracebackhide__ = True
    res = sh(host, cmd, timeout)
    assert res.rc == 0, f"`{cmd}` exited {res.rc}{' (timed out)' if res.rc in (124, 137) else ''}: " \
                        f"{(res.stderr or res.stdout).strip()[-600:]}"
    return res.stdout


def program_json(host: Any, where: str, program: str, *args: str, timeout: float = 120) -> Any:
    """Run one of tfimg's in-container programs (:mod:`builder.check.incontainer`, copied to ``where`` by
    the ``programs`` fixture) with ``args``; the JSON document it prints last."""
    __tracebackhide__ = True
    text = out(host, shlex.join([*incontainer.argv(program, where=where), *args]), timeout)
    return json.loads(text.strip().splitlines()[-1])


SSH_OPTS = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR"]


def ssh(port: int, user: str, *options: str, command: str = "id", timeout: float = 60) -> runner.Result:
    """The real OpenSSH client against 127.0.0.1:port (never a bridge address)."""
    argv = ["ssh", *SSH_OPTS, "-p", str(port), *options, f"{user}@127.0.0.1", command]
    return runner.run(argv, check=False, timeout=timeout)


def lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]
