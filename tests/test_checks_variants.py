"""The whole check suite passes on shipped variants built on the stand-in base."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.infra import report
from builder.infra.engine import Engine
from builder.infra.report_models import CheckRow, ChecksSection
from builder.pipeline import single
from builder.spec import loader as spec

VARIANTS = Path(__file__).resolve().parent.parent / "variants"
GPU_CHECKS = {"stack::gpu_driver", "stack::tensorflow_lists_gpu", "stack::matmul_on_gpu0"}


def run(variant: str, built, out: Path) -> ChecksSection:
    b = built(variant)
    return single.test(spec.load(VARIANTS / f"{variant}.yaml"), b.image_id, out, gpu="off", engine=Engine.from_env(),
                       base=b.base.ref)


@pytest.fixture(scope="module")
def bert(built, tmp_path_factory) -> ChecksSection:
    return run("bert", built, tmp_path_factory.mktemp("bert"))


def by_check(section: ChecksSection) -> dict[str, CheckRow]:
    return {r.check: r for r in section.results}


@pytest.mark.slow
def test_bert_passes_every_check(bert):
    bad = [r for r in bert.results if r.status in ("failed", "error")]
    assert not bad, bad
    assert bert.passed is True
    checks = by_check(bert)
    for must in ("user::runs_as_spec_user", "image::no_setuid_added", "image::no_private_keys",
                 "ssh::login_with_key", "ssh::password_refused", "ssh::ssh_audit",
                 "jupyter::login_with_password", "jupyter::refuses_to_start_without_password",
                 "jupyter::no_news_or_update_check",
                 "python::protected_packages_unchanged", "python::pip_check"):
        assert checks[must].status == "passed", checks[must]


@pytest.mark.slow
def test_gpu_checks_are_skipped_with_their_reason_not_passed(bert):
    checks = by_check(bert)
    for name in GPU_CHECKS:
        assert checks[name].status == "skipped"
        assert "GPU mode is off" in checks[name].detail
    # read without a GPU: the stand-in's pip wheel is a CUDA build (recorded: standin-cpu has no GPU stack)
    assert checks["stack::tensorflow_cuda_build"].status == "passed"
    assert bert.gpu.enabled is False


@pytest.mark.slow
def test_inherited_checks_name_the_file_that_declared_them(bert):
    checks = by_check(bert)
    assert checks["variant::command[base.yaml#1]"].status == "passed"     # from the parent
    assert checks["variant::command[bert.yaml#1]"].status == "passed"     # the child's commands+
    assert "declared in bert.yaml" in checks["variant::python_package[transformers]"].detail


@pytest.mark.slow
def test_ssh_audit_warnings_are_recorded(bert):
    audit = bert.records["ssh_audit"]
    assert audit["fail"] == [] and audit["exit"] in (0, 2)
    assert audit["tool"].startswith("ssh-audit v3."), audit      # the pinned one beside Python, not Debian's 2.5
    assert isinstance(audit["warn"], list) and audit["banner"].startswith("SSH-2.0-OpenSSH")


@pytest.mark.slow
def test_worker_ssh_only(built, tmp_path):
    section = run("worker", built, tmp_path)
    assert section.passed is True, [r for r in section.results if r.status != "passed"]
    names = {r.check for r in section.results}
    assert "ssh::login_with_key" in names and not any(n.startswith("jupyter::") for n in names)
    assert report.load(tmp_path).facts.tensorflow.startswith("2.9")
