"""Evidence attached to a pushed digest: the build report, as an OCI artifact.

Distribution 2.8 has no referrers API, so tfimg uses the cosign-style tag
convention: an OCI image manifest whose config is a small JSON blob and whose
one layer is the evidence document (media type :data:`REPORT_TYPE`), tagged
``sha256-<hex>.tfimg`` in the same repository. :func:`read` finds it again by
the image digest. :func:`document` and :func:`scrub` are pure; secrets never
go in (keys that look like credentials are dropped, URL passwords redacted).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from builder.infra import datafile, labels
from builder.infra.report_models import Report, TagsSection
from builder.publish.registry_client import OCI_MANIFEST, Registry
from builder.spec.loader import CREDENTIAL_NAME

REPORT_TYPE = "application/vnd.tfimg.report.v1+json"
TRIVY_TYPE = "application/vnd.tfimg.trivy.v1+json"     # the full Trivy report, for re-gating at promotion
CONFIG_TYPE = "application/vnd.tfimg.report.config.v1+json"
SUFFIX = ".tfimg"
SCHEMA = "tfimg.evidence/v1"
REPORT_SECTIONS = ("build", "checks", "scan", "gate", "facts", "tags")
URL_CREDS = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")
FALLBACK_TAG = re.compile(r"sha256-[0-9a-f]{64}")


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
             tags: TagsSection, published_at: str) -> dict[str, Any]:
    """The evidence for one pushed digest, from the local report (pure).

    Each section goes in as report.json has it; the scan section is small (how Trivy ran
    and ``findings``: the number of findings per kind), the findings themselves are the
    Trivy report attached beside it (:data:`TRIVY_TYPE`).
    """
    full = report.to_json()
    sections = {k: full[k] for k in REPORT_SECTIONS if k in full}
    return scrub({
        "schema": SCHEMA, "variant": variant, "repository": repository, "digest": digest,
        "tags": tags.model_dump(mode="json"), "published_at": published_at, "promotions": [],
        "report": sections,
    })


def verdict(doc: dict[str, Any] | None) -> str:
    """'pass', 'fail', 'unscanned', ... from an evidence document; 'no-evidence' when none."""
    if not doc:
        return "no-evidence"
    report = doc.get("report") or {}
    checks = (report.get("checks") or {}).get("passed")
    decision = (report.get("gate") or {}).get("decision") or "unknown"
    if decision == "pass" and checks is not True:
        return "checks-failed" if checks is False else "checks-missing"
    return str(decision)


def attach(reg: Registry, repo: str, digest: str, doc: dict[str, Any], trivy: dict[str, Any] | None = None) -> str:
    """Push ``doc`` (and the Trivy report) as the evidence of ``digest``; returns the artifact's digest."""
    old = reg.digest_of(repo, tag_for(digest))
    body = json.dumps(doc, indent=2, sort_keys=True).encode()
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
        "annotations": {labels.SUBJECT: digest, "org.opencontainers.image.created": doc.get("published_at", "")},
    }
    raw = json.dumps(manifest, sort_keys=True).encode()
    new = reg.put_manifest(repo, tag_for(digest), raw, OCI_MANIFEST)
    if old and old != new:   # the tag moved on; drop the superseded artifact when deletes are allowed
        with contextlib.suppress(Exception):
            reg.delete_manifest(repo, old)
    return new


def read(reg: Registry, repo: str, digest: str, media_type: str = REPORT_TYPE) -> dict[str, Any] | None:
    """The evidence document (or, with ``TRIVY_TYPE``, the Trivy report) attached to ``digest``."""
    found = reg.manifest(repo, tag_for(digest))
    if found is None:
        return None
    manifest = datafile.loads_json(found[0], f"manifest {repo}:{tag_for(digest)}", what="it")
    if (manifest.get("annotations") or {}).get(labels.SUBJECT) != digest:
        return None
    layer = next((lyr for lyr in manifest.get("layers", []) if lyr.get("mediaType") == media_type), None)
    if layer is None:
        return None
    doc = datafile.loads_json(reg.blob(repo, layer["digest"]), f"blob {layer['digest']}", what="it")
    if media_type == REPORT_TYPE and doc.get("digest") != digest:
        return None
    return doc
