"""``tfimg bake``: the buildx bake file matches what ``tfimg build`` and ``tfimg render`` do (issue 12)."""

from __future__ import annotations

import filecmp
import json
import os
from pathlib import Path

from builder import cli
from builder.image import inputs
from builder.infra import labels
from builder.pipeline import bake
from builder.render import context as render
from builder.spec import loader as spec
from builder.spec import matrix
from tests.conftest import VARIANTS

BASE = "127.0.0.1:5000/tfimg-standin@sha256:" + "ab" * 32   # pinned: no engine or registry is asked


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def test_bake_file_matches_the_rendered_variants(tmp_path: Path) -> None:
    file = tmp_path / "docker-bake.json"
    rc = cli.main(["bake", str(VARIANTS), "--out", str(tmp_path / "build"), "--file", str(file), "--base", BASE,
                   "--cache-from", "127.0.0.1:5000/cache/{name}:buildcache",
                   "--cache-to", "127.0.0.1:5000/cache/{name}:buildcache"])
    assert rc == 0
    doc = json.loads(file.read_text())
    variants = [v for v in spec.load_all(matrix.variant_files(VARIANTS)) if not v.spec.abstract]
    assert set(doc) == {"group", "target"}
    assert doc["group"]["default"]["targets"] == list(doc["target"]) == [v.name for v in variants]
    for loaded in variants:
        tgt = doc["target"][loaded.name]
        assert set(tgt) <= set(bake.TARGET_KEYS), set(tgt) - set(bake.TARGET_KEYS)
        # round trip: the context is the one `tfimg render` writes
        rendered = render.render(loaded)
        ref_dir = render.write(rendered, tmp_path / "render" / loaded.name)
        assert Path(tgt["context"]) == tmp_path / "build" / loaded.name / "context"
        assert (Path(tgt["context"]) / tgt["dockerfile"]).read_text() == rendered.dockerfile
        assert _same_tree(Path(tgt["context"]), ref_dir)
        # args, label and tag as `tfimg build` sets them
        assert set(tgt["args"]) == {"TFIMG_BASE", "TFIMG_CREATED", "TFIMG_REVISION", "TFIMG_BASE_DIGEST", "SOURCE_DATE_EPOCH"}
        assert tgt["args"]["TFIMG_BASE"] == BASE
        assert tgt["args"]["TFIMG_BASE_DIGEST"] == (loaded.spec.base.digest or BASE.rsplit("@", 1)[1])
        # the secrets `tfimg build` passes here (a file that exists, a variable that is set), and the
        # required ones (the build host must have them)
        ids = {sid: ref.identity() for sid, ref in loaded.spec.secrets.items()
               if ref.required or (Path(ref.file).is_file() if ref.file else os.environ.get(str(ref.env)))}
        ihash = inputs.input_hash(rendered.context_hash(), BASE.rsplit("@", 1)[1], ids, BASE)
        assert tgt["labels"] == {labels.INPUT_HASH: ihash}
        assert tgt["tags"] == [f"tfimg/{loaded.name}:{ihash[7:19]}"]
        # secrets: ids and where they come from, never a value
        assert sorted(s.split(",")[0] for s in tgt["secret"]) == sorted(f"id={i}" for i in ids)
        for entry in tgt["secret"]:
            sid = entry.split(",")[0][3:]
            ref = dict(loaded.spec.secrets.items())[sid]
            assert entry == (f"id={sid},env={ref.env}" if ref.env else f"id={sid},src={Path(ref.file).resolve()}")
        assert tgt["cache-from"] == [f"type=registry,ref=127.0.0.1:5000/cache/{loaded.name}:buildcache"]
        assert tgt["cache-to"] == [f"type=registry,ref=127.0.0.1:5000/cache/{loaded.name}:buildcache,mode=max"]
        assert tgt["output"] == ["type=docker"]
