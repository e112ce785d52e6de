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


def commit_time(paths: list[Path]) -> int | None:
    """The commit time (Unix seconds) of the last commit that touched any of ``paths``, in the
    repository holding the first; None outside git, or when none of them was ever committed."""
    if not paths:
        return None
    first = Path(paths[0]).resolve()
    try:
        res = runner.run(["git", "-C", str(first.parent), "log", "-1", "--format=%ct", "--",
                          *[str(Path(p).resolve()) for p in paths]], check=False, timeout=30)
    except EnvError:   # no git on this machine
        return None
    out = res.stdout.strip()
    return int(out) if res.returncode == 0 and out.isdigit() else None
