"""Private requirements files: the one parser, used by spec validation and by the checks.

A line is a requirement (``transformers==4.21.3``), a comment, or blank. pip
options (``-r``, ``--index-url``) are not allowed: indexes and credentials come
from the spec and its secrets. A line, comments included, with a URL that holds
a credential in any part (:mod:`builder.spec.urls`) is refused: the file is
copied into the image. Nothing here echoes a line, which could hold a credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from builder.infra import datafile
from builder.spec import urls

_OPTION = re.compile(r"--[A-Za-z][A-Za-z-]*|-[A-Za-z]")


@dataclass(frozen=True)
class Line:
    file: str                      # the file's name
    number: int                    # 1-based
    requirement: Requirement | None
    problem: str | None            # why the line is refused, or None


def parse(path: Path) -> list[Line]:
    """Every non-blank, non-comment line of a requirements file (and each line with a credential).
    Raises UnreadableInput when the file cannot be read (datafile)."""
    return parse_text(datafile.read_text(path, limit=datafile.MAX_INPUT_BYTES, what="the requirements file"), path.name)


def parse_text(text: str, name: str) -> list[Line]:
    """:func:`parse` of a file's text; ``name`` names the file in problems."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        leaked = urls.text_problems(raw)
        credential = f"holds credentials, or may: {'; '.join(leaked)}" if leaked else None
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            if credential:
                out.append(Line(name, n, None, f"a comment {credential}"))
            continue
        if line.startswith("-"):
            option = m.group() if (m := _OPTION.match(line)) else "-"
            out.append(Line(name, n, None, f"pip options ('{option}') are not allowed in requirements "
                                           "files; set python.index_url / secrets in the spec and inline other files"
                                           + (f"; and the line {credential}" if credential else "")))
            continue
        if credential:
            out.append(Line(name, n, None, f"the line {credential}"))
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            out.append(Line(name, n, None, "not a valid requirement (expected e.g. 'transformers==4.21.3')"))
            continue
        out.append(Line(name, n, req, None))
    return out


def problems(text: str, name: str) -> list[str]:
    """``file:line: why`` for each refused line of a requirements file's text."""
    return [f"{ln.file}:{ln.number}: {ln.problem}" for ln in parse_text(text, name) if ln.problem]


def pins(path: Path) -> list[dict[str, str | int]]:
    """Each plain requirement (no marker, no URL): name, specifier, file and line."""
    return [{"name": ln.requirement.name, "specifier": str(ln.requirement.specifier), "file": ln.file,
             "line": ln.number}
            for ln in parse(path)
            if ln.requirement is not None and ln.requirement.marker is None and not ln.requirement.url]
