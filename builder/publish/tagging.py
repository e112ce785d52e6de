"""Tags computed from facts read from the built image (pure: no Docker, no files).

As in jupyter/docker-stacks, each tag field is a small *tagger*: a one-line
function over the image facts (:data:`TAGGERS`). A variant lists its tags as
templates over those fields in its ``tags`` section (one ``immutable``
template and a ``moving`` list, see :data:`builder.spec.loader.TAG_FIELDS`); child
variants inherit their parent's templates through the spec merge.

>>> facts = {"tensorflow": "2.9.1+nv22.7", "python": "3.8.10", "cuda": "11.7",
...          "cudnn": "8.4.1", "date": "20261126", "rev": "ab12cd3"}
>>> ts = compute(Tags(), fields("bert", facts, "ngc-22.07"))
>>> ts.immutable, ts.moving
('bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3', ('bert-tf2.9', 'bert-latest'))
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from builder.errors import TaggingError
from builder.spec.loader import Tags
from builder.spec.tag_templates import TAG_FIELDS, TAG_RE

Facts = Mapping[str, Any]


@dataclass(frozen=True)
class TagSet:
    immutable: str
    moving: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """Immutable first, then the moving tags (the order they are pushed in)."""
        return (self.immutable, *[t for t in self.moving if t != self.immutable])

    def as_dict(self) -> dict[str, Any]:
        return {"immutable": self.immutable, "moving": list(self.moving)}


def _public(version: Any) -> str | None:
    """'2.9.1+nv22.7' -> '2.9.1' (the local part is not part of the release)."""
    if not version:
        return None
    try:
        return Version(str(version)).public
    except InvalidVersion:
        return _safe(str(version).split("+")[0])


def _cut(version: Any, parts: int) -> str | None:
    public = _public(version)
    return ".".join(public.split(".")[:parts]) if public else None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _accel(f: Facts) -> str:
    cuda = _cut(f.get("cuda"), 2)
    return f"cuda{cuda}" if cuda else "cpu"


# One tagger per field of TAG_FIELDS: facts (+ variant, profile) -> value or None when unknown.
TAGGERS: dict[str, Callable[[Facts], str | None]] = {
    "variant": lambda f: f.get("variant"),
    "tf": lambda f: _public(f.get("tensorflow")),
    "tf_minor": lambda f: _cut(f.get("tensorflow"), 2),
    "py": lambda f: _cut(f.get("python"), 2),
    "cuda": lambda f: _cut(f.get("cuda"), 2) or "none",
    "cudnn": lambda f: _public(f.get("cudnn")) or "none",
    "accel": _accel,
    "date": lambda f: f.get("date"),
    "rev": lambda f: _safe(str(f.get("rev") or "norev")),
    "profile": lambda f: f.get("profile"),
}
assert set(TAGGERS) == set(TAG_FIELDS), "every tag field needs a tagger"


def fields(variant: str, facts: Facts, profile: str) -> dict[str, str | None]:
    """Run every tagger over the facts; unknown values are None."""
    full = {**facts, "variant": variant, "profile": profile}
    return {name: tagger(full) for name, tagger in TAGGERS.items()}


def validate(tag: str) -> str:
    """Return ``tag`` if it matches the registry tag grammar, else raise TaggingError."""
    if not TAG_RE.fullmatch(tag):
        raise TaggingError(f"'{tag}' is not a valid tag: tags match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
                           hint="Change the template in the variant's tags section.")
    return tag


def render(template: str, values: Mapping[str, str | None]) -> str:
    """Fill one template; a field the image could not provide is an error naming it."""
    used = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    missing = [f for f in used if values.get(f) is None]
    if missing:
        raise TaggingError(
            f"tag template '{template}' needs {', '.join('{' + m + '}' for m in missing)}, "
            "which could not be read from the image",
            hint="Check that TensorFlow and Python import in the image, or drop the field from tags:.")
    return validate(template.format(**{f: values[f] for f in used}))


def compute(tags: Tags, values: Mapping[str, str | None]) -> TagSet:
    """The immutable tag and the moving tags of a variant (duplicates dropped, order kept)."""
    immutable = render(tags.immutable, values)
    moving: list[str] = []
    for tpl in tags.moving:
        tag = render(tpl, values)
        if tag == immutable:
            raise TaggingError(f"moving tag '{tpl}' renders to the immutable tag '{immutable}'",
                               hint="A moving tag must differ from the immutable one (e.g. drop {date}/{rev}).")
        if tag not in moving:
            moving.append(tag)
    return TagSet(immutable, tuple(moving))


def tags_text(ts: TagSet) -> str:
    """The content of ``tags.txt``: one tag a line, immutable first."""
    return "".join(t + "\n" for t in ts.all)
