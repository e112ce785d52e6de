"""Commands: ``tags``, ``publish``, ``promote``, ``registry ls|show|prune|catalog``, ``matrix``."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import typer

from builder.cli.root import ALLOW_DIRS, app, out, settings, spec_arg
from builder.errors import TfimgError
from builder.infra.paths import OUT_ROOT

# Stage modules are imported inside the commands: `tfimg --help` imports none of them.
PASSWORD_ENV = "TFIMG_SIGN_KEY_PASSWORD"   # never an option: a password on the command line would leak

registry_app = typer.Typer(help="Look at and curate published images (list, evidence, retention, a catalog site).",
                           no_args_is_help=True)
app.add_typer(registry_app, name="registry")

OUT_OPT = typer.Option(OUT_ROOT, "--out", help="Root of the per-variant output folders.")


def _say(text: str) -> None:
    if not settings().quiet:
        out.print(text, markup=False, highlight=False)


@app.command()
def tags(spec_file: Path = spec_arg(), out_root: Path = OUT_OPT,
         image: str | None = typer.Option(None, "--image", help="Tag this image instead of the built one."),
         allow_dirs: list[Path] = ALLOW_DIRS,
         ) -> None:
    """Print the variant's tags (read from the built image) and write build/<variant>/tags.txt."""
    from builder.infra import report
    from builder.infra.engine import Engine
    from builder.pipeline import single
    from builder.spec import loader as spec

    loaded = spec.load(spec_file, allow_dirs)
    text = single.tags(loaded, report.variant_dir(out_root, loaded.name), engine=Engine.deferred(), image=image)
    out.print(text.rstrip(), markup=False, highlight=False)


@app.command()
def publish(spec_file: Path = spec_arg(), out_root: Path = OUT_OPT,
            registry: str = typer.Option(..., "--registry", help="HOST[:PORT]/NAMESPACE; the repository is "
                                         "NAMESPACE/<variant>. Credentials: `docker login HOST`."),
            push: bool = typer.Option(False, "--push", help="Really push (default: print the plan)."),
            sign_key: str | None = typer.Option(None, "--sign-key", help="PEM private key that signs the attached "
                                                "statements: a file, or env:NAME for a variable holding it "
                                                "(password, if any: TFIMG_SIGN_KEY_PASSWORD). Never echoed."),
            allow_dirs: list[Path] = ALLOW_DIRS,
            ) -> None:
    """Push a checked, scanned and gated image: immutable tag, moving tags, evidence."""
    import os

    from builder.infra import report
    from builder.infra.engine import Engine
    from builder.pipeline import single
    from builder.publish import push as publish_mod
    from builder.spec import loader as spec

    loaded = spec.load(spec_file, allow_dirs)
    directory = report.variant_dir(out_root, loaded.name)
    rec = single.publish(loaded, directory, registry, engine=Engine.deferred(), push=push, sign_key=sign_key,
                         key_password=os.environ.get(PASSWORD_ENV))
    if isinstance(rec, publish_mod.Plan):
        for line in rec.lines():
            _say(line)
        _say("dry run: nothing pushed; add --push to publish")
        return
    if rec.same_inputs:
        _say(f"already published from the same inputs: {rec.repository}@{rec.digest} (image {rec.same_inputs[:19]}; "
             f"this build, image {rec.image_id[:19]}, was not pushed)")
        for ref in rec.refs:
            _say(f"  {ref}")
        return
    _say(f"published {rec.repository}@{rec.digest}" + (" (already there: push skipped)" if rec.skipped_push else ""))
    for ref in rec.refs:
        _say(f"  {ref}")
    for att in rec.attestations:
        state = "already attached" if att.existing else ("signed" if rec.signed else "UNSIGNED")
        _say(f"  {state} {att.kind}: {rec.repository}@{att.digest}")
    if rec.evidence is not None:
        _say(f"  cosign: {rec.repository}:{rec.evidence.tag}")


@app.command()
def promote(source: str = typer.Argument(..., help="HOST/NAME@sha256:... (the tested digest)."),
            to: str = typer.Option(..., "--to", help="Target repository HOST/PRODNAME."),
            policy: Path | None = typer.Option(None, "--policy", help="Target gate policy to re-evaluate."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Check only; copy nothing."),
            key: list[Path] = typer.Option([], "--key", help="PEM public key (repeatable): the statements must "
                                           "verify as `tfimg verify` checks them before copying, and only those "
                                           "are judged (needed when the policy has publish.require_signatures "
                                           "and names no publish.public_key)."),
            sign_key: str | None = typer.Option(None, "--sign-key", help="PEM private key that signs the promotion "
                                                "record (a file, or env:NAME; password: TFIMG_SIGN_KEY_PASSWORD). "
                                                "Without it the record is UNSIGNED; a policy with "
                                                "publish.require_signatures needs it."),
            ) -> None:
    """Copy one digest to a target repository if its attached evidence passes the policy."""
    import os

    from builder.pipeline import gatekeeping
    from builder.publish import signing

    signer = signing.load_signer(sign_key, os.environ.get(PASSWORD_ENV)) if sign_key and not dry_run else None
    res = gatekeeping.promote(source, to, policy=policy, dry_run=dry_run, keys=key, signer=signer)
    verb = "would promote" if dry_run else "promoted"
    _say(f"{verb} {res.source} -> {res.target} ({res.policy})")
    for tag in res.tags:
        _say(f"  {res.target}:{tag}")
    if not dry_run:
        _say(f"  promotion record: {'signed' if res.record_signed else 'UNSIGNED (no --sign-key)'}, on both sides")


@app.command()
def verify(ref: str = typer.Argument(..., help="HOST/NAME@sha256:... (or HOST/NAME:TAG)."),
           key: list[Path] = typer.Option(..., "--key", help="PEM public key of a trusted signer (repeatable)."),
           require: list[str] = typer.Option([], "--require", help="Statements that must be there, signed by a "
                                             "--key and consistent with the image: comma-separated or repeated, "
                                             "among report, sbom, vuln, provenance, promotion (default: report,"
                                             "sbom,vuln,provenance)."),
           ) -> None:
    """Verify a digest's evidence as a policy: each required statement signed by a trusted key and consistent
    with the image (statements of other signers are listed, never a failure)."""
    from builder.publish import verify as verify_mod

    v = verify_mod.verify(ref, key, verify_mod.required_kinds(require))
    for line in v.lines():
        _say(line)
    if not v.ok:
        raise v.error()


@registry_app.command("ls")
def registry_ls(namespace: str = typer.Argument(..., help="HOST[:PORT]/NAMESPACE or a repository."),
                as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List variants, tags, digests, ages, sizes and gate status."""
    from builder.publish import curation as registry_mod

    rows = registry_mod.ls(namespace)
    if as_json:
        out.print(json.dumps([r.__dict__ for r in rows], indent=2), markup=False, highlight=False)
        return
    _say(f"{'VARIANT':<16} {'DIGEST':<19} {'AGE':>6} {'SIZE':>9} {'GATE':<13} {'PROMOTED':<8} TAGS")
    for r in rows:
        _say(f"{r.variant:<16} {r.digest[:19]:<19} {_age(r.created):>6} {_size(r.size):>9} "
             f"{r.gate:<13} {'yes' if r.promoted else '-':<8} {', '.join(r.tags)}  [{r.repository}]")


@registry_app.command("show")
def registry_show(ref: str = typer.Argument(..., help="HOST/NAME@sha256:... (or HOST/NAME:TAG).")) -> None:
    """Print the evidence (build report) attached to a digest."""
    from builder.publish import curation as registry_mod

    out.print(json.dumps(registry_mod.show(ref), indent=2, sort_keys=True), markup=False, highlight=False)


@registry_app.command("prune")
def registry_prune(name: str = typer.Argument(..., help="HOST[:PORT]/NAME (one repository)."),
                   keep: int = typer.Option(5, "--keep", help="Newest digests kept per variant."),
                   protect: list[str] = typer.Option([], "--protect", help="Glob of protected repositories; "
                                                     "their immutable tags are never deleted (repeatable)."),
                   yes: bool = typer.Option(False, "--yes", help="Really delete (default: dry run)."),
                   ) -> None:
    """Apply retention: keep the newest N digests per variant, never promoted or protected ones."""
    from builder.publish import curation as registry_mod

    decided = registry_mod.prune(name, keep=keep, protect=protect, yes=yes)
    for e, why in decided:
        _say(f"{why.split(':')[0]:<6} {e.variant:<16} {e.digest[:19]}  {', '.join(e.tags)}  ({why.split(': ', 1)[1]})")
    n = sum(why.startswith("delete") for _, why in decided)
    _say(f"deleted {n} digest(s)" if yes else f"dry run: {n} digest(s) would be deleted; add --yes")


@registry_app.command("catalog")
def registry_catalog(
    namespace: str = typer.Argument(..., help="HOST[:PORT]/NAMESPACE (or one repository)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the site: new, empty, or an earlier catalog "
                                 "(replaced). Open DIR/index.html from disk or any web server."),
    key: list[Path] = typer.Option([], "--key", help="PEM public key the evidence must verify with (repeatable). "
                                   "Without one, every image is marked 'not verified'."),
    policy: Path | None = typer.Option(None, "--policy", help="Also judge every image's attached vulnerability "
                                       "report under this policy, today (as `tfimg promote --policy` does)."),
    workers: int = typer.Option(8, "--workers", help="Digests read at the same time."),
) -> None:
    """Write a static catalog site (HTML, search, catalog.json) of the published images and their evidence."""
    from builder.catalog import collect, render
    if workers < 1:
        raise TfimgError(f"--workers must be at least 1, not {workers}")
    catalog = collect.collect(namespace, keys=key, policy=policy, workers=workers)
    index = render.write(catalog, out_dir)
    flags = Counter(f for i in catalog.images for f in i.flags)
    _say(f"catalog of {namespace}: {len(catalog.images)} digest(s) in {len({i.variant for i in catalog.images})} "
         f"variant(s); {sum(i.ok for i in catalog.images)} verified and passing, {flags['blocked']} blocked, "
         f"{flags['unverifiable']} whose evidence does not verify, {flags['not-verified']} not verified")
    _say(f"wrote {out_dir} (index.html, images/, catalog.json, catalog.schema.json)")
    _say(f"open {index.resolve().as_uri()}")


@app.command()
def matrix(directory: Path = typer.Argument(Path("variants"), help="Folder of variant files."),
           level: int | None = typer.Option(None, "--level", help="Only variants at this depth."),
           skip: list[str] = typer.Option([], "--skip", help="Leave out files matching this glob "
                                          "(e.g. a shared base.yaml); repeatable."),
           registry: str | None = typer.Option(None, "--registry", envvar="TFIMG_REGISTRY",
                                               help="HOST/NAMESPACE: add `published` (the digest when the same "
                                                    "inputs are published there with passing evidence, else null)."),
           cache_from: list[str] = typer.Option([], "--cache-from", envvar="TFIMG_CACHE_FROM",
                                                help="Add each variant's cache_from ({name}: the variant)."),
           cache_to: str | None = typer.Option(None, "--cache-to", envvar="TFIMG_CACHE_TO",
                                               help="Add each variant's cache_to ({name}: the variant)."),
           base: str | None = typer.Option(None, "--base", envvar="TFIMG_BASE", help="The base builds use."),
           allow_dirs: list[Path] = ALLOW_DIRS,
           ) -> None:
    """Print the variants as a JSON matrix for CI fan-out, parents before children.

    With --registry / --cache-from / --cache-to each entry also says what its job needs: `registry`,
    `published` (a digest or null), `cache_from` and `cache_to`.
    """
    from builder.spec import matrix as matrix_mod

    data = matrix_mod.matrix(directory, skip, allow_dirs)
    if level is not None:
        data["include"] = [i for i in data["include"] if i["level"] == level]
    if registry or cache_from or cache_to:
        from builder.infra.engine import Engine
        from builder.pipeline import bake
        from builder.pipeline.context import BuildOptions
        from builder.spec import loader as spec

        opts = BuildOptions(base=base, cache_from=tuple(cache_from), cache_to=cache_to, registry=registry)
        engine = Engine.deferred()   # only to look up local bases
        data["include"] = [{**i, **bake.ci_fields(spec.load(i["file"], allow_dirs), opts, engine)} for i in data["include"]]
    out.print(json.dumps(data, separators=(",", ":")), markup=False, highlight=False, soft_wrap=True)


def _age(created: str | None) -> str:
    if not created:
        return "?"
    try:
        when = dt.datetime.fromisoformat(re.sub(r"\.\d+", "", created).replace("Z", "+00:00"))
    except ValueError:
        return "?"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    from builder.infra import clock

    secs = (clock.now() - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(max(secs, 0))}s"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return "?"
