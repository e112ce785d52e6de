"""Output folders are never someone else's (builder/infra/outdir.py): tfimg writes into, replaces
and deletes only folders it created (the marker), refuses `.`, `/`, home, a repository root and a
symbolic link, and never follows a link out of the folder it deletes.

The property tests build random folder trees (files, folders, markers in the right and the wrong
places, `.git`, links out of the tree and within it), point claim/replace/remove at a random path
(also `.`, `..`, the home folder, through a link) and compare every entry of the sandbox before
and after: nothing outside the target's real folder ever changes, and nothing inside it unless the
folder was tfimg's (marked), empty or new.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from builder.infra import outdir
from builder.infra.outdir import MARKER, OutDirRefused

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["a", "b", "c", MARKER, ".git"]
KINDS = ["file", "dir", "marker", "link_out_file", "link_out_dir", "link_in", "link_up"]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``, links not followed: (kind, content or link target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", Path(path).read_bytes())
    return out


def build_tree(tree: Path, outside: Path, entries: list[tuple[list[str], str]]) -> None:
    tree.mkdir()
    for parts, kind in entries:
        path = tree.joinpath(*parts)
        try:
            if kind in ("dir", "marker"):
                path.mkdir(parents=True, exist_ok=True)
                if kind == "marker":
                    (path / MARKER).write_text("tfimg\n")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(path):
                continue
            if kind == "file":
                path.write_text("user data\n")
            else:
                target = {"link_out_file": outside / "secret.txt", "link_out_dir": outside / "sub",
                          "link_in": tree, "link_up": outside}[kind]
                path.symlink_to(target, target_is_directory=target.is_dir())
        except OSError:   # a component is a file or a link: that entry cannot exist
            continue


@contextlib.contextmanager
def placed(cwd: Path, home: Path) -> Iterator[None]:
    old_cwd, old_home = os.getcwd(), os.environ.get("HOME")
    os.chdir(cwd)
    os.environ["HOME"] = str(home)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home


def _was_tfimgs(real: Path, before: dict[str, tuple], sandbox: Path) -> bool:
    """The target's real folder was new, empty, or held tfimg's marker (a regular file)."""
    rel = os.path.relpath(real, sandbox)
    if rel not in before:
        return True
    if before[rel] != ("dir",):
        return False
    inside = [k for k in before if k.startswith(rel + os.sep)]
    return not inside or before.get(os.path.join(rel, MARKER), ("?",))[0] == "file"


def _fill(folder: Path) -> None:
    (folder / "new.txt").write_text("rendered\n")


def _fail(folder: Path) -> None:
    (folder / "half.txt").write_text("half\n")
    raise RuntimeError("render failed half way")


OPS = {"claim": lambda p: outdir.claim(p), "replace": lambda p: outdir.replace(p, _fill),
       "replace_fails": lambda p: outdir.replace(p, _fail), "remove": lambda p: outdir.remove(p)}

entries_st = st.lists(st.tuples(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
                                st.sampled_from(KINDS)), max_size=12)
in_tree = st.lists(st.sampled_from([*NAMES, "new", "x"]), min_size=0, max_size=3).map(lambda parts: ("tree", parts))
target_st = st.one_of(in_tree, in_tree, in_tree, st.sampled_from([("cwd", ["."]), ("cwd", [".."]), ("home", [])]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=entries_st, target=target_st, op=st.sampled_from(sorted(OPS)),
       cwd_parts=st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2),
       home_parts=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2), mark=st.booleans())
def test_nothing_outside_the_target_changes_and_inside_only_when_tfimgs(
        entries: list[tuple[list[str], str]], target: tuple[str, list[str]], op: str,
        cwd_parts: list[str], home_parts: list[str], mark: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp).resolve()
        outside = sandbox / "outside"
        (outside / "sub").mkdir(parents=True)
        (outside / "secret.txt").write_text("not tfimg's\n")
        (outside / "sub" / "keep.txt").write_text("not tfimg's\n")
        tree = sandbox / "tree"
        build_tree(tree, outside, entries)
        cwd, home = tree.joinpath(*cwd_parts), tree.joinpath(*home_parts)
        if not cwd.is_dir() or cwd.is_symlink():
            cwd = tree
        where, parts = target
        path = {"tree": tree, "cwd": cwd, "home": home}[where].joinpath(*parts)
        real = Path(os.path.realpath(path))
        if mark and real.is_dir() and not os.path.lexists(real / MARKER):   # as tfimg would have marked it
            (real / MARKER).write_text("tfimg\n")
        before = snapshot(sandbox)
        with placed(cwd, home):
            outcome = "done"
            try:
                OPS[op](path)
            except OutDirRefused as exc:
                outcome = "refused"
                assert exc.exit_code == 2
            except RuntimeError:   # replace_fails: the fill raised
                outcome = "failed"
        event(f"{op}: {outcome}")
        after = snapshot(sandbox)
        rel = os.path.relpath(real, sandbox)
        new_parents = {k for k in set(after) - set(before) if after[k] == ("dir",) and rel.startswith(k + os.sep)}
        if outcome == "refused":
            assert after == before, "a refused operation changed something"
            return
        if outcome == "failed":   # only the missing parents it made remain
            assert {k: v for k, v in after.items() if k not in new_parents} == before
            return
        assert not rel.startswith(".."), f"{path} resolves outside the sandbox and was accepted"

        def outside_target(d: dict[str, tuple]) -> dict[str, tuple]:
            return {k: v for k, v in d.items()
                    if k != rel and not k.startswith(rel + os.sep) and k not in new_parents}
        assert outside_target(after) == outside_target(before), "something outside the target changed"
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        if not changed:
            return   # removing what does not exist
        if changed - {rel, os.path.join(rel, MARKER)}:
            assert _was_tfimgs(real, before, sandbox), f"{op} changed a folder that was not tfimg's"
        assert not os.path.islink(path) and real != cwd and real not in cwd.parents
        assert real != Path(os.path.realpath(home)) and os.path.join(rel, ".git") not in before


@settings(max_examples=100, deadline=None)
@given(entries=entries_st)
def test_a_folder_with_files_and_no_marker_is_never_touched(entries: list[tuple[list[str], str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp).resolve()
        (sandbox / "outside" / "sub").mkdir(parents=True)
        (sandbox / "outside" / "secret.txt").write_text("x")
        build_tree(sandbox / "tree", sandbox / "outside", entries)
        victim = sandbox / "tree"
        (victim / "mine.txt").write_text("user data\n")
        if outdir.marked(victim):
            (victim / MARKER).unlink()   # what is left named like it (a folder, a link) is no marker
        before = snapshot(sandbox)
        for op in OPS:
            with pytest.raises(OutDirRefused, match="did not create|repository"):
                OPS[op](victim)
        assert snapshot(sandbox) == before


# --------------------------------------------------------------------------- the named refusals

@pytest.mark.parametrize("which", ["cwd", "home", "repo", "link", "file"])
def test_special_folders_are_refused_and_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    which: str) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "x.txt").write_text("x")
    (work / MARKER).write_text("even marked")        # a marker does not make these tfimg's
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / MARKER).write_text("marked")
    (tmp_path / "link").symlink_to(work / "data")
    (tmp_path / "file").write_text("a file")
    path = {"cwd": Path("."), "home": Path.home(), "repo": tmp_path / "repo", "link": tmp_path / "link",
            "file": tmp_path / "file"}[which]
    before = snapshot(tmp_path)
    for op in OPS:
        with pytest.raises(OutDirRefused):
            OPS[op](path)
    assert snapshot(tmp_path) == before


def test_the_root_folder_is_refused() -> None:
    # claim only: whatever the outcome, it could at most write a marker (replace and remove are
    # not pointed at / even in a test)
    with pytest.raises(OutDirRefused, match="root folder"):
        outdir.claim("/")
    assert not Path("/", MARKER).exists()


def test_a_new_folder_is_created_marked_and_can_be_replaced_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    outdir.claim(out)
    assert outdir.marked(out)
    (out / "old.txt").write_text("old")
    (tmp_path / "elsewhere.txt").write_text("keep")
    (out / "link").symlink_to(tmp_path / "elsewhere.txt")
    outdir.replace(out, _fill)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]      # no temporary folder left
    (out / "link").symlink_to(tmp_path)
    outdir.remove(out)
    assert not out.exists() and (tmp_path / "elsewhere.txt").read_text() == "keep"


def _tfimg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_render_out_dot_wipes_nothing(tmp_path: Path) -> None:
    """The issue's example: `tfimg render --out .` used to delete the current folder."""
    spec = tmp_path / "variants" / "v.yaml"
    spec.parent.mkdir()
    spec.write_text("name: v\n")
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    res = _tfimg("render", str(spec), "--out", ".", cwd=tmp_path)
    assert res.returncode == 2 and "current folder" in res.stderr and "Traceback" not in res.stderr
    assert snapshot(tmp_path) == before
    res = _tfimg("render", str(spec), "--out", str(tmp_path / "variants"), cwd=tmp_path)
    assert res.returncode == 2 and "did not create" in res.stderr
    assert snapshot(tmp_path) == before
    res = _tfimg("render", str(spec), "--out", "ctx", cwd=tmp_path)   # new: created and marked
    assert res.returncode == 0, res.stderr
    assert outdir.marked(tmp_path / "ctx") and (tmp_path / "ctx" / "Dockerfile").is_file()
    res = _tfimg("render", str(spec), "--out", "ctx", cwd=tmp_path)   # tfimg's own: replaced
    assert res.returncode == 0, res.stderr
