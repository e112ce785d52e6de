"""The check runner: GPU mode, profile choice, declared checks, results; and a real run on `dev`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import pytest

from builder import cli
from builder.check import stage as testrun
from builder.check import suite as checks
from builder.check.suite import conftest as suite
from builder.errors import ChecksFailed, EnvError
from builder.infra import labels, report
from builder.infra.engine import Engine
from builder.infra.report_models import CheckCounts, CheckRow, ChecksSection, GpuInfo
from builder.pipeline import single
from builder.spec import loader as spec

VARIANTS = Path(__file__).resolve().parent.parent / "variants"


def test_gpu_auto_follows_the_engine():
    assert testrun.gpu_mode("auto", lambda: True).enabled is True
    off = testrun.gpu_mode("auto", lambda: False)
    assert off.enabled is False and "no NVIDIA runtime" in off.reason
    assert testrun.gpu_mode("off", lambda: True).enabled is False


def test_gpu_on_without_gpu_is_an_environment_error():
    with pytest.raises(EnvError) as exc:
        testrun.gpu_mode("on", lambda: False)
    assert exc.value.exit_code == 2 and "NVIDIA" in exc.value.message and exc.value.hint
    with pytest.raises(EnvError):
        testrun.gpu_mode("maybe", lambda: True)


def test_profile_on_the_standin_base():
    v = spec.load(VARIANTS / "bert.yaml").spec
    name, why = testrun.choose_profile(v, {"Env": ["PATH=/bin", "TFIMG_STANDIN=1"]})
    assert name == "standin-cpu" and "ngc-22.07" in why
    assert testrun.choose_profile(v, {"Env": ["PATH=/bin"]}) == ("ngc-22.07", "")


def test_modules_follow_the_spec():
    mods = {n: checks.modules_for(spec.load(VARIANTS / f"{n}.yaml").spec) for n in ("bert", "worker", "dev")}
    assert {"test_ssh", "test_jupyter"} <= set(mods["bert"])
    assert "test_ssh" in mods["worker"] and "test_jupyter" not in mods["worker"]
    assert not {"test_ssh", "test_jupyter"} & set(mods["dev"])
    assert all(set(checks.SHARED) <= set(m) for m in mods.values())


def test_child_inherits_parent_checks_and_says_where(tmp_path):
    got = checks.declared(spec.load(VARIANTS / "bert.yaml"))
    assert [(c["file"], c["id"]) for c in got["commands"]] == [("base.yaml", "base.yaml#1"), ("bert.yaml", "bert.yaml#1")]
    assert got["python_packages"] == [{"name": "transformers", "specifier": "==4.21.*", "file": "bert.yaml"}]
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {VARIANTS / 'dev.yaml'}\nchecks:\n  commands: [\"true\"]\n"
                     "  python_packages: {numpy: '<2'}\n")
    got = checks.declared(spec.load(child, allow=[VARIANTS.parent]))   # its parents lie outside tmp_path
    assert got["commands"] == [{"command": "true", "file": "child.yaml", "id": "child.yaml#1"}]   # replaced
    assert {p["name"]: p["file"] for p in got["python_packages"]} == {"numpy": "child.yaml", "pytest": "dev.yaml"}


def test_requirement_pins_name_file_and_line():
    pins = testrun.requirement_pins(spec.load(VARIANTS / "bert.yaml"))
    assert {"name": "transformers", "specifier": "==4.21.3", "file": "bert.txt", "line": 3} in pins


def test_check_ids_and_failure_message():
    assert suite.check_id("test_ssh.py::test_login_with_key") == "ssh::login_with_key"
    assert suite.check_id("test_variant.py::test_command[base.yaml#1]") == "variant::command[base.yaml#1]"
    section = ChecksSection(
        passed=False, image="img", junit="j.xml", log="l.log", variant="v",
        counts=CheckCounts(passed=1, failed=1, error=0, skipped=1),
        gpu=GpuInfo(enabled=False, requested="auto", reason="no NVIDIA runtime"),
        results=[CheckRow(check="a::ok", status="passed", detail="fine"),
                 CheckRow(check="b::bad", status="failed", detail="broken [x]\nmore"),
                 CheckRow(check="stack::gpu_driver", status="skipped", detail="GPU mode is off")])
    err = testrun.failure(section)
    assert isinstance(err, ChecksFailed) and err.exit_code == 1
    assert "b::bad: broken [x]" in err.message and "a::ok" not in err.message
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(testrun.table(section))
    text = console.export_text()
    assert "b::bad" in text and "FAILED" in text and "SKIPPED" in text and "broken [x]" in text


# --------------------------------------------------------------------------- against Docker


@pytest.fixture(scope="module")
def dev_run(built, tmp_path_factory):
    b = built("dev")
    out = tmp_path_factory.mktemp("dev")
    section = single.test(spec.load(VARIANTS / "dev.yaml"), b.image_id, out, gpu="auto", engine=Engine.from_env(),
                          base=b.base.ref)
    return b, out, section


@pytest.mark.slow
def test_dev_passes_and_writes_report_junit_and_facts(dev_run):
    b, out, section = dev_run
    assert section.passed is True, [r for r in section.results if r.status != "passed"]
    rep = report.load(out)
    assert rep.checks.passed is True and rep.checks.image_id == b.image_id
    facts = rep.facts
    assert facts.tensorflow == "2.9.3" and facts.python.startswith("3.9")
    assert facts.cuda is None and facts.cudnn is None and facts.image_id == b.image_id
    suite_xml = ET.parse(out / "checks.xml").getroot()
    cases = suite_xml.findall(".//testcase")
    assert len(cases) == len(section.results) and suite_xml.find(".//testsuite").get("name") == "tfimg-checks-dev"
    assert [r.check for r in section.results if r.status == "skipped"] and \
        all("GPU mode is off" in r.detail for r in section.results if r.status == "skipped")


@pytest.mark.slow
def test_containers_are_removed_after_a_run(dev_run):
    assert Engine.from_env().containers_with_label(labels.RUN, dev_run[2].run_id) == []


@pytest.mark.slow
def test_containers_are_removed_on_ctrl_c(built, tmp_path, monkeypatch):
    b = built("dev")
    seen: list[str] = []

    def interrupted(spec_, ctx_path, out_dir, timeout):
        import json
        ctx = json.loads(Path(ctx_path).read_text())
        seen.extend(c for c in (ctx["services"], ctx["pristine"], ctx["base_container"]) if c)
        raise KeyboardInterrupt

    monkeypatch.setattr(testrun, "_run_suite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        single.test(spec.load(VARIANTS / "dev.yaml"), b.image_id, tmp_path, gpu="off", engine=Engine.from_env(), base=b.base.ref)
    assert len(seen) == 3
    assert not [c for c in docker.from_env().containers.list(all=True) if c.id in seen]


def test_cli_gpu_on_without_nvidia_runtime_exits_2(built, tmp_path, capsys):
    if Engine.from_env().gpu_available():
        pytest.skip("this engine has an NVIDIA runtime")
    image = built("dev").image
    code = cli.main(["test", image, "--spec", str(VARIANTS / "dev.yaml"), "--gpu", "on", "--out", str(tmp_path)])
    assert code == 2
    assert "--gpu on" in capsys.readouterr().err


def test_cli_test_a_spec_that_was_never_built_says_so(tmp_path, capsys):
    code = cli.main(["test", str(VARIANTS / "dev.yaml"), "--out", str(tmp_path)])
    assert code == 2 and "has not been built" in capsys.readouterr().err


def test_baked_keys_only_means_login_cannot_be_tested(tmp_path):
    child = tmp_path / "baked.yaml"
    child.write_text(f"extends: {VARIANTS / 'bert.yaml'}\nssh:\n  authorized_keys_file: null\n")
    v = spec.load(child, allow=[VARIANTS.parent]).spec   # its parent lies outside tmp_path
    volumes, key, note, wrong = testrun._keys(tmp_path, v)
    assert volumes == {} and key is None and wrong
    assert "baked keys" in note and "authorized_keys_file" in note


def test_runtime_keys_path_gets_a_throwaway_key(tmp_path):
    v = spec.load(VARIANTS / "worker.yaml").spec
    volumes, key, note, wrong = testrun._keys(tmp_path, v)
    (src, mount), = volumes.items()
    assert mount == {"bind": "/run/secrets/authorized_keys", "mode": "ro"} and note == ""
    assert Path(src).read_text() == Path(key + ".pub").read_text() != Path(wrong + ".pub").read_text()


def _algs(*names: str) -> list[dict]:
    """A JSON section as ssh-audit 3.x writes it (one object per algorithm)."""
    return [{"algorithm": n, "notes": {}} for n in names]


def test_terrapin_needs_strict_kex_or_safe_ciphers():
    from builder.check.suite.test_ssh import terrapin
    chacha = {"kex": _algs("curve25519-sha256"), "enc": _algs("chacha20-poly1305@openssh.com"), "mac": []}
    assert "chacha20" in terrapin(chacha)
    assert terrapin({**chacha, "kex": _algs("kex-strict-s-v00@openssh.com")}) is None
    cbc = {"kex": [], "enc": _algs("aes128-cbc"), "mac": _algs("hmac-sha2-256-etm@openssh.com")}
    assert "CBC" in terrapin(cbc)
    assert terrapin({"kex": [], "enc": _algs("aes256-gcm@openssh.com", "aes128-ctr"),
                     "mac": _algs("hmac-sha2-256-etm@openssh.com")}) is None
    assert "chacha20" in terrapin({"kex": [], "enc": ["chacha20-poly1305@openssh.com"], "mac": []})  # 2.x: names


def test_ssh_audit_findings_follow_its_json_levels():
    from builder.check.suite.test_ssh import audit_findings
    audit = {"kex": [{"algorithm": "kex-strict-s-v00@openssh.com", "notes": {"fail": ["using unknown algorithm"]}},
                     {"algorithm": "diffie-hellman-group1-sha1", "notes": {"fail": ["using small 1024-bit modulus"],
                                                                           "warn": ["using weak hashing algorithm"]}}],
             "key": _algs("ssh-ed25519"), "enc": [], "mac": [],
             "additional_notes": ["Potentially insufficient connection throttling detected"]}
    found = audit_findings(audit)
    assert found["fail"] == ["(kex) diffie-hellman-group1-sha1: using small 1024-bit modulus"]
    assert "(kex) kex-strict-s-v00@openssh.com: using unknown algorithm" in found["warn"]    # a warning, as its exit says
    assert "note: Potentially insufficient connection throttling detected" in found["warn"]


def test_ssh_audit_beside_python_wins_over_path(tmp_path, monkeypatch):
    from builder.check.suite import test_ssh

    def tool(d: Path) -> Path:
        d.mkdir(parents=True, exist_ok=True)
        (d / "ssh-audit").write_text("#!/bin/sh\n")
        (d / "ssh-audit").chmod(0o755)
        return d / "ssh-audit"

    venv, system = tool(tmp_path / "venv/bin"), tool(tmp_path / "usr/bin")
    monkeypatch.setenv("PATH", str(system.parent))
    monkeypatch.setattr(test_ssh.sys, "executable", str(venv.parent / "python"))
    assert test_ssh.ssh_audit_path() == str(venv)
    venv.unlink()
    assert test_ssh.ssh_audit_path() == str(system)
