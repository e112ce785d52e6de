"""The stages as functions from a frozen input to a frozen result (no report.json read or written), and
what the pipeline decides once per run: the run context, the input hash's parts, the fan-out's argv."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import typer

from builder.errors import EnvError, SpecErrors
from builder.image import inputs
from builder.infra import report
from builder.infra.engine import Engine, ImageInfo
from builder.infra.report_models import FactsSection, Report, TagsSection
from builder.infra.ui import UI
from builder.pipeline import context, fanout, record
from builder.publish import push, tagging
from builder.publish import tags as tags_stage
from builder.scan import policy as policies
from builder.scan import stage as scan_stage
from builder.scan import trivy
from builder.spec import loader as spec
from builder.spec.models import pinned
from tests import reports
from tests.test_scan_pipeline import DATA, FAKE, rendered

ROOT = Path(__file__).resolve().parent.parent
NGC = {"tensorflow": "2.9.1+nv22.7", "python": "3.8.10", "cuda": "11.7", "cudnn": "8.4.1",
       "date": "20261126", "rev": "ab12cd3"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_TRIVY_LOG", str(tmp_path / "fake_trivy.log"))
    monkeypatch.setenv("FAKE_TRIVY_FIXTURE", str(DATA / "fluentd-gems.json.golden"))
    monkeypatch.delenv("FAKE_TRIVY_MODE", raising=False)
    monkeypatch.delenv("FAKE_TRIVY_VERSION", raising=False)


def _variant(tmp_path: Path, text: str = "name: demo\n") -> spec.LoadedVariant:
    (tmp_path / "demo.yaml").write_text(text)
    return spec.load(tmp_path / "demo.yaml")


# --------------------------------------------------------------------------- scan and gate

def _request(out: Path, policy_text: str, tmp_path: Path, **kw: object) -> scan_stage.ScanRequest:
    (tmp_path / "p.yaml").write_text(policy_text)
    options = kw.pop("options", trivy.Options(binary=str(FAKE), mode="reference", timeout=30))
    return scan_stage.ScanRequest(image="tfimg/demo:latest", out_dir=out, policy=policies.load(tmp_path / "p.yaml"),
                                  today=dt.date(2026, 12, 4), options=options, **kw)  # type: ignore[arg-type]


def test_the_scan_stage_returns_its_sections_and_writes_no_report(fake: None, tmp_path: Path) -> None:
    out = rendered(tmp_path / "out")
    got = scan_stage.scan_and_gate(_request(out, "vulnerabilities: {new: {fixed: none}}\n", tmp_path),
                                   Engine.deferred())
    assert got.error is None and got.decision == "pass"
    assert got.scan.status == "ok" and got.scan.trivy_version == "0.58.1" and got.scan.misconfig is True
    assert got.gate.decision == "pass" and got.gate.policy == "p" and got.gate.files is not None
    assert json.loads((out / "gate.json").read_text())["decision"] == "pass"   # the stage's own files
    assert not (out / report.REPORT).exists()                                   # the pipeline records it


def test_a_blocking_gate_and_a_failed_scan_are_results(fake: None, tmp_path: Path) -> None:
    out = rendered(tmp_path / "out")
    layers = json.loads((DATA / "fluentd-gems.json.golden").read_text())["Metadata"]["DiffIDs"][:2]
    blocked = scan_stage.scan_and_gate(_request(out, "{}\n", tmp_path, base_layers=layers), Engine.deferred())
    assert blocked.decision == "block" and blocked.error is None
    assert blocked.gate.blocking_ids == ["CVE-2020-8165"] and blocked.result.base_layers_known
    assert scan_stage.blocked(blocked.result, out).exit_code == 1
    failed = scan_stage.scan_and_gate(
        _request(out, "{}\n", tmp_path, options=trivy.Options(binary=str(tmp_path / "absent"))), Engine.deferred())
    assert isinstance(failed.error, EnvError) and "fails closed" in failed.error.message
    assert failed.scan.status == "failed" and failed.gate.decision == "block"
    assert not (out / "trivy.json").exists() and not (out / report.REPORT).exists()


def test_the_base_is_pinned_by_one_rule() -> None:
    loaded = spec.load(ROOT / "variants" / "bert.yaml")
    base = loaded.spec.base.model_copy(update={"digest": "sha256:" + "a" * 64})
    assert base.ref == f"{base.image}@sha256:{'a' * 64}" and pinned(base.ref)
    assert loaded.spec.base.ref == loaded.spec.base.image and not pinned(loaded.spec.base.ref)


# --------------------------------------------------------------------------- tags and publish

def test_tags_are_computed_from_facts_alone(tmp_path: Path) -> None:
    loaded = _variant(tmp_path, "name: bert\n")
    ts = tags_stage.compute(loaded, FactsSection.model_validate(NGC))
    assert ts == tagging.TagSet("bert-tf2.9.1-py3.8-cuda11.7-20261126-ab12cd3", ("bert-tf2.9", "bert-latest"))
    assert not list(tmp_path.glob("**/tags.txt"))
    tags_stage.write(tmp_path / "out", ts)
    assert tags_stage.read(tmp_path / "out") == TagsSection(immutable=ts.immutable, moving=list(ts.moving))


def test_the_publish_plan_reads_the_report_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "remote_state", lambda reg, repo, tag, image: ("new", None))   # no registry here
    monkeypatch.setattr(push, "same_inputs", lambda reg, repo, input_hash, image: None)   # nor its ih- tag
    loaded = _variant(tmp_path, "name: bert\n")
    image_id = "sha256:" + "4" * 64
    rep = Report().with_section(reports.build(image_id, "bert")).with_section(reports.checks(True))
    rep = rep.with_section(reports.gate("pass"))
    out = tmp_path / "out"
    tags_stage.write(out, tagging.TagSet("bert-1", ("bert-latest",)))
    fake = Engine.deferred()   # never connects: its one method used here is replaced
    monkeypatch.setattr(fake, "image", lambda ref: ImageInfo(id=image_id))
    plan = push.plan(loaded, rep, out, "registry.example.com/team", engine=fake)
    assert plan.state == "new" and plan.tags.immutable == "bert-1" and plan.image_id == image_id and not plan.notes
    assert not (out / report.REPORT).exists()


# --------------------------------------------------------------------------- the pipeline's record

def test_the_record_replaces_sections_and_resets(tmp_path: Path) -> None:
    rec = record.Record(tmp_path)
    rec.add(reports.build("sha256:" + "1" * 64), reports.gate("pass"))
    assert report.load(tmp_path).gate is not None and report.load(tmp_path) == rec.report
    rec.add(reports.gate("block"))
    assert report.load(tmp_path).gate.decision == "block" and report.load(tmp_path).build is not None
    rec.reset()
    assert report.load(tmp_path) == Report()
    (tmp_path / report.REPORT).write_text("not json")
    warned: list[str] = []
    assert record.load_or_new(tmp_path, warned.append) == Report() and "is not a tfimg report" in warned[0]


# --------------------------------------------------------------------------- decided once per run

def test_the_run_context_loads_the_policy_and_never_changes_the_spec(tmp_path: Path) -> None:
    loaded = _variant(tmp_path)
    (tmp_path / "strictest.yaml").write_text("require_base_digest: true\n")
    opts = context.BuildOptions(out_root=tmp_path / "build", policy=tmp_path / "strictest.yaml", checks=False)
    ctx = context.make(loaded, opts, UI(quiet=True), Engine.deferred())
    assert ctx.policy.name == "strictest" and ctx.policy.require_base_digest
    assert ctx.policy_file == tmp_path / "strictest.yaml" and loaded.spec.policy is None
    assert ctx.vdir == tmp_path / "build" / "demo" and ctx.base_ref == loaded.spec.base.ref and ctx.gpu is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.base_ref = "other"  # type: ignore[misc]
    (tmp_path / "bad.yaml").write_text("vulnerabilities: {neu: {}}\n")
    with pytest.raises(SpecErrors):
        context.make(loaded, dataclasses.replace(opts, policy=tmp_path / "bad.yaml"), UI(quiet=True), Engine.deferred())


def test_secret_choice_is_the_same_for_build_bake_and_registry(tmp_path: Path) -> None:
    (tmp_path / "netrc").write_text("machine x login y password z\n")
    loaded = _variant(tmp_path, "name: demo\nsecrets:\n"
                                "  netrc: {file: netrc}\n"
                                "  ca_bundle: {file: absent.pem, required: false}\n"
                                "  pip_index_url: {env: TFIMG_TEST_INDEX, required: false}\n"
                                "  pip_extra_index_url: {env: TFIMG_TEST_EXTRA}\n")
    unset = inputs.secret_choice(loaded, {})
    assert set(unset.used) == {"netrc"} and set(unset.skipped) == {"ca_bundle", "pip_index_url"}
    assert set(unset.missing) == {"pip_extra_index_url"}
    both = inputs.secret_choice(loaded, {"TFIMG_TEST_INDEX": "https://t@x", "TFIMG_TEST_EXTRA": "https://u@y"})
    assert set(both.used) == {"netrc", "pip_index_url", "pip_extra_index_url"}
    assert both.used["pip_index_url"] == "env:TFIMG_TEST_INDEX" and "https://t@x" not in json.dumps(both.used)
    key = inputs.base_key("r:5000/b:1", "sha256:" + "d" * 64, "sha256:" + "e" * 64)
    assert inputs.input_hash("sha256:c", key, unset.used, "r:5000/b:1") != \
        inputs.input_hash("sha256:c", key, both.used, "r:5000/b:1")


# --------------------------------------------------------------------------- the fan-out's argv

def _build_command() -> Any:
    """The click command Typer makes of `tfimg build` (click is vendored in typer >= 0.20)."""
    from builder.cli import app
    return typer.main.get_command(app).commands["build"]  # type: ignore[attr-defined]


# BuildOptions field -> the `tfimg build` parameter it comes from (and how)
CLI_NAMES = {"out_root": "out_root", "base": "base", "force": "force", "no_cache": "no_cache", "docker": "docker",
             "builder": "builder", "recheck": "recheck", "rescan": "rescan", "gpu": "gpu", "policy": "policy",
             "trivy": "trivy_path", "trivy_cache": "trivy_cache", "offline": "offline",
             "trivy_db_repository": "trivy_db", "cache_from": "cache_from", "cache_to": "cache_to",
             "registry": "registry", "scan_registry": "scan_registry", "allow_dirs": "allow_dirs"}


def test_to_argv_gives_the_same_options_back() -> None:
    opts = context.BuildOptions(out_root=Path("o"), base="b@sha256:" + "a" * 64, force=True, no_cache=True,
                                docker="/usr/bin/docker", builder="fleet", checks=False, scan=False, recheck=True,
                                rescan=True, gpu="off", policy=Path("p.yaml"), trivy="/t", trivy_cache=Path("c"),
                                offline=True, trivy_db_repository="r/db:2", cache_from=("a", "b"), cache_to="t",
                                registry="h/ns", scan_registry="h/q", allow_dirs=(Path("/a"), Path("/b")))
    ctx = _build_command().make_context("build", ["v.yaml", *opts.to_argv()])
    for name, param in CLI_NAMES.items():
        got = ctx.params[param]
        assert (tuple(got) if isinstance(got, list) else got) == getattr(opts, name), name
    assert ctx.params["no_test"] is True and ctx.params["no_scan"] is True
    assert context.BuildOptions().to_argv() == []


def test_every_build_option_is_a_field_of_build_options() -> None:
    params = {p.name for p in _build_command().params} - {"spec_files", "jobs", "no_test", "no_scan", "reproduce"}
    assert params == set(CLI_NAMES.values())
    assert {f.name for f in dataclasses.fields(context.BuildOptions)} == {*CLI_NAMES, "checks", "scan", "tag",
                                                                          "source_date_epoch", "revision"}


def test_the_children_get_the_root_options(tmp_path: Path) -> None:
    loaded = _variant(tmp_path)
    argv = fanout.child_argv(loaded, context.BuildOptions(rescan=True), debug=True, quiet=True, cache=Path("/c"))
    assert argv[1:] == ["-m", "builder", "--debug", "--quiet", "--cache", "/c", "build", str(loaded.path), "--rescan"]
