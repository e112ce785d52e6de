"""Running Trivy and the scan/gate stage end to end, with a stand-in trivy (tests/fakes/fake_trivy).

The stand-in behaves like Trivy's CLI (version JSON, --output, --exit-code,
--input archives, unknown flags refused by version, first-run DB error) and
has failure modes: hang, slow (honours --timeout), exit 1, garbage, no report.
The real-Trivy test at the end is skipped when no `trivy` is on PATH.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from builder.cli.root import main
from builder.errors import EnvError, GateFailed
from builder.infra import outdir, report, runner
from builder.infra.engine import Engine
from builder.pipeline import single
from builder.scan import policy as policies
from builder.scan import stage as scan_stage
from builder.scan import trivy
from builder.spec import loader as spec
from tests import reports

HERE = Path(__file__).parent
FAKE = HERE / "fakes" / "fake_trivy"
DATA = HERE / "data" / "trivy"
IMAGE = "tfimg/demo:latest"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Point the stand-in at a fixture; returns a helper to read its call log."""
    log = tmp_path / "fake_trivy.log"
    monkeypatch.setenv("FAKE_TRIVY_LOG", str(log))
    monkeypatch.setenv("FAKE_TRIVY_FIXTURE", str(DATA / "fluentd-gems.json.golden"))
    monkeypatch.delenv("FAKE_TRIVY_MODE", raising=False)
    monkeypatch.delenv("FAKE_TRIVY_VERSION", raising=False)

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


def opts(**kw) -> trivy.Options:
    return trivy.Options(binary=str(FAKE), mode="reference", **{"timeout": 30, **kw})


def variant(tmp_path: Path, policy_text: str | None = None, digest: bool = False) -> spec.LoadedVariant:
    lines = ["name: demo"]
    if policy_text is not None:
        (tmp_path / "policy.yaml").write_text(policy_text)
        lines.append("policy: policy.yaml")
    if digest:
        lines += ["base:", "  digest: sha256:" + "a" * 64]
    (tmp_path / "demo.yaml").write_text("\n".join(lines) + "\n")
    return spec.load(tmp_path / "demo.yaml")


def rendered(out: Path) -> Path:
    """``out`` with a rendered Dockerfile in ``out/context``, as the build leaves it (policies check it)."""
    outdir.claim(out)   # tfimg's folder, as the build stage leaves it
    (out / "context").mkdir(parents=True, exist_ok=True)
    (out / "context" / "Dockerfile").write_text("FROM scratch\nUSER 1000\n")
    return out


def run_stage(loaded: spec.LoadedVariant, image: str, out: Path, base_ref: str | None = None, *,
              engine: Engine | None = None, options: trivy.Options | None = None,
              raise_on_block: bool = True) -> scan_stage.Scanned:
    """The scan and gate stage of a variant, recorded in ``out``/report.json, as `tfimg scan SPEC` runs it
    (a blocking gate raises its GateFailed, as the command does, unless ``raise_on_block`` is False)."""
    scanned = single.scan_variant(loaded, image, out, policies.load(loaded.spec.policy), base_ref=base_ref,
                                  options=options or opts(), engine=engine or Engine.deferred(), warn=print)
    if raise_on_block and scanned.decision == "block":
        raise scan_stage.blocked(scanned.result, out)
    return scanned


def image_argv(calls) -> list[str]:
    return next(c["argv"] for c in calls() if c["argv"][0] == "image")


# --------------------------------------------------------------------------- trivy.py

def test_version_is_read_and_recorded(fake, monkeypatch):
    monkeypatch.setenv("FAKE_TRIVY_VERSION", "0.58.1")
    info = trivy.version(opts())
    assert info.version == "0.58.1" and info.db is not None and info.db.Version == 2


@pytest.mark.parametrize("text,expected", [("0.58.1", (0, 58, 1)), ("v0.69", (0, 69, 0)), ("dev", None)])
def test_parse_version(text, expected):
    assert trivy.parse_version(text) == expected


def test_scan_argv_is_hermetic_and_decides_nothing_from_exit_code(fake, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".trivyignore").write_text("CVE-2019-18224\n")
    (tmp_path / "trivy.yaml").write_text("severity: [LOW]\n")
    monkeypatch.setenv("TRIVY_SEVERITY", "LOW")
    monkeypatch.setenv("TRIVY_DB_REPOSITORY", "mirror.example.com/trivy-db:2")
    run = trivy.scan_image(IMAGE, tmp_path / "out" / "trivy.json", opts(timeout=123))
    call = next(c for c in fake() if c["argv"][0] == "image")
    argv = call["argv"]
    for flag, value in (("--format", "json"), ("--exit-code", "0"), ("--timeout", "123s"),
                        ("--scanners", "vuln,secret,license"), ("--image-src", "docker")):
        assert argv[argv.index(flag) + 1] == value
    assert "--quiet" in argv and argv[-1] == IMAGE
    assert call["cwd"] != str(tmp_path) and not Path(call["cwd"]).exists()   # a temp dir, removed
    assert call["env"]["TRIVY_SEVERITY"] == ""                                # blanked
    assert call["env"]["TRIVY_DB_REPOSITORY"] == "mirror.example.com/trivy-db:2"   # kept
    assert {f.id for f in run.report.findings()} == {"CVE-2019-18224", "CVE-2020-8165"}
    assert run.info.trivy_version == "0.58.1" and run.info.findings == {"vulnerability": 2}
    assert json.loads(run.path.read_text())["SchemaVersion"] == 2


def test_findings_with_a_nonzero_exit_code_would_fail(fake, monkeypatch, tmp_path):
    """The stand-in exits with --exit-code when it finds something, like Trivy: tfimg passes 0."""
    run = trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts())
    assert run.report.findings()
    proc = subprocess.run([str(FAKE), "image", "--format", "json", "--output", str(tmp_path / "x.json"),
                           "--exit-code", "5", IMAGE], capture_output=True)
    assert proc.returncode == 5


def test_secret_code_lines_never_reach_trivy_json(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_FIXTURE", str(DATA / "secrets.json.golden"))
    run = trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts())
    assert "ghp_" not in run.path.read_text() and [f.kind for f in run.report.findings()] == ["secret"] * 2


@pytest.mark.parametrize("version,has_new_flags", [("0.58.1", False), ("0.65.0", True), ("dev", True)])
def test_offline_flags_follow_the_version(fake, monkeypatch, tmp_path, version, has_new_flags):
    monkeypatch.setenv("FAKE_TRIVY_VERSION", version)
    cache = tmp_path / "cache"
    (cache / "db").mkdir(parents=True)
    (cache / "db" / "trivy.db").write_bytes(b"db")
    (cache / "db" / "metadata.json").write_text("{}")
    trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts(offline=True, cache_dir=cache))
    argv = image_argv(fake)
    for flag in ("--skip-db-update", "--skip-java-db-update", "--skip-check-update", "--offline-scan"):
        assert flag in argv
    assert argv[argv.index("--cache-dir") + 1] == str(cache)
    assert ("--skip-version-check" in argv) is has_new_flags and ("--disable-telemetry" in argv) is has_new_flags


def test_offline_without_a_db_stops_before_running(fake, tmp_path):
    with pytest.raises(EnvError, match="pre-downloaded Trivy DB") as exc:
        trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts(offline=True, cache_dir=tmp_path / "empty"))
    assert "--download-db-only" in exc.value.hint
    assert not any(c["argv"][0] == "image" for c in fake())


def test_skip_db_update_on_first_run_is_an_error(fake, tmp_path):
    """What Trivy itself says when the DB is missing (bypassing tfimg's own check)."""
    proc = subprocess.run([str(FAKE), "image", "--format", "json", "--skip-db-update", "--cache-dir",
                           str(tmp_path), IMAGE], capture_output=True, text=True)
    assert proc.returncode == 1 and "first run" in proc.stderr


@pytest.mark.parametrize("mode,message", [
    ("exit1", "failed with exit code 1"),
    ("garbage", "not JSON"),
    ("noreport", "wrote no report"),
    ("badversion", "version JSON"),
])
def test_trivy_failures_are_env_errors(fake, monkeypatch, tmp_path, mode, message):
    monkeypatch.setenv("FAKE_TRIVY_MODE", mode)
    with pytest.raises(EnvError, match=message) as exc:
        trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts())
    assert exc.value.exit_code == 2 and not (tmp_path / "trivy.json").exists()
    if mode == "exit1":
        assert "database error" in exc.value.hint


def test_cyclonedx_output_is_not_a_report(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_FIXTURE", str(DATA / "pom-cyclonedx.json.golden"))
    with pytest.raises(EnvError, match="CycloneDX"):
        trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts())


def test_too_old_trivy(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_VERSION", "0.30.0")
    with pytest.raises(EnvError, match="too old") as exc:
        trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts())
    # the message and its install hint name the same minimum (the hint once said 0.45)
    assert "needs 0.37 or newer" in exc.value.message and "0.37 or newer" in (exc.value.hint or "")


def test_missing_trivy(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvError, match="not found on PATH") as exc:
        trivy.version(trivy.Options(binary="trivy-absent-here"))
    assert "required: false" in exc.value.hint
    with pytest.raises(EnvError, match="not executable"):
        trivy.version(trivy.Options(binary=str(tmp_path / "trivy")))


def test_hang_is_cut_off(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_MODE", "hang")
    start = time.monotonic()
    with pytest.raises(EnvError, match="did not finish"):
        trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts(timeout=1))
    assert time.monotonic() - start < 10


def test_trivy_own_timeout(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_MODE", "slow")
    with pytest.raises(EnvError, match="exit code 1") as exc:
        trivy.scan_image(IMAGE, tmp_path / "trivy.json", opts(timeout=1))
    assert "deadline" in exc.value.hint


# --------------------------------------------------------------------------- the scan and gate stage

def test_stage_passes_and_writes_every_file(fake, monkeypatch, tmp_path):
    loaded = variant(tmp_path, "vulnerabilities: {new: {fixed: none}}\n")
    out = rendered(tmp_path / "build" / "demo")
    result = run_stage(loaded, IMAGE, out)
    assert result.decision == "pass"
    for name in ("trivy.json", "gate.json", "gate.sarif", "gate.md", "report.json"):
        assert (out / name).is_file(), name
    rep = report.load(out)
    assert rep.scan.status == "ok" and rep.scan.trivy_version == "0.58.1"
    assert rep.gate.decision == "pass" and rep.gate.policy == "policy"
    assert json.loads((out / "gate.sarif").read_text())["version"] == "2.1.0"


def test_stage_blocks_with_gate_failed_and_uses_recorded_base_layers(fake, tmp_path):
    loaded = variant(tmp_path)
    out = tmp_path / "build" / "demo"
    golden = json.loads((DATA / "fluentd-gems.json.golden").read_text())   # what the fake Trivy reports
    layers = golden["Metadata"]["DiffIDs"][:2]
    reports.write(out, reports.build(golden["Metadata"]["ImageID"], base_layers=layers))
    rendered(out)   # the default policy also checks the rendered Dockerfile
    with pytest.raises(GateFailed) as exc:
        run_stage(loaded, IMAGE, out)
    assert exc.value.exit_code == 1 and "BLOCK" in exc.value.message
    gate = report.load(out).gate
    assert gate.decision == "block" and gate.blocking_ids == ["CVE-2020-8165"]
    assert gate.counts["vulnerability"]["inherited"]["CRITICAL"] == 1 and gate.base_layers_known


def test_trivy_missing_fails_closed(tmp_path, fake):
    loaded = variant(tmp_path)
    out = outdir.claim(tmp_path / "out")
    report.write_json(out / "trivy.json", {"SchemaVersion": 2})     # an older report must not survive
    with pytest.raises(EnvError, match="fails closed"):
        run_stage(loaded, IMAGE, out, options=trivy.Options(binary=str(tmp_path / "no")))
    rep = report.load(out)
    assert rep.gate.decision == "block" and rep.scan.status == "failed"
    assert not (out / "trivy.json").exists()


def test_scan_not_required_gives_unscanned(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_TRIVY_MODE", "exit1")
    loaded = variant(tmp_path, "scan: {required: false}\n")
    out = tmp_path / "out"
    result = run_stage(loaded, IMAGE, out)
    assert result.decision == "unscanned" and result.result.label == "UNSCANNED"
    assert report.load(out).gate.decision == "unscanned"
    assert "UNSCANNED" in (out / "gate.md").read_text()


def test_require_base_digest_reads_the_spec(fake, tmp_path):
    text = "vulnerabilities: {new: {fixed: none}}\nrequire_base_digest: true\n"
    out = rendered(tmp_path / "out")
    unpinned = run_stage(variant(tmp_path, text), IMAGE, out, raise_on_block=False)
    assert unpinned.decision == "block" and "digest" in unpinned.result.reasons[0]
    pinned = run_stage(variant(tmp_path, text, digest=True), IMAGE, out)
    assert pinned.decision == "pass"


def test_misconfig_scan_of_the_rendered_dockerfile(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_CONFIG_FIXTURE", str(DATA / "older/v0.68.0/dockerfile.json.golden"))
    loaded = variant(tmp_path, "scan: {misconfig: true}\nvulnerabilities: {new: {fixed: none}}\n"
                               "misconfigurations: {block: HIGH}\n")
    out = tmp_path / "build" / "demo"
    with pytest.raises(EnvError, match="no rendered Dockerfile") as exc:   # nothing rendered yet
        run_stage(loaded, IMAGE, out)
    assert "fails closed" in exc.value.message and report.load(out).gate.decision == "block"
    (out / "context").mkdir(parents=True)
    (out / "context" / "Dockerfile").write_text("FROM scratch\n")
    result = run_stage(loaded, IMAGE, out, raise_on_block=False)
    config_call = next(c["argv"] for c in fake() if c["argv"][0] == "config")
    assert config_call[-1] == str((out / "context").resolve()) and "--exit-code" in config_call
    assert [b.finding.id for b in result.result.blocking] == ["DS-0002"]
    assert (out / "trivy-config.json").is_file() and report.load(out).scan.misconfig is True


# --------------------------------------------------------------------------- CLI

def test_cli_scan_image_then_gate(fake, tmp_path, capsys):
    out = tmp_path / "scan"
    assert main(["scan", IMAGE, "--trivy", str(FAKE), "--by-reference", "--out", str(out)]) == 0
    assert "gate it with" in capsys.readouterr().out
    assert report.load(out).scan.image == IMAGE
    assert main(["gate", "--report", str(out / "trivy.json")]) == 1
    assert report.load(out).gate.decision == "block"
    layers = tmp_path / "inspect.json"
    diff_ids = json.loads((DATA / "fluentd-gems.json.golden").read_text())["Metadata"]["DiffIDs"]
    layers.write_text(json.dumps([{"Id": "sha256:x", "RootFS": {"Type": "layers", "Layers": diff_ids}}]))
    assert main(["gate", "--report", str(out / "trivy.json"), "--base-layers", str(layers)]) == 0
    assert report.load(out).gate.counts["vulnerability"]["inherited"]["HIGH"] == 1


@pytest.mark.docker   # looks up the base's layers in the engine
def test_cli_scan_spec_gates_under_its_policy(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    variant(tmp_path, "vulnerabilities: {new: {fixed: CRITICAL}}\n")
    built = json.loads((DATA / "fluentd-gems.json.golden").read_text())["Metadata"]["ImageID"]   # what the fake scans
    reports.write(rendered(tmp_path / "build" / "demo"), reports.build(built))
    rc = main(["scan", "demo.yaml", "--trivy", str(FAKE), "--by-reference"])
    assert rc == 1
    assert image_argv(fake)[-1] == built
    assert report.load(tmp_path / "build" / "demo").gate.blocking_ids == ["CVE-2019-18224"]


def test_cli_gate_expired_waiver_names_owner(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("waivers:\n  - {id: CVE-2019-18224, reason: accepted risk, owner: "
                                     "ops@example.com, expires: 2026-01-31}\n")
    shutil.copy(DATA / "debian-buster.json.golden", tmp_path / "trivy.json")
    args = ["gate", "--report", str(tmp_path / "trivy.json"), "--policy", str(tmp_path / "p.yaml"),
            "--assume-vuln-scanned"]   # a report made elsewhere: no tfimg scan record beside it
    assert main([*args, "--date", "2026-01-31"]) == 0
    assert main([*args, "--date", "2026-02-01"]) == 1
    assert "ops@example.com" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["report", "policy", "layers", "date"])
def test_cli_gate_bad_input_exits_2(tmp_path, bad):
    (tmp_path / "bad.yaml").write_text("vulnerabilities: {neu: {}}\n")
    (tmp_path / "layers.txt").write_text("not a digest\n")
    (tmp_path / "garbage.json").write_text("garbage")
    shutil.copy(DATA / "debian-buster.json.golden", tmp_path / "trivy.json")
    args = {"report": ["--report", str(tmp_path / "garbage.json")],
            "policy": ["--report", str(tmp_path / "trivy.json"), "--policy", str(tmp_path / "bad.yaml")],
            "layers": ["--report", str(tmp_path / "trivy.json"), "--base-layers", str(tmp_path / "layers.txt")],
            "date": ["--report", str(tmp_path / "trivy.json"), "--date", "tomorrow"]}[bad]
    assert main(["gate", *args]) == 2
    assert not (tmp_path / "gate.json").exists()


def test_cli_scan_failure_exits_2(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRIVY_MODE", "garbage")
    out = tmp_path / "o"
    assert main(["scan", IMAGE, "--trivy", str(FAKE), "--by-reference", "--out", str(out)]) == 2
    assert report.load(out).scan.status == "failed"


# --------------------------------------------------------------------------- with a real engine / trivy

def make_image(files: dict[str, bytes]) -> str:
    """A tiny real image made with `docker import` of a tarball (nothing is pulled)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ref = f"tfimg-test/tiny:{uuid.uuid4().hex[:10]}"
    subprocess.run(["docker", "import", "-", ref], input=buf.getvalue(), check=True, capture_output=True)
    return ref


@pytest.fixture
def images(engine):
    """Make tiny images; all are removed afterwards (no engine: skipped, or failed in CI)."""
    made: list[str] = []

    def make(files: dict[str, bytes]) -> str:
        made.append(make_image(files))
        return made[-1]
    yield make
    for ref in made:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True)


@pytest.mark.docker
def test_docker_save_archive_is_scanned(fake, tmp_path, images):
    from builder.infra.engine import Engine
    tiny_image = images({"etc/os-release": b"ID=tfimgtest\n"})
    loaded = variant(tmp_path, "vulnerabilities: {new: {fixed: none}}\n")
    out = rendered(tmp_path / "build" / "demo")
    result = run_stage(loaded, tiny_image, out, tiny_image, engine=Engine.from_env(),
                       options=trivy.Options(binary=str(FAKE), timeout=60, mode="archive"))
    argv = image_argv(fake)
    assert "--input" in argv and "--image-src" not in argv
    saved = json.loads((out / "trivy.json").read_text())
    assert saved["Metadata"]["RepoTags"] == [tiny_image]     # read from the real archive's manifest
    assert saved["ArtifactName"] == tiny_image               # the temp path is replaced by the ref
    assert result.result.base_layers_known and result.decision == "pass"


@pytest.mark.trivy
@pytest.mark.docker
@pytest.mark.skipif(runner.which("trivy") is None and not os.environ.get("CI"),
                    reason="no trivy (install the scan extra); under CI=true this fails instead")
def test_real_trivy_end_to_end(tmp_path, images):
    """Real Trivy, no network needed: the secret scanner and the Dockerfile checks need no DB."""
    from builder.infra.engine import Engine
    key = "AKIA" + uuid.uuid4().hex[:16].upper().replace("0", "Q").replace("1", "Z")
    image = images({"etc/os-release": b"ID=tfimgtest\n",
                    "app/deploy.sh": f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={key}\n".encode()})
    loaded = variant(tmp_path, "scan: {misconfig: true}\nmisconfigurations: {block: none}\n")
    out = outdir.claim(tmp_path / "build" / "demo")   # as the build stage leaves it
    (out / "context").mkdir()
    (out / "context" / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    options = trivy.Options(timeout=300, cache_dir=tmp_path / "cache", scanners=("secret",))
    with pytest.raises(GateFailed):
        run_stage(loaded, image, out, engine=Engine.from_env(), options=options)
    rep = report.load(out)
    assert trivy.parse_version(rep.scan.trivy_version) >= trivy.MIN_VERSION
    assert rep.gate.decision == "block" and "aws-access-key-id" in rep.gate.blocking_ids
    assert rep.gate.counts["misconfiguration"]["new"]["HIGH"] >= 1        # DS-0002: no USER
    gate_json = json.loads((out / "gate.json").read_text())
    secret = next(b["finding"] for b in gate_json["blocking"] if b["finding"]["kind"] == "secret")
    assert secret["path"].endswith("app/deploy.sh") and secret["line"] == 2
    for f in out.iterdir():
        if f.is_file():
            assert key not in f.read_text(errors="replace"), f"the secret leaked into {f.name}"


def test_an_interrupted_scan_leaves_no_pass_behind(fake, monkeypatch, tmp_path):
    loaded = variant(tmp_path, "vulnerabilities: {new: {fixed: none}}\n")
    out = rendered(tmp_path / "out")
    assert run_stage(loaded, IMAGE, out).decision == "pass"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trivy, "scan_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_stage(loaded, IMAGE, out)
    assert report.load(out).gate.decision == "block"


def test_a_relative_cache_dir_reaches_trivy_absolute(fake, monkeypatch, tmp_path):
    # Trivy runs in an empty temp dir: `--trivy-cache-dir build/trivy-cache` must not land there,
    # and `trivy version` (which reads the DB's schema and UpdatedAt) must read the same dir
    monkeypatch.chdir(tmp_path)
    trivy.scan_image(IMAGE, tmp_path / "out" / "trivy.json", opts(cache_dir=Path("rel-cache")))
    dirs = {c["argv"][c["argv"].index("--cache-dir") + 1] for c in fake() if "--cache-dir" in c["argv"]}
    assert dirs == {str(tmp_path / "rel-cache")}
    assert {c["argv"][0] for c in fake() if "--cache-dir" in c["argv"]} >= {"image", "version"}
