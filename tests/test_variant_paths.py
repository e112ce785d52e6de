"""Files a variant names stay in its repository, unless a folder is allowed (builder/spec/paths.py).

The repository is the git work tree of the variant file (else its folder). A path written in a
variant (python.requirements, ssh.authorized_keys, extends, policy) that reaches outside it, by
``~``, an absolute path, ``..`` or a symlink, is exit 2 naming the key and the path; ``--allow-dir``
and ``TFIMG_ALLOW_DIRS`` allow a folder. Build secrets may lie anywhere, as regular files.

The property builds a small world of folders and links and lets the operating system say where a
path leads (each file holds a marker naming where it physically lies); tfimg must agree.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from builder.cli import main
from builder.errors import SpecErrors
from builder.spec import loader as spec

ROOT = Path(__file__).resolve().parent.parent
PUB = (ROOT / "variants/keys/team.pub").read_text()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """world/repo (a git work tree; the variant is repo/variants/v.yaml), world/outside, world/home."""
    w = tmp_path_factory.mktemp("world")
    repo, outside, home = w / "repo", w / "outside", w / "home"
    for d in (repo / "variants", repo / "in" / "sub", outside, home):
        d.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for folder, names, where in ((repo / "in", ["a.txt"], "inside"), (repo / "in" / "sub", ["b.txt"], "inside"),
                                 (repo / "variants", ["v.txt"], "inside"), (outside, ["c.txt", "d.txt"], "outside"),
                                 (home, ["h.txt"], "home")):
        for n in names:
            (folder / n).write_text(f"# where: {where}\nsix==1.16.0\n")
    (repo / "link_out").symlink_to("../outside")
    (repo / "in" / "link_in").symlink_to("sub")
    (repo / "file_out.txt").symlink_to("../outside/c.txt")
    (outside / "link_back").symlink_to("../repo/in")
    (home / "link_repo").symlink_to("../repo")
    return w


SEGMENTS = ["..", ".", "in", "sub", "outside", "repo", "variants", "home", "link_out", "link_in", "link_back",
            "link_repo"]
FILES = ["a.txt", "b.txt", "c.txt", "d.txt", "h.txt", "v.txt", "file_out.txt"]
PATHS = st.tuples(st.sampled_from(["", "~/", "ABS/"]), st.lists(st.sampled_from(SEGMENTS), max_size=5),
                  st.sampled_from(FILES))


def _where(world: Path, written: str) -> str | None:
    """Where the operating system says ``written`` leads from repo/variants: its marker, or None."""
    try:
        with open(os.path.join(world / "repo" / "variants", os.path.expanduser(written))) as fh:
            return fh.readline().removeprefix("# where: ").strip()
    except OSError:
        return None


def _walk(world: Path, data: st.DataObject) -> str:
    """A path to an existing file, as a person might write it: from the variant's folder, from ~ or
    absolute, then up to five steps through '..', '.', folders and links that exist at each step."""
    start = data.draw(st.sampled_from(["", "~/", "ABS/"]), label="start")
    here = Path(os.path.realpath({"": world / "repo" / "variants", "~/": world / "home", "ABS/": world}[start]))
    steps: list[str] = []
    for _ in range(data.draw(st.integers(0, 5), label="steps")):
        folders = sorted(n for n in os.listdir(here) if (here / n).is_dir() and n != ".git")
        up = [".."] if here != Path(os.path.realpath(world)) else []   # the world is all there is
        step = data.draw(st.sampled_from([*up, ".", *folders]), label="step")
        steps.append(step)
        here = Path(os.path.realpath(here / step))   # only to list what the next step may be
    files = sorted(n for n in os.listdir(here) if n.endswith(".txt") and (here / n).is_file())
    assume(files)
    steps.append(data.draw(st.sampled_from(files), label="file"))
    return start.replace("ABS/", f"{world}/") + "/".join(steps)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), allow_outside=st.booleans())
def test_a_named_file_is_accepted_exactly_when_it_lies_in_the_repository_or_an_allowed_folder(
        world: Path, monkeypatch: pytest.MonkeyPatch, data: st.DataObject, allow_outside: bool) -> None:
    monkeypatch.setenv("HOME", str(world / "home"))
    written = _walk(world, data)
    where = _where(world, written)   # the operating system's answer, not tfimg's
    assume(where is not None)
    variant = world / "repo" / "variants" / "v.yaml"
    variant.write_text(f"python: {{requirements: ['{written}']}}\n")
    allowed = where == "inside" or (allow_outside and where == "outside")
    event(f"lies {where}, {'allowed' if allowed else 'refused'}")
    try:
        spec.load(variant, allow=[world / "outside"] if allow_outside else [])
    except SpecErrors as exc:
        message = exc.render()
        assert not allowed, f"{written} lies {where} but was refused: {message}"
        assert "python.requirements[0]" in message and "is outside the variant's repository" in message
        assert f"'{written}'" in message
        return
    assert allowed, f"{written} lies {where} but was accepted"


# --------------------------------------------------------------------------- every key, through the CLI

@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/repo (git) with variants/, and tmp/elsewhere holding a file of each kind; HOME is tmp/home."""
    r = tmp_path / "repo"
    (r / "variants").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    for d in (tmp_path / "elsewhere", tmp_path / "home"):
        d.mkdir()
        (d / "r.txt").write_text("six==1.16.0\n")
        (d / "k.pub").write_text(PUB)
        (d / "parent.yaml").write_text("description: parent\n")
        (d / "policy.yaml").write_text("description: policy\n")
    (r / "variants" / "link.txt").symlink_to(tmp_path / "elsewhere" / "r.txt")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TFIMG_ALLOW_DIRS", raising=False)
    return r


KEYS = {
    # key: (YAML with {p} for the path, file name in elsewhere/ and home/)
    "python.requirements[0]": ("python: {{requirements: ['{p}']}}\n", "r.txt"),
    "ssh.authorized_keys[0]": ("ssh: {{enabled: true, authorized_keys: ['{p}']}}\n", "k.pub"),
    "extends": ("extends: '{p}'\n", "parent.yaml"),
    "policy": ("policy: '{p}'\n", "policy.yaml"),
}
FORMS = {"home": "~/{f}", "absolute": "{elsewhere}/{f}", "dotdot": "../../elsewhere/{f}"}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_key_refuses_a_path_out_of_the_repository_unless_its_folder_is_allowed(
        repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key: str, form: str) -> None:
    text, name = KEYS[key]
    elsewhere = repo.parent / ("home" if form == "home" else "elsewhere")
    written = FORMS[form].format(f=name, elsewhere=repo.parent / "elsewhere")
    v = repo / "variants" / "v.yaml"
    v.write_text(text.format(p=written))
    assert main(["validate", str(v)]) == 2
    err = capsys.readouterr().err
    assert f"v.yaml:1: {key}: " in err and f"'{written}'" in err and "outside the variant's repository" in err, err
    assert "--allow-dir" in err and "Traceback" not in err
    assert main(["validate", str(v), "--allow-dir", str(elsewhere)]) == 0, capsys.readouterr().err
    monkeypatch.setenv("TFIMG_ALLOW_DIRS", f"/nonexistent{os.pathsep}{elsewhere}")
    assert main(["validate", str(v)]) == 0, capsys.readouterr().err


def test_an_empty_piece_of_tfimg_allow_dirs_allows_nothing(repo: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`TFIMG_ALLOW_DIRS=/a::/b` or `:` must not allow the current folder."""
    v = repo / "variants" / "v.yaml"
    v.write_text(f"python: {{requirements: ['{repo.parent / 'elsewhere' / 'r.txt'}']}}\n")
    monkeypatch.chdir(repo.parent / "elsewhere")
    for value in (":", f"/nonexistent{os.pathsep}{os.pathsep}/also", ""):
        monkeypatch.setenv("TFIMG_ALLOW_DIRS", value)
        assert main(["validate", str(v)]) == 2, value
        assert "outside the variant's repository" in capsys.readouterr().err
    assert main(["validate", str(v), "--allow-dir", "."]) == 0   # an explicit '.' is the current folder


def test_a_symlink_out_of_the_repository_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = repo / "variants" / "v.yaml"
    v.write_text("python: {requirements: [link.txt]}\n")
    assert main(["render", str(v), "--out", str(repo / "ctx")]) == 2
    err = capsys.readouterr().err
    assert "'link.txt' resolves to" in err and str(repo.parent / "elsewhere" / "r.txt") in err, err
    assert not (repo / "ctx").exists()


def test_the_repository_is_the_git_work_tree_so_siblings_of_the_variant_folder_are_in(repo: Path) -> None:
    (repo / "policies").mkdir()
    (repo / "policies" / "p.yaml").write_text("description: p\n")
    (repo / "variants" / "v.yaml").write_text("policy: ../policies/p.yaml\n")
    assert spec.load(repo / "variants" / "v.yaml").spec.policy == str(repo / "policies" / "p.yaml")


def test_a_worktree_whose_git_is_a_file_is_a_repository(tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    (wt / "variants").mkdir(parents=True)
    (wt / ".git").write_text("gitdir: /somewhere/.git/worktrees/wt\n")
    (wt / "r.txt").write_text("six==1.16.0\n")
    (wt / "variants" / "v.yaml").write_text("python: {requirements: [../r.txt]}\n")
    assert spec.load(wt / "variants" / "v.yaml").spec.python.requirements == [str(wt / "r.txt")]


def test_without_git_the_repository_is_the_variant_folder(tmp_path: Path) -> None:
    (tmp_path / "variants").mkdir()
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    (tmp_path / "variants" / "v.yaml").write_text("python: {requirements: [../r.txt]}\n")
    with pytest.raises(SpecErrors, match=r"outside the variant's repository \(.*/variants\)"):
        spec.load(tmp_path / "variants" / "v.yaml")


def test_build_secrets_may_lie_outside_but_must_be_regular_files(repo: Path) -> None:
    netrc = repo.parent / "home" / ".netrc"
    netrc.write_text("machine pypi.corp.example login bot password x\n")
    v = repo / "variants" / "v.yaml"
    v.write_text("secrets:\n  netrc: {file: ~/.netrc}\n  ca_bundle: {file: /etc/ssl/certs/ca-certificates.crt, "
                 "required: false}\n  pip_index_url: {file: ../missing, required: false}\n")
    loaded = spec.load(v)
    assert loaded.spec.secrets.netrc is not None and loaded.spec.secrets.netrc.file == str(netrc)
    os.mkfifo(repo / "fifo")
    v.write_text("secrets: {netrc: {file: ../fifo}}\n")
    with pytest.raises(SpecErrors, match=r"secrets\.netrc\.file: refused: the secret file is a FIFO"):
        spec.load(v)


def test_a_home_kept_in_git_is_not_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dotfiles in git make ~ a work tree; ~/.ssh must still not count as the variant's repository."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(PUB)
    (home / "projects" / "img").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(home)], check=True)
    monkeypatch.setenv("HOME", str(home))
    v = home / "projects" / "img" / "v.yaml"
    v.write_text("ssh: {enabled: true, authorized_keys: [~/.ssh/id_ed25519.pub]}\n")
    with pytest.raises(SpecErrors, match=r"outside the variant's repository \(.*/projects/img\)"):
        spec.load(v)
