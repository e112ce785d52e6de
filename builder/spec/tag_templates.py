"""Tag templates of a variant's ``tags`` section: the fields they may name and the tag grammar."""

from __future__ import annotations

import re
import string

from builder.infra import yamlfile
from builder.spec import text

TAG_FIELDS = {
    "variant": "the variant's name",
    "tf": "TensorFlow version as detected (2.9.1)",
    "tf_minor": "TensorFlow major.minor (2.9)",
    "py": "Python major.minor (3.8)",
    "cuda": "CUDA major.minor, or 'none' (11.7)",
    "cudnn": "cuDNN version, or 'none' (8.4.1)",
    "accel": "'cuda11.7' on a CUDA base, else 'cpu'",
    "date": "build date, UTC (20261126)",
    "rev": "short git revision of the variant repository, or 'norev'",
    "profile": "the base profile's name",
}
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")   # always re.fullmatch


def check_template(tpl: str) -> str:
    """Return ``tpl`` if it is a tag template whose every rendering is a valid tag, else raise ValueError."""
    sample: dict[str, str] = {}
    try:
        for _, field, spec, conv in string.Formatter().parse(tpl):
            if field is None:
                continue
            if field not in TAG_FIELDS or spec or conv:
                raise ValueError(f"unknown tag field '{{{field}}}' in {text.shown(tpl, 80)}"
                                 f"{yamlfile.did_you_mean(field, list(TAG_FIELDS))}; fields: "
                                 + ", ".join("{" + f + "}" for f in TAG_FIELDS))
            sample[field] = "x" * 12
    except ValueError as exc:
        if "unknown tag field" in str(exc):
            raise
        raise ValueError(f"{text.shown(tpl, 80)} is not a valid tag template ({exc})") from None
    rendered = tpl.format(**sample)
    if not TAG_RE.fullmatch(rendered):
        raise ValueError(f"{text.shown(tpl, 80)} cannot give a valid tag: tags are letters, digits, '_', '.' "
                         "and '-', start with a letter, digit or '_', and have at most 128 characters")
    return tpl
