"""Evidence attached to a pushed digest: the build report, as an OCI artifact.

Distribution 2.8 has no referrers API, so tfimg uses the cosign-style tag
convention: an OCI image manifest whose config is a small JSON blob and whose
one layer is the evidence document (media type :data:`REPORT_TYPE`), tagged
``sha256-<hex>.tfimg`` in the same repository. :func:`read` finds it again by
the image digest. :func:`document` and :func:`scrub` are pure; secrets never
go in (keys that look like credentials are dropped, URL passwords redacted).
The document is an :class:`Evidence` (schema ``tfimg.evidence/v1``).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from builder.errors import RegistryError
from builder.infra import datafile, labels
from builder.infra.registry_client import OCI_MANIFEST, Registry
from builder.infra.report_models import JsonObject, Report, TagsSection
from builder.spec.loader import CREDENTIAL_NAME

REPORT_TYPE = "application/vnd.tfimg.report.v1+json"
TRIVY_TYPE = "application/vnd.tfimg.trivy.v1+json"     # the full Trivy report, for re-gating at promotion
CONFIG_TYPE = "application/vnd.tfimg.report.config.v1+json"
SUFFIX = ".tfimg"
SCHEMA = "tfimg.evidence/v1"
REPORT_SECTIONS = ("build", "checks", "scan", "gate", "facts", "tags")
URL_CREDS = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")
FALLBACK_TAG = re.compile(r"sha256-[0-9a-f]{64}")


class _Doc(BaseModel):
    """Part of an evidence document: frozen; keys tfimg does not know are kept as they are."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class EvidenceTags(_Doc):
    immutable: str | None = None
    moving: list[str] = Field(default_factory=list)


class PromotionRecord(_Doc):
    """One promotion of the digest (``tfimg promote``), recorded on both sides."""

    from_: str = Field(alias="from")
    to: str
    digest: str
    at: str
    policy: str


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
    published_at: str | None = None
    promotions: list[PromotionRecord] = Field(default_factory=list)
    report: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def section(self, name: str) -> dict[str, JsonValue]:
        """One section of the report (``build``, ``gate``...); {} when absent."""
        return self.report.get(name) or {}

    def promoted(self, record: PromotionRecord) -> Evidence:
        """A copy with ``record`` added to the promotions."""
        records = [p.model_dump(mode="json", by_alias=True) for p in (*self.promotions, record)]
        return Evidence.model_validate({**self.to_json(), "promotions": records})

    def at_repository(self, repository: str) -> Evidence:
        """A copy for the same digest in another repository (the target of a promotion)."""
        return Evidence.model_validate({**self.to_json(), "repository": repository})


def tag_for(digest: str) -> str:
    """``sha256:abc...`` -> ``sha256-abc....tfimg`` (the tag the evidence lives under)."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}{SUFFIX}"


def is_evidence_tag(tag: str) -> bool:
    """The legacy ``sha256-<hex>.tfimg`` tag, or the OCI referrers tag schema's ``sha256-<hex>`` index."""
    return tag.startswith("sha256-") and (tag.endswith(SUFFIX) or bool(FALLBACK_TAG.fullmatch(tag)))


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


def document(report: Report, *, variant: str, repository: str, digest: str,
             tags: TagsSection, published_at: str, promotions: list[PromotionRecord] | None = None) -> Evidence:
    """The evidence for one pushed digest, from the local report (pure).

    Each section goes in as report.json has it; the scan section is small (how Trivy ran
    and ``findings``: the number of findings per kind), the findings themselves are the
    Trivy report attached beside it (:data:`TRIVY_TYPE`).
    """
    full = report.to_json()
    sections = {k: full[k] for k in REPORT_SECTIONS if k in full}
    return Evidence.model_validate(scrub({
        "schema": SCHEMA, "variant": variant, "repository": repository, "digest": digest,
        "tags": tags.model_dump(mode="json"), "published_at": published_at,
        "promotions": [p.model_dump(mode="json", by_alias=True) for p in promotions or []],
        "report": sections,
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


def attach(reg: Registry, repo: str, digest: str, doc: Evidence, trivy: JsonObject | None = None) -> str:
    """Push ``doc`` (and the Trivy report) as the evidence of ``digest``; returns the artifact's digest."""
    old = reg.digest_of(repo, tag_for(digest))
    body = json.dumps(doc.to_json(), indent=2, sort_keys=True).encode()
    config = json.dumps({"schema": SCHEMA, "subject": digest}, sort_keys=True).encode()
    layers = [{"mediaType": REPORT_TYPE, "digest": reg.put_blob(repo, body), "size": len(body),
               "annotations": {"org.opencontainers.image.title": "tfimg-report.json"}}]
    if trivy is not None:
        raw = json.dumps(trivy, sort_keys=True).encode()
        layers.append({"mediaType": TRIVY_TYPE, "digest": reg.put_blob(repo, raw), "size": len(raw),
                       "annotations": {"org.opencontainers.image.title": "trivy.json"}})
    config_digest = reg.put_blob(repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": REPORT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": layers,
        "annotations": {labels.SUBJECT: digest, "org.opencontainers.image.created": doc.published_at or ""},
    }
    raw = json.dumps(manifest, sort_keys=True).encode()
    new = reg.put_manifest(repo, tag_for(digest), raw, OCI_MANIFEST)
    if old and old != new:   # the tag moved on; drop the superseded artifact when deletes are allowed
        with contextlib.suppress(RegistryError, requests.RequestException):
            reg.delete_manifest(repo, old)
    return new


def _layer(reg: Registry, repo: str, digest: str, media_type: str) -> Any:
    """The JSON of the evidence artifact's layer of ``media_type`` for ``digest``, or None."""
    found = reg.manifest(repo, tag_for(digest))
    if found is None:
        return None
    manifest = datafile.loads_json(found[0], f"manifest {repo}:{tag_for(digest)}", what="it")
    if (manifest.get("annotations") or {}).get(labels.SUBJECT) != digest:
        return None
    layer = next((lyr for lyr in manifest.get("layers", []) if lyr.get("mediaType") == media_type), None)
    return datafile.loads_json(reg.blob(repo, layer["digest"]), f"blob {layer['digest']}", what="it") \
        if layer is not None else None


def read(reg: Registry, repo: str, digest: str) -> Evidence | None:
    """The evidence document attached to ``digest``; None when there is none, or it is not one."""
    data = _layer(reg, repo, digest, REPORT_TYPE)
    try:
        doc = Evidence.model_validate(data) if isinstance(data, dict) else None
    except ValidationError:
        return None
    return doc if doc is not None and doc.digest == digest else None


def read_trivy(reg: Registry, repo: str, digest: str) -> JsonObject | None:
    """The Trivy report attached beside the evidence of ``digest`` (for re-gating), or None."""
    data = _layer(reg, repo, digest, TRIVY_TYPE)
    return data if isinstance(data, dict) else None
