"""The build stage: render a variant, resolve its base, build it with BuildKit (or find it up to date).

    built = build(loaded, Path("build/bert"), "nvcr.io/nvidia/tensorflow:22.07-tf2-py3",
                  BuildSettings(), find_builder=buildkit.find_builder, previous=Report(), ui=ui, engine=engine)
    built.section            # report.json's ``build`` section (the orchestrator records it)

Leaves ``context/`` (the rendered context) and ``build.log`` in the variant's directory; returns a
frozen :class:`Built` and writes nothing else. An image whose input hash (:mod:`builder.image.inputs`)
matches the local tag ``tfimg/<variant>:<input hash>`` is up to date and not built again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import EngineError, EnvError, SpecError, SpecErrors, TfimgError
from builder.image import buildkit, inputs
from builder.infra import clock, git, labels, outdir, registry_client
from builder.infra.engine import Engine, ImageInfo
from builder.infra.report_models import BaseImage, BuildCache, BuilderInfo, BuildSection, Report, SourceDateInfo
from builder.infra.ui import UI
from builder.render import context as render
from builder.spec.loader import LoadedVariant

FindBuilder = Callable[[], buildkit.Builder]


@dataclass(frozen=True)
class BuildSettings:
    """What the build is asked to do (``tfimg build`` options)."""

    force: bool = False                 # --force: build even when the same inputs were built
    no_cache: bool = False              # --no-cache: no layer cache either (implies --force)
    cache_from: tuple[str, ...] = ()    # --cache-from ({name}: the variant)
    cache_to: str | None = None         # --cache-to
    explicit_builder: bool = False      # --docker / --builder given: checked even when nothing is built
    source_date_epoch: int | None = None   # the image's time, as recorded (--reproduce); else decided here
    revision: str | None = None            # the revision label, as recorded (--reproduce); else git's


@dataclass(frozen=True)
class ResolvedBase:
    image: BaseImage       # what the report records
    layers: list[str]      # its layer DiffIDs


@dataclass(frozen=True)
class Built:
    """The build stage's result."""

    section: BuildSection
    new_image: bool        # not the image of the previous report: its later sections are void


def resolve_base(ref: str, engine: Engine) -> ResolvedBase:
    """The base in the engine, pulled when absent. Raises EnvError."""
    info = engine.image(ref)
    if info is None:
        try:
            engine.pull(ref)
        except EngineError as exc:   # the message says why
            raise EnvError(f"the base image '{ref}' is not present locally and could not be pulled "
                           f"({exc.message.splitlines()[0][:240]}).",
                           hint="Log in to its registry (docker login), or build on another base with "
                                "--base IMAGE or TFIMG_BASE=IMAGE (e.g. the stand-in: "
                                "scripts/standin/build.sh).") from None
        info = engine.image(ref)
        if info is None:
            raise EnvError(f"the base image '{ref}' could not be found after pulling it")
    return ResolvedBase(BaseImage(ref=ref, id=info.id, digest=inputs.repo_digest(ref, info.repo_digests),
                                  size=info.size), info.layers)


def same_inputs(image_ref: str, ihash: str, engine: Engine) -> str | None:
    """The id of the image built from the same inputs, or None.

    Only the local tag ``tfimg/<variant>:<input hash>`` counts: the build sets it,
    and it follows the latest build. The ``io.tfimg.input-hash`` label alone is
    not enough: an image built FROM a tfimg image inherits it.
    """
    info = engine.image(image_ref)
    return info.id if info is not None and info.labels.get(labels.INPUT_HASH) == ihash else None


def build(loaded: LoadedVariant, vdir: Path, base_ref: str, settings: BuildSettings, *,
          find_builder: FindBuilder, previous: Report, ui: UI, engine: Engine) -> Built:
    """Render and build (or find the image up to date); the ``build`` section. Raises BuildFailed,
    EnvError, SpecErrors (an abstract variant)."""
    if loaded.spec.abstract:
        raise SpecErrors([SpecError(loaded.path, "abstract", "this variant is abstract: it is a parent for "
                                    "other variants and is never built",
                                    hint="Build a variant that extends it.")])
    # an explicit client or builder, or a cache to export, is checked first (before anything is written),
    # even when no build turns out to be needed: a cache the builder cannot export is refused
    builder = find_builder() if settings.explicit_builder or settings.cache_to else None
    if builder is not None:
        buildkit.cache_args(builder, list(settings.cache_from), inputs.cache_ref(settings.cache_to, loaded.name))
    outdir.claim(vdir)   # build/<variant> is tfimg's (refused when it is someone else's folder)
    with ui.stage("render"):
        rendered = render.render(loaded)
        context = render.write(rendered, vdir / "context")
    engine.require()
    base = resolve_base(base_ref, engine)
    run = _Run(loaded, vdir, base, settings, ui, engine)
    with buildkit.SecretFiles(loaded) as secrets:
        ihash = inputs.input_hash(rendered.context_hash(), inputs.base_key(base.image.ref, base.image.digest,
                                                                           base.image.id), secrets.used, base_ref)
        image_ref = inputs.local_ref(loaded.name, ihash)
        existing = None if settings.force or settings.no_cache else same_inputs(image_ref, ihash, engine)
        if existing is not None:
            ui.info(f"{loaded.name} is up to date ({existing[:19]}); use --force to rebuild")
            image_id, cache = existing, None
        else:
            builder = builder or find_builder()
            image_id, cache = run.image(context, image_ref, ihash, builder, secrets)
    info = engine.image(image_id)
    if info is None:
        raise TfimgError(f"the built image {image_id} is not in the engine")
    new_image = previous.build is None or previous.build.image_id != image_id
    section = run.section(rendered, ihash, image_ref, info, builder, cache, existing is not None,
                          previous.build, same_image=not new_image)
    return Built(section, new_image)


class _Run:
    """One build of one variant: its settings, and what it found out so far."""

    def __init__(self, loaded: LoadedVariant, vdir: Path, base: ResolvedBase, settings: BuildSettings,
                 ui: UI, engine: Engine) -> None:
        self.loaded, self.vdir, self.base, self.settings, self.ui, self.engine = loaded, vdir, base, settings, ui, engine
        self.warnings: list[str] = []
        if not loaded.spec.base.digest and not base.image.digest:
            self.warnings.append("the base is not pinned by digest (base.digest); builds may drift")
        self.revision = "norev"
        self.date: inputs.SourceDate | None = None
        self.times: dict[str, str | None] = {}   # started_on / finished_on of a build made here

    def image(self, context: Path, image_ref: str, ihash: str, builder: buildkit.Builder,
              secrets: buildkit.SecretFiles) -> tuple[str, BuildCache | None]:
        """Build with BuildKit; the image id and what the report says of the registry cache."""
        name, base, settings = self.loaded.name, self.base.image, self.settings
        self.revision = settings.revision or git.revision(self.loaded.path)
        self.date = (inputs.SourceDate(settings.source_date_epoch, "recorded") if settings.source_date_epoch is not None
                     else inputs.source_date(self.loaded))
        started = clock.now_rfc3339z()
        self.warnings += [f"optional secret '{sid}' is absent and was not passed" for sid in secrets.skipped]
        self.warnings += _builder_warnings(builder, self.date, settings.cache_to)
        req = buildkit.BuildRequest(
            loaded=self.loaded, context=context, base_ref=base.ref, base_id=base.id, image_ref=image_ref,
            input_hash=ihash, log_path=self.vdir / "build.log",
            build_args=inputs.build_args(base.ref, self.loaded.spec.base.digest or base.digest, self.revision,
                                         self.date))
        cache_from = [r.replace("{name}", name) for r in settings.cache_from]
        with self.ui.stage(f"build {name}"):
            image_id = buildkit.run_build(req, builder, secrets, on_line=self.ui.build_line,
                                          no_cache=settings.no_cache, cache_from=cache_from,
                                          cache_to=inputs.cache_ref(settings.cache_to, name))
        self.times = {"started_on": started, "finished_on": clock.now_rfc3339z()}
        cache = self._cache(builder, image_id, req.log_path) if settings.cache_from or settings.cache_to else None
        return image_id, cache

    def _cache(self, builder: buildkit.Builder, image_id: str, log_path: Path) -> BuildCache:
        """Push the inline cache (the image itself) to ``--cache-to``; what the report says of the cache."""
        pushed = None
        mode = buildkit.cache_mode(builder)
        name = self.loaded.name
        cache_to = inputs.cache_ref(self.settings.cache_to, name)
        if cache_to and mode == buildkit.INLINE:
            ref = registry_client.parse_ref(cache_to)
            with self.ui.stage("push cache"):
                self.engine.tag(image_id, ref.name, ref.tag or "latest")
                digest = self.engine.push(ref.name, ref.tag or "latest")
            pushed = f"{ref.name}:{ref.tag or 'latest'}" + (f"@{digest}" if digest else "")
        text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        return BuildCache.model_validate({"mode": mode, "from": [r.replace("{name}", name)
                                                                 for r in self.settings.cache_from],
                                          "to": cache_to, "pushed": pushed,
                                          "cached_steps": buildkit.cached_steps(text)})

    def section(self, rendered: render.Rendered, ihash: str, image_ref: str, info: ImageInfo,
                builder: buildkit.Builder | None, cache: BuildCache | None, up_to_date: bool,
                previous: BuildSection | None, *, same_image: bool) -> BuildSection:
        """The ``build`` section (``previous``: the last report's; ``same_image``: it describes this image)."""
        loaded, base, log = self.loaded, self.base, self.vdir / "build.log"
        used = BuilderInfo.model_validate(builder.describe()) if builder else (previous.builder if previous else None)
        revision = info.labels.get("org.opencontainers.image.revision", "norev") if up_to_date else self.revision
        kept = up_to_date and same_image and previous is not None
        times = self.times or ({"started_on": previous.started_on, "finished_on": previous.finished_on}
                               if kept and previous is not None else {})
        return BuildSection(
            variant=loaded.name, spec=str(loaded.path), spec_chain=[str(p) for p in loaded.chain],
            spec_hash=rendered.spec_hash,
            dockerfile_hash="sha256:" + hashlib.sha256(rendered.dockerfile.encode()).hexdigest(),
            context_hash=rendered.context_hash(), input_hash=ihash, base=base.image, base_layers=base.layers,
            profile=loaded.spec.base.profile, image_id=info.id, image=image_ref, size=info.size,
            added_bytes=info.size - base.image.size,
            layers=buildkit.layer_sizes(self.engine.image_history(info.id)),
            labels=info.labels, builder=used, revision=revision, up_to_date=up_to_date,
            source_date=(SourceDateInfo(epoch=self.date.epoch, source=self.date.source) if self.date
                         else previous.source_date if previous and same_image else None),
            timings=previous.timings if kept and previous is not None else dict(self.ui.timings),
            warnings=self.warnings, log=str(log) if log.exists() else None,
            **({"cache": cache} if cache is not None else {}), **times)


def _builder_warnings(builder: buildkit.Builder, date: inputs.SourceDate, cache_to: str | None) -> list[str]:
    """What the report says about a builder that cannot do all that was asked."""
    found = []
    if cache_to and not builder.exports_cache and builder.kind == "buildx":
        found.append(f"--cache-to: {builder.what()} cannot export a build cache: inline cache was used "
                     "(the image is pushed to the cache reference); a docker-container builder or the containerd "
                     "image store exports a registry cache (mode=max)")
    if not builder.source_date_epoch:
        found.append(f"{builder.what()} runs BuildKit {builder.buildkit or '(version unknown)'}: SOURCE_DATE_EPOCH "
                     "needs v0.11 (Docker 24) or later, so the image's times are the build's and its digest is "
                     "not reproducible")
    elif date.source == "now":
        found.append("no build.source_date_epoch, $SOURCE_DATE_EPOCH or git commit of the variant's files: the "
                     "image's times are the build's, and its digest is not reproducible")
    return found
