"""Hostile variant and policy files are refused quickly, with exit 2 and a message that names the limit.

A "billion laughs" file (aliases of aliases) must not hang tfimg, a deeply
nested one must not end in an internal error (exit 3), and an oversized one is
not even parsed. Every limit is checked through the real command line.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from builder.cli import main

ROOT = Path(__file__).resolve().parent.parent
TRIVY_REPORT = ROOT / "tests/data/trivy/alpine-39.json.golden"


def billion_laughs(levels: int = 9) -> str:
    lines = ['lol0: &lol0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\ndescription: laughs\n"


HOSTILE = {
    # what the file holds, a fragment the message must contain
    "billion_laughs": (billion_laughs(), "expands to more than"),
    "deep_flow": ("apt:\n  packages: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    "deep_block": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1\n", "nested more than"),
    "many_aliases": ("a: &a x\nl: [" + ", ".join(["*a"] * 5000) + "]\n", "aliases"),
    "recursive_alias": ("apt: &a {packages: [*a]}\n", "recursive alias"),
    "oversized": ("description: \"" + "x" * (1024 * 1024 + 10) + "\"\n", "larger than"),
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    start = time.monotonic()
    rc = main(argv)
    elapsed = time.monotonic() - start
    return rc, capsys.readouterr().err, elapsed


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", ["validate", "lint"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_variant_is_refused_fast(tmp_path: Path, capsys, monkeypatch, case: str, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    text, fragment = HOSTILE[case]
    f = tmp_path / "hostile.yaml"
    f.write_text(text)
    rc, err, elapsed = _run([command, str(f)], capsys)
    assert rc == 2, err
    assert str(f) in err and fragment in err, err
    assert "Traceback" not in err
    assert "limit" in err.lower(), err                       # says it is a limit of tfimg's
    assert elapsed < 1.0, f"{case}: refused after {elapsed:.2f} s"


@pytest.mark.timeout(30)
def test_hostile_parent_is_refused_through_extends(tmp_path: Path, capsys) -> None:
    (tmp_path / "parent.yaml").write_text(billion_laughs())
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\n")
    rc, err, elapsed = _run(["validate", str(child)], capsys)
    assert rc == 2 and "parent.yaml" in err and "expands to more than" in err, err
    assert elapsed < 1.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["billion_laughs", "deep_flow", "recursive_alias", "oversized"])
def test_hostile_policy_is_refused_fast(tmp_path: Path, capsys, case: str) -> None:
    text, fragment = HOSTILE[case]
    pol = tmp_path / "policy.yaml"
    pol.write_text(text)
    rc, err, elapsed = _run(["gate", "--report", str(TRIVY_REPORT), "--policy", str(pol),
                             "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and str(pol) in err and fragment in err, err
    assert "Traceback" not in err
    assert elapsed < 1.0, f"{case}: refused after {elapsed:.2f} s"


def test_anchors_and_merge_keys_within_the_limits_still_work(tmp_path: Path, capsys) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("apt: &apt {packages: [git, htop]}\n"
                 "checks:\n  commands: &cmds ['true', 'id']\n"
                 "env:\n  <<: {A: '1'}\n  B: '2'\n")
    rc, err, _ = _run(["validate", str(f)], capsys)
    assert rc == 0, err


def test_not_utf8_is_a_clear_error(tmp_path: Path, capsys) -> None:
    f = tmp_path / "v.yaml"
    f.write_bytes(b"description: \xff\xfe\n")
    rc, err, _ = _run(["validate", str(f)], capsys)
    assert rc == 2 and "UTF-8" in err and "Traceback" not in err, err


def test_every_yaml_read_in_the_package_goes_through_yamlfile() -> None:
    uses_yaml = re.compile(r"^\s*(import yaml\b|from yaml\b)", re.M)
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "builder").rglob("*.py")
               if p.name != "yamlfile.py" and uses_yaml.search(p.read_text())]
    assert readers == [], f"these modules read YAML without builder.infra.yamlfile's limits: {readers}"
