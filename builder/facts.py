"""Facts about a built image, for tags and evidence.

Versions are read from the image itself by running a short Python snippet in a
throwaway container (:func:`builder.engine.running`): TensorFlow, Python, and
CUDA/cuDNN from ``tf.sysconfig.get_build_info()`` when it is a CUDA build
(else None). The date is the image's creation date (UTC), so the tag does not
change between ``tfimg tags`` and ``tfimg publish``; the revision is the short
git revision the image was built from (``build.revision``), else of the
variant file's repository now ('norev' outside git). A
``facts`` section already in ``report.json`` for the same image is reused.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from . import engine, runner
from .errors import EnvError, TfimgError

MARK = "TFIMG_FACTS="
SNIPPET = f"""
import json, platform
out = {{"python": platform.python_version(), "tensorflow": None, "cuda": None, "cudnn": None}}
try:
    import tensorflow as tf
    out["tensorflow"] = tf.__version__
    info = dict(tf.sysconfig.get_build_info())
    if info.get("is_cuda_build"):
        out["cuda"] = info.get("cuda_version")
        out["cudnn"] = info.get("cudnn_version")
except Exception as exc:
    out["error"] = type(exc).__name__ + ": " + str(exc)[:200]
print("{MARK}" + json.dumps(out))
"""
ALIASES = {"tf": "tensorflow", "tf_version": "tensorflow", "py": "python",
           "python_version": "python", "cuda_version": "cuda", "cudnn_version": "cudnn"}
KEYS = ("tensorflow", "python", "cuda", "cudnn", "date", "rev")


def normalize(section: dict[str, Any]) -> dict[str, Any]:
    """Accept a facts section written by another stage (aliases such as tf/py)."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        out[ALIASES.get(key, key)] = value
    return out


def parse_output(text: str) -> dict[str, Any]:
    """The JSON line the snippet prints, among whatever else the image prints."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise TfimgError("could not read versions from the image: the probe printed no result",
                     hint="Last output:\n" + "\n".join(text.strip().splitlines()[-5:]))


def from_image(image: str, *, timeout: float = 120) -> dict[str, Any]:
    """Run the probe in a throwaway container; returns tensorflow/python/cuda/cudnn."""
    with engine.running(image, command=["sleep", str(int(timeout) + 30)],
                        environment={"TF_CPP_MIN_LOG_LEVEL": "3"}) as (container, _):
        for python in ("python3", "python"):
            code, output = engine.exec_run(container, [python, "-c", SNIPPET], timeout=timeout)
            if code not in (126, 127):
                break
        else:
            raise EnvError(f"image {image} has no python3 or python on PATH; cannot read its versions")
    return parse_output(output)


def image_date(image: str) -> str:
    """Creation date (UTC, YYYYMMDD) of the image; today when unknown or implausible."""
    attrs = engine.image_attrs(image) or {}
    created = str(attrs.get("Created") or "")
    try:
        when = dt.datetime.fromisoformat(created[:19]).replace(tzinfo=dt.timezone.utc)
        if when.year >= 2000:
            return when.strftime("%Y%m%d")
    except ValueError:
        pass
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")


def git_rev(directory: Path | str) -> str:
    """Short git revision of the repository holding ``directory``, or 'norev'."""
    try:
        res = runner.run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"], check=False, timeout=30)
    except EnvError:
        return "norev"
    rev = res.stdout.strip()
    return rev if res.returncode == 0 and rev else "norev"


def read(image: str, variant_file: Path | str, report: dict[str, Any]) -> dict[str, Any]:
    """Facts for ``image``: the report's ``facts`` section when it is for this image, else probed.

    Missing date/rev are filled in; ``image_id`` records which image they describe.
    """
    cached = normalize(report.get("facts") or {})
    image_id = (report.get("build") or {}).get("image_id") or image
    if cached and cached.get("image_id", image_id) == image_id and cached.get("python"):
        facts = dict(cached)
    else:
        facts = from_image(image)
    facts.setdefault("date", None)
    facts.setdefault("rev", None)
    facts["date"] = facts["date"] or image_date(image)
    built_rev = (report.get("build") or {}).get("revision")      # what the image was built from
    facts["rev"] = facts["rev"] or (built_rev if built_rev and image_id == (report.get("build") or {}).get("image_id")
                                    else git_rev(Path(variant_file).resolve().parent))
    facts["image_id"] = image_id
    return {k: facts.get(k) for k in (*KEYS, "image_id", "error") if k in facts}
