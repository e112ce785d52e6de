"""The tags stage: compute a variant's tags from its image's facts, write them, read them, apply them.

Tags go compute -> file -> apply, as in jupyter/docker-stacks: :func:`compute` (``tfimg tags``,
and the tag stage of ``tfimg build``) fills the variant's templates from the facts read from the
image (:mod:`builder.check.imagefacts`) and :func:`write` puts them in ``build/<variant>/tags.txt``;
applying them locally (:func:`apply`) and publishing read that file (:func:`read`) and never
compute them again, so what is pushed is what the file says.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import PublishRefused
from builder.infra import datafile, outdir
from builder.infra.engine import Engine
from builder.infra.labels import LOCAL_REPO
from builder.infra.report_models import FactsSection, LocalTags, TagsSection
from builder.publish import tagging
from builder.spec.loader import LoadedVariant

TAGS_FILE = "tags.txt"


def compute(loaded: LoadedVariant, facts: FactsSection) -> tagging.TagSet:
    """The variant's tags for an image with these facts (pure). Raises TaggingError."""
    values = tagging.fields(loaded.name, facts.model_dump(exclude_unset=True), loaded.spec.base.profile)
    return tagging.compute(loaded.spec.tags, values)


def write(out_dir: Path, ts: tagging.TagSet) -> Path:
    """``tags.txt``: one tag a line, immutable first."""
    outdir.claim(out_dir)
    path = out_dir / TAGS_FILE
    path.write_text(tagging.tags_text(ts))
    return path


def read(out_dir: Path) -> TagsSection:
    """The tags in ``tags.txt``, immutable first: what is applied and published, never recomputed.

    Raises PublishRefused when there is no such file or it holds no tag; TaggingError for a
    line that is not a valid tag (the file was edited by hand).
    """
    path = out_dir / TAGS_FILE
    if not path.is_file():
        raise PublishRefused(f"no {path}: the tags of this build have not been computed",
                             hint="Run `tfimg tags SPEC` (or `tfimg build SPEC`) first.")
    text = datafile.read_text(path, limit=datafile.MAX_INPUT_BYTES, what="the tags file")
    tags = [tagging.validate(line.strip()) for line in text.splitlines() if line.strip()]
    if not tags:
        raise PublishRefused(f"{path} holds no tag", hint="Run `tfimg tags SPEC` to write it again.")
    return TagsSection(immutable=tags[0], moving=[t for t in dict.fromkeys(tags[1:]) if t != tags[0]])


def apply(image: str, name: str, out_dir: Path, engine: Engine) -> LocalTags:
    """Tag ``image`` locally as ``tfimg/<name>:<tag>`` for each tag of ``tags.txt`` (never recomputed)."""
    repo = LOCAL_REPO.format(name=name)
    refs = []
    for tag in read(out_dir).all:
        engine.tag(image, repo, tag)
        refs.append(f"{repo}:{tag}")
    return LocalTags(refs)
