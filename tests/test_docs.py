"""The docs stay findable and true to the code: the generated command line reference is current, the README
stays a landing page, every relative link (and #anchor) leads somewhere, and no file names a path of the
machine it was written on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
                   *(ROOT / "docs").rglob("*.md"), *(ROOT / "tests/data").rglob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """The Markdown without its fenced code blocks (a `# comment` in YAML is not a heading)."""
    return FENCE.sub("", path.read_text())


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    res = subprocess.run([sys.executable, str(ROOT / "scripts/cli-reference.py"), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    shipped = (ROOT / "docs/reference/cli.md").read_text()
    assert out.read_text() == shipped, "docs/reference/cli.md is stale: run `make docs`"
    for command in ("build", "scan", "gate", "publish", "verify", "promote", "registry", "schema"):
        assert f"## `tfimg {command}`" in shipped


def test_readme_is_a_landing_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "README.md is a landing page of at most 300 lines: move detail to docs/"
    assert "make demo" in readme and "make test" in readme
    linked = {m for m in LINK.findall(readme) if m.startswith("docs/")}
    guides = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if p.name != "README.md"}
    assert guides <= {m.split("#")[0] for m in linked}, "every guide in docs/ is linked from the README"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"^[a-z]+:", target):   # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading '{anchor}' in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


# Paths of a development or CI machine (a user's home, a work tree, a job folder); assembled so that this
# file does not match itself. Paths inside an image (/home/ml, /root/.netrc in a test report) are not these.
MACHINE_PATH = re.compile("|".join([r"/wo" + r"rk/", r"/Us" + r"ers/", r"/tmp/bash" + r"_jobs", r"/home/(?!ml\b|<|\{)\w+/"]))


def _ours(part: str) -> bool:
    """A folder of the project, not a tool's (.venv, .git, caches, build outputs)."""
    return part == ".ci" or not (part.startswith(".") or part in {"build", "dist", "__pycache__"}
                                 or part.endswith(".egg-info"))


def _text_files() -> list[Path]:
    return [path for path in ROOT.rglob("*")
            if path.is_file() and path.name != ".git" and all(map(_ours, path.relative_to(ROOT).parts[:-1]))
            and path.stat().st_size < 2**20]


def test_no_file_names_a_path_of_a_machine() -> None:
    found = []
    for path in _text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "paths of a machine:\n" + "\n".join(found)
