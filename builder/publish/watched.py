"""What ``tfimg watch`` reads from, and adds to, the evidence of a published digest: the one adapter
between curation after publishing and the evidence API (:mod:`builder.publish.evidence`,
:mod:`builder.publish.attest`, :mod:`builder.publish.referrers`), so a change of the evidence layout is
made here only.

Read (never a layer of the image: manifests, referrer artifacts and their small blobs):

- :func:`digests`: every digest a tag of the repository names (``ih-`` tags included), evidence tags left out;
- :func:`read`: the digest's SBOM, the Trivy report it was published with, its evidence document and the
  latest watch statement; with a public key every statement must verify (:func:`builder.publish.attest.verify`);
- :func:`vex_documents`: the OpenVEX documents attached to a digest (yours, or a vendor's on its base);
- :func:`latest`: the evidence and Trivy report a judge decides on (``tfimg promote``, ``tfimg build
  --registry``): the latest watch when it is newer than the publish-time report.

Write: :func:`attach_watch` (a dated vulnerability statement, ``dev.tfimg.vuln.source: watch``, beside the
publish-time one, which stays) and :func:`attach_vex` (the waivers as OpenVEX, at publishing). Both are
DSSE-enveloped in-toto statements, signed when a signer is given, attached as OCI 1.1 referrers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import RegistryError
from builder.infra import datafile
from builder.infra.registry_client import Ref, Registry, parse_ref
from builder.infra.report_models import JsonObject
from builder.publish import attest, evidence, referrers

SOURCE_ANNOTATION = "dev.tfimg.vuln.source"   # "watch" on the statements tfimg watch attaches


@dataclass(frozen=True)
class Statement:
    """One in-toto statement attached to a digest, as read back."""

    kind: str
    artifact: str
    created: str
    source: str                  # "watch" for tfimg watch's vulnerability statements, else "publish"
    predicate: dict[str, Any]


@dataclass(frozen=True)
class Published:
    """What a published digest carries: what ``tfimg watch`` starts from."""

    repository: str              # HOST/NAME
    digest: str
    tags: tuple[str, ...]
    doc: evidence.Evidence | None
    sbom: JsonObject | None
    trivy: JsonObject | None     # the Trivy report it was published with
    watch: Statement | None      # the latest watch statement
    problems: tuple[str, ...]    # with a key: what did not verify

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


def digests(reg: Registry, repo: str) -> dict[str, list[str]]:
    """digest -> tags, for every tag of ``repo`` but tfimg's evidence tags (``ih-`` tags included)."""
    out: dict[str, list[str]] = {}
    for tag in reg.tags(repo):
        if evidence.is_evidence_tag(tag):
            continue
        digest = reg.digest_of(repo, tag)
        if digest:
            out.setdefault(digest, []).append(tag)
    return out


def _envelope_of(reg: Registry, repo: str, ref: referrers.Referrer) -> dict[str, Any] | None:
    found = reg.manifest(repo, ref.digest)
    if found is None:
        return None
    manifest = datafile.loads_json(found[0], f"manifest {ref.digest}", what="it")
    layer = next((x for x in manifest.get("layers") or [] if x.get("mediaType") == attest.DSSE_TYPE), None)
    if layer is None:
        return None
    env = datafile.loads_json(reg.blob(repo, layer["digest"]), f"envelope {layer['digest']}", what="it")
    return env if isinstance(env, dict) else None


def statements(reg: Registry, repo: str, digest: str, key: Path | None = None) -> tuple[list[Statement], list[str]]:
    """The statements attached to ``digest``, oldest first, and what did not verify. With ``key`` only
    statements whose signature verifies with it are returned (:func:`builder.publish.attest.verify`)."""
    refs, _ = referrers.list_referrers(reg, repo, digest)
    dsse = {r.digest: r for r in refs if r.artifact_type == attest.DSSE_TYPE or attest.PREDICATE_ANNOTATION in r.annotations}
    found: list[tuple[referrers.Referrer, str, dict[str, Any]]] = []
    problems: list[str] = []
    if key is not None:
        verdict = attest.verify(f"{reg.host}/{repo}@{digest}", key)
        problems = list(verdict.problems)
        found = [(dsse[c.artifact], c.kind, c.predicate) for c in verdict.checked if c.ok and c.artifact in dsse]
    else:
        for ref in dsse.values():
            try:
                env = _envelope_of(reg, repo, ref)
                stmt = attest.envelope_b64_payload(env) if env is not None else {}
            except (ValueError, KeyError, TypeError):
                continue
            hexes = [(s.get("digest") or {}).get("sha256") for s in stmt.get("subject") or []]
            kind = attest.KINDS.get(str(stmt.get("predicateType")), "")
            if kind and digest.partition(":")[2] in hexes and isinstance(stmt.get("predicate"), dict):
                found.append((ref, kind, stmt["predicate"]))
    out = [Statement(kind, ref.digest, ref.annotations.get(referrers.CREATED, ""),
                     ref.annotations.get(SOURCE_ANNOTATION, "publish"), predicate) for ref, kind, predicate in found]
    return sorted(out, key=lambda s: s.created), problems


def _last(found: list[Statement], kind: str, source: str = "publish") -> Statement | None:
    return next((s for s in reversed(found) if s.kind == kind and s.source == source), None)


def read(reg: Registry, repo: str, digest: str, tags: list[str], key: Path | None = None) -> Published:
    """What ``HOST/REPO@digest`` was published with (the statements, else the legacy evidence tag)."""
    found, problems = statements(reg, repo, digest, key)
    report, sbom, vuln = _last(found, "report"), _last(found, "sbom"), _last(found, "vuln")
    doc = None
    if report is not None:
        try:
            doc = evidence.Evidence.model_validate(report.predicate)
        except ValueError:
            doc = None
    if doc is None and key is None:
        doc = evidence.read(reg, repo, digest)
    trivy = (vuln.predicate.get("scanner") or {}).get("result") if vuln is not None else None
    if not isinstance(trivy, dict) or not trivy:
        trivy = evidence.read_trivy(reg, repo, digest) if key is None else None
    return Published(f"{reg.host}/{repo}", digest, tuple(sorted(tags)), doc,
                     sbom.predicate if sbom is not None else None, trivy, _last(found, "vuln", "watch"),
                     tuple(problems))


def vex_documents(text: str, key: Path | None = None) -> list[JsonObject]:
    """The OpenVEX documents attached to ``HOST/NAME@sha256:...`` (or ``:TAG``). Raises RegistryError."""
    ref = parse_ref(text)
    reg = Registry(ref.host)
    ref = reg.resolve(ref)
    found, problems = statements(reg, ref.repo, str(ref.digest), key)
    docs = [s.predicate for s in found if s.kind == "vex"]
    if not docs:
        raise RegistryError(f"no OpenVEX document is attached to {ref.name}@{ref.digest}"
                            + (f" ({'; '.join(problems[:3])})" if problems else ""), status=404,
                            hint="tfimg publish attaches one when a waiver applies; or give a file.")
    return docs


def _attach(reg: Registry, ref: Ref, kind: str, predicate: dict[str, Any], signer: Any | None,
            notes: dict[str, str]) -> str:
    stmt = attest.statement(ref.name, str(ref.digest), kind, predicate)
    env = attest.envelope(stmt, signer)
    pushed = referrers.attach(reg, ref.repo, str(ref.digest), attest.DSSE_TYPE,
                              [(attest.canonical(env), attest.DSSE_TYPE, f"{kind}.intoto.jsonl")],
                              {attest.PREDICATE_ANNOTATION: stmt["predicateType"], attest.KIND_ANNOTATION: kind, **notes})
    return pushed.digest


def attach_watch(reg: Registry, ref: Ref, predicate: dict[str, Any], signer: Any | None, created: str) -> str:
    """Attach a watch's vulnerability statement (cosign's vuln predicate) to ``ref`` (``HOST/NAME@digest``),
    dated ``created``; the publish-time statement stays. Returns the artifact's digest."""
    return _attach(reg, ref, "vuln", predicate, signer, {SOURCE_ANNOTATION: "watch", referrers.CREATED: created})


def attach_vex(reg: Registry, ref: Ref, document: dict[str, Any], signer: Any | None, created: str) -> str:
    """Attach an OpenVEX document to ``ref``. Returns the artifact's digest."""
    return _attach(reg, ref, "vex", document, signer, {referrers.CREATED: created})


def _when(text: str | None) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def latest(reg: Registry, repo: str, digest: str) -> tuple[evidence.Evidence | None, JsonObject | None, str]:
    """(evidence, Trivy report, note) to judge ``digest`` on: as published, or, when a watch statement is
    newer than the publish-time report, with the watch's report and decision (``note`` says so)."""
    doc, trivy = evidence.read(reg, repo, digest), evidence.read_trivy(reg, repo, digest)
    if doc is None:
        return doc, trivy, ""
    found, _ = statements(reg, repo, digest)
    watch = _last(found, "vuln", "watch")
    when, then = (_when(watch.created) if watch else None), _when(doc.published_at)
    result = (watch.predicate.get("scanner") or {}).get("result") if watch else None
    params = (watch.predicate.get("invocation") or {}).get("parameters") if watch else None
    if watch is None or when is None or (then is not None and when <= then) or not isinstance(result, dict) \
            or not isinstance(params, dict):
        return doc, trivy, ""
    gate = {**doc.section("gate"), "decision": params.get("decision"), "reasons": params.get("reasons") or [],
            "policy": params.get("policy")}
    doc = evidence.Evidence.model_validate({**doc.to_json(), "report": {**doc.to_json()["report"], "gate": gate}})
    return doc, result, f"; the latest watch ({watch.created}) decided '{params.get('decision')}'"
