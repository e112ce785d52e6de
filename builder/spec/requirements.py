"""Private requirements files: the one parser, used by spec validation and by the checks.

A line is a requirement (``transformers==4.21.3``), a comment, or blank. pip
options (``-r``, ``--index-url``) are not allowed: indexes and credentials come
from the spec and its secrets. Nothing here echoes a line, which could hold a credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement


@dataclass(frozen=True)
class Line:
    file: str                      # the file's name
    number: int                    # 1-based
    requirement: Requirement | None
    problem: str | None            # why the line is refused, or None


def parse(path: Path) -> list[Line]:
    """Every non-blank, non-comment line of a requirements file."""
    out = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            out.append(Line(path.name, n, None, f"pip options ('{line.split()[0]}') are not allowed in requirements "
                                                "files; set python.index_url / secrets in the spec and inline other files"))
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            out.append(Line(path.name, n, None, "not a valid requirement (expected e.g. 'transformers==4.21.3')"))
            continue
        problem = ("a direct URL with embedded credentials; use a netrc secret"
                   if req.url and urlsplit(req.url).password else None)
        out.append(Line(path.name, n, req, problem))
    return out


def problems(path: Path) -> list[str]:
    """``file:line: why`` for each refused line."""
    return [f"{ln.file}:{ln.number}: {ln.problem}" for ln in parse(path) if ln.problem]


def pins(path: Path) -> list[dict[str, str | int]]:
    """Each plain requirement (no marker, no URL): name, specifier, file and line."""
    return [{"name": ln.requirement.name, "specifier": str(ln.requirement.specifier), "file": ln.file,
             "line": ln.number}
            for ln in parse(path)
            if ln.requirement is not None and ln.requirement.marker is None and not ln.requirement.url]
