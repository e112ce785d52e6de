"""``tfimg build SPEC --reproduce REF@DIGEST``: build again what a published digest was built from, compare.

A check a second party can run: the inputs are read from the digest (its SLSA provenance, when one is
attached, else the image's own labels): the input hash, the base, the revision and the image's time
(SOURCE_DATE_EPOCH). The variant in this checkout must have that input hash (else exit 2: these are
not the same inputs); it is built with no layer cache on that base, at that time and revision, and the
result is compared with the published image: the image config's digest, and each layer (its DiffID).

    found = recorded("127.0.0.1:5000/team/bert@sha256:...")
    outcome = compare(found, engine.image_attrs(image_id) or {})
    outcome.same, outcome.lines()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from builder.errors import EnvError, RegistryError, TfimgError
from builder.image import inputs
from builder.infra import datafile, labels
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry, parse_ref
from builder.infra.report_models import BuildSection
from builder.infra.ui import UI
from builder.pipeline import orchestrator
from builder.pipeline.context import BuildOptions
from builder.publish import evidence, store
from builder.render import context as render
from builder.spec.loader import LoadedVariant

CREATED = "org.opencontainers.image.created"
AMD64 = {"architecture": "amd64", "os": "linux"}


@dataclass(frozen=True)
class Recorded:
    """What a published digest says it was built from, and what it is."""

    reference: str                 # HOST/NAME@sha256:...
    config_digest: str
    diff_ids: list[str]
    history: list[str]             # created_by of each layer (empty layers left out), oldest first
    labels: dict[str, str]
    input_hash: str | None
    base: str | None               # the base reference built on (TFIMG_BASE)
    revision: str | None
    epoch: int | None              # SOURCE_DATE_EPOCH
    source: str                    # "provenance" or "labels"


def provenance_of(reg: Registry, repo: str, digest: str) -> dict[str, Any] | None:
    """The newest SLSA provenance predicate attached to ``digest``, read without checking its signature
    (``tfimg verify`` does that); None when there is none. The one place that knows how provenance is
    attached: through :mod:`builder.publish.store` (referrers or cosign's ``.att``)."""
    found, _ = store.read(reg, repo, digest, kinds={"provenance"})
    predicates = evidence.predicates(found, "provenance")
    return dict(predicates[-1]) if predicates else None


def recorded(reference: str) -> Recorded:
    """Read the published image and its inputs. Raises EnvError (not a digest reference, not in the
    registry, no recorded input hash)."""
    ref = parse_ref(reference)
    if not ref.digest:
        raise EnvError(f"--reproduce {reference}: give the published image by digest (HOST/NAME@sha256:...)")
    reg = Registry(ref.host)
    try:
        config, manifest_digest = _config(reg, ref.repo, ref.digest)
        predicate = provenance_of(reg, ref.repo, manifest_digest)
    except RegistryError as exc:
        raise EnvError(f"--reproduce: cannot read {reference}: {exc}") from None
    image_labels = dict((config.get("config") or {}).get("Labels") or {})
    args = ((predicate or {}).get("buildDefinition") or {}).get("externalParameters", {}).get("buildArgs") or {}
    internal = ((predicate or {}).get("buildDefinition") or {}).get("internalParameters") or {}
    epoch = args.get("SOURCE_DATE_EPOCH") or _epoch(args.get("TFIMG_CREATED") or image_labels.get(CREATED))
    found = Recorded(
        reference=f"{ref.name}@{ref.digest}", config_digest=config["_digest"],
        diff_ids=list((config.get("rootfs") or {}).get("diff_ids") or []),
        history=[str(h.get("created_by") or "") for h in config.get("history") or [] if not h.get("empty_layer")],
        labels=image_labels, input_hash=internal.get("inputHash") or image_labels.get(labels.INPUT_HASH),
        base=args.get("TFIMG_BASE") or image_labels.get("org.opencontainers.image.base.name"),
        revision=args.get("TFIMG_REVISION") or image_labels.get("org.opencontainers.image.revision"),
        epoch=int(epoch) if epoch is not None and str(epoch).isdigit() else None,
        source="provenance" if predicate else "labels")
    if not found.input_hash or not found.base:
        raise EnvError(f"--reproduce: {reference} records no input hash or base (it was not built by tfimg)")
    return found


def _config(reg: Registry, repo: str, digest: str) -> tuple[dict[str, Any], str]:
    """The image config (with its digest under ``_digest``) and the manifest's digest (an index is
    resolved to its linux/amd64 image)."""
    found = reg.manifest(repo, digest)
    if found is None:
        raise EnvError(f"--reproduce: {reg.host}/{repo}@{digest} is not in the registry")
    doc = datafile.loads_json(found[0], "the manifest", what="it")
    if "manifests" in doc:
        chosen = next((m for m in doc["manifests"] if (m.get("platform") or {}).items() >= AMD64.items()), None)
        if chosen is None:
            raise EnvError(f"--reproduce: {digest} is an index without a linux/amd64 image")
        return _config(reg, repo, str(chosen["digest"]))
    cfg_digest = str(doc["config"]["digest"])
    config = datafile.loads_json(reg.blob(repo, cfg_digest), "the image config", what="it")
    return {**config, "_digest": cfg_digest}, digest


def _epoch(created: str | None) -> int | None:
    if not created:
        return None
    try:
        return int(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


@dataclass(frozen=True)
class Outcome:
    """The rebuilt image against the published one."""

    published: Recorded
    image_id: str
    same: bool
    layers: list[tuple[int, str, str, str]] = field(default_factory=list)   # (index, published, rebuilt, step)
    config: list[str] = field(default_factory=list)                          # config fields that differ

    def lines(self) -> list[str]:
        p = self.published
        if self.same:
            return [f"reproduced {p.reference}: the rebuilt image is the same (config {p.config_digest}, "
                    f"{len(p.diff_ids)} layers)"]
        out = [f"NOT reproduced {p.reference}: the rebuilt image {self.image_id[:19]} differs"]
        out += [f"  layer {i + 1}: published {a[:19]}, rebuilt {b[:19]}  ({step[:90]})" for i, a, b, step in self.layers]
        out += [f"  config: {c}" for c in self.config]
        return out


def compare(published: Recorded, attrs: dict[str, Any]) -> Outcome:
    """Compare the rebuilt image (its ``docker image inspect`` attributes) with
    the published one: the same config digest (the image id on the classic store, or the manifest digest
    on the containerd store), else which layers and config fields differ."""
    image_id = str(attrs.get("Id") or "")
    ours = list((attrs.get("RootFS") or {}).get("Layers") or [])
    if image_id in (published.config_digest, published.reference.rsplit("@", 1)[1]):
        return Outcome(published, image_id, True)
    layers = [(i, a, b, published.history[i] if i < len(published.history) else "")
              for i, (a, b) in enumerate(zip(published.diff_ids, ours, strict=False)) if a != b]
    if len(ours) != len(published.diff_ids):
        layers.append((min(len(ours), len(published.diff_ids)), f"{len(published.diff_ids)} layers",
                       f"{len(ours)} layers", ""))
    config = [f"label {k}: published {published.labels.get(k)!r}, rebuilt {v!r}"
              for k, v in sorted(((attrs.get("Config") or {}).get("Labels") or {}).items())
              if published.labels.get(k) != v]
    return Outcome(published, image_id, False, layers, config or ([] if layers else ["the image config (times, "
                                                                                      "history or settings)"]))


def run(loaded: LoadedVariant, reference: str, opts: BuildOptions, ui: UI, engine: Engine) -> Outcome:
    """Rebuild ``loaded`` as the digest records it and compare. Raises EnvError (unreadable digest, or
    this checkout's inputs are not the recorded ones)."""
    found = recorded(reference)
    assert found.base is not None and found.input_hash is not None
    ui.info(f"{reference}: input hash {found.input_hash}, base {found.base}, revision {found.revision}, "
            f"SOURCE_DATE_EPOCH {found.epoch} (from its {found.source})")
    base = inputs.remote_base(found.base, engine)
    ours = inputs.input_hash(render.render(loaded).context_hash(), base[0] if base else "unknown",
                             inputs.secret_choice(loaded).used, found.base)
    if ours != found.input_hash:
        raise EnvError(f"--reproduce: this checkout's {loaded.name} has the input hash {ours} on {found.base}, "
                       f"and {reference} was built from {found.input_hash}: not the same inputs, so nothing was "
                       "built or compared.", hint=f"Check out the revision it records ({found.revision}) and run again.")
    opts = dataclasses.replace(opts, base=found.base, force=True, no_cache=True, checks=False, scan=False,
                               tag=False, registry=None, source_date_epoch=found.epoch, revision=found.revision)
    built: BuildSection = orchestrator.build(loaded, opts, ui, engine)
    attrs = engine.image_attrs(built.image_id)
    if attrs is None:
        raise TfimgError(f"the rebuilt image {built.image_id} is not in the engine")
    return compare(found, attrs)
