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

from builder.image import buildkit as build
from builder.infra import clock, git, labels, outdir
from builder.infra.engine import Engine
from builder.pipeline import orchestrator as pipeline
from builder.render import context as render
from builder.render.escape import buildx_csv
from builder.spec.loader import LoadedVariant

TARGET_KEYS = ("context", "dockerfile", "args", "labels", "tags", "secret", "cache-from", "cache-to", "output")


def _secrets(loaded: LoadedVariant) -> tuple[list[str], dict[str, str], list[str]]:
    """(bake ``secret`` entries, id -> identity as in the input hash, warnings)."""
    entries: list[str] = []
    used: dict[str, str] = {}
    warnings: list[str] = []
    for sid, ref in loaded.spec.secrets.items():
        if ref.file:
            if not Path(ref.file).is_file() and not ref.required:
                warnings.append(f"{loaded.name}: optional secret '{sid}' ({ref.file}) is absent and left out")
                continue
            entries.append(buildx_csv(f"id={sid}", f"src={Path(ref.file).resolve()}"))
        else:
            entries.append(buildx_csv(f"id={sid}", f"env={ref.env}"))
        used[sid] = ref.identity()
    return entries, used, warnings


def target(loaded: LoadedVariant, opts: pipeline.BuildOptions, engine: Engine) -> tuple[dict[str, Any], list[str]]:
    """The bake target of one variant (and warnings); writes its rendered context."""
    rendered = render.render(loaded)
    context = render.write(rendered, outdir.claim(pipeline.variant_dir(opts, loaded)) / "context")
    base = pipeline.base_ref(loaded, opts.base)
    secrets, used, warnings = _secrets(loaded)
    found = pipeline.remote_base(base, engine)
    key = found[0] if found else None
    digest = loaded.spec.base.digest or (found[1] if found else None)
    args = pipeline.build_args(base, digest, git.revision(loaded.path), clock.now_rfc3339z())
    tgt: dict[str, Any] = {"context": str(context), "dockerfile": "Dockerfile", "args": args, "labels": {},
                           "tags": [], "secret": secrets, "output": ["type=docker"]}
    if key is None:
        warnings.append(f"{loaded.name}: the base {base} is neither local nor found in its registry: no "
                        "input-hash label (pin base.digest, or push the base)")
        tgt["tags"] = [f"{pipeline.LOCAL_REPO.format(name=loaded.name)}:bake"]
    else:
        ihash = build.input_hash(rendered.context_hash(), key, used, base)
        tgt["labels"] = {labels.INPUT_HASH: ihash}
        tgt["tags"] = [f"{pipeline.LOCAL_REPO.format(name=loaded.name)}:{ihash[7:19]}"]
    cache_from = [r.replace("{name}", loaded.name) for r in opts.cache_from]
    cache_to = pipeline.cache_ref(opts.cache_to, loaded.name)
    if cache_from:
        tgt["cache-from"] = [r if "type=" in r else f"type=registry,ref={r}" for r in cache_from]
    if cache_to:
        tgt["cache-to"] = [cache_to if "type=" in cache_to else f"type=registry,ref={cache_to},mode=max"]
    return tgt, warnings


def bake_file(variants: list[LoadedVariant], opts: pipeline.BuildOptions, engine: Engine
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


def ci_fields(loaded: LoadedVariant, opts: pipeline.BuildOptions, engine: Engine) -> dict[str, Any]:
    """What a CI job of ``tfimg matrix`` needs: its cache references, the registry, and ``published``
    (the digest reused by ``tfimg build --registry``, or None: the job builds)."""
    from builder.infra.ui import UI

    fields: dict[str, Any] = {"cache_from": [r.replace("{name}", loaded.name) for r in opts.cache_from],
                              "cache_to": pipeline.cache_ref(opts.cache_to, loaded.name)}
    if opts.registry:
        found = pipeline.already_published(loaded, opts, UI(quiet=True), engine)
        fields |= {"registry": opts.registry, "published": found.digest if found else None}
    return fields
