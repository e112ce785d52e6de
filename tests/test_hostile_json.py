"""JSON tfimg cannot trust is exit 2 naming the file and line: one reader (builder/infra/datafile.py).

A Trivy report, report.json and a base-layers file are JSON a user gives (or can edit). A key written
twice (which one would count?), nesting deeper than Python reads, an integer longer than it converts,
NaN, a lone surrogate escape or bytes that are not UTF-8 are refused by the one reader, with the file
and the line. The properties prove the reader on any such input; the cases prove the commands. A last
test keeps every JSON and YAML read of the package in that reader.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.cli import main
from builder.errors import UnreadableInput
from builder.infra import datafile

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "tests/data/trivy/alpine-39.json.golden"
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _good_with(replace: str, by: str) -> str:
    text = GOOD.read_text()
    assert replace in text
    return text.replace(replace, by, 1)


def _report_cases() -> dict[str, tuple[str | bytes, list[str]]]:
    text = json.dumps(json.loads(GOOD.read_text()), indent=2)
    first = next(m for m in re.finditer(r'\n( +)"Severity": "([A-Z]+)",', text))
    indent = first.group(1)
    dup = text[:first.end()] + f'\n{indent}"Severity": "LOW",' + text[first.end():]   # a reader keeping the last passes
    line = text.count("\n", 0, first.start()) + 2
    return {
        # name: (content, fragments; the first fragment is ":<line>:" where the line is known)
        "duplicate_key": (dup, [f":{line + 1}:", '"Severity" twice', f"lines {line} and {line + 1}"]),
        "deep_nesting": ('{"SchemaVersion": 2, "Results":\n' + "[" * 100_000 + "]" * 100_000 + "}",
                         [":2:", "nested too deeply"]),
        "huge_integer": ('{"SchemaVersion": 2,\n "Results": [],\n "Size": ' + "9" * 5000 + "}",
                         [":3:", "4300"]),
        "nan": ('{"SchemaVersion": 2,\n "Results": [{"Target": "x", "Score": NaN}]}', [":2:", "NaN"]),
        "lone_surrogate": ('{"SchemaVersion": 2,\n "ArtifactName": "\\udc00x", "Results": []}',
                           [":2:", "surrogate"]),
        "not_utf8": (b'{"SchemaVersion": 2,\n "ArtifactName": "\xc3\x28"}', [":2:", "not UTF-8", "column 19"]),
        "truncated": (text[: len(text) // 2], ["not JSON"]),
    }


REPORT_CASES = _report_cases()


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _gate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["gate", *argv])
    return rc, capsys.readouterr().err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_untrusted_trivy_report_is_exit_2_naming_file_and_line(tmp_path: Path, capsys, case: str) -> None:
    content, fragments = REPORT_CASES[case]
    f = _write(tmp_path / "trivy.json", content)
    start = time.monotonic()
    rc, err = _gate(capsys, "--report", str(f), "--out", str(tmp_path / "out"))
    assert rc == 2, err
    assert str(f) in err and all(x in err for x in fragments), err
    assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "out").exists()   # nothing written
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("case", ["duplicate_key", "deep_nesting", "huge_integer", "not_utf8"])
def test_untrusted_report_json_in_the_out_folder_is_exit_2(tmp_path: Path, capsys, case: str) -> None:
    content, fragments = REPORT_CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    f = _write(out / "report.json", content)
    rc, err = _gate(capsys, "--report", str(GOOD), "--out", str(out))
    assert rc == 2 and str(f) in err and all(x in err for x in fragments[1:]), err
    assert "Traceback" not in err and sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_untrusted_base_layers_file_is_exit_2(tmp_path: Path, capsys) -> None:
    layer = "sha256:" + "a" * 64
    f = _write(tmp_path / "layers.json", f'{{"RootFS": {{"Layers": ["{layer}"]}},\n "RootFS": {{"Layers": []}}}}')
    rc, err = _gate(capsys, "--report", str(GOOD), "--base-layers", str(f), "--out", str(tmp_path / "out"))
    assert rc == 2 and f"{f}:2:" in err and '"RootFS" twice' in err, err


# --------------------------------------------------------------------------- properties of the reader

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


@PROPS
@given(value=JSON_VALUES, indent=st.sampled_from([None, 0, 1, 2]), ascii_only=st.booleans())
def test_any_json_document_reads_as_json_reads_it(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert datafile.loads_json(text, "doc") == json.loads(text)
    assert datafile.loads_json(text.encode(), "doc") == json.loads(text)


def _objects(node: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            _objects(v, out)
    elif isinstance(node, list):
        for v in node:
            _objects(v, out)
    return out


@PROPS
@given(value=JSON_VALUES.filter(lambda v: any(o for o in _objects(v, []))), pick=st.integers(0, 10**6),
       indent=st.sampled_from([0, 1, 2]))
def test_any_duplicate_key_is_refused_naming_it_and_both_lines(value: Any, pick: int, indent: int) -> None:
    """A key written again anywhere (any text, any depth) is refused; the message names it and both lines."""
    objects = [o for o in _objects(value, []) if o]
    target = objects[pick % len(objects)]
    key = sorted(target)[pick % len(target)]
    first, second = "\x00first\x00", "\x00second\x00"   # placeholders: found by line, then renamed
    items = list(target.items())
    target.clear()
    target.update({(first if k == key else k): v for k, v in items})
    target[second] = 0
    text = json.dumps(value, indent=indent)
    lines = text.splitlines()
    at = [next(i + 1 for i, ln in enumerate(lines) if json.dumps(p) in ln) for p in (first, second)]
    text = text.replace(json.dumps(first), json.dumps(key)).replace(json.dumps(second), json.dumps(key))
    with pytest.raises(UnreadableInput) as info:
        datafile.loads_json(text, "doc")
    assert f"{datafile.show_key(key)} twice" in info.value.message
    assert f"lines {at[0]} and {at[1]}" in info.value.message and info.value.line == at[1]


@PROPS
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"a":']), lines_before=st.integers(0, 5))
def test_any_nesting_deeper_than_python_reads_is_refused(depth: int, opener: str, lines_before: int) -> None:
    """Python's recursion limit (1000; hypothesis raises it) bounds the depth: deeper is refused with the
    depth and line, never an internal error; what Python reads is read as it is."""
    closer = "]" if opener == "[" else "}"
    text = "\n" * lines_before + opener * depth + "1" + closer * depth
    try:
        value = datafile.loads_json(text, "doc")
    except UnreadableInput as exc:
        assert depth > 500 and "nested too deeply" in exc.message and f"{depth} levels" in exc.message
        assert exc.line == lines_before + 1
        return
    assert depth < 10_000
    for _ in range(depth):
        value = value[0] if opener == "[" else value["a"]
    assert value == 1


@PROPS
@given(digits=st.integers(4301, 50_000), negative=st.booleans(), line=st.integers(1, 6))
def test_any_integer_longer_than_python_converts_is_refused_at_its_line(digits: int, negative: bool,
                                                                       line: int) -> None:
    text = "{" + "\n" * (line - 1) + '"n": ' + "-" * negative + "1" * digits + "}"
    with pytest.raises(UnreadableInput) as info:
        datafile.loads_json(text, "doc")
    assert "4300" in info.value.message and info.value.line == line


@PROPS
@given(mantissa=st.from_regex(r"-?[1-9][0-9]{0,3}(\.[0-9]{1,3})?", fullmatch=True), exponent=st.integers(309, 10**6),
       constant=st.sampled_from(["", "NaN", "Infinity", "-Infinity"]), line=st.integers(1, 4))
def test_any_number_json_cannot_hold_is_refused_at_its_line(mantissa: str, exponent: int, constant: str,
                                                           line: int) -> None:
    """NaN, Infinity and numbers beyond a float's range: read, they would be written back as no JSON."""
    number = constant or f"{mantissa}e{exponent}"
    text = '{"a": 1,' + "\n" * (line - 1) + f'"b": {number}}}'
    with pytest.raises(UnreadableInput) as info:
        datafile.loads_json(text, "doc")
    assert "not a JSON number" in info.value.message and info.value.line == line


@PROPS
@given(before=st.text(max_size=5), after=st.text(max_size=5), code=st.integers(0xD800, 0xDFFF),
       line=st.integers(1, 4))
def test_any_lone_surrogate_escape_is_refused(before: str, after: str, code: int, line: int) -> None:
    """A lone surrogate is no character: written out (report, SARIF) it would fail as UTF-8."""
    escaped = json.dumps(before)[1:-1] + f"\\u{code:04x}" + json.dumps(after)[1:-1]
    text = "[" + "\n" * (line - 1) + f'"{escaped}"]'
    value = json.loads(text)[0]
    if not any("\ud800" <= c <= "\udfff" for c in value):   # the escape paired with a neighbour
        assert datafile.loads_json(text, "doc") == [value]
        return
    with pytest.raises(UnreadableInput) as info:
        datafile.loads_json(text, "doc")
    assert "surrogate" in info.value.message and info.value.line == line


@PROPS
@given(raw=st.binary(min_size=1, max_size=40))
def test_any_bytes_that_are_not_utf8_are_refused_at_their_line_and_column(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
        return
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
    with pytest.raises(UnreadableInput) as info:
        datafile.loads_json(raw, "doc")
    assert "not UTF-8" in info.value.message and info.value.line == line


# --------------------------------------------------------------------------- one reader

# Modules that may parse JSON themselves, and why (each reads only what tfimg or the image it checks
# wrote, inside its own run):
ALLOWED = {
    "builder/infra/datafile.py": "the reader",
    "builder/infra/yamlfile.py": "the YAML reader (through datafile)",
    "builder/check/incontainer/": "standard-library programs that run inside the image (Python 3.8)",
    "builder/check/suite/": "the check suite: pytest run against a container, reading its answers",
}
READS = re.compile(r"\bjson\.loads?\(|\byaml\.(safe_)?load|\bimport yaml\b|\bfrom yaml\b|\.json\(\)")


def test_every_json_and_yaml_read_goes_through_the_reader() -> None:
    offenders = []
    for p in sorted((ROOT / "builder").rglob("*.py")):
        rel = str(p.relative_to(ROOT))
        if any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in ALLOWED):
            continue
        offenders += [f"{rel}:{n}" for n, line in enumerate(p.read_text().splitlines(), 1) if READS.search(line)]
    assert offenders == [], "parse JSON/YAML with builder.infra.datafile / yamlfile instead: " + ", ".join(offenders)
