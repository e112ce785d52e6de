"""The wheel carries what an installed tfimg needs: templates, policies, profiles, the check suite."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.check import incontainer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_templates_policies_profiles_and_checks(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("tfimg-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"builder/templates/{p.relative_to(ROOT / 'templates')}" for p in (ROOT / "templates").rglob("*.j2")}
    expected |= {f"builder/policies/{p.name}" for p in (ROOT / "policies").glob("*.yaml")}
    expected |= {"builder/spec/data/profiles.yaml", "builder/check/suite/pytest.ini", "builder/check/suite/test_ssh.py"}
    expected |= {f"builder/check/incontainer/{name}" for name in incontainer.PROGRAMS}   # copied into containers
    assert expected <= names, sorted(expected - names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tfimg = builder.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
