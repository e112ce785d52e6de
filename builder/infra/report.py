"""``build/<variant>/report.json``, read: :func:`load` returns a :class:`Report`.

Each stage's result is one section (``build``, ``checks``, ``facts``, ``scan``, ``gate``,
``tags``, ``local_tags``, ``publish``, ``timings``), a model of :mod:`builder.infra.report_models`;
the orchestrator alone writes them (:mod:`builder.pipeline.record`). :func:`write_json` writes
any JSON file atomically (temp file and rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from builder.errors import TfimgError, UnreadableInput
from builder.infra import datafile, report_models
from builder.infra.report_models import Report

REPORT = "report.json"
MODEL_NAMES = {name for name, obj in vars(report_models).items()
               if isinstance(obj, type) and issubclass(obj, BaseModel)}


def variant_dir(out_root: Path | str, variant: str) -> Path:
    return Path(out_root) / variant


def load(directory: Path | str) -> Report:
    """The report in ``directory`` (an empty one when there is none).

    Raises TfimgError when the file is not a report tfimg wrote (bad JSON, an
    unknown section or key, a value of the wrong type).
    """
    path = Path(directory) / REPORT
    if not os.path.lexists(path):   # a link to nowhere or a loop is an error, not "no report"
        return Report()
    try:   # datafile: not a regular file, not UTF-8, not JSON, a duplicate key (UnreadableInput, a ValueError)
        return Report.model_validate(datafile.load_json(path, what="the file"))
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        # the loc also names a union's member (checks.ChecksSection.passed): keep the JSON path only
        where = ".".join(str(p) for p in first["loc"] if str(p) not in MODEL_NAMES) if first else ""
        why = f"{where}: {first['msg']}" if first else (exc.text if isinstance(exc, UnreadableInput) else str(exc)[:200])
        raise TfimgError(f"{path} is not a tfimg report ({why})",
                         hint="It was edited by hand or written by another tool; rebuild the variant "
                              "(tfimg build SPEC) to write a new one.") from None


def write_json(path: Path | str, data: Any, *, compact: bool = False) -> Path:
    """Write JSON atomically, sorted and indented, ending with a newline. ``compact``: on one line, keys
    in the order written (deterministic), by pydantic-core's serializer (a model: its
    ``model_dump_json``): for files that grow with the findings, gate.json and gate.sarif (60,000
    findings: over 50 MB each, in a fraction of the time the json module takes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, BaseModel) and compact:
        body = data.model_dump_json().encode()
    elif compact:
        body = to_json(data, fallback=str)
    else:
        body = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(body + b"\n")
    os.replace(tmp, path)
    return path
