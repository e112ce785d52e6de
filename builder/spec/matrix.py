"""The CI matrix: every variant of a folder, parents before children.

A variant's parents are the variant files of the same folder in its
``extends`` chain (:attr:`builder.spec.loader.LoadedVariant.chain`). Files whose name
starts with ``_`` or ``.`` are partials (merged into others, never built);
variants marked ``abstract: true`` are parents only; ``skip`` globs leave out more.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from builder.errors import SpecError, SpecErrors
from builder.spec import loader as spec
from builder.spec.paths import real


def variant_files(directory: Path, skip: list[str] | None = None) -> list[Path]:
    """The variant files of a folder, minus partials and names matching a ``skip`` glob."""
    if not directory.is_dir():
        raise SpecErrors([SpecError(directory, "", "not a folder of variant files")])
    return sorted(p for p in [*directory.glob("*.yaml"), *directory.glob("*.yml")]
                  if not p.name.startswith(("_", "."))
                  and not any(fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(p.stem, pat) for pat in skip or []))


def order(nodes: dict[Path, list[Path]]) -> list[tuple[Path, int]]:
    """Topological order (pure): (file, level) with parents first; ties by file name."""
    level: dict[Path, int] = {}

    def depth(p: Path, stack: tuple[Path, ...] = ()) -> int:
        if p not in level:
            if p in stack:
                raise SpecErrors([SpecError(p, "extends", "extends cycle")])
            level[p] = 1 + max((depth(q, (*stack, p)) for q in nodes[p]), default=-1)
        return level[p]

    for p in nodes:
        depth(p)
    return sorted(level.items(), key=lambda kv: (kv[1], kv[0].name))


def matrix(directory: Path | str, skip: list[str] | None = None,
           allow: list[Path] | None = None) -> dict[str, Any]:
    """``{"include": [{"variant", "file", "parents", "level"}, ...]}`` in dependency order.

    A skipped file still counts as a parent for merging, but is not listed.
    """
    directory = Path(directory)
    loaded = {real(p): spec.load(p, allow or ()) for p in variant_files(directory, skip)}
    nodes = {p: [real(c) for c in lv.chain[:-1] if real(c) in loaded] for p, lv in loaded.items()}
    include: list[dict[str, Any]] = []
    for path, lvl in order(nodes):
        lv = loaded[path]
        if lv.spec.abstract:   # a parent only: merged into others, never built
            continue
        include.append({"variant": lv.name, "file": str(directory / path.name),
                        "parents": [loaded[q].name for q in nodes[path]], "level": lvl})
    names: list[str] = [i["variant"] for i in include]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecErrors([SpecError(directory, "name", f"variant names are not unique: {', '.join(dupes)}")])
    return {"include": include}
