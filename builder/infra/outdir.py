"""Output folders: tfimg writes into, replaces and deletes only folders it created.

A folder tfimg creates for its output (``--out`` of every command, ``build/<variant>/``,
``build/<variant>/context``) holds a marker file, :data:`MARKER`. tfimg writes into a folder, or
replaces or deletes it, only when it holds the marker, or is empty (then it is marked), or does not
exist yet (then it is created and marked). Always refused: ``/``, the home folder, the current folder
or one above it, a repository root (it has ``.git``), a path that is itself a symbolic link, and any
non-empty folder without the marker. Deleting never follows a symbolic link: one inside the folder is
removed as a link (:func:`shutil.rmtree` on Linux works on file descriptors), its target is untouched.

Every refusal is :class:`OutDirRefused` (exit 2), and nothing was changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from builder.errors import TfimgError

MARKER = ".tfimg-output"
MARKER_TEXT = ("This folder was created by tfimg for its output. tfimg may replace or delete it and\n"
               "everything in it; remove this file to keep tfimg from ever touching the folder again.\n")


class OutDirRefused(TfimgError):
    """An output folder tfimg may not write into, replace or delete (bad input: exit 2)."""

    title = "output folder"


def marked(path: Path) -> bool:
    """Whether ``path`` is a real folder holding tfimg's marker (a regular file, not a link)."""
    marker = path / MARKER
    return path.is_dir() and not path.is_symlink() and marker.is_file() and not marker.is_symlink()


def claim(path: Path | str, what: str = "output folder") -> Path:
    """Make ``path`` a folder tfimg may write into: create and mark it, mark it when empty, or accept
    it when marked. Raises OutDirRefused otherwise; nothing is changed then."""
    p = Path(path)
    _check(p, what)
    with _os_errors(p, what):
        if not p.is_dir():
            p.mkdir(parents=True, exist_ok=True)
        if not marked(p):
            _mark(p)   # new, or _check found it empty
    return p


def replace(path: Path | str, fill: Callable[[Path], None], what: str = "output folder") -> Path:
    """Write ``path`` afresh: ``fill`` writes into a new marked folder beside it, which then takes
    its place; the old folder (tfimg's, or empty) is deleted. Nothing changes when ``fill`` raises.
    Raises OutDirRefused when ``path`` is not tfimg's to replace."""
    p = Path(path)
    _check(p, what)
    with _os_errors(p, what):
        p.parent.mkdir(parents=True, exist_ok=True)
        new = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}.new-"))
    old = p.parent / f".{p.name}.old-{uuid.uuid4().hex[:12]}"
    try:
        _mark(new)
        fill(new)
        if p.is_dir():
            os.rename(p, old)
        os.rename(new, p)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if old.is_dir():
        shutil.rmtree(old)
    return p


def remove(path: Path | str, what: str = "output folder") -> None:
    """Delete a folder tfimg created (marked, or empty); nothing when it does not exist.
    Raises OutDirRefused for any other folder."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return
    _check(p, what)
    with _os_errors(p, what):
        shutil.rmtree(p)


def _check(p: Path, what: str) -> None:
    """Refuse what tfimg must never write into, replace or delete (see the module's text)."""
    shown = str(p)
    if not shutil.rmtree.avoids_symlink_attacks:   # pragma: no cover  (True on Linux and macOS)
        raise OutDirRefused(f"{what} '{shown}': this platform's shutil.rmtree may follow symbolic links; "
                            "tfimg does not replace or delete folders here")
    if p.is_symlink():
        raise OutDirRefused(f"{what} '{shown}' is a symbolic link; tfimg never writes through one",
                            hint="Give the real folder, or a new path.")
    real = p.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    special = {Path("/"): "the root folder", home: "your home folder", cwd: "the current folder"}
    if real in special or real in cwd.parents or real in home.parents:
        name = special.get(real) or f"a folder above {'the current folder' if real in cwd.parents else 'home'}"
        raise OutDirRefused(f"{what} '{shown}' is {name}; tfimg never writes its output there",
                            hint="Give a new folder, e.g. --out build/out.")
    if (real / ".git").exists():
        raise OutDirRefused(f"{what} '{shown}' is the root of a repository (it has .git); tfimg never "
                            "writes its output there", hint="Give a new folder, e.g. --out build/out.")
    if not p.exists():
        return
    if not p.is_dir():
        raise OutDirRefused(f"{what} '{shown}' exists and is not a folder", hint="Give a new folder.")
    if not marked(p) and any(p.iterdir()):
        raise OutDirRefused(
            f"{what} '{shown}' holds files tfimg did not create (it has no {MARKER} marker); tfimg writes "
            "only into folders it created, or empty ones",
            hint=f"Give a new or empty folder. If tfimg made this folder before it marked its folders, "
                 f"delete it, or mark it as tfimg's with `touch {p / MARKER}`.")


@contextlib.contextmanager
def _os_errors(p: Path, what: str) -> Iterator[None]:
    """An error of the file system (a path through a file, no permission, disk full) is bad input."""
    try:
        yield
    except OSError as exc:
        raise OutDirRefused(f"{what} '{p}': {exc.strerror or exc}", hint="Give a folder you can write.") from None


def _mark(p: Path) -> None:
    (p / MARKER).write_text(MARKER_TEXT)
