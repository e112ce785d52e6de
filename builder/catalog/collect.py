"""Read a registry namespace into the frozen :class:`~builder.catalog.models.Catalog`, one digest per worker.

Everything about one digest comes from :mod:`builder.catalog.evidence_source` (the only reader of the
evidence format); this module judges it: versions from the checks' facts, the driver it needs, sizes,
findings split into inherited and introduced, waivers against today's date, the decisions (at publishing,
of ``tfimg watch``, and under ``--policy`` today), and why an image is not shown as fine (``flags``).
Evidence is attacker-controlled: every value is read defensively (a wrong type is ignored, never trusted).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from builder import __version__
from builder.catalog import drivers, evidence_source, snippets
from builder.catalog.evidence_source import Evidence
from builder.catalog.models import (
    Catalog,
    Checks,
    Decision,
    Finding,
    Flag,
    Image,
    KeyInfo,
    Package,
    Promotion,
    Sizes,
    Trust,
    Versions,
    Waiver,
    WatchResult,
)
from builder.errors import TfimgError
from builder.infra import clock, labels
from builder.scan import gate, trivy_report
from builder.scan import policy as policies
from builder.spec import profiles

WORKERS = 8
SHOWN_KINDS = ("vulnerability", "secret", "misconfiguration")


# --------------------------------------------------------------------------- reading hostile JSON

def at(doc: Any, *path: str) -> Any:
    """``doc[path[0]][path[1]]...``, or None where a step is missing or not a mapping."""
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def text(value: Any) -> str | None:
    """A string, or a number written as one; None for anything else (lists, mappings, booleans)."""
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, (str, int, float)) else None


def texts(value: Any) -> list[str]:
    return [t for t in (text(v) for v in value) if t is not None] if isinstance(value, list) else []


def number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- one image

def page_for(repository: str, digest: str) -> str:
    """``images/<repository path>-<16 hex>.html``: safe as a file name and a URL; the hex is of
    ``repository@digest``, so two repositories whose paths read alike still get two pages."""
    path = repository.partition("/")[2] or repository
    slug = re.sub(r"[^a-z0-9._-]+", "-", path.lower()).strip("-.")[:60] or "image"
    return f"images/{slug}-{hashlib.sha256(f'{repository}@{digest}'.encode()).hexdigest()[:16]}.html"


def versions(doc: Any) -> Versions:
    facts = at(doc, "report", "facts")
    first = {name: next((text(at(facts, k)) for k in keys if text(at(facts, k))), None)
             for name, keys in (("tensorflow", ("tensorflow", "tf", "tf_version")),
                                ("python", ("python", "py", "python_version")),
                                ("cuda", ("cuda", "cuda_version")), ("cudnn", ("cudnn", "cudnn_version")),
                                ("nccl", ("nccl",)))}
    return Versions(**first)


def checks(doc: Any) -> Checks:
    c = at(doc, "report", "checks")
    counts = {str(k): n for k, v in (at(c, "counts") or {}).items() if (n := number(v)) is not None} \
        if isinstance(at(c, "counts"), dict) else {}
    return Checks(passed=True if at(c, "passed") is True else (False if at(c, "passed") is False else None),
                  counts=counts, gpu_checked=at(c, "gpu", "enabled") is True, gpu_note=text(at(c, "gpu", "reason")),
                  profile=text(at(c, "profile")) or text(at(doc, "report", "build", "profile")),
                  profile_note=text(at(c, "profile_note")) or None)


def sizes(ev: Evidence, base_layers: set[str]) -> Sizes:
    cfg = ev.config
    over = None
    if base_layers and cfg.diff_ids and len(cfg.diff_ids) == len(cfg.layer_sizes):
        over = sum(size for d, size in zip(cfg.diff_ids, cfg.layer_sizes, strict=True) if d not in base_layers)
    build = at(ev.report, "report", "build")
    return Sizes(pull=ev.listed.pull_size, pull_over_base=over, unpacked=number(at(build, "size")),
                 unpacked_over_base=number(at(build, "added_bytes")))


def trust(ev: Evidence, keys: list[Path]) -> Trust:
    v = ev.verification
    if v.state == "verified":
        summary = (f"verified with {v.key}: every required statement (report, SBOM, vulnerabilities, provenance) is "
                   "signed by it and consistent with this digest")
    elif v.state == "unverifiable":
        names = ", ".join(k.name for k in keys) or "the given keys"
        summary = f"does NOT verify with {names}: see the problems below"
    else:
        summary = "not verified: the catalog was made without --key, so no signature was checked"
    return Trust(state=v.state, keys=v.key.split(", ") if v.key else [], summary=summary,
                 problems=list(v.problems), route=v.route, report_signed=ev.report_signed)


def decisions(ev: Evidence, policy: Path | None, now: dt.datetime) -> list[Decision]:
    g = at(ev.report, "report", "gate")
    out = [Decision(decision=evidence_source.recorded_decision(ev), source="publish", policy=text(at(g, "policy")),
                    on=text(at(g, "evaluated_on")) or text(at(ev.report, "published_at")),
                    reasons=texts(at(g, "reasons")), blocking=texts(at(g, "blocking_ids")))]
    if ev.watch is not None:   # issue 21: the newest watch statement
        out.append(Decision(decision=text(ev.watch.get("decision")) or "unknown", source="watch",
                            policy=text(ev.watch.get("policy")), on=text(ev.watch.get("at")),
                            reasons=texts(ev.watch.get("reasons"))))
    if policy is not None:
        decision, how = evidence_source.redecide(ev, policy)
        out.append(Decision(decision=decision, source="catalog", policy=policy.name, on=now.isoformat(),
                            reasons=[how]))
    return out


def watch(ev: Evidence) -> WatchResult | None:
    """The newest ``tfimg watch`` result (issue 21), when the adapter found one."""
    w = ev.watch
    at_, decision = text(at(w, "at")), text(at(w, "decision"))
    if not (at_ and decision):
        return None
    return WatchResult(at=at_, decision=decision, policy=text(at(w, "policy")), reasons=texts(at(w, "reasons")),
                       db_updated=text(at(w, "db_updated")),
                       new_findings=texts(at(w, "new_findings")), verified_with=text(at(w, "verified_with")))


def waivers(doc: Any, today: dt.date, problems: list[str]) -> list[Waiver]:
    out = []
    for raw in at(doc, "report", "gate", "waivers") or []:
        try:
            expires = dt.date.fromisoformat(str(at(raw, "expires")))
            out.append(Waiver(id=str(raw["id"]), owner=str(raw["owner"]), expires=expires, reason=str(raw["reason"]),
                              package=text(raw.get("package")), purl=text(raw.get("purl")), path=text(raw.get("path")),
                              findings=number(raw.get("findings")), expired=expires < today,
                              days_left=(expires - today).days))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"a waiver record could not be read ({type(exc).__name__})")
    return out


def _waiver_of(f: trivy_report.Finding, active: list[policies.Waiver]) -> str | None:
    return next((w.id for w in active if gate.matches(w, f)), None)


def findings(ev: Evidence, base_layers: set[str], recorded: list[Waiver], problems: list[str]) -> list[Finding]:
    if not ev.trivy:
        return []
    try:
        found = trivy_report.from_data(ev.trivy, source="the attached Trivy report").findings()
    except TfimgError as exc:
        problems.append(exc.message)
        return []
    active = []
    for w in recorded:
        try:
            active.append(policies.Waiver(id=w.id, owner=w.owner, expires=w.expires, reason=w.reason,
                                          package=w.package, purl=w.purl, path=w.path))
        except ValueError:
            continue
    seen: dict[str, Finding] = {}
    for f in found:
        if f.kind not in SHOWN_KINDS or f.key in seen:
            continue
        url = f.url if f.url and re.match(r"^https?://", f.url) else None
        seen[f.key] = Finding(kind=f.kind, id=f.id, severity=f.severity, package=f.package,
                              installed=f.installed, fixed=f.fixed, title=f.title, url=url,
                              origin="inherited" if f.layer and f.layer in base_layers else "introduced",
                              waived_by=_waiver_of(f, active))
    rank = trivy_report.RANK
    return sorted(seen.values(), key=lambda f: (-rank.get(f.severity, 0), f.origin != "introduced", f.id,
                                                f.package or ""))


def packages(sbom: Any, base_layers: set[str]) -> list[Package]:
    out: dict[tuple[str, str | None, str | None], Package] = {}
    for c in at(sbom, "components") or []:
        name = text(at(c, "name"))
        if not name or text(at(c, "type")) == "operating-system":
            continue
        group = text(at(c, "group"))
        full = f"{group}/{name}" if group else name
        purl = text(at(c, "purl"))
        ptype = purl[4:].split("/", 1)[0] if purl and purl.startswith("pkg:") else None
        layer = next((text(at(p, "value")) for p in at(c, "properties") or []
                      if at(p, "name") == "aquasecurity:trivy:LayerDiffID"), None)
        origin = "unknown" if not (layer and base_layers) else ("inherited" if layer in base_layers else "introduced")
        pkg = Package(name=full, version=text(at(c, "version")), type=ptype, purl=purl, origin=origin)
        out.setdefault((pkg.name, pkg.version, pkg.type), pkg)
    return sorted(out.values(), key=lambda p: (p.name.lower(), p.version or ""))


def promotions(ev: Evidence) -> list[Promotion]:
    out = []
    for p in ev.promotions:
        src, dst, when = text(p.get("from")), text(p.get("to")), text(p.get("at"))
        if src and dst and when:
            out.append(Promotion(from_=src, to=dst, at=when, policy=text(p.get("policy"))))
    return out


def flags(latest: Decision, trusted: Trust, recorded: list[Waiver], problems: list[str]) -> list[Flag]:
    out: list[Flag] = []
    if latest.decision == "block":
        out.append("blocked")
    elif latest.decision != "pass":
        out.append("not-passed")
    out.append("unverifiable") if trusted.state == "unverifiable" else None
    out.append("not-verified") if trusted.state == "not-verified" else None
    if any(w.expired for w in recorded):
        out.append("waiver-expired")
    if problems:
        out.append("evidence-unreadable")
    return out


def run_info(ev: Evidence, variant: str, checked: Checks) -> snippets.RunInfo:
    build = at(ev.report, "report", "build")
    modules = texts(at(ev.report, "report", "checks", "modules"))
    ports = ev.config.exposed_ports
    meant = text(at(build, "profile")) or text(ev.config.labels.get(labels.PROFILE))
    gpu = bool(meant and meant in profiles.names() and profiles.get(meant).gpu) or checked.gpu_checked
    return snippets.RunInfo(ref=f"{ev.listed.repository}@{ev.listed.digest}", variant=variant,
                            user=ev.config.labels.get(labels.USER) or text(at(build, "labels", labels.USER)),
                            ports=ports, jupyter="test_jupyter" in modules or snippets.JUPYTER_PORT in ports,
                            ssh="test_ssh" in modules or snippets.SSH_PORT in ports, gpu=gpu)


def image(ev: Evidence, keys: list[Path], policy: Path | None, now: dt.datetime) -> Image:
    """Judge what was read about one digest."""
    doc, listed = ev.report, ev.listed
    problems = list(ev.problems)
    base_layers = set(texts(at(doc, "report", "build", "base_layers")))
    variant = text(at(doc, "variant")) or listed.repository.rsplit("/", 1)[-1]
    immutable = text(at(doc, "tags", "immutable"))
    recorded = waivers(doc, now.date(), problems)
    checked, trusted = checks(doc), trust(ev, keys)
    decided = decisions(ev, policy, now)
    found = findings(ev, base_layers, recorded, problems)
    g = at(doc, "report", "gate")
    counts = at(g, "counts") if isinstance(at(g, "counts"), dict) else {}
    try:
        clean_counts = {str(k): {str(o): {str(s): int(n) for s, n in sev.items()} for o, sev in v.items()}
                        for k, v in counts.items()}
    except (AttributeError, TypeError, ValueError):
        clean_counts = {}
        problems.append("the gate's counts could not be read")
    return Image(
        page=page_for(listed.repository, listed.digest), repository=listed.repository, variant=variant,
        digest=listed.digest, tags=sorted(listed.tags, key=lambda t: (t != immutable, t)), immutable=immutable,
        moving=texts(at(doc, "tags", "moving")), created=listed.created, published_at=text(at(doc, "published_at")),
        versions=versions(doc), driver=drivers.need(checked.profile, versions(doc).cuda), sizes=sizes(ev, base_layers),
        checks=checked, trust=trusted, decisions=decided, latest=decided[-1], watch=watch(ev), waivers=recorded,
        expired_waivers=texts(at(g, "expired_waivers")), stale_waivers=texts(at(g, "stale_waivers")),
        findings=found, counts=clean_counts, packages=packages(ev.sbom, base_layers), promotions=promotions(ev),
        promotions_signed=not ev.unsigned_promotions, snippets=snippets.make(run_info(ev, variant, checked)),
        problems=problems, flags=flags(decided[-1], trusted, recorded, problems))


# --------------------------------------------------------------------------- the whole namespace

def collect(namespace: str, *, keys: list[Path] | None = None, policy: Path | None = None,
            workers: int = WORKERS) -> Catalog:
    """The catalog of ``HOST/NAMESPACE``: keys and policy are checked first (exit 2 when unusable)."""
    keys = list(keys or [])
    infos = [KeyInfo(name=k.name, sha256=evidence_source.key_fingerprint(k)) for k in keys]
    if policy is not None:
        policies.load(policy)
    now = clock.now()
    listed = evidence_source.list_digests(namespace, workers)

    def one(item: evidence_source.Listed) -> Image:
        return image(evidence_source.read(item, keys), keys, policy, now)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(listed)))) as pool:
        images = list(pool.map(one, listed))
    images.sort(key=lambda i: i.created or i.published_at or "", reverse=True)
    return Catalog(generated_at=now.isoformat(), registry=namespace, tfimg=__version__, keys=infos,
                   policy=policy.name if policy else None, images=images)
