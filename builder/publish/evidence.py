"""tfimg's evidence document (the ``report`` statement's predicate), and reading evidence back.

The document is an :class:`Evidence` (schema ``tfimg.evidence/v1``): the report's sections for one
pushed digest and its tags, scrubbed of secrets (keys that look like credentials are dropped, URL
passwords redacted). It is signed and attached like every statement (:mod:`builder.publish.store`);
there is no other evidence store (the unsigned ``sha256-<hex>.tfimg`` tag of earlier versions is
neither written nor read). :func:`read`, :func:`read_trivy` and :func:`promotions` read the newest
statement of their kind without checking signatures: :mod:`builder.publish.verify` does that.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from builder.infra.registry_client import Registry
from builder.infra.report_models import JsonObject, Report, TagsSection
from builder.publish import store
from builder.publish.signing import open_envelope
from builder.publish.statements import KINDS
from builder.spec.loader import CREDENTIAL_NAME

SCHEMA = "tfimg.evidence/v1"
REPORT_SECTIONS = ("build", "checks", "scan", "gate", "facts", "tags")
URL_CREDS = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")
EVIDENCE_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.[a-z]+)?")   # the tag schema's index, cosign's .att/.sig/.sbom
VOLATILE = {"build": ("up_to_date", "timings", "log")}   # how this run went, not what the image is


class _Doc(BaseModel):
    """Part of an evidence document: frozen; keys tfimg does not know are kept as they are."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class EvidenceTags(_Doc):
    immutable: str | None = None
    moving: list[str] = Field(default_factory=list)


class PromotionRecord(_Doc):
    """One promotion of the digest (``tfimg promote``), as its promotion statement records it."""

    from_: str = Field(alias="from")
    to: str
    digest: str
    at: str
    policy: str
    signed: bool = False


class Evidence(_Doc):
    """The evidence of one pushed digest (``tfimg.evidence/v1``): the report's sections and the tags.

    Written by :func:`document`; read back by :func:`read` (a document that does not fit is no
    evidence). :meth:`to_json` gives the very keys it was made from.
    """

    schema_: str = Field("tfimg.evidence/v1", alias="schema")
    variant: str | None = None
    repository: str | None = None
    digest: str
    tags: EvidenceTags = Field(default_factory=EvidenceTags)
    report: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    published_at: str | None = None   # never written by document(): readers set it from when the statement was attached

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def section(self, name: str) -> dict[str, JsonValue]:
        """One section of the report (``build``, ``gate``...); {} when absent."""
        return self.report.get(name) or {}


def is_evidence_tag(tag: str) -> bool:
    """A tag that holds evidence, not an image: the referrers tag schema's ``sha256-<hex>`` index,
    cosign's ``sha256-<hex>.att`` (and ``.sig``, ``.sbom``)."""
    return bool(EVIDENCE_TAG.fullmatch(tag))


INPUT_TAG_PREFIX = "ih-"


def input_tag(input_hash: str) -> str:
    """The tag ``publish`` also puts on a digest so ``build --registry`` finds it by its inputs:
    ``ih-`` and the first 20 hex digits of the input hash (it follows the latest publish)."""
    return INPUT_TAG_PREFIX + input_hash.partition(":")[2][:20]


def is_input_tag(tag: str) -> bool:
    return tag.startswith(INPUT_TAG_PREFIX) and len(tag) == len(INPUT_TAG_PREFIX) + 20


def _numbers_only(value: Any) -> bool:
    """Whether ``value`` holds nothing but numbers, booleans and nulls (a count is no credential)."""
    if isinstance(value, dict):
        return all(_numbers_only(v) for v in value.values())
    if isinstance(value, list):
        return all(_numbers_only(v) for v in value)
    return value is None or isinstance(value, (bool, int, float))


def scrub(value: Any) -> Any:
    """Drop credential-like keys and redact passwords embedded in URLs, recursively.

    A credential-like key that holds only numbers stays: ``secret`` is also a kind of
    finding, and its counts (``scan.findings.secret``, ``gate.counts.secret``) are evidence.
    """
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()
                if not CREDENTIAL_NAME.search(str(k)) or _numbers_only(v)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return URL_CREDS.sub(r"\1***@", value)
    return value


def document(report: Report, *, variant: str, repository: str, digest: str, tags: TagsSection) -> Evidence:
    """The evidence for one pushed digest, from the local report (pure).

    Each section goes in as report.json has it, less what only describes this run (``reuse``, and the
    build's ``up_to_date``, ``timings`` and ``log``): publishing the same image from the same report
    again gives the same document. The scan section is small (how Trivy ran and ``findings``: the number
    of findings per kind); the findings themselves are in the vuln statement.
    """
    full = report.to_json()
    sections = {k: {f: v for f, v in full[k].items() if f != "reuse" and f not in VOLATILE.get(k, ())}
                for k in REPORT_SECTIONS if isinstance(full.get(k), dict)}
    return Evidence.model_validate(scrub({
        "schema": SCHEMA, "variant": variant, "repository": repository, "digest": digest,
        "tags": tags.model_dump(mode="json", exclude={"reuse"}), "report": sections,
    }))


def verdict(doc: Evidence | None) -> str:
    """'pass', 'fail', 'unscanned', ... from an evidence document; 'no-evidence' when none."""
    if doc is None:
        return "no-evidence"
    checks = doc.section("checks").get("passed")
    decision = doc.section("gate").get("decision") or "unknown"
    if decision == "pass" and checks is not True:
        return "checks-failed" if checks is False else "checks-missing"
    return str(decision)


def predicates(found: list[store.Found], kind: str) -> list[dict[str, Any]]:
    """The predicates of the statements of ``kind`` (by their predicateType), oldest first."""
    out = []
    for f in found:
        stmt = f.statement()
        if stmt is not None and stmt.get("predicateType") == KINDS[kind].predicate_type \
                and isinstance(stmt.get("predicate"), dict):
            out.append(stmt["predicate"])
    return out


def from_found(found: list[store.Found], digest: str) -> Evidence | None:
    """The newest report statement's document about ``digest``; None when there is none that fits."""
    for predicate in reversed(predicates(found, "report")):
        try:
            doc = Evidence.model_validate(predicate)
        except ValidationError:
            continue
        if doc.digest == digest:
            return doc
    return None


WATCH_URI = "https://tfimg.dev/watch"   # invocation.uri of the vuln statements tfimg watch attaches


def is_watch(predicate: dict[str, Any]) -> bool:
    """Whether a vuln predicate is a later watch's (its signed ``invocation.uri``), not the publish-time scan."""
    invocation = predicate.get("invocation")
    return isinstance(invocation, dict) and invocation.get("uri") == WATCH_URI


def trivy_from(found: list[store.Found]) -> JsonObject | None:
    """The Trivy report of the newest publish-time vuln statement (its ``scanner.result``), for re-gating;
    a later watch's statement is :mod:`builder.publish.watched`'s to read."""
    for predicate in reversed([p for p in predicates(found, "vuln") if not is_watch(p)]):
        result = (predicate.get("scanner") or {}).get("result") if isinstance(predicate.get("scanner"), dict) else None
        if isinstance(result, dict) and result:
            return result
    return None


def read(reg: Registry, repo: str, digest: str) -> Evidence | None:
    """The newest evidence document attached to ``digest``; None when there is none, or it is not one."""
    return from_found(store.read(reg, repo, digest, {"report"})[0], digest)


def read_trivy(reg: Registry, repo: str, digest: str) -> JsonObject | None:
    """The Trivy report attached to ``digest`` (the newest vuln statement's), or None."""
    return trivy_from(store.read(reg, repo, digest, {"vuln"})[0])


def promotions_from(found: list[store.Found]) -> list[PromotionRecord]:
    """The promotion statements among ``found`` (signed or not: a record only ever keeps a digest
    from being pruned), oldest first."""
    out = []
    for f in found:
        stmt = f.statement() or {}
        p = stmt.get("predicate")
        if stmt.get("predicateType") != KINDS["promotion"].predicate_type or not isinstance(p, dict):
            continue
        with contextlib.suppress(ValidationError):
            out.append(PromotionRecord.model_validate({
                "from": str(p.get("srcRef", "")).rpartition("@")[0], "to": str(p.get("dstRef", "")).rpartition("@")[0],
                "digest": p.get("digest"), "at": p.get("timestamp"), "policy": p.get("policy") or "",
                "signed": bool(open_envelope(f.raw).signatures)}))
    return out


def promotions(reg: Registry, repo: str, digest: str) -> list[PromotionRecord]:
    """Every promotion statement attached to ``digest``, oldest first."""
    return promotions_from(store.read(reg, repo, digest, {"promotion"})[0])
