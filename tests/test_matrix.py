"""The CI matrix: every variant of a folder as JSON, parents before children."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import SpecErrors
from builder.spec import matrix

ROOT = Path(__file__).resolve().parent.parent


def _write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text)


def test_shipped_variants_parents_first() -> None:
    inc = matrix.matrix(ROOT / "variants")["include"]
    names = [i["variant"] for i in inc]
    # base.yaml is abstract: a parent of every variant, never listed for a build
    assert names == ["bert", "dev", "notebook", "worker"]
    assert all(i["parents"] == ["base"] and i["level"] == 1 for i in inc)
    assert all(Path(i["file"]).name == f"{i['variant']}.yaml" for i in inc)


def test_skip_leaves_out_a_shared_base() -> None:
    inc = matrix.matrix(ROOT / "variants", skip=["base.yaml"])["include"]
    assert [i["variant"] for i in inc] == ["bert", "dev", "notebook", "worker"]
    assert all(i["parents"] == [] for i in inc)


def test_deep_chain_and_partials(tmp_path: Path) -> None:
    _write(tmp_path, "_common.yaml", "description: partial\n")
    _write(tmp_path, "zeta.yaml", "extends: _common.yaml\n")            # level 0: its parent is a partial
    _write(tmp_path, "alpha.yaml", "extends: mid.yaml\n")                # grandchild, sorts first by name
    _write(tmp_path, "mid.yaml", "extends: zeta.yaml\n")
    _write(tmp_path, "other.yml", "name: other\n")
    inc = matrix.matrix(tmp_path)["include"]
    assert [(i["variant"], i["level"]) for i in inc] == [("other", 0), ("zeta", 0), ("mid", 1), ("alpha", 2)]
    assert inc[3]["parents"] == ["zeta", "mid"]


def test_duplicate_names_and_bad_folder(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "name: same\n")
    _write(tmp_path, "b.yaml", "name: same\n")
    with pytest.raises(SpecErrors, match="not unique: same"):
        matrix.matrix(tmp_path)
    with pytest.raises(SpecErrors, match="not a folder"):
        matrix.matrix(tmp_path / "missing")


def test_order_is_topological_pure() -> None:
    a, b, c = Path("a"), Path("b"), Path("c")
    assert matrix.order({c: [b], b: [a], a: []}) == [(a, 0), (b, 1), (c, 2)]


def test_cli_prints_json_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    from builder import cli
    assert cli.main(["matrix", str(ROOT / "variants"), "--level", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(i["variant"] for i in data["include"]) == ["bert", "dev", "notebook", "worker"]
    assert cli.main(["matrix", str(ROOT / "nowhere")]) == 2
