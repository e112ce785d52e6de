"""The one orchestrator: knows the order of the stages, which do not know each other.

    spec -> render -> build -> checks -> scan/gate -> tags

Each stage writes its file under ``build/<variant>/`` and its section of
``report.json``. A failure stops the pipeline before tagging: no computed tag
is applied to an image that did not pass its checks and gate.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from builder.errors import EnvError, SpecError, SpecErrors, TfimgError
from builder.image import buildkit as build
from builder.infra import clock, git, labels, outdir, report
from builder.infra.engine import Engine
from builder.infra.report_models import (
    BaseImage,
    BuildCache,
    BuilderInfo,
    BuildSection,
    ChecksSection,
    LayerSize,
    LocalTags,
    PublishedSection,
    Report,
    StageReuse,
    Timings,
)
from builder.infra.ui import UI
from builder.pipeline import reuse
from builder.render import context as render
from builder.spec.loader import LoadedVariant

BASE_ENV = "TFIMG_BASE"
LOCAL_REPO = "tfimg/{name}"


@dataclass(frozen=True)
class BuildOptions:
    out_root: Path = Path("build")
    base: str | None = None          # --base / $TFIMG_BASE: override the spec's base image
    force: bool = False
    no_cache: bool = False           # --no-cache: do not reuse BuildKit's layer cache
    docker: str | None = None        # --docker / $TFIMG_DOCKER: the BuildKit-capable client
    builder: str | None = None       # --builder / $TFIMG_BUILDER: a named buildx builder (remote, Kubernetes)
    checks: bool = True
    scan: bool = True
    recheck: bool = False             # --recheck: run the checks even when their inputs have not changed
    rescan: bool = False              # --rescan: scan even when the scan's inputs have not changed
    tag: bool = True
    gpu: str = "auto"
    policy: Path | None = None       # --policy: gate under this policy instead of the variant's
    trivy: str | None = None         # --trivy / $TFIMG_TRIVY: the Trivy executable
    trivy_cache: Path | None = None  # --trivy-cache-dir: a pre-downloaded DB (air-gapped)
    offline: bool = False            # --offline: never update Trivy's DB
    trivy_db_repository: str | None = None  # --trivy-db-repository: an internal trivy-db mirror
    cache_from: tuple[str, ...] = ()  # --cache-from / $TFIMG_CACHE_FROM: import BuildKit's cache from these refs
    cache_to: str | None = None      # --cache-to / $TFIMG_CACHE_TO: export it to this ref
    registry: str | None = None      # --registry HOST/NS: skip everything when already published there
    scan_registry: str | None = None  # --scan-registry HOST/NS: Trivy reads the image from there, by digest


def variant_dir(opts: BuildOptions, loaded: LoadedVariant) -> Path:
    return report.variant_dir(opts.out_root, loaded.name)


def base_ref(loaded: LoadedVariant, override: str | None) -> str:
    chosen = override or os.environ.get(BASE_ENV)
    if chosen:
        return chosen
    b = loaded.spec.base
    return f"{b.image}@{b.digest}" if b.digest else b.image


def build_args(base: str, base_digest: str | None, revision: str, created: str) -> dict[str, str]:
    """The build args of every build (``tfimg build`` and ``tfimg bake``)."""
    return {"TFIMG_BASE": base, "TFIMG_CREATED": created, "TFIMG_REVISION": revision,
            "TFIMG_BASE_DIGEST": base_digest or "unknown"}


@dataclass(frozen=True)
class ResolvedBase:
    image: BaseImage       # what the report records
    layers: list[str]      # its layer DiffIDs


def resolve_base(ref: str, engine: Engine) -> ResolvedBase:
    attrs = engine.image_attrs(ref)
    if attrs is None:
        try:
            engine.pull(ref)
        except Exception as exc:  # docker.errors.* : the message says why
            raise EnvError(f"the base image '{ref}' is not present locally and could not be pulled "
                           f"({str(exc).splitlines()[0][:200]}).",
                           hint=f"Log in to its registry (docker login), or build on another base with "
                                f"--base IMAGE or {BASE_ENV}=IMAGE (e.g. the stand-in: "
                                "scripts/standin/build.sh).") from None
        attrs = engine.image_attrs(ref)
        if attrs is None:
            raise EnvError(f"the base image '{ref}' could not be found after pulling it")
    return ResolvedBase(BaseImage(ref=ref, id=attrs["Id"], digest=repo_digest(ref, attrs),
                                  size=int(attrs.get("Size") or 0)),
                        list(attrs.get("RootFS", {}).get("Layers", [])))


def repo_digest(ref: str, attrs: dict) -> str | None:
    """The registry digest of an image (RepoDigests): the one of ``ref``'s repository when there is one."""
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1]
    pairs = [d.split("@", 1) for d in attrs.get("RepoDigests") or [] if "@" in d]
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    return next((dg for r, dg in pairs if r == repo), pairs[0][1] if pairs else None)


def _same_inputs(image_ref: str, ihash: str, engine: Engine) -> str | None:
    """The id of the image built from the same inputs, or None.

    Only the local tag ``tfimg/<variant>:<input hash>`` counts: the build sets it,
    and it follows the latest build. The ``io.tfimg.input-hash`` label alone is
    not enough: an image built FROM a tfimg image inherits it.
    """
    attrs = engine.image_attrs(image_ref)
    if attrs and ((attrs.get("Config") or {}).get("Labels") or {}).get(labels.INPUT_HASH) == ihash:
        return attrs["Id"]
    return None


def _previous(vdir: Path, ui: UI) -> Report:
    """The report of the last build here; an empty one when it is not a report tfimg can read."""
    try:
        return report.load(vdir)
    except TfimgError as exc:
        ui.warn(f"{exc.message}; starting a new one")
        return Report()


def build_stage(loaded: LoadedVariant, opts: BuildOptions, ui: UI, engine: Engine) -> BuildSection:
    """Render and build; write the ``build`` section of the report and return it."""
    if loaded.spec.abstract:
        raise SpecErrors([SpecError(loaded.path, "abstract", "this variant is abstract: it is a parent for "
                                    "other variants and is never built",
                                    hint="Build a variant that extends it.")])
    vdir = outdir.claim(variant_dir(opts, loaded))
    # an explicit client or builder is checked first, even when no build turns out to be needed
    builder = build.find_builder(opts.docker, opts.builder) if opts.docker or opts.builder else None
    with ui.stage("render"):
        rendered = render.render(loaded)
        context = render.write(rendered, vdir / "context")
    engine.require()
    resolved = resolve_base(base_ref(loaded, opts.base), engine)
    base = resolved.image
    warnings: list[str] = []
    if not loaded.spec.base.digest and not base.digest:
        warnings.append("the base is not pinned by digest (base.digest); builds may drift")
    cache: BuildCache | None = None
    with build.SecretFiles(loaded) as secrets:
        ihash = build.input_hash(rendered.context_hash(), build.base_key(base.ref, base.digest, base.id),
                                 secrets.used, base.ref)
        image_ref = f"{LOCAL_REPO.format(name=loaded.name)}:{ihash[7:19]}"
        existing = None if opts.force or opts.no_cache else _same_inputs(image_ref, ihash, engine)
        up_to_date = existing is not None
        if existing is not None:
            image_id = existing
            ui.info(f"{loaded.name} is up to date ({image_id[:19]}); use --force to rebuild")
        else:
            builder = builder or build.find_builder(opts.docker, opts.builder)
            revision = git.revision(loaded.path)
            for sid in secrets.skipped:
                warnings.append(f"optional secret '{sid}' is absent and was not passed")
            req = build.BuildRequest(
                loaded=loaded, context=context, base_ref=base.ref, base_id=base.id,
                image_ref=image_ref, input_hash=ihash, log_path=vdir / "build.log",
                build_args=build_args(base.ref, loaded.spec.base.digest or base.digest, revision,
                                      clock.now_rfc3339z()))
            with ui.stage(f"build {loaded.name}"):
                image_id = build.run_build(req, builder, secrets, on_line=ui.build_line,
                                           no_cache=opts.no_cache,
                                           cache_from=[r.replace("{name}", loaded.name) for r in opts.cache_from],
                                           cache_to=cache_ref(opts.cache_to, loaded.name))
            if opts.cache_from or opts.cache_to:
                cache = _cache_record(builder, opts, loaded.name, image_id, req.log_path, ui, engine)
    attrs = engine.image_attrs(image_id)
    if attrs is None:
        raise TfimgError(f"the built image {image_id} is not in the engine")
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    previous = _previous(vdir, ui)
    if up_to_date:   # what the earlier build recorded, from the image itself
        revision = labels.get("org.opencontainers.image.revision", "norev")
    same_image = previous.build is not None and previous.build.image_id == image_id
    if not same_image:   # a new image: older stages' results (and its tags.txt) are void
        report.save(vdir, Report())
        (vdir / "tags.txt").unlink(missing_ok=True)
    used: BuilderInfo | None = previous.build.builder if previous.build is not None else None
    if builder:
        used = BuilderInfo.model_validate(builder.describe())
    section = BuildSection(
        variant=loaded.name,
        spec=str(loaded.path),
        spec_chain=[str(p) for p in loaded.chain],
        spec_hash=rendered.spec_hash,
        dockerfile_hash="sha256:" + hashlib.sha256(rendered.dockerfile.encode()).hexdigest(),
        context_hash=rendered.context_hash(),
        input_hash=ihash,
        base=base,
        base_layers=resolved.layers,
        profile=loaded.spec.base.profile,
        image_id=image_id,
        image=image_ref,
        size=int(attrs.get("Size") or 0),
        added_bytes=int(attrs.get("Size") or 0) - base.size,
        layers=[LayerSize.model_validate(row) for row in build.layer_sizes(engine.image_history(image_id))],
        labels=labels,
        builder=used,
        revision=revision,
        up_to_date=up_to_date,
        timings=previous.build.timings if up_to_date and same_image and previous.build else dict(ui.timings),
        warnings=warnings,
        log=str(vdir / "build.log") if (vdir / "build.log").exists() else None,
        **({"cache": cache} if cache is not None else {}),
    )
    report.write_section(vdir, section)
    return section


def cache_ref(ref: str | None, name: str) -> str | None:
    """A cache reference with ``{name}`` replaced by the variant's name."""
    return ref.replace("{name}", name) if ref else ref


def _cache_record(builder: build.Builder, opts: BuildOptions, name: str, image_id: str, log_path: Path,
                  ui: UI, engine: Engine) -> BuildCache:
    """Push the inline cache (the image itself) to ``--cache-to``; what the report says of the cache."""
    pushed = None
    mode = build.cache_mode(builder)
    cache_to = cache_ref(opts.cache_to, name)
    if cache_to and mode == build.INLINE:
        from builder.publish.registry_client import parse_ref
        ref = parse_ref(cache_to)
        with ui.stage("push cache"):
            engine.tag(image_id, ref.name, ref.tag or "latest")
            lines = engine.push(ref.name, ref.tag or "latest")
        digest = next((ln["aux"]["Digest"] for ln in lines if isinstance(ln.get("aux"), dict)
                       and ln["aux"].get("Digest")), None)
        pushed = f"{ref.name}:{ref.tag or 'latest'}" + (f"@{digest}" if digest else "")
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    return BuildCache.model_validate({"mode": mode, "from": [r.replace("{name}", name) for r in opts.cache_from],
                                      "to": cache_to,
                                      "pushed": pushed, "cached_steps": build.cached_steps(text)})


def remote_base(ref: str, engine: Engine) -> tuple[str, str | None] | None:
    """(:func:`build.base_key`, registry digest or None) of the base, without pulling it: from the
    reference, the local engine, or one manifest request to its registry. None when unknown."""
    if "@sha256:" in ref:
        return build.base_key(ref, None, None), ref.rsplit("@", 1)[1]
    from builder.errors import RegistryError
    from builder.publish.registry_client import Registry, parse_ref
    try:
        attrs = engine.image_attrs(ref)
    except TfimgError:
        attrs = None
    if attrs is not None:
        digest = repo_digest(ref, attrs)
        return build.base_key(ref, digest, attrs["Id"]), digest
    try:
        r = parse_ref(ref)
        digest = Registry(r.host, attempts=3).digest_of(r.repo, r.tag or "latest")
    except (RegistryError, requests.RequestException):
        return None
    return (digest, digest) if digest else None


def remote_base_key(ref: str, engine: Engine) -> str | None:
    found = remote_base(ref, engine)
    return found[0] if found else None


def already_published(loaded: LoadedVariant, opts: BuildOptions, ui: UI, engine: Engine
                      ) -> PublishedSection | None:
    """``--registry``: the published digest with this variant's input hash whose evidence passes
    the current policy, or None (then the variant is built as usual)."""
    from builder.errors import RegistryError
    from builder.publish import push as publish
    from builder.scan import policy as policies

    assert opts.registry
    ref = base_ref(loaded, opts.base)
    key = remote_base_key(ref, engine)
    if key is None:
        ui.warn(f"--registry: the digest of the base {ref} could not be found without pulling it; building")
        return None
    rendered = render.render(loaded)
    with build.SecretFiles(loaded) as secrets:
        ihash = build.input_hash(rendered.context_hash(), key, secrets.used, ref)
    try:
        found = publish.find_published(opts.registry, loaded.name, ihash, policies.resolve(loaded.spec.policy))
    except RegistryError as exc:
        ui.warn(f"--registry: {exc.message}; building")
        return None
    except requests.RequestException as exc:
        ui.warn(f"--registry: {opts.registry} could not be reached ({type(exc).__name__}); building")
        return None
    if found is None:
        ui.info(f"{loaded.name}: not published yet at {opts.registry} (input hash {ihash[7:19]})")
        return None
    if found.decision != "pass":
        ui.warn(f"{found.repository}@{found.digest} has the same inputs but its evidence does not pass "
                f"the current policy ({found.decision}: {found.how}); building")
        return None
    return found


def apply_tags(image: str, name: str, out_dir: Path, engine: Engine) -> LocalTags:
    """Tag ``image`` locally as ``tfimg/<name>:<tag>`` for each tag of ``tags.txt`` (never recomputed)."""
    from builder.publish import push as publish
    repo = LOCAL_REPO.format(name=name)
    refs = []
    for tag in publish.read_tags(out_dir).all:
        engine.tag(image, repo, tag)
        refs.append(f"{repo}:{tag}")
    return LocalTags(refs)


def run(loaded: LoadedVariant, opts: BuildOptions, ui: UI, engine: Engine) -> Report:
    """All stages in order; returns the final report.

    A failed check or a blocking gate raises before the tag stage, so no
    computed tag is applied to an image that did not pass.
    """
    # Stage modules are imported here: the build alone (and `tfimg render`) needs none of them.
    from builder.check import stage as testrun
    from builder.scan import gate, trivy
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage

    if opts.policy:
        loaded = loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"policy": str(opts.policy)})})
    policies.load(loaded.spec.policy)   # a bad policy is bad input: stop before building anything
    if opts.registry or opts.scan_registry:   # so are malformed registry options
        from builder.publish import push as publish
        for option, value in (("--registry", opts.registry), ("--scan-registry", opts.scan_registry)):
            if value:
                publish.namespace(value, option)
    mode = testrun.gpu_mode(opts.gpu, engine.gpu_available) if opts.checks else None   # a bad --gpu: before the build too
    vdir = variant_dir(opts, loaded)
    if opts.registry and not (opts.force or opts.no_cache):
        with ui.stage("registry lookup"):
            found = already_published(loaded, opts, ui, engine)
        if found is not None:
            ui.info(f"{loaded.name} is already published with passing evidence: {found.repository}@"
                    f"{found.digest}; nothing built, checked or scanned (--force rebuilds)")
            outdir.claim(vdir)
            report.save(vdir, Report())
            (vdir / "tags.txt").unlink(missing_ok=True)
            report.write_section(vdir, found)
            return report.write_section(vdir, Timings(dict(ui.timings)))
    section = build_stage(loaded, opts, ui, engine)
    image = section.image_id
    if opts.checks and mode is not None:   # each stage below is reused when its inputs have not changed
        _checks_stage(loaded, section, mode, vdir, opts, ui, engine)
    else:
        report.write_section(vdir, ChecksSection(passed=None, skipped="--no-test"))
    if opts.scan:
        with ui.stage("scan and gate"):
            options = trivy.Options(binary=opts.trivy or os.environ.get("TFIMG_TRIVY") or "trivy",
                                    cache_dir=opts.trivy_cache, offline=opts.offline,
                                    db_repository=opts.trivy_db_repository,
                                    mode="remote" if opts.scan_registry else "reference")
            _scan_and_gate(loaded, section, vdir, options, opts, ui, engine)
    else:
        pol = policies.load(loaded.spec.policy)
        scan_stage.write_gate(vdir, gate.unscanned(pol, "scan skipped (--no-scan)"))
    if not (opts.checks and opts.scan):   # a skipped stage: computed tags would not be applied
        ui.info(f"not tagged: the {'checks' if not opts.checks else 'scan'} was skipped "
                f"(`tfimg tags {loaded.path}` shows the tags it would get)")
        report.write_section(vdir, LocalTags([]))
        return report.write_section(vdir, Timings(dict(ui.timings)))
    with ui.stage("tags"):
        _tags_stage(loaded, section, vdir, opts, ui, engine)    # compute: writes tags.txt
        report.write_section(vdir, apply_tags(image, loaded.name, vdir, engine))   # apply: reads tags.txt
    return report.write_section(vdir, Timings(dict(ui.timings)))   # seconds per stage of this run


def _forced(opts: BuildOptions, flag: bool, name: str) -> str | None:
    return name if flag else ("--force" if opts.force else None)


def _checks_stage(loaded: LoadedVariant, built: BuildSection, mode: Any, vdir: Path, opts: BuildOptions,
                  ui: UI, engine: Engine) -> None:
    """The checks, or their earlier result when its inputs (:func:`reuse.checks_key`) have not changed."""
    from builder.check import stage as testrun
    prev = report.load(vdir)
    key = reuse.checks_key(built, built.spec_hash, mode.requested, mode.enabled,
                           reuse.engine_gpu_facts(engine.client.info()))
    done = prev.checks
    passed = bool(done and done.passed is True and prev.facts is not None and (vdir / "checks.xml").is_file())
    d = reuse.decide("checks", key, done.reuse if done else None, passed, _forced(opts, opts.recheck, "--recheck"))
    ui.info(d.message)
    if d.reuse and done is not None:
        report.write_section(vdir, done.model_copy(update={"reuse": d.record()}))
        return
    with ui.stage("checks"):   # a failure raises: no key is recorded, so it is never reused
        result = testrun.run_checks(loaded, built.image_id, vdir, gpu=opts.gpu, base_ref=built.base.ref, ui=ui,
                                    engine=engine)
    report.write_section(vdir, result.model_copy(update={"reuse": d.record()}))


def _scan_key(built: BuildSection, options: Any, misconfig: str, previous: StageReuse | None,
              db: dict[str, Any] | None = None) -> dict[str, str]:
    """The scan's key; without ``db``, the DB the scan would use now (refreshed first unless offline).
    The Trivy version is read once per executable file (path, size, mtime). Raises TfimgError."""
    from builder.scan import trivy
    exe = trivy.binary(options)
    fingerprint = trivy.binary_fingerprint(exe)
    if previous is not None and previous.key.get("trivy_binary") == fingerprint and previous.key.get("trivy"):
        version = previous.key["trivy"]
    else:
        version = str(trivy.version(options)["Version"])
    if db is None:
        db = trivy.current_db(options, trivy.parse_version(version))
    repository = None if options.offline else (options.db_repository or os.environ.get("TRIVY_DB_REPOSITORY")
                                               or "default")
    return reuse.scan_key(built.image_id, trivy_version=version, trivy_binary=fingerprint, db=db,
                          db_repository=repository, scanners=list(options.scanners),
                          options={"mode": options.mode, "config": list(options.image_config_scanners),
                                   "sbom": options.sbom, "offline": options.offline},
                          misconfig=misconfig)


def _scan_and_gate(loaded: LoadedVariant, built: BuildSection, vdir: Path, options: Any, opts: BuildOptions,
                   ui: UI, engine: Engine) -> None:
    """Scan and gate; each reused when its inputs have not changed (a newer DB always re-scans)."""
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage
    pol = policies.load(loaded.spec.policy)
    misconfig = f"on:{built.context_hash}" if pol.scan.misconfig else "off"
    prev = report.load(vdir)
    done = prev.scan
    forced = _forced(opts, opts.rescan, "--rescan")
    key: dict[str, str] = {}
    if not forced:
        try:
            key = _scan_key(built, options, misconfig, done.reuse if done else None)
        except TfimgError as exc:
            forced = f"the DB the scan would use could not be told: {exc.message}"
    passed = bool(done and done.status == "ok" and (vdir / "trivy.json").is_file())
    d = reuse.decide("scan", key, done.reuse if done else None, passed, forced)
    ui.info(d.message)
    if d.reuse and done is not None:
        report.write_section(vdir, done.model_copy(update={"reuse": d.record()}))
        try:
            if _gate_stage(loaded, built, vdir, d.record(), prev.gate, ui, scan_stage.gate_saved):
                return
        except TfimgError as exc:
            if exc.exit_code == 1:   # the gate blocks
                raise
            ui.warn(f"{exc.message}; scanning again")
    stage_in = None
    if opts.scan_registry:
        from builder.publish import push as publish

        def stage_in(image_id: str) -> str:
            ui.info(f"pushing {loaded.name} to {opts.scan_registry} for the scan (only layers the registry lacks)")
            return publish.push_for_scan(image_id, str(opts.scan_registry), loaded.name, built.input_hash,
                                         engine=engine)
    result = scan_stage.run_scan_and_gate(loaded, built.image_id, vdir, built.base.ref, options=options,
                                          base_layers=built.base_layers, warn=ui.warn, raise_on_block=False,
                                          engine=engine, stage_in=stage_in)
    now = report.load(vdir)
    if now.scan is not None and now.scan.status == "ok":
        try:   # the key of the DB this scan used
            key = _scan_key(built, options, misconfig, None, (now.scan.db.model_dump() if now.scan.db else {}))
            record = StageReuse(reused=False, key=key)
            report.write_section(vdir, now.scan.model_copy(update={"reuse": record}))
            if result.decision == "pass" and now.gate is not None:
                gkey = _gate_key(loaded, built, vdir, record)
                report.write_section(vdir, now.gate.model_copy(update={"reuse": StageReuse(reused=False, key=gkey)}))
        except TfimgError as exc:
            ui.warn(f"the scan's inputs could not be recorded ({exc.message}); it will run again next time")
    error = scan_stage.refused(result, pol, vdir)   # blocks, or UNSCANNED under a policy that requires a scan
    if error is not None:
        raise error


def _gate_key(loaded: LoadedVariant, built: BuildSection, vdir: Path, scan: StageReuse) -> dict[str, str]:
    from builder.scan import policy as policies
    pinned = bool(loaded.spec.base.digest) or "@sha256:" in built.base.ref
    return reuse.gate_key(scan, vdir, policies.resolve(loaded.spec.policy), clock.today().isoformat(),
                          built.base_layers, pinned)


def _gate_stage(loaded: LoadedVariant, built: BuildSection, vdir: Path, scan: StageReuse, done: Any, ui: UI,
                gate_saved: Any) -> bool:
    """The gate on a reused scan: reused when the scan, policy and day are the same, else evaluated
    again from the saved report. True when done; raises GateFailed when it blocks."""
    key = _gate_key(loaded, built, vdir, scan)
    d = reuse.decide("gate", key, done.reuse if done else None, bool(done and done.decision == "pass"))
    ui.info(d.message)
    if d.reuse:
        report.write_section(vdir, done.model_copy(update={"reuse": d.record()}))
        return True
    result = gate_saved(loaded, vdir, built.base.ref, base_layers=built.base_layers, raise_on_block=False)
    from builder.scan import policy as policies
    from builder.scan import stage as scan_stage
    error = scan_stage.refused(result, policies.load(loaded.spec.policy), vdir)
    if error is not None:
        raise error
    if result.decision == "pass":
        now = report.load(vdir).gate
        if now is not None:
            report.write_section(vdir, now.model_copy(update={"reuse": d.record()}))
    return True


def _tags_stage(loaded: LoadedVariant, built: BuildSection, vdir: Path, opts: BuildOptions, ui: UI,
                engine: Engine) -> None:
    """Compute tags.txt, or reuse it when the facts and the tag templates have not changed."""
    from builder.publish import push as publish
    prev = report.load(vdir)
    templates = [loaded.name, loaded.spec.base.profile, loaded.spec.tags.model_dump(mode="json")]
    facts = prev.facts.model_dump(mode="json") if prev.facts else None
    key = reuse.tags_key(built, facts, templates)
    try:
        passed = prev.tags is not None and publish.read_tags(vdir) == prev.tags.model_copy(update={"reuse": None})
    except TfimgError:
        passed = False
    d = reuse.decide("tags", key, prev.tags.reuse if prev.tags else None, passed, _forced(opts, False, ""))
    ui.info(d.message)
    if d.reuse and prev.tags is not None:
        report.write_section(vdir, prev.tags.model_copy(update={"reuse": d.record()}))
        return
    publish.tags_stage(loaded, vdir, engine=engine)
    now = report.load(vdir)
    if now.tags is not None:   # the key of the facts the tags were computed from
        key = reuse.tags_key(built, now.facts.model_dump(mode="json") if now.facts else None, templates)
        report.write_section(vdir, now.tags.model_copy(update={"reuse": StageReuse(reused=False, key=key)}))


def summary(rep: Report) -> str:
    b = rep.build
    if b is None and rep.published is not None:
        p = rep.published
        return "\n".join([f"published {p.repository}@{p.digest}",
                          f"          same input hash ({p.tag}), gate {p.decision} ({p.how})",
                          "          nothing was built, checked or scanned here"])
    if b is None:
        return "variant   (not built)"
    lines = [f"variant   {b.variant}",
             f"image     {b.image} ({b.image_id[:19]})",
             f"base      {b.base.ref}",
             f"size      {b.size / 1e9:.2f} GB, {b.added_bytes / 1e6:.1f} MB over the base",
             "builder   " + (f"{b.builder.kind} ({b.builder.docker})" if b.builder
                                else "none (up to date: nothing was built)")]
    passed = rep.checks.passed if rep.checks else None
    lines.append("checks    " + {True: "passed", False: "FAILED", None: "not run"}[passed])
    decision = rep.gate.decision if rep.gate else "not run"
    lines.append("gate      " + (decision.upper() if decision in ("unscanned", "block") else decision)
                 + (f" ({rep.gate.policy})" if rep.gate and rep.gate.policy else ""))
    for ref in rep.local_tags or []:
        lines.append(f"tag       {ref}")
    for w in b.warnings:
        lines.append(f"warning   {w}")
    return "\n".join(lines)
