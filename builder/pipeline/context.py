"""What one ``tfimg build`` run knows, decided once: its options and a frozen :class:`RunContext`.

The CLI turns the command line (and, through Typer's ``envvar=``, the ``TFIMG_*`` variables) into
:class:`BuildOptions`; :func:`make` turns those into the run's context: the policy loaded once (from
``--policy`` or the variant's ``policy``; the spec is never changed), the base reference, the GPU
mode, Trivy's options, tfimg's cache directory, and the external tools (:class:`Tools`), each
resolved at most once. Bad input (a policy, a registry option, ``--gpu``) fails here, before
anything is built.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path

from builder.check.stage import GpuMode, gpu_mode
from builder.image import buildkit
from builder.image.stage import BuildSettings
from builder.infra import clock
from builder.infra import report as report_file
from builder.infra.engine import Engine
from builder.infra.paths import OUT_ROOT
from builder.infra.ui import UI
from builder.publish import push
from builder.scan import policy as policies
from builder.scan import trivy as trivy_scan
from builder.spec.loader import LoadedVariant


def _flag(name: str, *, negate: bool = False) -> dict[str, object]:
    return {"flag": name, "negate": negate}


@dataclass(frozen=True)
class BuildOptions:
    """The options of ``tfimg build`` (each field's metadata names its flag, for :meth:`to_argv`)."""

    out_root: Path = field(default=OUT_ROOT, metadata=_flag("--out"))
    base: str | None = field(default=None, metadata=_flag("--base"))        # override the spec's base image
    force: bool = field(default=False, metadata=_flag("--force"))
    no_cache: bool = field(default=False, metadata=_flag("--no-cache"))     # no BuildKit layer cache
    docker: str | None = field(default=None, metadata=_flag("--docker"))    # the BuildKit-capable client
    builder: str | None = field(default=None, metadata=_flag("--builder"))  # a named buildx builder
    checks: bool = field(default=True, metadata=_flag("--no-test", negate=True))
    scan: bool = field(default=True, metadata=_flag("--no-scan", negate=True))
    recheck: bool = field(default=False, metadata=_flag("--recheck"))   # run the checks even when unchanged
    rescan: bool = field(default=False, metadata=_flag("--rescan"))     # scan even when unchanged
    tag: bool = field(default=True, metadata={})
    gpu: str = field(default="auto", metadata=_flag("--gpu"))
    policy: Path | None = field(default=None, metadata=_flag("--policy"))   # gate under this policy
    trivy: str | None = field(default=None, metadata=_flag("--trivy"))      # the Trivy executable
    trivy_cache: Path | None = field(default=None, metadata=_flag("--trivy-cache-dir"))   # a pre-downloaded DB
    offline: bool = field(default=False, metadata=_flag("--offline"))       # never update Trivy's DB
    trivy_db_repository: str | None = field(default=None, metadata=_flag("--trivy-db-repository"))
    cache_from: tuple[str, ...] = field(default=(), metadata=_flag("--cache-from"))   # BuildKit cache imports
    cache_to: str | None = field(default=None, metadata=_flag("--cache-to"))           # and its export
    registry: str | None = field(default=None, metadata=_flag("--registry"))   # skip all when published there
    scan_registry: str | None = field(default=None, metadata=_flag("--scan-registry"))   # Trivy reads it there
    allow_dirs: tuple[Path, ...] = field(default=(), metadata=_flag("--allow-dir"))   # where named files may lie
    source_date_epoch: int | None = field(default=None, metadata={})   # --reproduce: the recorded time
    revision: str | None = field(default=None, metadata={})            # --reproduce: the recorded revision

    def to_argv(self) -> list[str]:
        """The ``tfimg build`` options that give these options again (the fan-out's children)."""
        argv: list[str] = []
        for f in fields(self):
            flag, value = f.metadata.get("flag"), getattr(self, f.name)
            if not flag:
                continue
            if isinstance(value, bool):
                argv += [str(flag)] if value != bool(f.metadata.get("negate")) else []
            elif isinstance(value, tuple):
                argv += [a for v in value for a in (str(flag), str(v))]
            elif value is not None and value != f.default:
                argv += [str(flag), str(value)]
        return argv

    def build_settings(self) -> BuildSettings:
        return BuildSettings(force=self.force, no_cache=self.no_cache, cache_from=self.cache_from,
                             cache_to=self.cache_to, explicit_builder=bool(self.docker or self.builder),
                             source_date_epoch=self.source_date_epoch, revision=self.revision)

    def trivy_options(self) -> trivy_scan.Options:
        return trivy_scan.Options(binary=self.trivy or "trivy", cache_dir=self.trivy_cache, offline=self.offline,
                             db_repository=self.trivy_db_repository,
                             mode="remote" if self.scan_registry else "reference")


class Tools:
    """The external tools of one run, each resolved at most once (and only when a stage needs it)."""

    def __init__(self, opts: BuildOptions) -> None:
        self._opts = opts
        self._trivy: trivy_scan.Trivy | None = None

    @cached_property
    def builder(self) -> buildkit.Builder:
        """The BuildKit-capable docker client (and named buildx builder). Raises EnvError."""
        return buildkit.find_builder(self._opts.docker, self._opts.builder)

    def trivy_tool(self, options: trivy_scan.Options, known: tuple[str, str] | None = None) -> trivy_scan.Trivy:
        """Trivy's executable and version (``known``: the (fingerprint, version) an earlier scan
        recorded; the version is not read again for the same file). Raises EnvError."""
        if self._trivy is None:
            self._trivy = trivy_scan.resolve(options, known)
        return self._trivy


@dataclass(frozen=True)
class RunContext:
    """One run of the pipeline for one variant: everything decided before the first stage."""

    loaded: LoadedVariant
    opts: BuildOptions
    vdir: Path                      # build/<variant>/
    base_ref: str                   # --base, else the spec's base (image@digest when pinned)
    policy: policies.Policy         # loaded once; --policy or the variant's
    policy_file: Path               # the file it was loaded from (its hash is part of the gate's key)
    gpu: GpuMode | None             # None: the checks are not run
    trivy: trivy_scan.Options
    cache_root: Path | None         # tfimg's own cache (the base's file inventory)
    today: dt.date
    ui: UI
    engine: Engine
    tools: Tools


def make(loaded: LoadedVariant, opts: BuildOptions, ui: UI, engine: Engine, *,
         cache_root: Path | None = None) -> RunContext:
    """The run's context. Raises SpecErrors (a bad policy), TfimgError (a malformed ``--registry``
    or ``--scan-registry``), EnvError (``--gpu on`` without a GPU, an unknown ``--gpu``)."""
    chosen = opts.policy if opts.policy is not None else loaded.spec.policy
    policy = policies.load(chosen)   # a bad policy is bad input: stop before building anything
    for option, value in (("--registry", opts.registry), ("--scan-registry", opts.scan_registry)):
        if value:
            push.namespace(value, option)   # so are malformed registry options
    gpu = gpu_mode(opts.gpu, engine.gpu_available) if opts.checks else None   # a bad --gpu: before the build too
    return RunContext(loaded=loaded, opts=opts, vdir=report_file.variant_dir(opts.out_root, loaded.name),
                      base_ref=opts.base or loaded.spec.base.ref, policy=policy,
                      policy_file=policies.resolve(chosen), gpu=gpu, trivy=opts.trivy_options(),
                      cache_root=cache_root, today=clock.today(), ui=ui, engine=engine, tools=Tools(opts))
