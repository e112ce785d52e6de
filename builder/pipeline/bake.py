"""``tfimg bake``: a ``docker buildx bake`` file (JSON) with one target per variant.

Each target is what ``tfimg build`` would run for the variant: the context
``tfimg render`` writes (``<out>/<variant>/context``), the same build args,
the ``io.tfimg.input-hash`` label, the local tag ``tfimg/<variant>:<input hash>``,
the secrets (``id=ID,src=FILE`` or ``id=ID,env=VAR``: never their values) and
the registry cache (``type=registry``, mode=max). Teams with buildx fleets
(remote or Kubernetes builders) build every variant in parallel with
``docker buildx bake -f FILE --builder NAME``, then run ``tfimg test``,
``tfimg scan`` and ``tfimg publish`` on the results.

The base's digest is found without pulling it (the reference, the local
engine, or one registry request); when it cannot be, the target has no
input-hash label and a warning says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.image import inputs
from builder.infra import git, labels, outdir
from builder.infra import report as report_file
from builder.infra.engine import Engine
from builder.pipeline import gatekeeping
from builder.pipeline.context import BuildOptions
from builder.render import context as render
from builder.render.escape import buildx_csv
from builder.scan import policy as policies
from builder.spec.loader import LoadedVariant

TARGET_KEYS = ("context", "dockerfile", "args", "labels", "tags", "secret", "cache-from", "cache-to", "output")


def _secrets(loaded: LoadedVariant) -> tuple[list[str], dict[str, str], list[str]]:
    """(bake ``secret`` entries, id -> identity as in the input hash, warnings): the secrets
    :func:`builder.image.inputs.secret_choice` passes, as ``tfimg build`` would pass them; a required
    one that is absent here is named too (the build host must have it)."""
    choice = inputs.secret_choice(loaded)
    passed = {sid: ref for sid, ref in loaded.spec.secrets.items() if sid in choice.used or sid in choice.missing}
    entries = [buildx_csv(f"id={sid}", f"src={Path(ref.file).resolve()}") if ref.file
               else buildx_csv(f"id={sid}", f"env={ref.env}")
               for sid, ref in passed.items()]
    warnings = [f"{loaded.name}: optional secret '{sid}' ({ref.file or ref.env}) is absent and left out"
                for sid, ref in loaded.spec.secrets.items() if sid in choice.skipped]
    return entries, {sid: ref.identity() for sid, ref in passed.items()}, warnings


def target(loaded: LoadedVariant, opts: BuildOptions, engine: Engine) -> tuple[dict[str, Any], list[str]]:
    """The bake target of one variant (and warnings); writes its rendered context."""
    rendered = render.render(loaded)
    context = render.write(rendered, outdir.claim(report_file.variant_dir(opts.out_root, loaded.name)) / "context")
    base = opts.base or loaded.spec.base.ref
    secrets, used, warnings = _secrets(loaded)
    found = inputs.remote_base(base, engine)
    digest = loaded.spec.base.digest or (found[1] if found else None)
    args = inputs.build_args(base, digest, git.revision(loaded.path), inputs.source_date(loaded))
    tgt: dict[str, Any] = {"context": str(context), "dockerfile": "Dockerfile", "args": args, "labels": {},
                           "tags": [], "secret": secrets, "output": ["type=docker"]}
    if found is None:
        warnings.append(f"{loaded.name}: the base {base} is neither local nor found in its registry: no "
                        "input-hash label (pin base.digest, or push the base)")
        tgt["tags"] = [f"{labels.LOCAL_REPO.format(name=loaded.name)}:bake"]
    else:
        ihash = inputs.input_hash(rendered.context_hash(), found[0], used, base)
        tgt["labels"] = {labels.INPUT_HASH: ihash}
        tgt["tags"] = [inputs.local_ref(loaded.name, ihash)]
    cache_from = [r.replace("{name}", loaded.name) for r in opts.cache_from]
    cache_to = inputs.cache_ref(opts.cache_to, loaded.name)
    if cache_from:
        tgt["cache-from"] = [r if "type=" in r else f"type=registry,ref={r}" for r in cache_from]
    if cache_to:
        tgt["cache-to"] = [cache_to if "type=" in cache_to else f"type=registry,ref={cache_to},mode=max"]
    return tgt, warnings


def bake_file(variants: list[LoadedVariant], opts: BuildOptions, engine: Engine
              ) -> tuple[dict[str, Any], list[str]]:
    """``{"group": {"default": {"targets": [...]}}, "target": {...}}`` and the warnings."""
    targets: dict[str, Any] = {}
    warnings: list[str] = []
    for loaded in variants:
        if loaded.spec.abstract:
            continue
        targets[loaded.name], more = target(loaded, opts, engine)
        warnings += more
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}, warnings


def ci_fields(loaded: LoadedVariant, opts: BuildOptions, engine: Engine) -> dict[str, Any]:
    """What a CI job of ``tfimg matrix`` needs: its cache references, the registry, and ``published``
    (the digest reused by ``tfimg build --registry``, or None: the job builds)."""
    from builder.infra.ui import UI

    fields: dict[str, Any] = {"cache_from": [r.replace("{name}", loaded.name) for r in opts.cache_from],
                              "cache_to": inputs.cache_ref(opts.cache_to, loaded.name)}
    if opts.registry:
        chosen = opts.policy if opts.policy is not None else loaded.spec.policy
        found = gatekeeping.already_published(loaded, opts.registry, opts.base or loaded.spec.base.ref,
                                              policies.load(chosen), policies.resolve(chosen), UI(quiet=True), engine)
        fields |= {"registry": opts.registry, "published": found.digest if found else None}
    return fields
