"""Python: private requirements at their pins, pip check clean, TensorFlow and the base's packages intact."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from builder.check.suite.helpers import lines, program_json, sh
from builder.spec.profiles import version_matches

BASE_FREEZE = "/opt/tfimg/python/base-packages.txt"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _freeze(text: str) -> dict[str, str]:
    out = {}
    for ln in lines(text):
        name, sep, version = ln.partition("==")
        if sep:
            out[_norm(name)] = version.strip()
    return out


def test_requirements_installed_at_pins(host, ctx, programs, note):
    reqs = ctx.requirements
    if not reqs:
        pytest.skip("the variant has no private requirements")
    names = sorted({r["name"] for r in reqs})
    got = program_json(host, programs, "tfimg_dists.py", json.dumps(names), timeout=300)
    bad = []
    for r in reqs:
        info = got.get(r["name"]) or {}
        where = f"{r['file']}:{r['line']}"
        if info.get("version") is None:
            bad.append(f"{r['name']} is not installed ({where})")
        elif r["specifier"] and not version_matches(info["version"], r["specifier"]):
            bad.append(f"{r['name']} {info['version']} does not match {r['specifier']} ({where})")
        for top, err in (info.get("import_errors") or {}).items():
            bad.append(f"`import {top}` ({r['name']}) fails: {err}")
    assert not bad, "; ".join(bad)
    note(f"{len(reqs)} requirements installed at their pins and importable")


def test_pip_check(host, ctx, base_run, note):
    res = sh(host, "python3 -m pip check --disable-pip-version-check", 180)
    if res.rc == 0:
        note("pip check: no broken requirements")
        return
    problems = set(lines(res.stdout))
    inherited: set[str] = set()
    if ctx.base_container:
        inherited = set(lines(base_run("python3 -m pip check --disable-pip-version-check", 180)[1]))
    new = sorted(problems - inherited)
    assert not new, "pip check: " + "; ".join(new)
    note(f"pip check: {len(problems)} problem(s), all already in the base")


def test_python_version(ctx, profile, note):
    row = profile.compare("python", ctx.probe.python if ctx.probe else None)
    assert row["status"] in ("ok", "recorded") or not row["confirmed"], \
        f"Python {row['detected']} does not match the profile {profile.name} ({row['expected']})"
    note(f"Python {row['detected']} ({row['status']} against {profile.name} {row['expected']})")


def test_tensorflow_version(ctx, profile, note):
    detected = ctx.probe.tensorflow if ctx.probe else None
    assert detected, f"TensorFlow does not import: {(ctx.probe.tf_error if ctx.probe else None) or ctx.probe_error}"
    row = profile.compare("tensorflow", detected)
    assert row["status"] in ("ok", "recorded") or not row["confirmed"], \
        f"TensorFlow {detected} does not match the profile {profile.name} ({row['expected']})"
    note(f"TensorFlow {detected} ({row['status']} against {profile.name} {row['expected']})")


def test_protected_packages_unchanged(host, variant, ctx, base_run, note):
    if sh(host, f"test -s {BASE_FREEZE}").rc == 0:
        base, source = _freeze(sh(host, f"cat {BASE_FREEZE}").stdout), BASE_FREEZE
    elif ctx.base_container:
        base, source = _freeze(base_run("python3 -m pip list --format=freeze", 180)[1]), ctx.base_ref
    else:
        pytest.skip(f"cannot run: no {BASE_FREEZE} in the image and no base image ({ctx.base_note})")
    now = _freeze(sh(host, "python3 -m pip list --format=freeze --disable-pip-version-check", 180).stdout)
    pats = [_norm(p) for p in variant.python.protected]
    protected = sorted(n for n in base if any(fnmatch.fnmatch(n, p) for p in pats))
    changed = [f"{n} {base[n]} -> {now.get(n, 'removed')}" for n in protected if now.get(n) != base[n]]
    assert not changed, f"protected packages differ from the base: {', '.join(changed)}"
    note(f"{len(protected)} protected packages as in the base (from {source})")
