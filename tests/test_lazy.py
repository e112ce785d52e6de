"""`tfimg --help` stays fast: the CLI imports stage modules inside the command bodies, never at import."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "docker", "jinja2", "requests", "yaml")
STAGES = ("builder.pipeline", "builder.image", "builder.check", "builder.scan", "builder.publish",
          "builder.render", "builder.spec")


def _imported(code: str) -> set[str]:
    """The modules imported after ``code`` ran (written to stderr: stdout is the command's)."""
    res = subprocess.run([sys.executable, "-c", f"import sys; {code}; print(*sorted(sys.modules), file=sys.stderr)"],
                         capture_output=True, text=True, check=True)
    return set(res.stderr.split())


def test_importing_the_cli_imports_no_stage_library() -> None:
    roots = {m.split(".")[0] for m in _imported("import builder.cli")}
    assert not roots & set(HEAVY), sorted(roots & set(HEAVY))


def test_help_imports_no_stage_module() -> None:
    """`tfimg --help` (and a command's --help) run without importing a stage or the pipeline; the root
    help imports no library a stage needs either (Typer itself imports pydantic for a command's help).
    Measured: `python -X importtime -m builder --help`."""
    for argv in (["--help"], ["build", "--help"], ["publish", "--help"], ["registry", "--help"]):
        mods = _imported(f"from builder.cli import main; main({argv!r})")
        assert not sorted(m for m in mods if m.startswith(STAGES)), argv
        if argv == ["--help"]:
            assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_a_command_imports_its_stage_on_first_use() -> None:
    mods = _imported("from builder.cli import main; main(['schema', '--report', '-o', '/dev/null'])")
    assert "builder.infra.report_models" in mods and "builder.pipeline.orchestrator" not in mods
