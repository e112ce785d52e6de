"""The gate: a pure function from a Trivy report and a policy to a decision.

:func:`evaluate` reads nothing and runs nothing; given the same report,
policy, base layers and date it always returns the same :class:`GateResult`.

* A finding whose layer DiffID is one of the base image's layer DiffIDs is
  *inherited*; every other finding (no layer, or base layers unknown) is *new*.
* Every secret blocks unless a waiver names its rule id and its file (path).
* An expired waiver blocks by itself, naming its owner, and waives nothing.
* A waiver that matched nothing is *stale* (reported, not blocking).
* Without the vulnerability scanner among ``scanners`` (what the caller knows the report was made
  with), or when Trivy found no package to look up, the decision is *unscanned*, never *pass*.
  :func:`refusal` turns a decision into the error a command exits with.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from builder.infra.report_models import GateFiles, GateSection, WaiverRecord
from builder.scan.policy import Policy, Waiver
from builder.scan.trivy_report import RANK, SEVERITIES, Finding, Report, check_id, gc_paused

Decision = Literal["pass", "block", "unscanned"]
ScannersFrom = Literal["this scan", "scan record", "assumed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Blocking(_Frozen):
    finding: Finding
    origin: Literal["new", "inherited"]
    reason: str


class Waived(_Frozen):
    finding: Finding
    origin: Literal["new", "inherited"]
    waiver: str
    owner: str
    expires: dt.date
    reason: str


class WaiverNote(_Frozen):
    id: str
    owner: str
    expires: dt.date
    reason: str
    package: str | None = None
    purl: str | None = None
    path: str | None = None


class GateResult(_Frozen):
    """What the gate decided and why; ``decision`` is pass, block or unscanned."""

    decision: Decision
    policy: str
    policy_file: str = ""
    artifact: str | None = None
    trivy_version: str | None = None
    evaluated_on: dt.date | None = None
    base_layers_known: bool = False
    base_digest_pinned: bool = False
    scanners: list[str] = Field(default_factory=list)
    scanners_from: ScannersFrom | None = None
    reasons: list[str] = Field(default_factory=list)
    blocking: list[Blocking] = Field(default_factory=list)
    counts: dict[str, dict[str, dict[str, int]]] = Field(default_factory=dict)
    waived: list[Waived] = Field(default_factory=list)
    expired_waivers: list[WaiverNote] = Field(default_factory=list)
    stale_waivers: list[WaiverNote] = Field(default_factory=list)
    applied_waivers: list[WaiverNote] = Field(default_factory=list)
    findings: list[tuple[Finding, Literal["new", "inherited"]]] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return self.decision.upper()

    def summary(self, files: GateFiles | None = None) -> GateSection:
        """The ``gate`` section of report.json (publishing reads ``decision``); ``files``: where gate.* are."""
        return GateSection(
            decision=self.decision, policy=self.policy, policy_file=self.policy_file,
            artifact=self.artifact, trivy_version=self.trivy_version, evaluated_on=self.evaluated_on,
            reasons=self.reasons, blocking=len(self.blocking),
            blocking_ids=sorted({b.finding.id for b in self.blocking}),
            counts=self.counts, waived=len(self.waived),
            expired_waivers=[f"{w.id} (owner {w.owner}, expired {w.expires})" for w in self.expired_waivers],
            stale_waivers=[w.id for w in self.stale_waivers],
            **({"waivers": self.waiver_records()} if self.applied_waivers else {}),
            base_layers_known=self.base_layers_known, base_digest_pinned=self.base_digest_pinned,
            scanners=self.scanners, scanners_from=self.scanners_from,
            **({"files": files} if files is not None else {}))


    def waiver_records(self) -> list[WaiverRecord]:
        """The waivers that waived findings, with owner, expiry and how many they waived."""
        return [WaiverRecord(**w.model_dump(), findings=sum(x.waiver == w.id for x in self.waived))
                for w in self.applied_waivers]


def unscanned(policy: Policy, why: str, *, today: dt.date | None = None) -> GateResult:
    """The result when Trivy could not run and the policy has ``scan.required: false``."""
    return GateResult(decision="unscanned", policy=policy.name, policy_file=policy.file,
                      evaluated_on=today, reasons=[f"not scanned: {why}"])


def failed_closed(policy: Policy, why: str, *, today: dt.date | None = None) -> GateResult:
    """The result when Trivy could not run and the policy requires a scan."""
    return GateResult(decision="block", policy=policy.name, policy_file=policy.file, evaluated_on=today,
                      reasons=[f"scan failed and policy '{policy.name}' requires one: {why}"])


def evaluate(report: Report, policy: Policy, base_layers: Collection[str] | None,
             today: dt.date, base_digest_pinned: bool, *, scanners: Collection[str],
             scanners_from: ScannersFrom) -> GateResult:
    """Decide pass, block or unscanned. Pure: no I/O, no clock (``today`` is given).

    ``scanners``: the Trivy scanners the report is known to be made with, and ``scanners_from`` how
    that is known (:mod:`builder.scan.trust`); the report itself cannot show it.

    >>> evaluate(report, policy, base_layers=None, today=dt.date(2026, 11, 27), base_digest_pinned=False,
    ...          scanners=["vuln", "secret"], scanners_from="this scan").decision   # doctest: +SKIP
    'block'
    """
    with gc_paused():
        return _evaluate(report, policy, frozenset(base_layers or ()), today, base_digest_pinned,
                         sorted(scanners), scanners_from)


def _evaluate(report: Report, policy: Policy, base: frozenset[str], today: dt.date, base_digest_pinned: bool,
              scanners: list[str], scanners_from: ScannersFrom) -> GateResult:
    rows = [(f, _origin(f, base)) for f in _dedupe(report.findings())]
    rows.sort(key=lambda r: (-RANK[r[0].severity], r[0].kind, r[0].id, r[0].subject))
    live = [w for w in policy.waivers if not w.expired(today)]
    expired = [w for w in policy.waivers if w.expired(today)]
    used: set[int] = set()
    waived: list[Waived] = []
    open_rows: list[tuple[Finding, Literal["new", "inherited"]]] = []
    live_index, expired_index = _WaiverIndex(live), _WaiverIndex(expired)
    expired_hits: dict[int, list[Finding]] = {id(w): [] for w in expired}
    for f, origin in rows:
        w = next(iter(live_index.matching(f)), None)
        if w is None:
            open_rows.append((f, origin))
            for e in expired_index.matching(f):
                expired_hits[id(e)].append(f)
            continue
        used.add(id(w))
        waived.append(Waived(finding=f, origin=origin, waiver=w.id, owner=w.owner,
                                             expires=w.expires, reason=w.reason))
    blocking = _blocking(open_rows, policy, expired, expired_hits)
    reasons = [f"waiver {w.id} expired on {w.expires} (owner: {w.owner}); renew it with a new "
               f"expiry or remove it" for w in expired]
    if policy.require_base_digest and not base_digest_pinned:
        reasons.append("policy requires the base image pinned by digest (set base.digest: sha256:...)")
    if blocking:
        reasons.insert(0, f"{len(blocking)} finding(s) block under policy '{policy.name}'")
    decision: Decision = "block" if reasons else "pass"
    why = _unscanned(report, scanners)
    if decision == "pass" and why:
        decision = "unscanned"
        reasons.append(why)
    notes = WaiverNote.model_validate
    return GateResult(
        decision=decision, policy=policy.name, policy_file=policy.file,
        artifact=report.ArtifactName, trivy_version=report.Trivy.Version if report.Trivy else None,
        evaluated_on=today, base_layers_known=bool(base), base_digest_pinned=base_digest_pinned,
        scanners=scanners, scanners_from=scanners_from, reasons=reasons, blocking=blocking, counts=_counts(rows),
        waived=waived, expired_waivers=[notes(w.model_dump()) for w in expired],
        stale_waivers=[notes(w.model_dump()) for w in live if id(w) not in used],
        applied_waivers=[notes(w.model_dump()) for w in live if id(w) in used], findings=rows)


class _WaiverIndex:
    """Waivers by the ids they name, so each finding is matched against the few that name one of its
    ids (:func:`matches` decides), not against every waiver: linear in findings and waivers."""

    def __init__(self, waivers: list[Waiver]) -> None:
        self.by_id: dict[str, list[tuple[int, Waiver]]] = {}
        for i, w in enumerate(waivers):
            for key in {w.id.upper(), check_id(w.id)}:
                self.by_id.setdefault(key, []).append((i, w))

    def matching(self, f: Finding) -> list[Waiver]:
        """The waivers that cover ``f``, in the policy's order."""
        if not self.by_id:
            return []
        keys = {f.id.upper(), *(a.upper() for a in f.aliases)}
        if f.kind == "misconfiguration":
            keys |= {check_id(k) for k in keys}
        found = {i: w for k in keys for i, w in self.by_id.get(k, ())}
        return [w for _, w in sorted(found.items(), key=lambda item: item[0]) if matches(w, f)]


def _unscanned(report: Report, scanners: Collection[str]) -> str | None:
    """Why the report says nothing about vulnerabilities, or None."""
    if "vuln" not in scanners:
        return (f"not scanned for vulnerabilities: the report was made with --scanners "
                f"{','.join(sorted(scanners)) or '(none)'}, without vuln")
    if not report.has_packages:
        return ("not scanned for vulnerabilities: Trivy found no OS or language packages in the image, "
                "so nothing was looked up (an OS Trivy does not know?)")
    return None


def refusal(result: GateResult, policy: Policy) -> str | None:
    """Why a command must not exit 0 on this result: it blocks, or it is unscanned and the policy
    requires a scan (``scan.required``, true by default). None when it may."""
    if result.decision == "block":
        return "blocks"
    if result.decision == "unscanned" and policy.scan.required:
        return (f"is UNSCANNED and policy '{policy.name}' requires a scan "
                "(scan.required: false allows an UNSCANNED local build, never a publish)")
    return None


def matches(w: Waiver, f: Finding) -> bool:
    """Whether a waiver covers a finding (id, then package / purl / path when given)."""
    ids = {f.id.upper(), *(a.upper() for a in f.aliases)}
    if f.kind == "misconfiguration":
        ids |= {check_id(i) for i in ids}
        if check_id(w.id) not in ids:
            return False
    elif w.id.upper() not in ids:
        return False
    if f.kind == "secret" and not w.path:
        return False
    if w.package and w.package not in {f.package, f.pkg_id, f"{f.package}@{f.installed}"}:
        return False
    if w.purl and not _purl_match(w.purl, f.purl):
        return False
    if w.path:
        where = [p for p in (f.path, f.target) if p]
        if not any(fnmatch.fnmatch(p.lstrip("/"), w.path.lstrip("/")) for p in where):
            return False
    return True


def _purl_match(want: str, have: str | None) -> bool:
    if not have:
        return False
    strip = have.split("#")[0].split("?")[0]
    want_base = want.split("#")[0].split("?")[0]
    if "@" not in want_base:
        strip = strip.rsplit("@", 1)[0]
    return strip.lower() == want_base.lower()


def _origin(f: Finding, base: frozenset[str]) -> Literal["new", "inherited"]:
    return "inherited" if f.layer and f.layer in base else "new"


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: dict[str, Finding] = {}
    for f in findings:
        seen.setdefault(f.key, f)
    return list(seen.values())


def _blocking(rows: list[tuple[Finding, Literal["new", "inherited"]]], policy: Policy,
              expired: list[Waiver], expired_hits: dict[int, list[Finding]]) -> list[Blocking]:
    out: list[Blocking] = []
    groups: dict[tuple[str, ...], list[tuple[Finding, Literal["new", "inherited"]]]] = {}
    for f, origin in rows:
        if f.kind == "vulnerability":
            fix = "fixed" if f.has_fix else "unfixed"
            groups.setdefault(("vulnerability", origin, fix, f.severity), []).append((f, origin))
        elif f.kind == "misconfiguration":
            groups.setdefault(("misconfiguration", f.severity), []).append((f, origin))
        elif f.kind == "secret":
            out.append(Blocking(finding=f, origin=origin,
                                                reason="secret: every secret blocks; remove it from the image"))
        elif f.kind == "license" and f.category in policy.licenses.block_categories:
            out.append(Blocking(finding=f, origin=origin,
                                                reason=f"license category '{f.category}' is blocked"))
    for key, members in groups.items():
        if key[0] == "vulnerability":
            _, vorigin, fix, sev = key
            limits = getattr(getattr(policy.vulnerabilities, vorigin), fix)
            what = f"{vorigin} {sev}, " + ("fix available" if fix == "fixed" else "no fix")
        else:
            sev = key[1]
            limits = policy.misconfigurations.block
            what = f"failed {sev} check"
        allowed = limits.get(sev)
        if allowed is None or len(members) <= allowed:
            continue
        for f, origin in members:
            reason = f"{what} ({len(members)} found, policy allows {allowed})"
            out.append(Blocking(finding=f, origin=origin, reason=reason))
    by_key = {b.finding.key: b for b in out}
    for w in expired:
        for f in expired_hits[id(w)]:
            if f.key in by_key:
                b = by_key[f.key]
                by_key[f.key] = b.model_copy(update={"reason": b.reason + f"; its waiver expired on "
                                                     f"{w.expires} (owner: {w.owner})"})
    return sorted(by_key.values(), key=lambda b: (-RANK[b.finding.severity], b.finding.kind, b.finding.id,
                                                   b.finding.subject))


def _counts(rows: list[tuple[Finding, Literal["new", "inherited"]]]) -> dict[str, dict[str, dict[str, int]]]:
    """{kind: {origin: {severity: n}}}, every severity present, findings before waivers."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for kind in ("vulnerability", "secret", "misconfiguration", "license"):
        out[kind] = {o: dict.fromkeys(reversed(SEVERITIES), 0) for o in ("new", "inherited")}
    for f, origin in rows:
        out[f.kind][origin][f.severity] += 1
    return out
