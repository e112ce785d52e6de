"""Running Trivy: an argument list through :func:`builder.infra.runner.run`, never a shell.

The image is scanned from a ``docker save`` archive (``--input``; nothing is pulled) or by reference
from the local engine (``--image-src docker``). The JSON report is written to a file and decided on by
the gate; Trivy's exit code only says whether Trivy itself worked (``--exit-code 0``).

Hermetic runs: the working directory is an empty temp dir, so no stray ``.trivyignore``, ``trivy.yaml``
or ``trivy-secret.yaml`` is read, and ``TRIVY_*`` variables that change findings (``TRIVY_SEVERITY``,
``TRIVY_IGNORE_UNFIXED``, ``TRIVY_IGNOREFILE``, ...) are blanked; only those naming where the databases
come from and registry credentials pass.

Fails closed: Trivy missing, too old (< 0.37), timing out, exiting non-zero, or writing something that
is not a report raises :class:`~builder.errors.EnvError`; the caller turns that into a blocked (or,
with ``scan: {required: false}``, an UNSCANNED) gate.

Air-gapped use (docs/scanning.md): fetch the DB once on a connected host (``trivy image
--download-db-only --cache-dir DIR``), copy DIR over and scan with ``--offline --cache-dir DIR``;
``--offline`` adds ``--skip-db-update --skip-java-db-update --skip-check-update --offline-scan``
(and ``--skip-version-check --disable-telemetry`` on Trivy 0.63+), so Trivy makes no network calls.
A DB older than a few days still scans; its ``UpdatedAt`` is recorded in ``report.json`` (``scan.db``).

SBOM mode (:func:`scan_sbom`, ``tfimg watch``): ``trivy sbom`` of a published CycloneDX SBOM against
a DB fetched once per run (:func:`current_db`), then ``--skip-db-update`` for each SBOM: no image is read.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from builder.errors import CommandFailed, EnvError, TfimgError
from builder.infra import clock, datafile, runner
from builder.infra import report as report_file
from builder.infra.report_models import JsonObject, Sbom, ScanSection, TrivyDb
from builder.scan.trivy_report import Report, from_data, redact

if TYPE_CHECKING:   # the Docker SDK takes a second to import: `tfimg gate` never needs it
    from builder.infra.engine import Engine

MIN_VERSION = (0, 37, 0)
MIN_VERSION_TEXT = ".".join(map(str, MIN_VERSION[:2]))   # "0.37", as the hints and errors name it
KEEP_ENV = {"TRIVY_DB_REPOSITORY", "TRIVY_JAVA_DB_REPOSITORY", "TRIVY_CHECKS_BUNDLE_REPOSITORY",
            "TRIVY_USERNAME", "TRIVY_PASSWORD", "TRIVY_REGISTRY_TOKEN", "TRIVY_INSECURE",
            "TRIVY_CACHE_DIR", "TRIVY_NO_PROGRESS"}
INSTALL_HINT = (f"Install Trivy (https://trivy.dev, {MIN_VERSION_TEXT} or newer; tfimg's `scan` extra pins 0.76) "
                "or pass --trivy PATH. For a local build without a scan, use a policy with "
                "`scan: {required: false}` (the result is UNSCANNED and cannot be published).")


class Options(BaseModel):
    """How to run Trivy. ``timeout`` is in seconds."""

    model_config = ConfigDict(frozen=True)

    binary: str = "trivy"
    timeout: float = 900
    cache_dir: Path | None = None
    offline: bool = False
    scanners: tuple[str, ...] = ("vuln", "secret", "license")
    image_config_scanners: tuple[str, ...] = ("misconfig",)   # the image's config (history, user, env)
    # reference: Trivy reads the image from the engine (--image-src docker) and its layer cache (keyed by
    # layer digest) skips layers it analysed before; archive: a `docker save` tar (needs the image's size free)
    mode: Literal["archive", "reference", "remote"] = "reference"   # remote: read from the registry (by digest)
    db_repository: str | None = None   # --db-repository: an internal mirror of trivy-db (OCI artifact)
    sbom: bool = True                  # write a CycloneDX SBOM beside the report

    @field_validator("cache_dir")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Trivy runs in an empty temp dir: a relative cache dir would land (and vanish) there
        return Path(v).absolute() if v is not None else None


class VersionInfo(BaseModel):
    """``trivy version --format json --cache-dir DIR``: the version, and the DB in that cache dir."""

    model_config = ConfigDict(frozen=True)

    version: str
    db: TrivyDb | None = None   # its VulnerabilityDB; None when the cache dir holds none


def db_of(data: object) -> TrivyDb | None:
    """The DB metadata (``VulnerabilityDB``, or ``db/metadata.json``) as the report records it."""
    if not isinstance(data, dict):
        return None
    return TrivyDb.model_validate({k: data.get(k) for k in ("Version", "UpdatedAt", "NextUpdate", "DownloadedAt")})


class Trivy(VersionInfo):
    """A resolved Trivy: its executable and version (and the DB then), read once per run (:func:`resolve`)."""

    exe: str
    fingerprint: str    # path, size and mtime of the executable (:func:`binary_fingerprint`)

    @property
    def parsed(self) -> tuple[int, int, int] | None:
        return parse_version(self.version)


def resolve(opts: Options, known: tuple[str, str] | None = None) -> Trivy:
    """The Trivy to run: its executable and version (``trivy version``, unless ``known`` is the
    (fingerprint, version) of this very executable file). Raises EnvError."""
    exe = binary(opts)
    fingerprint = binary_fingerprint(exe)
    if known is not None and known[0] == fingerprint and known[1]:
        return Trivy(exe=exe, version=known[1], fingerprint=fingerprint)
    info = version(opts)
    return Trivy(exe=exe, version=info.version, fingerprint=fingerprint, db=info.db)


def db_repository(opts: Options) -> str | None:
    """Where the vulnerability DB comes from: ``--db-repository``, else ``$TRIVY_DB_REPOSITORY`` (Trivy's
    own variable; the one place tfimg reads it), else None (Trivy's default)."""
    return opts.db_repository or os.environ.get("TRIVY_DB_REPOSITORY") or None


class ScanRun(BaseModel):
    """One finished scan: the parsed report and what is recorded about it."""

    model_config = ConfigDict(frozen=True)

    report: Report
    path: Path
    info: ScanSection    # report.json's scan section


def binary(opts: Options) -> str:
    """The Trivy executable to run. Raises EnvError when there is none."""
    if "/" in opts.binary:
        p = Path(opts.binary)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p.resolve())
        raise EnvError(f"Trivy executable '{opts.binary}' does not exist or is not executable.",
                       hint=INSTALL_HINT)
    found = runner.which(opts.binary)
    if not found:
        raise EnvError(f"`{opts.binary}` was not found on PATH (nor beside this Python); it is needed to scan the image.",
                       hint=INSTALL_HINT)
    return found


def version(opts: Options) -> VersionInfo:
    """``trivy version --format json``: the version and, when the cache dir the scan uses
    (``opts.cache_dir``) holds a DB, that DB. Raises EnvError."""
    exe = binary(opts)
    res = _run([exe, "version", "--format", "json", *runner.args(cache_dir=opts.cache_dir)],
               timeout=60, what="`trivy version`")
    try:
        data = datafile.loads_json(res.stdout, "`trivy version` output", what="it")
        if not isinstance(data, dict) or not isinstance(data.get("Version"), str):
            raise ValueError("no 'Version' key")
    except ValueError as exc:
        raise EnvError(f"`{exe} version --format json` did not print Trivy's version JSON ({exc}); "
                       "is this really Trivy?", hint=INSTALL_HINT) from None
    parsed = parse_version(data["Version"])
    if parsed is not None and parsed < MIN_VERSION:
        raise EnvError(f"Trivy {data['Version']} is too old; tfimg needs {MIN_VERSION_TEXT} or newer.", hint=INSTALL_HINT)
    return VersionInfo(version=data["Version"], db=db_of(data.get("VulnerabilityDB")))


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``0.58.1`` -> (0, 58, 1); ``dev`` and other non-releases -> None (treated as newest)."""
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def common_flags(opts: Options, ver: tuple[int, int, int] | None, out: Path, *, image: bool = True) -> list[str]:
    """Flags of ``trivy image`` (and, with ``image=False``, of ``trivy config``: no DB flags)."""
    new = ver is None or ver >= (0, 63, 0)
    argv = runner.args(format="json", output=out, quiet=True, exit_code=0,
                       timeout=f"{max(1, int(opts.timeout))}s", cache_dir=opts.cache_dir)
    if opts.db_repository and image:
        argv += ["--db-repository", opts.db_repository]
    if opts.offline:
        check_flag = "--skip-check-update" if ver is None or ver >= (0, 51, 0) else "--skip-policy-update"
        argv += ["--skip-db-update", "--skip-java-db-update", check_flag, "--offline-scan"] if image else [check_flag]
        if new:
            argv += ["--skip-version-check", "--disable-telemetry"]
    return argv


DB_SCHEMA = 2   # the trivy-db schema Trivy 0.37+ reads; an older DB can load "fine" and match nothing


def check_db(info: VersionInfo, opts: Options) -> None:
    """Fail closed unless the cache dir the scan used holds a trivy-db of schema ``DB_SCHEMA``.

    Trivy 0.76 accepts a schema-1 DB served from a registry and exits 0, so the
    exit code alone does not prove the vulnerabilities were looked up.
    """
    db = info.db
    where = f"{opts.cache_dir or 'the default cache dir'}"
    source = db_repository(opts) or "Trivy's default DB repository"
    if db is None:
        raise EnvError(f"after the scan, `trivy version --cache-dir {where}` reports no vulnerability DB; "
                       "no vulnerability was looked up.",
                       hint=f"Check that {source} serves trivy-db (schema {DB_SCHEMA}).")
    if db.Version != DB_SCHEMA:
        raise EnvError(f"the vulnerability DB in {where} has schema version {db.Version!r}, not "
                       f"{DB_SCHEMA}; Trivy {info.version} may match nothing against it, so the "
                       "scan is not trusted.",
                       hint=f"Serve a current trivy-db (schema {DB_SCHEMA}, tag :{DB_SCHEMA}) from {source}.")


def scan_image(image: str, out_path: Path, opts: Options, engine: Engine | None = None, *,
               tool: Trivy | None = None) -> ScanRun:
    """Scan a local image; write the (redacted) JSON report to ``out_path``. Raises EnvError.

    ``engine``: where the image is saved from (``archive`` mode; the other modes do not need one).
    ``tool``: the Trivy resolved for this run (:func:`resolve`; resolved here when not given).
    """
    tool = tool or resolve(opts)
    info = VersionInfo(version=tool.version, db=tool.db)
    ver, exe = tool.parsed, tool.exe
    if opts.offline:
        check_offline_cache(opts.cache_dir)
    with tempfile.TemporaryDirectory(prefix="tfimg-trivy-") as tmp:
        raw = Path(tmp) / "trivy.json"
        rename: dict[str, str] = {}
        if opts.mode == "archive":
            tar = Path(tmp) / "image.tar"
            if engine is None:
                raise TfimgError("internal: an archive scan needs the Docker engine to save the image from")
            _save(image, tar, engine)
            target, rename = ["--input", str(tar)], {str(tar): image}
        else:
            target = ["--image-src", "remote" if opts.mode == "remote" else "docker", image]
        config_scanners = ["--image-config-scanners", ",".join(opts.image_config_scanners)] \
            if opts.image_config_scanners else []
        argv = [exe, "image", *common_flags(opts, ver, raw), "--scanners", ",".join(opts.scanners),
                *config_scanners, f"--list-all-pkgs={'true' if opts.sbom else 'false'}", *target]
        started, started_on = time.monotonic(), clock.now_rfc3339z()
        _run(argv, timeout=opts.timeout + min(30.0, opts.timeout / 4 + 1), cwd=tmp, what="Trivy")
        seconds, finished_on = round(time.monotonic() - started, 1), clock.now_rfc3339z()
        if "vuln" in opts.scanners:
            # read back with the same cache dir: the DB this scan used (downloaded or copied)
            info = version(opts)
            check_db(info, opts)
        report, data = _read(raw, info.version, rename)
        sbom = _sbom(exe, raw, out_path.parent / "sbom.cdx.json", opts) if opts.sbom else None
    results = [r for r in ((data.get("Results") or []) if isinstance(data, dict) else []) if isinstance(r, dict)]
    _license_layers(results)
    report = from_data(data, source=f"Trivy {info.version} output")   # the gate sees the licenses' layers,
    for r in results:                                   # as a gate of the saved trivy.json (a gate-only rerun) does
        r.pop("Packages", None)   # every package is in the SBOM; trivy.json keeps the findings
    report_file.write_json(out_path, redact(data))
    section = ScanSection(status="ok", tool="trivy", trivy_version=info.version,
                          db=info.db, db_repository=recorded_db_repository(opts),
                          image=image, image_id=report.Metadata.ImageID if report.Metadata else None,
                          mode=opts.mode, scanners=list(opts.scanners),
                          image_config_scanners=list(opts.image_config_scanners), offline=opts.offline,
                          report=out_path.name, seconds=seconds, started_on=started_on, finished_on=finished_on,
                          report_sha256=hashlib.sha256(out_path.read_bytes()).hexdigest(),   # a later gate checks it
                          findings=_kinds(report), sbom=sbom)
    return ScanRun(report=report, path=out_path, info=section)


def recorded_db_repository(opts: Options) -> str | None:
    """The DB repository the report (and the scan's reuse key) records: None offline, 'default' for Trivy's own."""
    if opts.offline:
        return None
    return db_repository(opts) or "default"


def _license_layers(results: list[dict[str, Any]]) -> None:
    """Give each license finding the layer of its package (Trivy reports it without one), so the
    gate can tell a license the base brought from one the variant added. Needs the package lists
    (``--list-all-pkgs``); without them licenses stay layerless, that is *new*."""
    by_path: dict[str, dict[str, Any]] = {}
    by_name: dict[str, dict[str, Any]] = {}
    for r in results:
        for pkg in (p for p in r.get("Packages") or [] if isinstance(p, dict) and p.get("Layer")):
            if pkg.get("FilePath"):
                by_path.setdefault(pkg["FilePath"], pkg["Layer"])
            if pkg.get("Name") and r.get("Class") == "os-pkgs":
                by_name.setdefault(pkg["Name"], pkg["Layer"])
    for lic in (x for r in results for x in r.get("Licenses") or [] if isinstance(x, dict) and not x.get("Layer")):
        layer = by_path.get(lic.get("FilePath") or "") or by_name.get(lic.get("PkgName") or "")
        if layer:
            lic["Layer"] = layer


def _sbom(exe: str, raw: Path, dest: Path, opts: Options) -> Sbom:
    """CycloneDX JSON from the scan's own report (``trivy convert``; no second scan). Raises EnvError."""
    tmp_out = raw.with_name("sbom.cdx.json")
    _run([exe, "convert", "--format", "cyclonedx", "--output", str(tmp_out), "--quiet", str(raw)],
         timeout=120, cwd=str(raw.parent), what="`trivy convert --format cyclonedx`")
    try:
        body = tmp_out.read_bytes()
        doc = datafile.loads_json(body, tmp_out, what="the SBOM")
        components = len(doc.get("components") or [])
    except (OSError, ValueError, AttributeError) as exc:
        raise EnvError(f"Trivy wrote no readable CycloneDX SBOM ({str(exc)[:120]}).") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(body)
    return Sbom(path=dest.name, format="cyclonedx-json", spec_version=str(doc.get("specVersion") or ""),
                components=components, sha256=hashlib.sha256(body).hexdigest())


def scan_config(context: Path, out_path: Path, opts: Options, *, tool: Trivy | None = None) -> Report:
    """``trivy config`` on a rendered build context (Dockerfile checks). Raises EnvError."""
    tool = tool or resolve(opts)
    exe = tool.exe
    if not (context / "Dockerfile").is_file():
        raise EnvError(f"no rendered Dockerfile at {context} for the Dockerfile checks (scan.misconfig)",
                       hint="Render the variant first (tfimg build), or set scan.misconfig: false.")
    with tempfile.TemporaryDirectory(prefix="tfimg-trivy-") as tmp:
        raw = Path(tmp) / "config.json"
        argv = [exe, "config", *common_flags(opts, tool.parsed, raw, image=False), str(context.resolve())]
        _run(argv, timeout=opts.timeout + 30, cwd=tmp, what="`trivy config`")
        report, data = _read(raw, tool.version)
    report_file.write_json(out_path, redact(data))
    return report


def cyclonedx(image: str, opts: Options, *, tool: Trivy | None = None) -> JsonObject:
    """Trivy's CycloneDX SBOM of a local image (no DB needed; nothing downloaded). Raises EnvError.

    For an image whose scan left no ``sbom.cdx.json`` (publishing attaches an SBOM either way).
    """
    tool = tool or resolve(opts)
    with tempfile.TemporaryDirectory(prefix="tfimg-sbom-") as tmp:
        out = Path(tmp) / "sbom.cdx.json"
        _run([tool.exe, "image", "--format", "cyclonedx", "--image-src", "docker", "--cache-dir", str(Path(tmp) / "c"),
              "--skip-db-update", "--skip-java-db-update", "--offline-scan", "--quiet", "--output", str(out), image],
             timeout=max(opts.timeout, 1800), cwd=tmp, what="`trivy image --format cyclonedx`")
        try:
            data = datafile.load_json(out, what="the SBOM")
        except ValueError as exc:   # UnreadableInput
            raise EnvError(f"Trivy wrote no readable CycloneDX SBOM ({str(exc)[:120]}).") from None
    return data if isinstance(data, dict) else {}


def merge(image: Report, config: Report) -> Report:
    """The image report with the Dockerfile check results added."""
    return image.model_copy(update={"Results": [*image.Results, *config.Results]})


def cache_base(cache_dir: Path | None) -> Path:
    """The cache dir Trivy uses: ``--cache-dir``, ``$TRIVY_CACHE_DIR`` or ``~/.cache/trivy``."""
    return cache_dir or Path(os.environ.get("TRIVY_CACHE_DIR") or Path.home() / ".cache" / "trivy")


def current_db(opts: Options, tool: Trivy) -> TrivyDb | None:
    """The vulnerability DB the next scan would use (``metadata.json``: ``UpdatedAt``...), learnt
    before scanning: unless offline, ``trivy image --download-db-only`` with the scan's cache dir and
    DB repository first (a no-op when the DB is current). None when it cannot be told. Raises EnvError."""
    exe, ver = tool.exe, tool.parsed
    if not opts.offline:
        argv = [exe, "image", "--download-db-only", "--quiet", *runner.args(cache_dir=opts.cache_dir)]
        if opts.db_repository:
            argv += ["--db-repository", opts.db_repository]
        if ver is None or ver >= (0, 63, 0):
            argv += ["--skip-version-check", "--disable-telemetry"]
        with tempfile.TemporaryDirectory(prefix="tfimg-trivy-") as tmp:
            _run(argv, timeout=min(opts.timeout, 300), cwd=tmp, what="`trivy image --download-db-only`")
    try:
        data = datafile.load_json(cache_base(opts.cache_dir) / "db" / "metadata.json", limit=2**20)
    except (OSError, ValueError):
        return None
    return db_of(data)


def binary_fingerprint(exe: str) -> str:
    """Path, size and mtime of the Trivy executable: the same file is the same Trivy version."""
    st = Path(exe).stat()
    return f"{exe}:{st.st_size}:{st.st_mtime_ns}"


def check_offline_cache(cache_dir: Path | None) -> None:
    base = cache_base(cache_dir)
    missing = [n for n in ("db/trivy.db", "db/metadata.json") if not (base / n).is_file()]
    if missing:
        raise EnvError(f"--offline needs a pre-downloaded Trivy DB, but {base} lacks {', '.join(missing)}.",
                       hint="On a connected host run `trivy image --download-db-only --cache-dir DIR`, copy "
                            "DIR here and pass --cache-dir DIR (it must hold db/trivy.db and db/metadata.json).")


def scrubbed_env() -> dict[str, str]:
    """Blank TRIVY_* variables that would change findings (viper treats empty as unset)."""
    return {k: "" for k in os.environ if k.startswith("TRIVY_") and k not in KEEP_ENV}


def _run(argv: list[str], *, timeout: float, what: str, cwd: str | None = None) -> runner.Result:
    try:
        return runner.run(argv, timeout=timeout, cwd=cwd, env=scrubbed_env())
    except CommandFailed as exc:
        if exc.returncode == -1:
            raise EnvError(f"{what} did not finish within {timeout:.0f} s; the scan is incomplete.",
                           hint="Raise --timeout, warm the DB cache (--cache-dir), or check the network.") from None
        tail = "\n".join((exc.stderr or exc.stdout).strip().splitlines()[-8:])
        raise EnvError(f"{what} failed with exit code {exc.returncode}; no findings were decided.",
                       hint=(tail + "\n" if tail else "") + "Run again with --debug for the full command.") from None


def _save(image: str, tar: Path, engine: Engine) -> None:
    if engine.image(image) is None:
        raise EnvError(f"image '{image}' is not in the local Docker engine; build it first")
    engine.save(image, str(tar))   # EngineError (an EnvError) names what failed


def _read(path: Path, ver: str, rename: dict[str, str] | None = None) -> tuple[Report, Any]:
    """Parse Trivy's output; ``rename`` replaces the temp archive path by the image reference."""
    if not path.is_file() or path.stat().st_size == 0:
        raise EnvError(f"Trivy {ver} exited 0 but wrote no report; no findings were decided.")
    try:
        data = datafile.load_json(path, what="the report")
        if isinstance(data, dict):
            for old, new in (rename or {}).items():
                if data.get("ArtifactName") == old:
                    data["ArtifactName"] = new
                for r in data.get("Results") or []:
                    if isinstance(r, dict) and str(r.get("Target", "")).startswith(old):
                        r["Target"] = new + r["Target"][len(old):]
        return from_data(data, source=f"Trivy {ver} output"), data
    except ValueError as exc:
        raise EnvError(f"Trivy {ver} wrote something that is not JSON ({str(exc)[:120]}).") from None
    except TfimgError as exc:
        raise EnvError(exc.message, hint=exc.hint) from None


def _kinds(report: Report) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in report.findings():
        out[f.kind] = out.get(f.kind, 0) + 1
    return out


def scan_sbom(sbom: Path, opts: Options, *, tool: Trivy, name: str, vex: Sequence[Path] = ()) -> tuple[Report, Any]:
    """``trivy sbom --scanners vuln`` of a CycloneDX file (``name``: the image it describes, written for the
    file's path) against the DB :func:`current_db` put in ``opts.cache_dir``: no DB update, no network,
    hermetic. ``vex``: OpenVEX files Trivy applies (``--vex``). The report and its JSON. Raises EnvError."""
    sbom = sbom.resolve()
    with tempfile.TemporaryDirectory(prefix="tfimg-trivy-") as tmp:
        raw = Path(tmp) / "trivy.json"
        flags = common_flags(opts.model_copy(update={"offline": False, "db_repository": None}), tool.parsed, raw)
        flags += ["--skip-db-update", "--skip-java-db-update", "--offline-scan", "--scanners", "vuln",
                  *(["--skip-version-check", "--disable-telemetry"] if (tool.parsed or (1, 0, 0)) >= (0, 63, 0) else [])]
        argv = [tool.exe, "sbom", *flags, *(a for f in vex for a in ("--vex", str(f))), str(sbom)]
        _run(argv, timeout=opts.timeout + 30, cwd=tmp, what="`trivy sbom`")
        return _read(raw, tool.version, {str(sbom): name})
