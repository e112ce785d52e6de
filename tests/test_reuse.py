"""Stage results are reused when their inputs have not changed (builder/pipeline/reuse.py).

The unit tests decide on keys alone. The pipeline test builds a small variant (worker, extended
in a temp dir) on the stand-in with the real Trivy and the demo DB, then changes one input at a
time: the policy (only the gate runs), the DB (a re-scan), a check in the spec (the checks run),
and a failing check (never reused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.infra.report_models import StageReuse
from builder.pipeline import reuse

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- decisions

def test_same_key_is_reused_and_says_what_was_the_same():
    key = {"image": "sha256:a", "suite": "sha256:s"}
    d = reuse.decide("checks", key, StageReuse(reused=False, key=dict(key)), passed=True)
    assert d.reuse and d.message == "checks: reused (same image, suite)"
    assert d.record() == StageReuse(reused=True, key=key)


def test_a_changed_input_runs_and_says_which():
    d = reuse.decide("scan", {"image": "a", "db": "2026-11-29"}, StageReuse(reused=True, key={"image": "a", "db": "x"}),
                     passed=True)
    assert not d.reuse and d.why == "ran (DB changed)"
    assert d.record().reused is False


def test_a_failure_is_never_reused_and_forcing_runs():
    prev = StageReuse(reused=False, key={"image": "a"})
    assert not reuse.decide("checks", {"image": "a"}, prev, passed=False).reuse
    assert "never reused" in reuse.decide("checks", {"image": "a"}, prev, passed=False).why
    assert reuse.decide("checks", {"image": "a"}, prev, passed=True, forced="--recheck").why == "ran (--recheck)"
    assert reuse.decide("checks", {"image": "a"}, None, passed=True).why == "ran (no earlier result to reuse)"


def test_suite_hash_follows_the_suite_files():
    assert reuse.suite_hash() == reuse.suite_hash()
    assert reuse.suite_hash().startswith("sha256:")


# --------------------------------------------------------------------------- the pipeline, for real

def _variant(d: Path, commands: list[str]) -> Path:
    (d / "reuse.yaml").write_text(
        f"extends: {ROOT / 'variants' / 'worker.yaml'}\ndescription: reuse test\npolicy: policy.yaml\n"
        "checks:\n  commands:\n" + "".join(f"    - {json.dumps(c)}\n" for c in commands))
    return d / "reuse.yaml"


@pytest.mark.docker
@pytest.mark.slow
def test_each_stage_reruns_only_when_its_inputs_change(standin_base: str, demo_db: str, tmp_path: Path):
    spec_dir, out, cache = tmp_path / "spec", tmp_path / "build", tmp_path / "trivy-cache"
    spec_dir.mkdir()
    (spec_dir / "policy.yaml").write_text((ROOT / "policies" / "default.yaml").read_text())
    spec = _variant(spec_dir, ["true"])

    def build(*extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
        res = subprocess.run([sys.executable, "-m", "builder", "build", str(spec), "--base", standin_base,
                              "--out", str(out), "--trivy-db-repository", demo_db, "--trivy-cache-dir", str(cache),
                              *extra], capture_output=True, text=True, cwd=ROOT, timeout=900,
                             env={**os.environ, "TFIMG_TRIVY": str(ROOT / ".venv" / "bin" / "trivy"),
                                  "TFIMG_ALLOW_DIRS": str(ROOT)})   # it extends variants/worker.yaml
        res.stdout += res.stderr   # the stage lines go to stderr, the summary to stdout
        return res, json.loads((out / "reuse" / "report.json").read_text())

    def reused(rep: dict) -> dict[str, bool]:
        return {s: (rep[s].get("reuse") or {}).get("reused") for s in ("checks", "scan", "gate", "tags")}

    res, rep = build()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert reused(rep) == {"checks": False, "scan": False, "gate": False, "tags": False}

    res, rep2 = build()   # nothing changed: every stage reused, with the key it matched
    assert res.returncode == 0, res.stderr[-3000:]
    assert reused(rep2) == {"checks": True, "scan": True, "gate": True, "tags": True}
    assert "checks: reused (same image, base, suite, spec, GPU mode, engine GPU facts)" in res.stdout
    for stage in ("checks", "scan", "gate", "tags"):
        assert rep2[stage]["reuse"]["key"] == rep[stage]["reuse"]["key"]
    assert rep2["scan"]["reuse"]["key"]["image"] == rep2["build"]["image_id"]
    assert rep2["checks"]["run_id"] == rep["checks"]["run_id"]   # the same result, not a new run

    # the policy changes: only the gate runs (the image and its other stages stay)
    (spec_dir / "policy.yaml").write_text((spec_dir / "policy.yaml").read_text() + "\n# edited\n")
    res, rep3 = build()
    assert res.returncode == 0, res.stderr[-3000:]
    assert reused(rep3) == {"checks": True, "scan": True, "gate": False, "tags": True}
    assert "gate: ran (policy changed)" in res.stdout
    assert rep3["build"]["image_id"] == rep["build"]["image_id"]

    # a newer DB (its metadata says so): a new scan, always; then the gate on it
    meta = cache / "db" / "metadata.json"
    data = json.loads(meta.read_text())
    data["UpdatedAt"] = data["UpdatedAt"].replace(data["UpdatedAt"][:4], str(int(data["UpdatedAt"][:4]) + 1), 1)
    meta.write_text(json.dumps(data))
    res, rep4 = build()
    assert res.returncode == 0, res.stderr[-3000:]
    assert "scan: ran (DB changed)" in res.stdout
    assert reused(rep4) == {"checks": True, "scan": False, "gate": False, "tags": True}

    # --rescan and --recheck force their stage
    res, rep5 = build("--recheck")
    assert res.returncode == 0 and "checks: ran (--recheck)" in res.stdout
    assert reused(rep5)["checks"] is False and reused(rep5)["scan"] is True

    # a check changes in the spec: the checks run again
    _variant(spec_dir, ["true", "test -d /tmp"])
    res, rep6 = build()
    assert res.returncode == 0, res.stderr[-3000:]
    assert reused(rep6)["checks"] is False
    assert "checks: ran (" in res.stdout

    # a failing check: exit 1; a rerun runs the checks again, never reuses the failure
    _variant(spec_dir, ["true", "false"])
    res, rep7 = build()
    assert res.returncode == 1 and rep7["checks"]["passed"] is False
    assert rep7["checks"].get("reuse") is None
    res, rep8 = build()
    assert res.returncode == 1 and "checks: ran (" in res.stdout and "reused" not in res.stdout.split("checks:")[1][:40]


# --------------------------------------------------------------------------- parallel checks

def test_suite_groups_are_consecutive_modules_in_order():
    from builder.check import stage, suite
    from builder.spec.loader import load

    for name in ("bert", "worker", "dev"):
        paths = suite.paths_for(load(ROOT / "variants" / f"{name}.yaml").spec)
        parts = stage.groups(paths)
        assert len(parts) == 2 and [p for g in parts for p in g] == paths


def test_junit_of_the_groups_is_joined_in_order(tmp_path: Path):
    import xml.etree.ElementTree as ET

    from builder.check import stage

    def part(i: int, names: list[str]) -> Path:
        cases = "".join(f'<testcase classname="test_m{i}" name="{n}" time="1.0"/>' for n in names)
        p = tmp_path / f"checks-{i}.xml"
        p.write_text(f'<testsuites><testsuite name="tfimg-checks-x" tests="{len(names)}" errors="0" failures="{i}" '
                     f'skipped="0" time="{len(names)}.0">{cases}</testsuite></testsuites>')
        return p

    stage._join_junit([part(0, ["a", "b"]), part(1, ["c"])], tmp_path / "checks.xml")
    suite = ET.parse(tmp_path / "checks.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "tfimg-checks-x"
    assert [c.get("name") for c in suite.iter("testcase")] == ["a", "b", "c"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("3", "1", "3.000")
