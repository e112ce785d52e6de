"""The git revision of the repository holding a variant file: 7 hex digits, or ``norev`` outside git."""

from __future__ import annotations

from pathlib import Path

from builder.errors import EnvError
from builder.infra import runner

NO_REVISION = "norev"


def revision(path: Path | str) -> str:
    """Short revision (7 characters) of the repository holding ``path`` (a file or folder)."""
    where = Path(path).resolve()
    directory = where if where.is_dir() else where.parent
    try:
        res = runner.run(["git", "-C", str(directory), "rev-parse", "--short=7", "HEAD"], check=False, timeout=30)
    except EnvError:   # no git on this machine
        return NO_REVISION
    rev = res.stdout.strip()
    return rev if res.returncode == 0 and rev else NO_REVISION
