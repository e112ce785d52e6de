"""Commands: ``watch`` (published digests against today's advisories) and ``vex`` (waivers as OpenVEX)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import typer

from builder.cli.root import app, console, out, settings
from builder.errors import TfimgError

# Stage modules are imported inside the commands: `tfimg --help` imports none of them.
PASSWORD_ENV = "TFIMG_SIGN_KEY_PASSWORD"


def _day(text: str | None) -> dt.date:
    from builder.infra import clock

    try:
        return dt.date.fromisoformat(text) if text else clock.today()
    except ValueError:
        raise TfimgError(f"--date '{text}' is not a date (YYYY-MM-DD)") from None


def _write(path: Path, text: str, option: str) -> None:
    if path.is_dir():
        raise TfimgError(f"{option} {path} is a folder; give a file name")
    try:
        path.write_text(text)
    except OSError as exc:
        raise TfimgError(f"{option} {path}: cannot write it ({exc.strerror})") from None


@app.command()
def watch(
    namespace: str = typer.Argument(..., help="HOST[:PORT]/NAMESPACE, as `tfimg publish --registry` took it."),
    repos: list[str] = typer.Argument(None, help="Only these repositories under it (e.g. bert); all by default.",
                                      show_default=False),
    policy_file: str | None = typer.Option(None, "--policy", help="The current policy (file or shipped name)."),
    db_repository: str | None = typer.Option(None, "--trivy-db-repository", envvar="TFIMG_TRIVY_DB_REPOSITORY",
                                             help="Trivy's vulnerability DB from this OCI repository (fetched once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Also write Markdown here (an issue body)."),
    sarif: Path | None = typer.Option(None, "--sarif", help="Also write SARIF 2.1.0 here (one run per digest)."),
    warn_days: int = typer.Option(30, "--warn-days", min=0, help="Name waivers that expire within this many days."),
    key: Path | None = typer.Option(None, "--key", help="PEM public key: every attached statement must verify."),
    sign_key: str | None = typer.Option(None, "--sign-key", help="PEM private key (file or env:NAME) that signs the "
                                        "dated statement attached to each digest; none is attached without it."),
    vex_sources: list[str] = typer.Option([], "--vex", help="OpenVEX file, or HOST/NAME@sha256:... whose attached "
                                          "VEX documents apply (repeatable: yours and a vendor's)."),
    jobs: int = typer.Option(4, "--jobs", min=1, help="Digests watched at once."),
    on_date: str | None = typer.Option(None, "--date", help="Judge waiver expiry on this day (YYYY-MM-DD)."),
    trivy_path: str = typer.Option("trivy", "--trivy", envvar="TFIMG_TRIVY", help="Trivy executable."),
    cache_dir: Path | None = typer.Option(None, "--trivy-cache-dir", help="Trivy cache for the DB (default: "
                                          "a fresh one for this run)."),
    timeout: float = typer.Option(300, "--timeout", help="Seconds Trivy may take per digest."),
) -> None:
    """Watch every published digest: scan its signed SBOM against today's DB, never pulling the image.

    Per digest: findings new since publishing versus known at publishing, inherited from the base versus
    introduced by the variant, waivers that expired or expire within --warn-days (with their owners),
    and the decision under the current policy. Exit 0 when every digest still passes; 1 when any now
    fails or could not be watched (an alert: it never blocks anything by itself); 2 on bad input.
    """
    from builder.pipeline import watching
    from builder.publish import signing
    from builder.scan import policy as policies
    from builder.scan import trivy
    from builder.scan import watch_outputs as render

    signer = signing.load_signer(sign_key, os.environ.get(PASSWORD_ENV)) if sign_key else None
    if key is not None:
        signing.load_public_key(key)   # a bad key is bad input before anything is read
    req = watching.WatchRequest(
        namespace=namespace, repos=tuple(repos or ()), policy=policies.load(policy_file), today=_day(on_date),
        options=trivy.Options(binary=trivy_path, timeout=timeout, cache_dir=cache_dir, db_repository=db_repository),
        key=key, signer=signer, warn_days=warn_days, vex=tuple(vex_sources), jobs=jobs)
    report = watching.watch_all(req)
    if markdown is not None:
        _write(markdown, render.markdown(report), "--markdown")
    if sarif is not None:
        _write(sarif, json.dumps(render.sarif(report), indent=1), "--sarif")
    if as_json:
        out.print(report.model_dump_json(indent=2), markup=False, highlight=False, soft_wrap=True)
    elif settings().quiet:
        out.print(render.headline(report), markup=False)
    else:
        console.print(render.table(report))
        out.print(render.headline(report), markup=False)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command()
def vex(
    ref: str = typer.Argument(..., help="HOST/NAME@sha256:... (or HOST/NAME:TAG) of a published image."),
    policy_file: str = typer.Option(..., "--policy", help="The policy whose waivers are stated."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the document here (default: stdout)."),
    author: str | None = typer.Option(None, "--author", help="The document's author (default: the policy)."),
    on_date: str | None = typer.Option(None, "--date", help="Judge waiver expiry on this day (YYYY-MM-DD)."),
) -> None:
    """Write the OpenVEX (v0.2.0) document for the policy's waivers that apply to a published digest.

    A waiver with a `justification` is `not_affected` (Trivy's --vex then drops the finding); one
    without is `affected`, with its reason, owner and expiry as the action statement. The products are
    the image (pkg:oci) and the package purls. Nothing is written when no waiver applies.
    """
    from builder.pipeline import watching
    from builder.scan import policy as policies

    doc = watching.vex_for(ref, policies.load(policy_file), today=_day(on_date), author=author)
    if doc is None:
        console.print(f"tfimg: no waiver of {policy_file} applies to {ref}; no VEX document written")
        return
    text = json.dumps(doc.to_json(), indent=2) + "\n"
    if output is None:
        out.print(text.rstrip(), markup=False, highlight=False, soft_wrap=True)
        return
    _write(output, text, "--output")
    if not settings().quiet:
        out.print(f"wrote {output}: {len(doc.statements)} statement(s) for {ref}", markup=False)
