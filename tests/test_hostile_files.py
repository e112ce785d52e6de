"""Paths that are not regular files of data are refused before they are opened: exit 2, never a hang.

A symlink loop, a FIFO, a character device (/dev/zero), a kernel file (/proc/self/environ, which
``stat`` calls a regular file) or a folder, given where tfimg reads a file (a variant, its parent,
a requirements or key file, a policy, a Trivy report, report.json, a base-layers file, a secret), is
refused with exit 2 naming the path. Commands run in a subprocess with a timeout, so a reader that
opened a FIFO would fail the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_REPORT = ROOT / "tests/data/trivy/alpine-39.json.golden"
PUB = ROOT / "variants/keys/team.pub"


def tfimg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, cwd=cwd,
                              timeout=30, env={k: v for k, v in os.environ.items() if k != "TFIMG_ALLOW_DIRS"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"tfimg {' '.join(args)} did not return within 30 s: it blocked on a file")


def _loop(path: Path) -> str:
    other = path.with_name(path.name + ".other")
    path.symlink_to(other.name)
    other.symlink_to(path.name)
    return "symlink loop"


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "FIFO"


def _zero(path: Path) -> str:
    path.symlink_to("/dev/zero")
    return "/dev/zero"


def _environ(path: Path) -> str:
    path.symlink_to("/proc/self/environ")
    return "/proc/"


def _folder(path: Path) -> str:
    path.mkdir()
    return "folder"


KINDS: dict[str, Callable[[Path], str]] = {"loop": _loop, "fifo": _fifo, "dev_zero": _zero,
                                            "proc_environ": _environ, "folder": _folder}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A variant repository (git work tree) with a policy, a key and requirements."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    (tmp_path / "key.pub").write_text(PUB.read_text())
    (tmp_path / "policy.yaml").write_text("description: ok\n")
    return tmp_path


# Where a hostile path is planted (a file name in the repository) and the command that reads it.
PLACES: dict[str, tuple[str, Callable[[Path], list[str]], str]] = {
    # place: (hostile file's name, argv for a repository, what the message names)
    "variant": ("v.yaml", lambda r: ["validate", "v.yaml"], "v.yaml"),
    "parent": ("parent.yaml", lambda r: ["validate", "child.yaml"], "extends"),
    "requirements": ("bad.txt", lambda r: ["render", "req.yaml", "--out", "ctx"], "python.requirements[0]"),
    "authorized_key": ("bad.pub", lambda r: ["lint", "keys.yaml"], "ssh.authorized_keys[0]"),
    "variant_policy": ("bad-policy.yaml", lambda r: ["validate", "pol.yaml"], "policy"),
    "secret": ("netrc", lambda r: ["validate", "secret.yaml"], "secrets.netrc.file"),
    "gate_policy": ("bad-policy.yaml", lambda r: ["gate", "--report", str(GOOD_REPORT), "--policy",
                                                  "bad-policy.yaml", "--out", "out"], "bad-policy.yaml"),
    "trivy_report": ("trivy.json", lambda r: ["gate", "--report", "trivy.json", "--out", "out"], "trivy.json"),
    "report_json": ("out/report.json", lambda r: ["gate", "--report", str(GOOD_REPORT), "--out", "out"],
                    "report.json"),
    "base_layers": ("layers.json", lambda r: ["gate", "--report", str(GOOD_REPORT), "--base-layers", "layers.json",
                                              "--out", "out"], "layers.json"),
}
VARIANTS = {
    "child.yaml": "extends: parent.yaml\n",
    "req.yaml": "python: {requirements: [bad.txt]}\n",
    "keys.yaml": "ssh: {enabled: true, authorized_keys: [bad.pub]}\n",
    "pol.yaml": "policy: bad-policy.yaml\n",
    "secret.yaml": "secrets: {netrc: {file: netrc}}\n",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_path_that_is_no_regular_file_is_exit_2_and_never_blocks(repo: Path, place: str, kind: str) -> None:
    name, argv, named = PLACES[place]
    for f, text in VARIANTS.items():
        (repo / f).write_text(text)
    target = repo / name
    target.parent.mkdir(exist_ok=True)
    what = KINDS[kind](target)
    res = tfimg(*argv(repo), cwd=repo)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert named in res.stderr and "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    if place != "variant_policy" or kind not in ("dev_zero", "proc_environ"):
        # (a link out of the repository is refused as such first: tests/test_variant_paths.py)
        assert what in res.stderr or (what == "FIFO" and "FIFO" in res.stderr) or \
            ("outside the variant's repository" in res.stderr), res.stderr
    assert not (repo / "ctx").exists() and not (repo / "out" / "gate.json").exists()


def test_symlink_loop_given_as_the_variant_names_it(repo: Path) -> None:
    _loop(repo / "v.yaml")
    res = tfimg("render", "v.yaml", cwd=repo)
    assert res.returncode == 2 and "v.yaml" in res.stderr and "symlink loop" in res.stderr, res.stderr


def test_a_link_to_a_regular_file_in_the_repository_is_read(repo: Path) -> None:
    (repo / "req.txt").symlink_to("r.txt")
    (repo / "v.yaml").write_text("python: {requirements: [req.txt]}\n")
    res = tfimg("validate", "v.yaml", cwd=repo)
    assert res.returncode == 0, res.stderr
