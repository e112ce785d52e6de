"""Hostile variant and policy files are refused quickly, with exit 2 and a message that names the limit.

A "billion laughs" file (aliases of aliases) must not hang tfimg, a deeply
nested one must not end in an internal error (exit 3), and an oversized one is
not even parsed. Every limit is checked through the real command line. So are
values PyYAML would take on trust: a key written twice, a date that does not
exist, an integer over 4300 digits, a lone surrogate, bytes that are not UTF-8
(exit 2 naming the file and the line), with properties of the reader.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.cli import main
from builder.errors import SpecErrors
from builder.infra import yamlfile

ROOT = Path(__file__).resolve().parent.parent
TRIVY_REPORT = ROOT / "tests/data/trivy/alpine-39.json.golden"
# A guard against a hang or an exponential blow-up (unguarded, a billion laughs takes minutes and GBs), not
# a speed target: those are in `make bench`. Generous, so a loaded CI machine does not fail it.
HANG = 15.0


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
    assert elapsed < HANG, f"{case}: refused after {elapsed:.2f} s"


@pytest.mark.timeout(30)
def test_hostile_parent_is_refused_through_extends(tmp_path: Path, capsys) -> None:
    (tmp_path / "parent.yaml").write_text(billion_laughs())
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\n")
    rc, err, elapsed = _run(["validate", str(child)], capsys)
    assert rc == 2 and "parent.yaml" in err and "expands to more than" in err, err
    assert elapsed < HANG


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
    assert elapsed < HANG, f"{case}: refused after {elapsed:.2f} s"


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


# --------------------------------------------------------------------------- values PyYAML would take on trust
# Duplicate keys (PyYAML keeps the last one), scalars Python refuses while constructing them (the date
# 2026-02-30, an integer over 4300 digits) and lone surrogate escapes: each is exit 2 naming the file and
# line, through every command that reads the file. The properties below prove the reader on any such
# input; these cases prove the commands.

UNTRUSTED = {
    # name: (file content, fragments of the message, line)
    "duplicate_key": ("description: a\napt: {packages: [git]}\ndescription: b\n",
                      ['"description" twice', "lines 1 and 3"], 3),
    "duplicate_nested_key": ("user:\n  name: ml\n  uid: 1000\n  name: ops\n", ['"name" twice', "lines 2 and 4"], 4),
    "duplicate_flow_key": ("env: {A: '1', A: '2'}\n", ['"A" twice', "line 1, columns 7 and 15"], 1),
    "impossible_date": ("description: x\nlabels:\n  built: 2026-02-30\n", ["cannot read", "day is out of range"], 3),
    "huge_integer": ("ports:\n  - " + "9" * 5000 + "\n", ["integer longer than 4300 digits"], 2),
    "lone_surrogate": ('description: "\\ud800"\n', ["lone UTF-16 surrogate"], 1),
    "not_utf8": (b'description: ok\nlabels: {a: "\xff\xfe"}\n', ["not UTF-8", "line 2, column 14"], 2),
}


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("command", ["validate", "lint", "render"])
@pytest.mark.parametrize("case", sorted(UNTRUSTED))
def test_untrusted_variant_is_exit_2_naming_file_and_line(tmp_path: Path, capsys, monkeypatch, case: str,
                                                          command: str) -> None:
    monkeypatch.chdir(tmp_path)
    content, fragments, line = UNTRUSTED[case]
    f = _write(tmp_path / "v.yaml", content)
    rc, err, _ = _run([command, str(f)], capsys)
    assert rc == 2, err
    assert f"{f}:{line}:" in err and all(x in err for x in fragments), err
    assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "build").exists()   # nothing rendered


@pytest.mark.parametrize("case", ["duplicate_key", "impossible_date", "huge_integer"])
def test_untrusted_parent_is_named_through_extends(tmp_path: Path, capsys, case: str) -> None:
    content, fragments, line = UNTRUSTED[case]
    parent = _write(tmp_path / "parent.yaml", content)
    child = _write(tmp_path / "child.yaml", "extends: parent.yaml\n")
    rc, err, _ = _run(["validate", str(child)], capsys)
    assert rc == 2 and f"{parent.name}:{line}:" in err and all(x in err for x in fragments), err


POLICY_CASES = {
    "duplicate_key": ("vulnerabilities:\n  new: {fixed: HIGH}\nvulnerabilities:\n  new: {fixed: none}\n",
                      ['"vulnerabilities" twice', "lines 1 and 3"], 3),
    "duplicate_waiver_key": ("waivers:\n  - id: CVE-2019-14697\n    reason: accepted risk\n    owner: ml\n"
                             "    expires: 2027-01-31\n    expires: 2099-12-31\n", ['"expires" twice'], 6),
    "impossible_expiry": ("waivers:\n  - id: CVE-2019-14697\n    reason: accepted risk\n    owner: ml\n"
                          "    expires: 2026-02-30\n", ["day is out of range"], 5),
    "huge_allowance": ("misconfigurations:\n  block: {HIGH: " + "1" * 5000 + "}\n", ["4300 digits"], 2),
}


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_untrusted_policy_is_exit_2_naming_file_and_line(tmp_path: Path, capsys, case: str) -> None:
    content, fragments, line = POLICY_CASES[case]
    pol = _write(tmp_path / "policy.yaml", content)
    rc, err, _ = _run(["gate", "--report", str(TRIVY_REPORT), "--policy", str(pol), "--out", str(tmp_path / "out")],
                      capsys)
    assert rc == 2 and f"{pol}:{line}:" in err and all(x in err for x in fragments), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    """`<<: *base` then `key: value` is YAML's override, not a duplicate."""
    from builder.spec import loader
    f = _write(tmp_path / "v.yaml", "checks: {python_packages: &e {A: '>=1', B: '>=2'}}\nenv: {<<: *e, A: '3'}\n")
    assert loader.load(f).spec.env == {"A": "3", "B": ">=2"}


# --------------------------------------------------------------------------- properties of the reader

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.from_regex(r"[a-z ]{0,12}", fullmatch=True)
                    .map(lambda s: f"'{s}'"))
TREES = st.recursive(st.dictionaries(KEYS, SCALARS, min_size=1, max_size=4),
                     lambda inner: st.dictionaries(KEYS, st.one_of(SCALARS, inner), min_size=1, max_size=4),
                     max_leaves=20)
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _yaml_with_duplicate(tree: dict, pick: int) -> tuple[str, str, int, int]:
    """Block YAML of ``tree`` with one key of one mapping written again at the end of that mapping:
    (text, key, line of the first, line of the second)."""
    lines: list[str] = []
    mappings: list[tuple[str, int, dict[str, int]]] = []   # (indent, where it ends, line of each key)

    def emit(node: dict, indent: str) -> None:
        first_lines: dict[str, int] = {}
        for k, v in node.items():
            first_lines[k] = len(lines) + 1
            if isinstance(v, dict):
                lines.append(f"{indent}{k}:")
                emit(v, indent + "  ")
            else:
                lines.append(f"{indent}{k}: {v}")
        mappings.append((indent, len(lines), first_lines))

    emit(tree, "")
    indent, end, first_lines = mappings[pick % len(mappings)]
    key = sorted(first_lines)[pick % len(first_lines)]
    lines.insert(end, f"{indent}{key}: 0")
    return "\n".join(lines) + "\n", key, first_lines[key], end + 1


@PROPS
@given(tree=TREES, pick=st.integers(0, 1000))
def test_any_duplicate_key_in_any_mapping_is_refused_naming_both_lines(tmp_path: Path, tree: dict,
                                                                      pick: int) -> None:
    text, key, first, second = _yaml_with_duplicate(tree, pick)
    f = _write(tmp_path / "d.yaml", text)
    with pytest.raises(SpecErrors) as info:
        yamlfile.load(f)
    message = info.value.render()
    assert f'"{key}" twice' in message and f"lines {first} and {second}" in message, (text, message)
    assert info.value.errors[0].line == second


@PROPS
@given(year=st.integers(0, 9999), month=st.integers(0, 99), day=st.integers(0, 99), depth=st.integers(0, 3))
def test_any_impossible_date_is_refused_at_its_line(tmp_path: Path, year: int, month: int, day: int,
                                                   depth: int) -> None:
    import datetime as dt
    try:
        dt.date(year, month, day)
        possible = True
    except ValueError:
        possible = False
    body = "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + f"when: {year:04d}-{month:02d}-{day:02d}\n"
    f = _write(tmp_path / "d.yaml", "description: x\n" + body)
    if possible:
        assert yamlfile.load(f) is not None
        return
    with pytest.raises(SpecErrors) as info:
        yamlfile.load(f)
    assert info.value.errors[0].line == depth + 2 and "cannot read" in info.value.render()


@PROPS
@given(digits=st.integers(4301, 20000), sign=st.sampled_from(["", "-", "+"]), where=st.integers(0, 2))
def test_any_integer_over_4300_digits_is_refused_at_its_line(tmp_path: Path, digits: int, sign: str,
                                                            where: int) -> None:
    lines = ["a: 1\n", "b: [x, y]\n", "c: 2\n"]
    lines.insert(where, f"n: [{sign}{'7' * digits}]\n")
    f = _write(tmp_path / "d.yaml", "".join(lines))
    with pytest.raises(SpecErrors) as info:
        yamlfile.load(f)
    assert "4300 digits" in info.value.render() and info.value.errors[0].line == where + 1
