"""The CI examples in docs/ci/ stay runnable: valid YAML, every `tfimg` command and option they use
exists, and they use the registry cache, the already-published skip and the scan registry."""

from __future__ import annotations

import re
import shlex

import pytest
import typer.main
import yaml

from builder.cli import app
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "docs" / "ci").glob("*.yml"))


def _invocations(text: str) -> list[list[str]]:
    """Each `tfimg ...` command line in the file (continuation lines joined), as words."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for m in re.finditer(r"(?<![\w`-])tfimg ((?:[a-z][\w-]*)(?: [^\n|;&>`)]*)?)", joined):
        line = m.group(1).replace('\\"', '"').split("#")[0]
        try:
            found.append(shlex.split(line))
        except ValueError:   # a line cut inside a quoted YAML string: its words up to the cut
            found.append(line.split())
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_ci_example_uses_only_real_commands_and_options(path) -> None:
    text = path.read_text()
    yaml.safe_load(text)   # valid YAML
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")   # Typer's group (Typer carries its own click)
    calls = _invocations(text)
    assert len(calls) >= 5, calls
    for words in calls:
        cmd = root.commands.get(words[0])
        if cmd is None:
            continue   # prose such as "tfimg lists the variants"
        rest = words[1:]
        if hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{path.name}: `tfimg {' '.join(words)}`: no option {word}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_ci_example_shares_work_through_the_registry(path) -> None:
    doc = yaml.safe_load(path.read_text())
    env = doc.get("env") or doc.get("variables")
    assert env["TFIMG_CACHE_FROM"].endswith("/{name}:buildcache")      # the registry build cache
    assert "TFIMG_SCAN_REGISTRY" in path.read_text()                    # Trivy reads images by digest
    builds = [w for w in _invocations(path.read_text()) if w[0] == "build"]
    assert builds and all("--registry" in w for w in builds)           # the already-published skip
    assert "published" in path.read_text()
