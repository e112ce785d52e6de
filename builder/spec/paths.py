"""Where the files a variant names may lie: its repository, or a folder the user allows.

A variant names host files: ``extends`` parents, ``python.requirements``,
``ssh.authorized_keys`` and ``policy``. Their content goes into the build
context and the image, so a variant (written by many people) must not reach
for ``~/.ssh/id_ed25519`` or ``/etc/shadow``. Each such path, after ``~`` is
expanded, joined to the folder of the file that names it and every symlink
resolved, must lie inside:

* the variant's repository: the git work tree holding the variant file named
  on the command line (the nearest folder above it, symlinks resolved, that
  holds ``.git``, a folder or, in a worktree or submodule, a file); without one,
  the folder of that variant file. The home folder and ``/`` are never a
  repository (a home kept in git would put ``~/.ssh`` "in the repository"): the
  search stops below them; or
* a folder allowed with ``--allow-dir DIR`` (repeatable) or ``TFIMG_ALLOW_DIRS``
  (folders separated by ``:``).

Anything else (``~/...``, an absolute path, ``../..``, a symlink out) is
refused with exit 2 naming the key and the path.

Build secrets (``secrets.*.file``) are exempt: they are BuildKit secret mounts,
never in the context or a layer, and legitimately live outside (``~/.netrc``,
the system CA bundle). They must still be regular files (no FIFO, device,
socket, folder, symlink loop, nor anything under /proc, /sys or /dev).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UnreadableInput
from builder.infra import datafile

ALLOW_ENV = "TFIMG_ALLOW_DIRS"


def real(path: Path | str) -> Path:
    """``path`` with ``~`` expanded, made absolute and symlinks resolved; never raises for a loop."""
    return Path(os.path.realpath(os.path.expanduser(path)))


def repository_of(variant_file: Path) -> Path:
    """The git work tree holding ``variant_file`` (symlinks resolved), else its folder."""
    folder = real(variant_file).parent
    stops = {Path("/"), real("~")}
    for candidate in (folder, *folder.parents):
        if candidate in stops:
            break
        if os.path.lexists(candidate / ".git"):
            return candidate
    return folder


@dataclass(frozen=True)
class Roots:
    """The folders files named by one variant may lie in."""

    repository: Path
    allowed: tuple[Path, ...] = ()

    @classmethod
    def of(cls, variant_file: Path, allow: Sequence[Path | str] = ()) -> Roots:
        return cls(repository_of(variant_file), tuple(real(d) for d in allow))

    def contains(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in (self.repository, *self.allowed))

    def problem(self, resolved: Path, written: str) -> str | None:
        """Why a path (``written`` in the file, ``resolved`` by :func:`real`) may not be used, or None."""
        if self.contains(resolved):
            return None
        shown = f"'{resolved}'" if written == str(resolved) else f"'{written}' resolves to '{resolved}', which"
        return (f"{shown} is outside the variant's repository ({self.repository})"
                + (f" and the allowed folders ({', '.join(map(str, self.allowed))})" if self.allowed else ""))


HINT = ("Files a variant names must lie in its repository (the git work tree of the variant file; without one, "
        "its folder), after '~' and symlinks are resolved. Move the file there, or allow its folder with "
        f"--allow-dir DIR (or {ALLOW_ENV}=DIR:DIR).")


def secret_problem(path: str) -> str | None:
    """Why a build secret file cannot be used, or None; a missing one is the build's to judge
    (``required``). Secret files may lie anywhere, but must be regular files."""
    if not os.path.lexists(path):
        return None
    try:
        datafile.check_regular(path, what="the secret file")
    except UnreadableInput as exc:
        return exc.text
    return None
