"""Which files a process has mapped: the one parser of ``/proc/PID/maps`` in tfimg.

A program for the image's own Python (3.8 or newer, standard library only; see
``builder/check/incontainer/__init__.py``). Used by the probe's children
(``tfimg_probe.py``: the real file behind ``libcudart.so.11.0``, the CUDA
libraries TensorFlow mapped) and by ``scripts/standin/probe-cuda-libs.py``.

A line of the file is ``address perms offset dev inode [pathname]``, the
fields separated by blanks and the pathname padded to a column; a pathname may
hold blanks, and ends in `` (deleted)`` where the file was removed after it
was mapped. Anonymous mappings have no pathname, or a pseudo-name such as
``[heap]``::

    7f5c2a000000-7f5c2a02c000 r--p 00000000 00:2f 1443 /usr/lib/x86_64-linux-gnu/libnccl.so.2.13.4
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SELF = "/proc/self/maps"


def pathname(line: str) -> str | None:
    """The pathname of one line (as written, `` (deleted)`` kept), or None for an anonymous mapping."""
    parts = line.rstrip("\n").split(None, 5)
    if len(parts) < 6 or not parts[5].startswith("/"):
        return None
    return parts[5]


def mapped_files(lines: Iterable[str], prefixes: tuple[str, ...]) -> list[str]:
    """The mapped files whose name (the last part of the path) starts with one of ``prefixes``:
    each once, in the order of the lines (the order of their addresses)."""
    found: list[str] = []
    for line in lines:
        path = pathname(line)
        if path and os.path.basename(path).startswith(prefixes) and path not in found:
            found.append(path)
    return found


def self_mapped(prefixes: tuple[str, ...], maps: str = SELF) -> list[str]:
    """:func:`mapped_files` of this process; [] where the file cannot be read (not Linux)."""
    try:
        with open(maps) as fh:
            return mapped_files(fh, prefixes)
    except OSError:
        return []
