"""``build/<variant>/report.json``: one report that every stage adds to.

Each stage writes its own section (``build``, ``checks``, ``scan``, ``gate``,
``tags``, ``publish``) with :func:`update`; nothing else is rewritten. Writes
are atomic (temp file and rename) so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

REPORT = "report.json"


def variant_dir(out_root: Path | str, variant: str) -> Path:
    return Path(out_root) / variant


def load(directory: Path | str) -> dict[str, Any]:
    path = Path(directory) / REPORT
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def write_json(path: Path | str, data: Any) -> Path:
    """Write JSON atomically, sorted and indented, ending with a newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def update(directory: Path | str, section: str, data: Any) -> dict[str, Any]:
    """Replace one section of the report and return the whole report."""
    report = load(directory)
    report[section] = data
    write_json(Path(directory) / REPORT, report)
    return report
