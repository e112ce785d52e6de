"""The CI examples in docs/ci/ stay runnable: valid YAML, every `tfimg` command and option they use
exists, and they use the registry cache, the already-published skip and the scan registry; a scheduled
`tfimg watch` opens or updates an issue with its Markdown and never blocks a release."""

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


def _watch_calls(text: str) -> list[list[str]]:
    return [w for w in _invocations(text) if w[0] == "watch" and len(w) > 1]   # not prose ("tfimg watch:")


def test_github_example_watches_on_a_schedule_and_never_blocks_a_release() -> None:
    text = (ROOT / "docs/ci/github-actions.yml").read_text()
    doc = yaml.safe_load(text)
    triggers = doc[True]                                   # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    jobs = doc["jobs"]
    watch = jobs["watch"]
    assert "schedule" in watch["if"] and "needs" not in watch
    assert "!= 'schedule'" in jobs["matrix"]["if"]          # releases never run on the schedule...
    assert all("watch" not in (job.get("needs") or []) for job in jobs.values())   # ...nor wait for it
    run = "\n".join(step.get("run", "") for step in watch["steps"])
    (call,) = _watch_calls(run)
    assert "--markdown" in call and '[ "$rc" -le 1 ]' in run           # exit 1 is an alert, exit 2 fails
    assert "gh issue edit" in run and "gh issue create" in run and "--body-file watch.md" in run


def test_gitlab_example_watches_in_scheduled_pipelines_and_never_blocks_a_release() -> None:
    text = (ROOT / "docs/ci/gitlab-ci.yml").read_text()
    doc = yaml.safe_load(text)
    watch = doc["watch"]
    assert watch["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert watch["allow_failure"] == {"exit_codes": [1]}              # an alert never fails the pipeline
    for job in ("matrix", "images"):                                  # releases never run on the schedule
        assert doc[job]["rules"] == [{"if": '$CI_PIPELINE_SOURCE != "schedule"'}]
    script = "\n".join(watch["script"])
    (call,) = _watch_calls(script)
    assert "--markdown" in call and 'exit "$rc"' in script
    assert "/issues" in script and '"description": body' in script and "labels=tfimg-watch" in script

