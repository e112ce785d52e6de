"""What ``tfimg watch`` reads from, and adds to, the evidence of a published digest: the one adapter
between curation after publishing and the evidence store (:mod:`builder.publish.store`: the signed
referrers and cosign's ``.att`` image, the same envelopes; :mod:`builder.publish.verify`), so a change of the
evidence layout is made here only.

Read (never a layer of the image: manifests, referrer artifacts, ``.att`` layers and their small blobs):

- :func:`digests`: every digest a tag of the repository names (``ih-`` tags included), evidence tags left out;
- :func:`read`: the digest's SBOM, the Trivy report it was published with, its evidence document and the
  latest watch statement; with a public key only statements signed by it count, and ``tfimg verify``'s policy
  must pass (every required statement signed by the key and consistent with the image): ``problems`` says
  what it lacks;
- :func:`vex_documents`: the OpenVEX documents attached to a digest (yours, or a vendor's on its base);
- :func:`latest` / :func:`latest_from`: the evidence and Trivy report a judge decides on (``tfimg promote``,
  ``tfimg build --registry``): the latest watch when it is newer than the publish-time report.

The evidence document (:class:`builder.publish.evidence.Evidence`) handed out carries ``published_at``: when
its report statement was attached (the referrer's ``org.opencontainers.image.created``).

Write: :func:`attach_watch` (a dated vulnerability statement beside the publish-time one, which stays; it is
told apart by its signed ``invocation.uri``, :data:`WATCH_URI`) and :func:`attach_vex` (the waivers as
OpenVEX, at publishing). Both are DSSE-enveloped in-toto statements, signed when a signer is given, attached
to both indexes of the store like every other statement.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import RegistryError
from builder.infra.registry_client import Ref, Registry, parse_ref
from builder.infra.report_models import JsonObject
from builder.publish import attest, evidence, signing, store, verify
from builder.publish import statements as stmts

SOURCE_ANNOTATION = store.SOURCE_ANNOTATION   # "watch" on the referrers of tfimg watch's statements (a hint)
WATCH_URI = evidence.WATCH_URI                # the signed invocation.uri of a watch's vuln predicate


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


def _statement(f: store.Found, kind: str, predicate: dict[str, Any]) -> Statement:
    source = "watch" if kind == "vuln" and evidence.is_watch(predicate) else "publish"
    return Statement(kind, f.artifact or f.blob, f.created or "", source, predicate)


def _unverified(found: list[store.Found], digest: str) -> list[Statement]:
    out = []
    for f in found:
        stmt = f.statement() or {}
        kind = stmts.BY_PREDICATE.get(str(stmt.get("predicateType")), "")
        if kind and isinstance(stmt.get("predicate"), dict) and not verify.content_problems("", stmt, digest, None):
            out.append(_statement(f, kind, stmt["predicate"]))
    return out


def statements(reg: Registry, repo: str, digest: str, key: Path | None = None) -> tuple[list[Statement], list[str]]:
    """The statements attached to ``digest``, oldest first, and what ``tfimg verify``'s policy lacks. With
    ``key`` only statements signed by it (and consistent with the image; a watch's: about the digest) count."""
    found, _ = store.read(reg, repo, digest)
    if key is None:
        return _unverified(found, digest), []
    judged, missing = verify.judge_all(found, [signing.load_public_key(key)], digest,
                                       verify.image_id_of(reg, repo, digest))
    out = []
    for j in judged:
        about = not verify.content_problems("", j.found.statement() or {}, digest, None)
        watch = j.kind == "vuln" and evidence.is_watch(j.predicate)
        if j.status == "trusted" and (j.ok or (watch and about)):
            out.append(_statement(j.found, j.kind, j.predicate))
    return out, missing


def _last(found: list[Statement], kind: str, source: str = "publish") -> Statement | None:
    return next((s for s in reversed(found) if s.kind == kind and s.source == source), None)


def _doc(report: Statement | None) -> evidence.Evidence | None:
    if report is None:
        return None
    try:
        return evidence.Evidence.model_validate({**report.predicate, "published_at": report.created or None})
    except ValueError:
        return None


def read(reg: Registry, repo: str, digest: str, tags: list[str], key: Path | None = None) -> Published:
    """What ``HOST/REPO@digest`` was published with (its statements)."""
    found, problems = statements(reg, repo, digest, key)
    sbom, vuln = _last(found, "sbom"), _last(found, "vuln")
    trivy = (vuln.predicate.get("scanner") or {}).get("result") if vuln is not None else None
    return Published(f"{reg.host}/{repo}", digest, tuple(sorted(tags)), _doc(_last(found, "report")),
                     sbom.predicate if sbom is not None else None, trivy if isinstance(trivy, dict) and trivy else None,
                     _last(found, "vuln", "watch"), tuple(problems))


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


def attach_watch(reg: Registry, ref: Ref, predicate: dict[str, Any], signer: Any | None, created: str) -> str:
    """Attach a watch's vulnerability statement (cosign's vuln predicate) to ``ref`` (``HOST/NAME@digest``),
    dated ``created``; the publish-time statement stays. Returns the referrer's digest."""
    return attest.attach_one(reg, ref, "vuln", predicate, signer, created, {SOURCE_ANNOTATION: "watch"}).digest


def attach_vex(reg: Registry, ref: Ref, document: dict[str, Any], signer: Any | None, created: str) -> str:
    """Attach an OpenVEX document to ``ref``. Returns the referrer's digest."""
    return attest.attach_one(reg, ref, "vex", document, signer, created).digest


def _when(text: str | None) -> dt.datetime | None:
    return stmts.parse_time(text or "")


def latest(reg: Registry, repo: str, digest: str) -> tuple[evidence.Evidence | None, JsonObject | None, str]:
    """:func:`latest_from` the statements attached to ``digest`` (unverified)."""
    return latest_from(store.read(reg, repo, digest)[0], digest)


def latest_from(found: list[store.Found], digest: str) -> tuple[evidence.Evidence | None, JsonObject | None, str]:
    """(evidence, Trivy report, note) to judge ``digest`` on, from these envelopes: as published, or, when a
    watch statement is newer than the publish-time report, with the watch's report and decision (``note``
    says so)."""
    found_stmts = _unverified(found, digest)
    doc = _doc(_last(found_stmts, "report"))
    vuln = _last(found_stmts, "vuln")
    trivy = (vuln.predicate.get("scanner") or {}).get("result") if vuln is not None else None
    trivy = trivy if isinstance(trivy, dict) and trivy else None
    if doc is None:
        return doc, trivy, ""
    watch = _last(found_stmts, "vuln", "watch")
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

