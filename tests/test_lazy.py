"""The CLI imports stage modules on first use, and that first use is safe from several threads."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "docker", "jinja2", "requests", "yaml")


def test_importing_the_cli_imports_no_stage_library() -> None:
    code = ("import sys, builder.cli; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


def test_first_use_from_many_threads_sees_the_whole_module() -> None:
    """importlib's LazyLoader let a second thread see a half-made module ("no attribute 'run'")."""
    code = """
import sys, threading
from builder.infra import lazy
mod = lazy.module("builder.scan.gate_outputs")
errors, start = [], threading.Barrier(8)
def use():
    start.wait()
    try:
        mod.headline, mod.sarif, mod.markdown
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=use) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors or "ok")
"""
    for _ in range(5):   # a fresh interpreter each time: the first use is what is tested
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert res.stdout.strip() == "ok", res.stdout


def test_an_already_imported_module_is_returned_as_it_is() -> None:
    from builder.infra import lazy, runner
    assert lazy.module("builder.infra.runner") is runner
