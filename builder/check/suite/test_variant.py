"""The variant's own checks, from its spec (``checks.python_packages``, ``checks.commands``).

A child variant inherits its parent's checks through spec merging; each id
names the file that declared the check (``command[base.yaml#1]``).
"""

from __future__ import annotations

import json

import pytest

from builder.check.suite.context import Context
from builder.check.suite.helpers import program_json, sh
from builder.spec.profiles import version_matches


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    declared = Context.read().declared
    if "command" in metafunc.fixturenames:
        items = declared.get("commands") or []
        metafunc.parametrize("command", list(items) or [None], ids=[c["id"] for c in items] or ["none"])
    if "package" in metafunc.fixturenames:
        items = declared.get("python_packages") or []
        metafunc.parametrize("package", list(items) or [None], ids=[p["name"] for p in items] or ["none"])


def test_command(command, user_host, ctx, note):
    if command is None:
        pytest.skip("the variant declares no checks.commands")
    res = sh(user_host, command["command"], ctx.timeout)
    output = (res.stderr or res.stdout).strip()[-500:]
    timed_out = " (timed out)" if res.rc in (124, 137) else ""
    assert res.rc == 0, f"`{command['command']}` (declared in {command['file']}) exited {res.rc}{timed_out}: {output}"
    note(f"`{command['command']}` exits 0 (declared in {command['file']})")


def test_python_package(package, host, ctx, programs, note):
    if package is None:
        pytest.skip("the variant declares no checks.python_packages")
    got = program_json(host, programs, "tfimg_dists.py", "--no-import", json.dumps([package["name"]]),
                       timeout=ctx.timeout)
    version = got[package["name"]]["version"]
    where = f"declared in {package['file']}"
    assert version is not None, f"{package['name']} is not installed ({where})"
    assert version_matches(version, package["specifier"]), \
        f"{package['name']} {version} does not match {package['specifier']} ({where})"
    note(f"{package['name']} {version} matches {package['specifier']} ({where})")
