"""Curation after publishing: ``tfimg watch``, ``tfimg vex``, and the VEX document ``tfimg publish`` attaches.

The registry side (:mod:`builder.publish.watched`: what each digest was published with, and where a
watch's statement goes) is joined here with the scan side (:mod:`builder.scan.trivy`'s SBOM mode, the
pure :mod:`builder.scan.watch` and :mod:`builder.scan.vex`). No image is pulled: each digest's SBOM is
scanned with ``trivy sbom`` against a vulnerability DB fetched once per run into a cache of the run's
own; digests are watched concurrently (``jobs`` threads, each with its own registry session).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from builder import __version__
from builder.errors import RegistryError, TfimgError
from builder.infra import clock, datafile
from builder.infra.registry_client import Ref, Registry, parse_ref
from builder.infra.report_models import JsonObject, Report
from builder.publish import evidence, push, watched
from builder.scan import gate, trivy, trivy_report, vex, watch
from builder.scan import policy as policies
from builder.scan.trivy_report import redact


@dataclass(frozen=True)
class WatchRequest:
    """What ``tfimg watch`` watches and how. ``repos``: repositories under the namespace (all when empty);
    ``key``: every statement must verify with it; ``signer``: signs the watch statements (none attached
    without one); ``vex``: OpenVEX files or ``HOST/NAME@sha256:...`` whose documents are applied."""

    namespace: str
    policy: policies.Policy
    options: trivy.Options
    today: dt.date
    repos: tuple[str, ...] = ()
    key: Path | None = None
    signer: Any | None = None
    warn_days: int = 30
    vex: tuple[str, ...] = ()
    jobs: int = 4


# --------------------------------------------------------------------------- VEX documents in

def load_vex(sources: Sequence[str], key: Path | None = None) -> list[vex.Document]:
    """The OpenVEX documents named by ``--vex`` (files, or registry references whose attached documents are
    read). Raises TfimgError (exit 2) for a source that is neither, or a document that is not OpenVEX."""
    docs: list[vex.Document] = []
    for src in sources:
        if Path(src).exists():
            found = [datafile.load_json(Path(src), what="the VEX document")]
        elif "/" in src and ("@sha256:" in src or ":" in src.rsplit("/", 1)[-1]):
            found = watched.vex_documents(src, key)
        else:
            raise TfimgError(f"--vex {src}: no such file, and not a registry reference (HOST/NAME@sha256:...)")
        for data in found:
            try:
                docs.append(vex.Document.model_validate(data))
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                raise TfimgError(f"--vex {src}: not an OpenVEX v0.2.0 document: {where}: {first['msg']}") from None
    return docs


def images_of(rep: trivy_report.Report, base: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """digest -> HOST/REPO of the images a VEX statement may name as its product for ``rep``'s findings:
    the image (``extra``, and the report's repo digests) and its base (``NAME@sha256:...`` or a digest)."""
    out = dict(extra or {})
    for ref in (rep.Metadata.RepoDigests if rep.Metadata else []):
        name, _, digest = ref.partition("@")
        out.setdefault(digest, name)
    name, _, digest = (base or "").rpartition("@")
    if digest.startswith("sha256:"):
        out.setdefault(digest, name)
    return out


# --------------------------------------------------------------------------- watch

def watch_all(req: WatchRequest) -> watch.WatchReport:
    """Watch every published digest under ``req.namespace``. Raises TfimgError (exit 2) for a namespace
    with nothing published, an unreadable VEX document, or a Trivy / DB that cannot be used."""
    target = push.namespace(req.namespace, "NAMESPACE")
    reg = Registry(target.host)
    found = [(repo, digest, tags) for repo in _repositories(reg, target.repo, req.repos)
             for digest, tags in sorted(watched.digests(reg, repo).items())]
    if not found:
        raise TfimgError(f"nothing is published under {req.namespace}" + (f" in {', '.join(req.repos)}" if req.repos else ""),
                         hint="Give HOST/NAMESPACE as `tfimg publish --registry` took it (tfimg registry ls lists it).")
    docs = load_vex(req.vex, req.key)
    with tempfile.TemporaryDirectory(prefix="tfimg-watch-") as tmp:
        opts = req.options if req.options.cache_dir else req.options.model_copy(update={"cache_dir": Path(tmp) / "cache"})
        tool = trivy.resolve(opts)
        db = trivy.current_db(opts, tool)          # fetched once for every digest
        trivy.check_db(trivy.VersionInfo(version=tool.version, db=db), opts)
        one = _watcher(req, opts, tool, docs, Path(tmp), db)
        with ThreadPoolExecutor(max_workers=max(1, req.jobs)) as pool:
            results = list(pool.map(lambda item: one(target.host, *item), found))
    where = trivy.recorded_db_repository(opts)
    return watch.WatchReport(namespace=req.namespace, watched_at=clock.now_rfc3339z(),
                             policy=req.policy.name or req.policy.file, warn_days=req.warn_days, digests=results,
                             db=f"{db.UpdatedAt if db else 'unknown'} from {where}" if where else str(db.UpdatedAt if db else None))


def _repositories(reg: Registry, namespace: str, wanted: Sequence[str]) -> list[str]:
    try:
        repos = [r for r in reg.catalog() if r == namespace or r.startswith(namespace + "/")]
    except RegistryError as exc:
        if exc.status not in (401, 403, 404):
            raise
        repos = [namespace]
    if wanted:   # REPO: the path under the namespace, a folder of it, or the repository's last name
        names = {w.strip("/") for w in wanted}
        repos = [r for r in repos if any(rel == n or rel.startswith(n + "/") or r.rsplit("/", 1)[-1] == n
                                         for rel in [r.removeprefix(namespace + "/")] for n in names)]
    return sorted(repos)


def published_of(pub: watched.Published) -> watch.Published:
    """What the pure comparison needs of a published digest (its Trivy report parsed)."""
    doc = pub.doc
    section = doc.section if doc is not None else (lambda _name: {})
    build, gate_sec, scan = section("build"), section("gate"), section("scan")
    rep = trivy_report.from_data(pub.trivy, source=f"the Trivy report attached to {pub.reference}") \
        if pub.trivy is not None else None
    layers, scanners = build.get("base_layers"), scan.get("scanners")
    return watch.Published(
        reference=pub.reference, variant=doc.variant if doc else None, tags=list(pub.tags),
        published_at=doc.published_at if doc else None, decision=str(gate_sec.get("decision") or "") or None,
        base_layers=[str(x) for x in layers] if isinstance(layers, list) else [],
        pinned=bool(gate_sec.get("base_digest_pinned")),
        scanners=[str(s) for s in scanners] if isinstance(scanners, list) else [], report=rep)


def _watcher(req: WatchRequest, opts: trivy.Options, tool: trivy.Trivy, docs: list[vex.Document], tmp: Path,
             db: Any) -> Callable[[str, str, str, list[str]], watch.DigestWatch]:
    def one(host: str, repo: str, digest: str, tags: list[str]) -> watch.DigestWatch:
        reg = Registry(host)   # a session per thread
        published = watch.Published(reference=f"{host}/{repo}@{digest}", tags=sorted(tags))
        try:
            pub = watched.read(reg, repo, digest, tags, req.key)
            published = published_of(pub)
            if pub.problems:
                return watch.failed(published, f"its evidence does not verify with {req.key}: " + "; ".join(pub.problems[:4]))
            if pub.sbom is None:
                return watch.failed(published, "no SBOM is attached to it (publish with `tfimg publish --push`)")
            sbom = tmp / f"{digest.replace(':', '-')}.cdx.json"
            sbom.write_text(json.dumps(pub.sbom))
            current, data = trivy.scan_sbom(sbom, opts, tool=tool, name=pub.reference)
            base = (pub.doc.section("build") if pub.doc else {}).get("base")
            images = images_of(current, str(base.get("digest") or "") if isinstance(base, dict) else None,
                               {digest: pub.repository})
            result = watch.assess(published, current, req.policy, today=req.today, warn_days=req.warn_days,
                                  vex_waivers=vex.waivers(docs, current.findings(), images))
        except TfimgError as exc:
            return watch.failed(published, exc.message)
        if req.signer is None:
            return result
        predicate = statement(result, data, pub.trivy, tool.version, db, req.policy, trivy.recorded_db_repository(opts))
        art = watched.attach_watch(reg, Ref(host, repo, digest=digest), predicate, req.signer, clock.now_rfc3339z())
        return result.model_copy(update={"statement": art})

    return one


def statement(result: watch.DigestWatch, data: Any, published: JsonObject | None, version: str, db: Any,
              policy: policies.Policy, db_repository: str | None) -> dict[str, Any]:
    """The watch's vulnerability statement (cosign's vuln predicate v1): the SBOM scan's report with the
    published report's other findings, the decision under the policy, dated."""
    results = [{k: v for k, v in r.items() if k != "Packages"} for r in (data.get("Results") or []) if isinstance(r, dict)]
    before = (published or {}).get("Results")
    others = [{**r, "Vulnerabilities": []} for r in (before if isinstance(before, list) else [])
              if isinstance(r, dict) and (r.get("Misconfigurations") or r.get("Secrets") or r.get("Licenses"))]
    now = clock.now_rfc3339z()
    return {
        "invocation": {"uri": evidence.WATCH_URI, "event_id": "", "builder.id": f"tfimg {__version__}",
                       "parameters": {"policy": policy.name or policy.file, "decision": result.status,
                                      "reasons": result.reasons, "new": sorted({f.id for f in result.new}),
                                      "publishedAt": result.published.published_at}},
        "scanner": {"uri": "pkg:github/aquasecurity/trivy", "version": version,
                    "db": {"uri": db_repository or "", "version": str(getattr(db, "UpdatedAt", "") or "")},
                    "result": redact({**data, "Results": [*results, *others]})},
        "metadata": {"scanStartedOn": now, "scanFinishedOn": now},
    }


# --------------------------------------------------------------------------- VEX out

def vex_for(text: str, policy: policies.Policy, *, today: dt.date, author: str | None = None) -> vex.Document | None:
    """``tfimg vex``: the OpenVEX document for the waivers of ``policy`` that apply to ``HOST/NAME@sha256:...``
    (its latest report: the newest watch, else the publish-time one); None when no waiver applies."""
    ref = parse_ref(text)
    reg = Registry(ref.host)
    ref = reg.resolve(ref)
    doc, report, _ = watched.latest(reg, ref.repo, str(ref.digest))
    if report is None:
        raise TfimgError(f"{ref.name}@{ref.digest} has no Trivy report attached; it was not published by tfimg",
                         hint="Publish it with `tfimg publish --push`.")
    rep = trivy_report.from_data(report, source=f"the Trivy report attached to {ref.name}@{ref.digest}")
    build, gate_sec, scan = (doc.section(s) if doc else {} for s in ("build", "gate", "scan"))
    layers, scanners = build.get("base_layers"), scan.get("scanners")
    result = gate.evaluate(rep, policy, [str(x) for x in layers] if isinstance(layers, list) and layers else None, today,
                           bool(gate_sec.get("base_digest_pinned")),
                           scanners=[str(s) for s in scanners] if isinstance(scanners, list) else ["vuln"],
                           scanners_from="scan record")
    return vex.document(result.waived, policy.waivers, repository=ref.name, digest=str(ref.digest),
                        author=author or f"policy {policy.name} (tfimg)", now=clock.now(),
                        tooling=f"tfimg {__version__}")


def publish_vex(out: Path, rep: Report) -> Callable[[Ref], JsonObject | None]:
    """For ``tfimg publish``: the OpenVEX document of the waivers the gate applied (its policy file, as
    report.json records it) to the pushed digest, or None (no waiver applies, or no policy file)."""
    def make(ref: Ref) -> JsonObject | None:
        section, built, scan = rep.gate, rep.build, rep.scan
        path = Path(section.policy_file) if section is not None and section.policy_file else None
        if path is None or not path.is_file() or not (out / "trivy.json").is_file():
            return None
        pol = policies.load(path)
        result = gate.evaluate(trivy_report.load(out / "trivy.json"), pol, (built.base_layers if built else None) or None,
                               clock.today(), bool(section.base_digest_pinned if section else False),
                               scanners=list((scan.scanners if scan else None) or ["vuln"]), scanners_from="scan record")
        doc = vex.document(result.waived, pol.waivers, repository=ref.name, digest=str(ref.digest),
                           author=f"policy {pol.name} (tfimg)", now=clock.now(), tooling=f"tfimg {__version__}")
        return doc.to_json() if doc is not None else None

    return make
