"""Programs that run in the image's containers, shipped as files (package data), never as strings.

Each ``tfimg_*.py`` here is a program for the image's own Python, which may be
as old as 3.8 (NGC 22.07's): standard library only, no import of tfimg, and
runnable as a file (``python3 -B tfimg_probe.py``); where one needs another,
it imports it from its own folder. ruff checks them against Python 3.8 and
``vermin`` for the standard library they use (``make lint``), mypy as part of
``builder``. They travel into a container with :func:`install` (a tar through
the engine's archive API, so a remote engine works too) and run there from
:data:`DEST`; ``tfimg probe --local`` and ``scripts/gpu-check.sh`` run them
from this folder.

- ``tfimg_probe.py``: the CUDA stack, TensorFlow and the driver, raw (read by
  :mod:`builder.check.probe`).
- ``tfimg_maps.py``: the parser of ``/proc/self/maps`` (the probe's children;
  ``scripts/standin/probe-cuda-libs.py``).
- ``tfimg_dists.py``: installed distributions and whether their modules import
  (the check suite's ``test_python.py`` and ``test_variant.py``).
- ``tfimg_procs.py``: the container's processes (``test_user.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.infra.engine import Engine

DIR = Path(__file__).resolve().parent
DEST = "/tmp/tfimg-incontainer"   # where install() puts them in a container
PROGRAMS = ("tfimg_maps.py", "tfimg_probe.py", "tfimg_dists.py", "tfimg_procs.py")


def files() -> dict[str, bytes]:
    """Each program's name and bytes, as shipped."""
    return {name: (DIR / name).read_bytes() for name in PROGRAMS}


def install(engine: Engine, container: Any) -> str:
    """Copy the programs into ``container`` at :data:`DEST` (root's, readable by every user); returns DEST."""
    engine.put_files(container, DEST, files())
    return DEST


def argv(program: str, python: str = "python3", where: str = DEST) -> list[str]:
    """The command that runs ``program`` from ``where`` with ``python`` (no bytecode written there)."""
    if program not in PROGRAMS:
        raise ValueError(f"no in-container program {program!r}; known: {', '.join(PROGRAMS)}")
    return [python, "-B", f"{where}/{program}"]
