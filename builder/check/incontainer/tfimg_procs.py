"""The container's processes, from ``/proc``: pid, uid, name and parent pid of each, as one JSON list.

A program for the image's own Python (3.8 or newer, standard library only; see
``builder/check/incontainer/__init__.py``), run by the check suite
(``builder/check/suite/test_user.py``) in the running container::

    python3 -B tfimg_procs.py
    [[1, 1000, "tini", 0], [7, 1000, "sshd", 1]]

A process that ends while it is read is left out.
"""

from __future__ import annotations

import json
import os


def processes(proc: str = "/proc") -> list[list[int | str]]:
    """[pid, real uid, name, parent pid] of every process in ``proc``, by pid as listed."""
    rows: list[list[int | str]] = []
    for pid in filter(str.isdigit, os.listdir(proc)):
        try:
            with open(os.path.join(proc, pid, "status")) as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            rows.append([int(pid), int(status["Uid"].split()[0]), status["Name"].strip(), int(status["PPid"])])
        except (OSError, KeyError, ValueError):   # gone meanwhile, or not a process folder
            continue
    return rows


if __name__ == "__main__":
    print(json.dumps(processes()))
