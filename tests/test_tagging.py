"""Tags from image facts: taggers, templates, inheritance, grammar; facts from an image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.check import imagefacts as facts
from builder.infra import git
from builder.infra.engine import Engine
from builder.infra.report_models import FactsSection, Report
from builder.publish import tagging
from builder.spec import loader as spec
from builder.spec.loader import Tags
from tests import reports

pytest_plugins = ["tests.conftest_registry"]

NGC = {"tensorflow": "2.9.1+nv22.7", "python": "3.8.10", "cuda": "11.7", "cudnn": "8.4.1",
       "date": "20261126", "rev": "ab12cd3"}


def test_default_scheme_gives_immutable_and_moving_tags() -> None:
    ts = tagging.compute(Tags(), tagging.fields("bert", NGC, "ngc-22.07"))
    assert ts.immutable == "bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3"
    assert ts.moving == ("bert-tf2.9", "bert-latest")
    assert ts.all[0] == ts.immutable
    assert tagging.tags_text(ts).splitlines() == [ts.immutable, "bert-tf2.9", "bert-latest"]


def test_cpu_image_has_no_cuda_fields() -> None:
    cpu = {**NGC, "tensorflow": "2.9.3", "python": "3.9.2", "cuda": None, "cudnn": None}
    values = tagging.fields("tiny", cpu, "standin-cpu")
    assert values["accel"] == "cpu" and values["cuda"] == "none" and values["cudnn"] == "none"
    assert tagging.compute(Tags(), values).immutable == "tiny-tf2.9.3-py3.9-cpu-20261126-ab12cd3"


def test_every_tag_field_has_a_tagger() -> None:
    values = tagging.fields("v", NGC, "ngc-22.07")
    assert set(values) == set(spec.TAG_FIELDS)
    assert values["profile"] == "ngc-22.07" and values["tf_minor"] == "2.9" and values["cudnn"] == "8.4.1"


def test_custom_templates_and_missing_fact_is_named() -> None:
    tags = Tags(immutable="{variant}-{profile}-{rev}", moving=["{variant}-cudnn{cudnn}"])
    ts = tagging.compute(tags, tagging.fields("bert", NGC, "ngc-22.07"))
    assert ts.immutable == "bert-ngc-22.07-ab12cd3" and ts.moving == ("bert-cudnn8.4.1",)
    no_tf = {**NGC, "tensorflow": None}
    with pytest.raises(tagging.TaggingError, match=r"\{tf\}"):
        tagging.compute(Tags(), tagging.fields("bert", no_tf, "ngc-22.07"))


@pytest.mark.parametrize("tag,ok", [("bert-latest", True), ("_x.y-z", True), ("-bad", False),
                                    (".bad", False), ("a" * 128, True), ("a" * 129, False),
                                    ("has space", False), ("plus+local", False)])
def test_tag_grammar(tag: str, ok: bool) -> None:
    if ok:
        assert tagging.validate(tag) == tag
    else:
        with pytest.raises(tagging.TaggingError, match="not a valid tag"):
            tagging.validate(tag)


def test_odd_fact_values_are_made_tag_safe() -> None:
    odd = {**NGC, "rev": "ab/12 cd", "tensorflow": "2.9.1-rc0+weird build"}
    values = tagging.fields("bert", odd, "ngc-22.07")
    assert values["rev"] == "ab_12_cd"
    assert tagging.TAG_RE.fullmatch(tagging.render("{variant}-{tf}-{rev}", values))


def test_moving_tag_equal_to_immutable_is_refused() -> None:
    with pytest.raises(tagging.TaggingError, match="renders to the immutable tag"):
        tagging.compute(Tags(immutable="{variant}-latest", moving=["{variant}-latest"]),
                        tagging.fields("bert", NGC, "x"))


def test_child_inherits_parent_tag_templates(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("tags:\n  immutable: '{variant}-{tf}-{rev}'\n  moving: ['{variant}-stable']\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    (tmp_path / "own.yaml").write_text("extends: base.yaml\ntags:\n  moving: ['{variant}-edge']\n")
    child, own = spec.load(tmp_path / "child.yaml"), spec.load(tmp_path / "own.yaml")
    assert tagging.compute(child.spec.tags, tagging.fields("child", NGC, "p")).as_dict() == {
        "immutable": "child-2.9.1-ab12cd3", "moving": ["child-stable"]}
    assert tagging.compute(own.spec.tags, tagging.fields("own", NGC, "p")).moving == ("own-edge",)


def test_facts_reuse_report_section_and_fill_rev(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "v.yaml").write_text("name: v\n")
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t", "add", "v.yaml"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "x"],
                   check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    # a facts section written by another tool (short names), no build recorded here: rev from git
    rep = Report(facts=FactsSection.model_validate({"tf": "2.9.1", "py": "3.8.10", "cuda": None, "cudnn": None,
                                                    "date": "20260101"}))
    got = facts.read("sha256:" + "1" * 64, repo / "v.yaml", rep, Engine.deferred())
    assert got.model_dump(exclude_unset=True) == {
        "tensorflow": "2.9.1", "python": "3.8.10", "cuda": None, "cudnn": None,
        "date": "20260101", "rev": head, "image_id": "sha256:" + "1" * 64}
    assert git.revision(tmp_path) == "norev"


@pytest.mark.docker
@pytest.mark.slow
def test_facts_read_from_a_real_image(standin_base: str, tmp_path: Path) -> None:
    got = facts.read(standin_base, tmp_path / "v.yaml", Report(), Engine.deferred())
    assert got.tensorflow.startswith("2.9") and got.python.startswith("3.9")
    # pip's tensorflow wheel says it was built for CUDA 11.2, but the stand-in has no CUDA library
    assert got.cuda is None and got.cudnn is None
    assert got.rev == "norev" and len(got.date) == 8
    ts = tagging.compute(Tags(), tagging.fields("standin", got.model_dump(), "standin-cpu"))
    assert ts.immutable.startswith(f"standin-tf{got.tensorflow}-py3.9-cpu-")


def test_tags_stage_writes_tags_txt_and_report_sections(tmp_path: Path) -> None:
    from builder.infra import report
    from builder.pipeline import record, single, steps
    (tmp_path / "bert.yaml").write_text("name: bert\n")
    out = tmp_path / "build" / "bert"
    image_id = "sha256:" + "2" * 64
    reports.write(out, reports.build(image_id, "bert", revision="feed123"), reports.facts(**NGC, image_id=image_id))
    loaded = spec.load(tmp_path / "bert.yaml")
    text = single.tags(loaded, out, engine=Engine.deferred())                                 # `tfimg tags`: tags.txt only
    assert (out / "tags.txt").read_text() == text
    assert report.load(out).tags is None
    got = steps.tags_and_facts(loaded, out, record.Record(out), engine=Engine.deferred())    # the orchestrator's stage
    rep = report.load(out)
    assert rep.tags == got
    assert got.model_dump(exclude_unset=True) == {"immutable": "bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3",
                                "moving": ["bert-tf2.9", "bert-latest"]}
    assert rep.facts.rev == "ab12cd3" and rep.facts.image_id == image_id


def _tagged_build(tmp_path: Path, image_id: str) -> tuple[Path, spec.LoadedVariant]:
    """A checked, gated build of variant 'bert' whose tag stage has run (tags.txt written)."""
    from builder.pipeline import record, steps
    (tmp_path / "bert.yaml").write_text("name: bert\n")
    out = tmp_path / "build" / "bert"
    reports.write(out, reports.build(image_id, "bert"), reports.checks(True), reports.scan(image_id),
                  reports.gate("pass"), reports.facts(**NGC, image_id=image_id))
    loaded = spec.load(tmp_path / "bert.yaml")
    steps.tags_and_facts(loaded, out, record.Record(out), engine=Engine.deferred())
    return out, loaded


def test_applying_and_publishing_read_tags_txt_and_never_recompute(tmp_path: Path, monkeypatch) -> None:
    from builder.infra.engine import ImageInfo
    from builder.pipeline import single
    from builder.publish import push as publish
    from builder.publish import tags
    image_id = "sha256:" + "4" * 64
    out, loaded = _tagged_build(tmp_path, image_id)
    assert (out / "tags.txt").read_text().splitlines()[0] == "bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3"
    (out / "tags.txt").write_text("bert-hand-picked\nbert-stable\n")     # edited between the stages

    def recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tags were computed again")
    monkeypatch.setattr(tagging, "compute", recompute)
    monkeypatch.setattr(facts, "read", recompute)
    applied: list[tuple[str, str, str]] = []
    fake = Engine.deferred()   # never connects: its methods are replaced
    monkeypatch.setattr(fake, "tag", lambda image, repo, tag: applied.append((image, repo, tag)))
    local = tags.apply(image_id, "bert", out, fake)                               # apply: the local tags
    assert list(local) == ["tfimg/bert:bert-hand-picked", "tfimg/bert:bert-stable"]
    assert applied == [(image_id, "tfimg/bert", "bert-hand-picked"), (image_id, "tfimg/bert", "bert-stable")]

    monkeypatch.setattr(publish, "remote_state", lambda reg, repo, tag, image: ("new", None))
    monkeypatch.setattr(publish, "same_inputs", lambda reg, repo, input_hash, image: None)   # nor its ih- tag
    monkeypatch.setattr(fake, "image", lambda ref: ImageInfo(id=image_id))
    plan = single.publish(loaded, out, "registry.example.com/team", engine=fake)         # publish (dry run)
    assert isinstance(plan, publish.Plan)
    assert plan.tags.immutable == "bert-hand-picked" and plan.tags.moving == ["bert-stable"]
    assert plan.lines()[1].startswith("  1. registry.example.com/team/bert:bert-hand-picked  (immutable)")


def test_publish_without_tags_txt_or_with_a_bad_tag_is_refused(tmp_path: Path) -> None:
    from builder.errors import PublishRefused, TfimgError
    from builder.infra import report
    from builder.publish import push as publish
    from builder.publish import tags
    out, loaded = _tagged_build(tmp_path, "sha256:" + "5" * 64)
    (out / "tags.txt").write_text("bert:bad tag\n")
    with pytest.raises(TfimgError, match="not a valid tag"):
        tags.read(out)
    (out / "tags.txt").unlink()
    with pytest.raises(PublishRefused, match="tags.txt"):
        publish.plan(loaded, report.load(out), out, "registry.example.com/team", engine=Engine.deferred())


def test_rev_comes_from_the_build_when_recorded(tmp_path: Path) -> None:
    image_id = "sha256:" + "3" * 64
    rep = reports.write(tmp_path / "out", reports.build(image_id, revision="feed123"),
                        reports.facts(tensorflow="2.9.1", python="3.8.10", date="20260101", image_id=image_id))
    assert facts.read(image_id, tmp_path / "v.yaml", rep, Engine.deferred()).rev == "feed123"
