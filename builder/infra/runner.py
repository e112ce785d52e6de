"""The one place that runs subprocesses: argument lists, never a shell.

:func:`run` runs a program to completion and captures its output; :func:`stream`
hands each output line to a callback as it comes (builds, child ``tfimg``
processes) and stops the program's whole process group when interrupted.
Each call logs the joined command at DEBUG. :func:`run` applies a timeout and
raises :class:`~builder.errors.CommandFailed` (with the command, exit code and
output); both raise :class:`~builder.errors.EnvError` when the program is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.errors import CommandFailed, EnvError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def args(*parts: object, **options: object) -> list[str]:
    """Build an argument list, skipping unset options.

    ``args("trivy", "image", format="json", quiet=True, timeout=None)`` gives
    ``["trivy", "image", "--format", "json", "--quiet"]``. Lists repeat the flag.
    """
    argv = [str(p) for p in parts]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def which(program: str, *, purpose: str | None = None) -> str | None:
    """The full path of ``program``: on PATH, else beside this Python (a venv's ``bin/``, where
    tfimg's extras put trivy, ssh-audit and hadolint). Missing: None, or EnvError with a ``purpose``."""
    found = shutil.which(program) or shutil.which(program, path=str(Path(sys.executable).parent))
    if not found and purpose:
        raise EnvError(f"`{program}` was not found on PATH; it is needed to {purpose}.")
    return found


def run(argv: Iterable[object], *, timeout: float | None = 600, check: bool = True,
        env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
        input: str | None = None) -> Result:
    """Run a program to completion and capture its output."""
    cmd = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(cmd))
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise EnvError(f"`{cmd[0]}` was not found; install it or put it on PATH.") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(cmd, -1, _text(exc.stdout), _text(exc.stderr),
                            message=f"`{cmd[0]}` did not finish within {timeout:.0f} s") from exc
    result = Result(cmd, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        log.error("%s exited with %s:\n%s", cmd[0], proc.returncode, proc.stderr or proc.stdout)
        raise CommandFailed(cmd, proc.returncode, proc.stdout, proc.stderr)
    return result


def stream(argv: Iterable[object], on_line: Callable[[str], None], *,
           env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
           own_group: bool = False) -> int:
    """Run a program, handing each line of its output (stdout and stderr merged) to ``on_line``.

    Returns the exit code. With ``own_group`` the program runs in its own process
    group, and an interrupt (Ctrl-C, or any exception in ``on_line``) stops that
    whole group, politely first (SIGINT, then SIGKILL after 15 s), before re-raising.
    """
    cmd = [str(a) for a in argv]
    log.debug("stream: %s", shlex.join(cmd))
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                                start_new_session=own_group)
    except FileNotFoundError as exc:
        raise EnvError(f"`{cmd[0]}` was not found; install it or put it on PATH.") from exc
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        _stop(proc, own_group)
        raise


def _stop(proc: subprocess.Popen[str], group: bool) -> None:
    """Stop a program (and its process group when it has its own), politely first."""
    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    send(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
