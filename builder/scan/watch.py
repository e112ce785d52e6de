"""What changed for a published digest since it was published: a pure comparison (``tfimg watch``).

:func:`assess` takes what was published with the digest (its Trivy report, the base's layers, the scanners
its scan record names) and a scan of its SBOM against today's DB, and decides, with no I/O and no clock:

- each vulnerability found now is *new since publishing* (not in the published report: disclosed later)
  or *known at publishing*; one in the published report and not found now is *resolved* (the DB changed);
- *inherited* from the base (its layer is one of the base's, from the SBOM's layer data, as the gate
  decides) or *introduced* by the variant (the gate's "new" origin);
- the decision under the current policy: :func:`builder.scan.gate.evaluate` of today's vulnerabilities
  plus the published report's other findings (secrets, misconfigurations, licenses: the SBOM has none,
  and they do not change with the DB), with the policy's waivers and those made from VEX documents;
- the policy's waivers for this digest's findings that expired, or expire within ``warn_days``, with
  their owners.

The results are frozen models; :mod:`builder.scan.watch_outputs` renders them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from builder.scan import gate
from builder.scan.gate import GateResult
from builder.scan.policy import Policy, Waiver
from builder.scan.trivy_report import RANK, Finding, Report

Origin = Literal["introduced", "inherited"]
Since = Literal["new", "known"]
Status = Literal["pass", "block", "unscanned", "error"]
ORIGIN: dict[str, Origin] = {"new": "introduced", "inherited": "inherited"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Published(_Frozen):
    """What a digest was published with, as read back from the registry."""

    reference: str = Field(description="HOST/NAME@sha256:...")
    variant: str | None = None
    tags: list[str] = Field(default_factory=list)
    published_at: str | None = None
    decision: str | None = Field(None, description="The gate decision recorded at publishing.")
    base_layers: list[str] = Field(default_factory=list)
    pinned: bool = False
    scanners: list[str] = Field(default_factory=list, description="The publish-time scan's scanners.")
    report: Report | None = Field(None, exclude=True, description="The Trivy report it was published with.")


class WatchedFinding(_Frozen):
    """One vulnerability found now."""

    id: str
    severity: str
    package: str | None = None
    installed: str | None = None
    fixed: str | None = None
    purl: str | None = None
    origin: Origin
    since: Since
    blocking: str | None = Field(None, description="Why it blocks under the current policy, or null.")
    waived_by: str | None = Field(None, description="The waiver (or VEX document) that accepts it.")
    title: str | None = None
    url: str | None = None


class WaiverAlert(_Frozen):
    """A waiver for this digest's findings that expired, or expires within the warning window."""

    id: str
    owner: str
    expires: dt.date
    days_left: int
    state: Literal["expired", "expiring"]
    reason: str


class DigestWatch(_Frozen):
    """The watch of one published digest."""

    published: Published
    status: Status
    reasons: list[str] = Field(default_factory=list)
    findings: list[WatchedFinding] = Field(default_factory=list)
    resolved: list[str] = Field(default_factory=list, description="Known at publishing, not found now.")
    waivers: list[WaiverAlert] = Field(default_factory=list)
    statement: str | None = Field(None, description="The signed watch statement attached (its artifact digest).")
    gate: GateResult | None = Field(None, exclude=True)

    @property
    def new(self) -> list[WatchedFinding]:
        return [f for f in self.findings if f.since == "new"]

    @property
    def alert(self) -> bool:
        """Whether this digest no longer passes (or could not be watched)."""
        return self.status != "pass"


class WatchReport(_Frozen):
    """One ``tfimg watch`` run."""

    namespace: str
    watched_at: str
    policy: str
    db: str | None = Field(None, description="The vulnerability DB's UpdatedAt (and where it came from).")
    warn_days: int
    digests: list[DigestWatch]

    @property
    def alerts(self) -> list[DigestWatch]:
        return [d for d in self.digests if d.alert]

    @property
    def exit_code(self) -> int:
        """0: every digest still passes; 1: any no longer does (an alert)."""
        return 1 if self.alerts else 0


def failed(published: Published, why: str) -> DigestWatch:
    """A digest that could not be watched (no SBOM, a statement that does not verify, Trivy failed)."""
    return DigestWatch(published=published, status="error", reasons=[why])


def identity(f: Finding) -> tuple[str, str, str]:
    """The same vulnerability in the same package and version, whatever the scan's target name."""
    return f.id, f.package or f.pkg_id or f.purl or f.path or "", f.installed or ""


def merged(current: Report, published: Report | None) -> Report:
    """Today's report: the SBOM scan's vulnerabilities, with the published report's other findings."""
    if published is None:
        return current
    others = [r.model_copy(update={"Vulnerabilities": []}) for r in published.Results
              if r.Misconfigurations or r.Secrets or r.Licenses]
    return current.model_copy(update={"Results": [*current.Results, *others]})


def assess(published: Published, current: Report, policy: Policy, *, today: dt.date, warn_days: int,
           vex_waivers: Sequence[Waiver] = ()) -> DigestWatch:
    """Compare a digest's SBOM scan (``current``) with what it was published with, under ``policy``
    (plus ``vex_waivers``, from VEX documents) on ``today``. Pure."""
    with_vex = policy.model_copy(update={"waivers": [*policy.waivers, *vex_waivers]})
    scanners = sorted({*published.scanners, "vuln"})
    result = gate.evaluate(merged(current, published.report), with_vex, published.base_layers or None, today,
                           published.pinned, scanners=scanners, scanners_from="scan record")
    known = {identity(f) for f in published.report.findings() if f.kind == "vulnerability"} \
        if published.report is not None else set()
    blocking = {b.finding.key: b.reason for b in result.blocking}
    waived = {w.finding.key: w.waiver for w in result.waived}
    rows, seen = [], set()
    for f, origin in result.findings:
        if f.kind != "vulnerability":
            continue
        seen.add(identity(f))
        rows.append(WatchedFinding(
            id=f.id, severity=f.severity, package=f.package, installed=f.installed, fixed=f.fixed, purl=f.purl,
            origin=ORIGIN[origin], since="known" if identity(f) in known else "new", blocking=blocking.get(f.key),
            waived_by=waived.get(f.key), title=f.title, url=f.url))
    rows.sort(key=lambda r: (r.since != "new", -RANK[r.severity], r.id, r.package or ""))
    resolved = sorted({f"{i} in {p}@{v}" for i, p, v in known - seen})
    findings = [f for f, _ in result.findings]
    return DigestWatch(published=published, status=result.decision, reasons=list(result.reasons), findings=rows,
                       resolved=resolved, waivers=alerts(policy.waivers, findings, today, warn_days), gate=result)


def alerts(waivers: Sequence[Waiver], findings: Sequence[Finding], today: dt.date, warn_days: int) -> list[WaiverAlert]:
    """The waivers that cover one of ``findings`` and expired, or expire within ``warn_days`` of ``today``."""
    out = []
    for w in waivers:
        left = (w.expires - today).days
        if left > warn_days or not any(gate.matches(w, f) for f in findings):
            continue
        out.append(WaiverAlert(id=w.id, owner=w.owner, expires=w.expires, days_left=left,
                               state="expired" if w.expired(today) else "expiring", reason=w.reason))
    return sorted(out, key=lambda a: (a.expires, a.id))
