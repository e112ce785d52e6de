"""The one place that runs subprocesses: argument lists, never a shell.

Each call logs the joined command at DEBUG, applies a timeout, and raises
:class:`~builder.errors.CommandFailed` (with the command, exit code and
output) or :class:`~builder.errors.EnvError` when the program is missing.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


def which(program: str, *, purpose: str) -> str:
    found = shutil.which(program)
    if not found:
        raise EnvError(f"`{program}` was not found on PATH; it is needed to {purpose}.")
    return found


def run(argv: Iterable[object], *, timeout: float | None = 600, check: bool = True,
        env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
        input: str | None = None) -> Result:
    """Run a program to completion and capture its output."""
    argv = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(argv))
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise EnvError(f"`{argv[0]}` was not found; install it or put it on PATH.") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, -1, _text(exc.stdout), _text(exc.stderr),
                            message=f"`{argv[0]}` did not finish within {timeout:.0f} s") from exc
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        log.error("%s exited with %s:\n%s", argv[0], proc.returncode, proc.stderr or proc.stdout)
        raise CommandFailed(argv, proc.returncode, proc.stdout, proc.stderr)
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
