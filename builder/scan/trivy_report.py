"""Typed models of Trivy's JSON report (``--format json``, ``SchemaVersion: 2``).

Every key Trivy may leave out is optional, unknown keys are kept
(``extra="allow"``) and never fatal, so reports from v0.19 up to the current
release parse: missing ``Results``/``Vulnerabilities``/``PkgID``/
``FixedVersion``/``Status``, zero-valued ``Metadata`` and ``"Layer": {}``,
old (``DS002`` + ``AVDID``) and new (``DS-0002``) check ids.

:func:`parse` rejects what is not a report (a bare list from Trivy <= 0.18,
CycloneDX, garbage) with :class:`~builder.errors.TfimgError`.
:meth:`Report.findings` flattens the report into :class:`Finding` rows that
hold no secret material (no ``Match``, no code lines).
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from builder.errors import TfimgError
from builder.infra import datafile

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
RANK = {s: i for i, s in enumerate(SEVERITIES)}
Kind = Literal["vulnerability", "secret", "misconfiguration", "license"]


VULN_CLASSES = frozenset({"os-pkgs", "lang-pkgs"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def _list(v: Any) -> Any:
    return [] if v is None else v


class LayerInfo(_Model):
    Size: int | None = None
    Digest: str | None = None
    DiffID: str | None = None
    CreatedBy: str | None = None


class PkgIdent(_Model):
    PURL: str | None = None
    UID: str | None = None
    BOMRef: str | None = None


class Vulnerability(_Model):
    VulnerabilityID: str = ""
    VendorIDs: list[str] = Field(default_factory=list)
    PkgID: str | None = None
    PkgName: str = ""
    PkgPath: str | None = None
    PkgIdentifier: PkgIdent | None = None
    InstalledVersion: str | None = None
    FixedVersion: str | None = None
    Status: str | None = None
    Layer: LayerInfo | None = None
    SeveritySource: str | None = None
    PrimaryURL: str | None = None
    Title: str | None = None
    Severity: Any = None   # from_data refuses anything but one of SEVERITIES

    @property
    def has_fix(self) -> bool:
        return bool((self.FixedVersion or "").strip()) or self.Status == "fixed"


class Misconfiguration(_Model):
    Type: str | None = None
    ID: str = ""
    AVDID: str | None = None
    Title: str | None = None
    Message: str | None = None
    Resolution: str | None = None
    Severity: Any = None   # from_data refuses anything but one of SEVERITIES
    PrimaryURL: str | None = None
    Status: str | None = None
    Layer: LayerInfo | None = None


class Secret(_Model):
    RuleID: str = ""
    Category: str | None = None
    Severity: Any = None   # from_data refuses anything but one of SEVERITIES
    Title: str | None = None
    StartLine: int | None = None
    EndLine: int | None = None
    Layer: LayerInfo | None = None


class License(_Model):
    Severity: Any = None   # from_data refuses anything but one of SEVERITIES
    Category: str | None = None
    PkgName: str | None = None
    FilePath: str | None = None
    Name: str = ""
    Confidence: float | None = None
    Link: str | None = None
    Layer: LayerInfo | None = None   # added by tfimg from the package lists (Trivy leaves it out)


class Result(_Model):
    Target: str = ""
    Class: str | None = None
    Type: str | None = None
    Vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    Misconfigurations: list[Misconfiguration] = Field(default_factory=list)
    Secrets: list[Secret] = Field(default_factory=list)
    Licenses: list[License] = Field(default_factory=list)
    MisconfSummary: dict[str, Any] | None = None

    _lists = field_validator("Vulnerabilities", "Misconfigurations", "Secrets", "Licenses",
                             mode="before")(_list)


class OSInfo(_Model):
    Family: str | None = None
    Name: str | None = None
    EOSL: bool = False


class ReportMetadata(_Model):
    Size: int | None = None
    OS: OSInfo | None = None
    ImageID: str | None = None
    DiffIDs: list[str] = Field(default_factory=list)
    RepoTags: list[str] = Field(default_factory=list)
    RepoDigests: list[str] = Field(default_factory=list)
    ImageConfig: dict[str, Any] | None = None
    Layers: list[LayerInfo] = Field(default_factory=list)

    _lists = field_validator("DiffIDs", "RepoTags", "RepoDigests", "Layers", mode="before")(_list)


class TrivyInfo(_Model):
    Version: str | None = None


class Finding(BaseModel):
    """One finding, flattened, with nothing secret in it (no match text, no code)."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    id: str
    aliases: tuple[str, ...] = ()
    severity: str
    target: str = ""
    package: str | None = None
    pkg_id: str | None = None
    installed: str | None = None
    fixed: str | None = None
    has_fix: bool = False
    status: str | None = None
    purl: str | None = None
    path: str | None = None
    layer: str | None = None
    line: int | None = None
    category: str | None = None
    title: str | None = None
    url: str | None = None

    @cached_property
    def key(self) -> str:
        """A stable identity: kind, id, package or file, line (computed once: the gate looks it up often)."""
        return "|".join(str(x) for x in (self.kind, self.id, self.package or "", self.pkg_id or "",
                                          self.path or self.target, self.line or ""))

    @property
    def subject(self) -> str:
        """What the finding is in: package@version, or the file (and line)."""
        if self.package:
            return f"{self.package}@{self.installed}" if self.installed else self.package
        where = self.path or self.target
        return f"{where}:{self.line}" if self.line else where


class Report(_Model):
    SchemaVersion: int
    Trivy: TrivyInfo | None = None
    ReportID: str | None = None
    CreatedAt: str | None = None
    ArtifactID: str | None = None
    ArtifactName: str | None = None
    ArtifactType: str | None = None
    Metadata: ReportMetadata | None = None
    Results: list[Result] = Field(default_factory=list)

    _lists = field_validator("Results", mode="before")(_list)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.Metadata.DiffIDs) if self.Metadata else []

    @property
    def has_packages(self) -> bool:
        """Whether Trivy found something to look vulnerabilities up for: a package result (``os-pkgs``
        / ``lang-pkgs``) or a vulnerability. This does not show that the vulnerability scanner ran:
        Trivy 0.76 writes the same ``os-pkgs`` result for ``--scanners secret`` (see the scan record,
        :mod:`builder.scan.trust`)."""
        return any(r.Class in VULN_CLASSES or r.Vulnerabilities for r in self.Results)

    def findings(self) -> list[Finding]:
        """All findings in report order; misconfigurations only when they FAIL."""
        out: list[Finding] = []
        for r in self.Results:
            out += [_vuln(r, v) for v in r.Vulnerabilities if v.Status != "not_affected"]
            out += [_misconf(r, m) for m in r.Misconfigurations if (m.Status or "FAIL") == "FAIL"]
            out += [_secret(r, s) for s in r.Secrets]
            out += [_license(r, lic) for lic in r.Licenses]
        return out


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many acyclic objects are made (a report's findings
    and the gate's rows): each collection walks every live object again, which made reading and
    gating 60,000 findings two to three times slower. Reference counting still frees everything;
    a cycle made meanwhile is collected once the collector runs again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def check_id(raw: str) -> str:
    """Canonical check id: ``DS002``, ``AVD-DS-0002`` and ``DS-0002`` all give ``DS-0002``."""
    m = re.fullmatch(r"(?:AVD-)?([A-Za-z]+)-?(\d+)", raw.strip())
    return f"{m.group(1).upper()}-{int(m.group(2)):04d}" if m else raw.strip().upper()


def _layer(layer: LayerInfo | None) -> str | None:
    return layer.DiffID if layer and layer.DiffID else None


def _vuln(r: Result, v: Vulnerability) -> Finding:
    purl = v.PkgIdentifier.PURL if v.PkgIdentifier else None
    return Finding(
        kind="vulnerability", id=v.VulnerabilityID, aliases=tuple(v.VendorIDs), severity=v.Severity,
        target=r.Target, package=v.PkgName or None, pkg_id=v.PkgID, installed=v.InstalledVersion,
        fixed=v.FixedVersion or None, has_fix=v.has_fix, status=v.Status, purl=purl, path=v.PkgPath,
        layer=_layer(v.Layer), title=v.Title, url=v.PrimaryURL)


def _misconf(r: Result, m: Misconfiguration) -> Finding:
    ids = {check_id(m.ID), m.ID, *([m.AVDID] if m.AVDID else [])} - {""}
    canonical = check_id(m.ID or m.AVDID or "")
    return Finding(
        kind="misconfiguration", id=canonical, aliases=tuple(sorted(ids - {canonical})), severity=m.Severity,
        target=r.Target, path=r.Target, layer=_layer(m.Layer), title=m.Title or m.Message, url=m.PrimaryURL,
        status=m.Status)


def _secret(r: Result, s: Secret) -> Finding:
    return Finding(
        kind="secret", id=s.RuleID, severity=s.Severity, target=r.Target, path=r.Target, line=s.StartLine,
        layer=_layer(s.Layer), title=s.Title, category=s.Category)


def _license(r: Result, lic: License) -> Finding:
    return Finding(
        kind="license", id=lic.Name, severity=lic.Severity, target=r.Target, package=lic.PkgName or None,
        path=lic.FilePath or None, category=lic.Category, layer=_layer(lic.Layer),
        title=f"{lic.Name} ({lic.Category})" if lic.Category else lic.Name, url=lic.Link or None)


def parse(text: str | bytes, *, source: str = "report") -> Report:
    """Parse Trivy JSON text. Raises TfimgError when it is not a Trivy report (datafile's
    UnreadableInput when it is not strict JSON: bad UTF-8, a duplicate key, ...)."""
    with gc_paused():
        return from_data(datafile.loads_json(text, source, what="the Trivy report"), source=source)


def from_data(data: Any, *, source: str = "report") -> Report:
    if isinstance(data, list):
        raise TfimgError(f"{source} is a bare list of results: Trivy older than 0.19 wrote that format",
                         hint="Upgrade Trivy (0.37 or newer) and scan again.")
    if not isinstance(data, dict) or "SchemaVersion" not in data:
        kind = "a CycloneDX document" if isinstance(data, dict) and data.get("bomFormat") else "no Trivy report"
        raise TfimgError(f"{source} is {kind} (no 'SchemaVersion' key)",
                         hint="Give the output of `trivy image --format json` (not sarif, cyclonedx or table).")
    if data.get("SchemaVersion") != 2:
        raise TfimgError(f"{source} has SchemaVersion {data.get('SchemaVersion')!r}; tfimg reads version 2",
                         hint="Use a Trivy release that writes SchemaVersion 2 (0.19 or newer).")
    try:
        with gc_paused():
            report = Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TfimgError(f"{source} is not a valid Trivy report: {where}: {first['msg']}") from None
    _check_severities(report, source)
    return report


def _check_severities(report: Report, source: str) -> None:
    """Every finding's severity is one of Trivy's five; anything else (or none) is refused, naming
    the finding, never read as UNKNOWN (which a policy may let pass)."""
    for i, r in enumerate(report.Results):
        groups: tuple[tuple[str, list[Any], str], ...] = (
            ("Vulnerabilities", r.Vulnerabilities, "VulnerabilityID"), ("Misconfigurations", r.Misconfigurations, "ID"),
            ("Secrets", r.Secrets, "RuleID"), ("Licenses", r.Licenses, "Name"))
        for key, items, ident in groups:
            for j, item in enumerate(items):
                if isinstance(item.Severity, str) and item.Severity in RANK:
                    continue
                what = _short(getattr(item, ident)) or "(no id)"
                raise TfimgError(
                    f"{source}: Results[{i}].{key}[{j}] ({what} in {_short(r.Target)}) has severity "
                    f"{_short(item.Severity)}; Trivy's severities are {', '.join(SEVERITIES)}",
                    hint="The report was edited or made by another tool; scan the image again with Trivy.")


def _short(value: Any, limit: int = 80) -> str:
    """A value for a message: one line (repr escapes newlines), at most ``limit`` characters."""
    text = repr(value)[1:-1] if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load(path: str | Path) -> Report:
    """Read and parse a saved Trivy JSON report. Raises TfimgError."""
    p = Path(path)
    with gc_paused():
        return from_data(datafile.load_json(p, what="the Trivy report"), source=str(p))


def redact(data: Any) -> Any:
    """Drop code lines of secret findings (Trivy masks only the matched secret)."""
    if isinstance(data, dict):
        out = {k: redact(v) for k, v in data.items()}
        if "RuleID" in out and isinstance(out.get("Code"), dict):
            out["Code"] = {"Lines": [{"Number": ln.get("Number"), "IsCause": ln.get("IsCause"),
                                      "Content": "[redacted by tfimg]"}
                                     for ln in out["Code"].get("Lines") or [] if isinstance(ln, dict)]}
        return out
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data
