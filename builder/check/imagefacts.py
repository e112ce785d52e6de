"""Facts about a built image, for tags and evidence.

Versions are read from the image itself by running the probe
(:mod:`builder.check.probe`, copied into a throwaway container): TensorFlow, Python, and
CUDA/cuDNN/NCCL from the libraries themselves (None where they are absent). The date is the image's creation date (UTC), so the tag does not
change between ``tfimg tags`` and ``tfimg publish``; the revision is the short
git revision the image was built from (``build.revision``), else of the
variant file's repository now ('norev' outside git). A
``facts`` section already in ``report.json`` for the same image is reused.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from builder.check import incontainer, probe
from builder.errors import EnvError
from builder.infra import clock, git
from builder.infra.engine import Engine
from builder.infra.report_models import FactsSection, Report

KEYS = ("tensorflow", "python", "cuda", "cudnn", "date", "rev")


def from_image(image: str, engine: Engine, *, timeout: float = 300) -> dict[str, Any]:
    """Run the probe (:mod:`builder.check.probe`) in a throwaway container; returns versions as detected.

    CUDA, cuDNN and NCCL come from the libraries in the image, not from what
    TensorFlow was built against: pip's TensorFlow says CUDA 11.2 even where no
    CUDA library exists.
    """
    with engine.running(image, command=["sleep", str(int(timeout) + 30)],
                        environment={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}) as (container, _):
        incontainer.install(engine, container)
        for python in ("python3", "python"):
            code, output = engine.exec_run(container, probe.command(python), timeout=timeout)
            if code not in (126, 127):
                break
        else:
            raise EnvError(f"image {image} has no python3 or python on PATH; cannot read its versions")
    return probe.summarize(probe.parse_output(output)).model_dump(include={"tensorflow", "python", "cuda", "cudnn",
                                                                         "nccl"})


def image_date(image: str, engine: Engine) -> str:
    """Creation date (UTC, YYYYMMDD) of the image; today when unknown or implausible."""
    attrs = engine.image_attrs(image) or {}
    created = str(attrs.get("Created") or "")
    try:
        when = dt.datetime.fromisoformat(created[:19]).replace(tzinfo=dt.timezone.utc)
        if when.year >= 2000:
            return when.strftime("%Y%m%d")
    except ValueError:
        pass
    return clock.now().strftime("%Y%m%d")


def read(image: str, variant_file: Path | str, report: Report, engine: Engine) -> FactsSection:
    """Facts for ``image``: the report's ``facts`` section when it is for this image, else probed.

    Missing date/rev are filled in; ``image_id`` records which image they describe. A
    section written by another tool may use the short names (tf, py; see FactsSection).
    """
    built = report.build
    image_id = built.image_id if built else image
    cached = report.facts
    if cached and (cached.image_id or image_id) == image_id and cached.python:
        facts = cached.model_dump(exclude_unset=True)
    else:
        facts = from_image(image, engine)
    facts["date"] = facts.get("date") or image_date(image, engine)
    facts["rev"] = facts.get("rev") or (built.revision if built and built.revision   # what the image was built from
                                        else git.revision(Path(variant_file).resolve().parent))
    facts["image_id"] = image_id
    return FactsSection.model_validate({k: facts.get(k) for k in (*KEYS, "image_id", "error") if k in facts})
