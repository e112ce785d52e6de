"""The in-toto statements tfimg attaches to a published digest, and what each kind is called where (pure).

========== ================================================ ============================================ ===============
kind       predicateType                                    artifactType (OCI referrer)                  cosign --type
========== ================================================ ============================================ ===============
report     https://tfimg.dev/attestations/report/v1         application/vnd.tfimg.report+dsse            (the URI)
sbom       https://cyclonedx.org/bom                        application/vnd.in-toto.cyclonedx+dsse       cyclonedx
vuln       https://cosign.sigstore.dev/attestation/vuln/v1  application/vnd.in-toto.vuln+dsse            vuln
provenance https://slsa.dev/provenance/v1                   application/vnd.in-toto.provenance+dsse      slsaprovenance1
promotion  https://in-toto.io/attestation/promotion-record/v0.1  application/vnd.in-toto.promotion-record+dsse  (the URI)
vex        https://openvex.dev/ns/v0.2.0                    application/vnd.in-toto.openvex+dsse         (the URI)
========== ================================================ ============================================ ===============

The artifact types follow the in-toto attestation storage convention (``spec/v1/envelope.md``:
``application/vnd.in-toto.<predicate>+dsse``, ``<predicate>`` the predicate's spec file name: ``provenance``,
``cyclonedx``, ``vuln`` (the predicate cosign's vuln attestation inspired), ``promotion-record``); tfimg's
own report is in tfimg's vendor tree. A verifier reads the kind from the *signed* ``predicateType``, never
from these hints. Every timestamp tfimg writes is RFC 3339 in UTC with ``Z`` (:func:`z`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import __version__
from builder.infra.report_models import Report

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
STATEMENT_TYPES = (STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1")   # cosign attest writes v0.1
INTOTO_PAYLOAD = "application/vnd.in-toto+json"
BUILD_TYPE = "https://tfimg.dev/buildtypes/docker-buildkit/v1"
BUILDER_ID = f"https://tfimg.dev/builder/tfimg@{__version__}"


@dataclass(frozen=True)
class Kind:
    name: str
    predicate_type: str
    artifact_type: str
    cosign_type: str          # what `cosign verify-attestation --type` takes for it


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("report", "https://tfimg.dev/attestations/report/v1", "application/vnd.tfimg.report+dsse",
         "https://tfimg.dev/attestations/report/v1"),
    Kind("sbom", "https://cyclonedx.org/bom", "application/vnd.in-toto.cyclonedx+dsse", "cyclonedx"),
    Kind("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1", "application/vnd.in-toto.vuln+dsse", "vuln"),
    Kind("provenance", "https://slsa.dev/provenance/v1", "application/vnd.in-toto.provenance+dsse", "slsaprovenance1"),
    Kind("promotion", "https://in-toto.io/attestation/promotion-record/v0.1",
         "application/vnd.in-toto.promotion-record+dsse", "https://in-toto.io/attestation/promotion-record/v0.1"),
    Kind("vex", "https://openvex.dev/ns/v0.2.0", "application/vnd.in-toto.openvex+dsse", "https://openvex.dev/ns/v0.2.0"),
)}
PUBLISHED = ("report", "sbom", "vuln", "provenance")     # what `tfimg publish` attaches
BY_PREDICATE = {k.predicate_type: k.name for k in KINDS.values()}
BY_ARTIFACT = {k.artifact_type: k.name for k in KINDS.values()}


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces): the same statement is the same payload."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def predicate_hash(predicate: Any) -> str:
    return hashlib.sha256(canonical(predicate)).hexdigest()


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str) -> dt.datetime | None:
    """An RFC 3339 date-time with a zone (``Z`` or an offset), as UTC; None for anything else (a bare
    date, no zone, not a string)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        return None
    try:
        when = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(dt.timezone.utc)


def z(value: str | None) -> str | None:
    """``value`` (RFC 3339 with any offset) in UTC with ``Z``, whole seconds; None when it is not one."""
    when = parse_time(value) if value else None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


def is_z(value: Any) -> bool:
    """Whether ``value`` is an RFC 3339 timestamp in UTC written with ``Z`` (what in-toto asks for)."""
    return isinstance(value, str) and value.endswith("Z") and parse_time(value) is not None


def statement(repository: str, digest: str, kind: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 about ``digest`` (``sha256:...``)."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": repository, "digest": {"sha256": digest.partition(":")[2]}}],
            "predicateType": KINDS[kind].predicate_type, "predicate": predicate}


# --------------------------------------------------------------------------- the base image

def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``HOST/PATH/NAME:TAG@sha256:...`` -> (repository, tag, digest); parts may be absent."""
    rest, _, digest = ref.partition("@")
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        return rest, tag, digest or None
    return rest, None, digest or None


def _has_host(repository: str) -> bool:
    first, sep, _ = repository.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def base_purl(ref: str, digest: str | None) -> str:
    """The base image as a package URL (``pkg:oci/NAME@sha256%3A...?repository_url=HOST/PATH/NAME&tag=T``,
    purl-spec's OCI type); without a digest, no version."""
    from packageurl import PackageURL

    ref = re.sub(r"^[a-z][a-z0-9+.-]*://", "", ref)                 # a URL is no image reference:
    first, sep, rest = ref.partition("/")                           # never a user:password@ in a purl
    ref = (first.rpartition("@")[2] + sep + rest) if sep else ref
    repository, tag, pinned = split_ref(ref)
    qualifiers = {k: v for k, v in (("repository_url", repository if _has_host(repository) else None),
                                    ("tag", tag)) if v}
    return str(PackageURL(type="oci", name=repository.rsplit("/", 1)[-1].lower(), version=digest or pinned,
                          qualifiers=qualifiers).to_string())


def base_dependency(rep: Report) -> dict[str, Any] | None:
    """The base image as an SLSA ResourceDescriptor: purl, digest (when known), name ``base``."""
    b = rep.build
    if b is None:
        return None
    digest = b.base.digest if b.base.digest and b.base.digest.startswith("sha256:") else None
    dep: dict[str, Any] = {"uri": base_purl(b.base.ref, digest), "name": "base",
                           "annotations": {"reference": b.base.ref, "imageId": b.base.id}}
    if digest:
        dep["digest"] = {"sha256": digest.partition(":")[2]}
    return dep


def provenance_base_digest(predicate: dict[str, Any]) -> str | None:
    """``sha256:...`` of the dependency named ``base`` in an SLSA v1 predicate, or None."""
    deps = ((predicate.get("buildDefinition") or {}).get("resolvedDependencies")) or []
    for dep in deps if isinstance(deps, list) else []:
        if isinstance(dep, dict) and dep.get("name") == "base":
            hexpart = (dep.get("digest") or {}).get("sha256") if isinstance(dep.get("digest"), dict) else None
            return f"sha256:{hexpart}" if isinstance(hexpart, str) and hexpart else None
    return None


# --------------------------------------------------------------------------- predicates

def vuln_predicate(rep: Report, trivy: dict[str, Any] | None) -> dict[str, Any]:
    """cosign's vuln predicate (and in-toto's vuln v0.1 fields): Trivy's report as the result; the scan's
    own start and finish times; the DB it used."""
    scan = rep.scan
    db = scan.db if scan is not None else None
    version = scan.trivy_version if scan is not None else None
    metadata = {k: v for k, v in (("scanStartedOn", z(scan.started_on) if scan else None),
                                  ("scanFinishedOn", z(scan.finished_on) if scan else None)) if v}
    db_doc: dict[str, Any] = {"uri": (scan.db_repository if scan else None) or "",
                              "version": str(db.Version) if db is not None and db.Version is not None else ""}
    updated = z(db.UpdatedAt) if db is not None and db.UpdatedAt else None
    if updated:
        db_doc["lastUpdate"] = updated
    return {
        "invocation": {"parameters": {"scanners": list(scan.scanners or []) if scan else [],
                                      "mode": scan.mode if scan else None},
                       "uri": "", "event_id": "", "builder.id": BUILDER_ID},
        "scanner": {"uri": "pkg:github/aquasecurity/trivy" + (f"@v{version}" if version else ""),
                    "version": version or "", "db": db_doc, "result": trivy or {}},
        "metadata": metadata,
    }


def _file_digest(path: str) -> dict[str, str]:
    p = Path(path)
    return {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()} if p.is_file() else {}


def _shown(path: Path) -> str:
    """A variant file's path relative to the working directory when under it (no host layout leaks)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def provenance(rep: Report, *, repository: str, digest: str, chain: list[Path],
               hashes: dict[str, str]) -> dict[str, Any]:
    """SLSA v1 provenance of the published image: the build's own start and finish, the base by digest
    (a package URL), the variant files by sha256; ``hashes``: the other statements' predicates (byproducts)."""
    b = rep.build
    files = [_shown(p) for p in chain] or (list(b.spec_chain) if b else [])
    build_args: dict[str, Any] = {}
    internal: dict[str, Any] = {}
    version = {"tfimg": __version__}
    if b is not None:
        build_args = {"TFIMG_BASE": b.base.ref, "TFIMG_REVISION": b.revision,
                      "TFIMG_BASE_DIGEST": b.base.digest or "unknown",
                      "TFIMG_CREATED": b.labels.get("org.opencontainers.image.created"),
                      **({"SOURCE_DATE_EPOCH": str(b.source_date.epoch)} if b.source_date else {})}
        internal = {"renderedContext": {"sha256": b.context_hash.partition(":")[2] or b.context_hash},
                    "dockerfile": {"sha256": b.dockerfile_hash.partition(":")[2] or b.dockerfile_hash},
                    "specHash": b.spec_hash, "inputHash": b.input_hash, "profile": b.profile,
                    "imageId": b.image_id}
        if b.builder is not None:
            version.update({"docker": b.builder.docker, b.builder.kind: b.builder.version})
    base = base_dependency(rep)
    deps = ([base] if base else []) + [{"uri": f"file:{f}", "name": "variant-file", "digest": _file_digest(f)}
                                       for f in files]
    metadata = {"invocationId": f"{repository}@{digest}"}
    metadata.update({k: v for k, v in (("startedOn", z(b.started_on) if b else None),
                                       ("finishedOn", z(b.finished_on) if b else None)) if v})
    return {
        "buildDefinition": {"buildType": BUILD_TYPE,
                            "externalParameters": {"variant": b.variant if b else None, "variantFiles": files,
                                                   "buildArgs": build_args},
                            "internalParameters": internal, "resolvedDependencies": deps},
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": version},
            "metadata": metadata,
            "byproducts": [{"name": kind, "digest": {"sha256": h}, "mediaType": "application/json",
                            "annotations": {"predicateType": KINDS[kind].predicate_type}}
                           for kind, h in sorted(hashes.items())],
        },
    }


def promotion(*, source: str, target: str, digest: str, at: str, policy: str, decision: str) -> dict[str, Any]:
    """in-toto's promotion-record predicate (srcRef, dstRef, digest, timestamp, builderId), with the
    policy and decision tfimg promoted under."""
    return {"srcRef": f"{source}@{digest}", "dstRef": f"{target}@{digest}", "digest": digest,
            "timestamp": z(at) or at, "builderId": BUILDER_ID, "policy": policy, "decision": decision}


def sbom_predicate(sbom: dict[str, Any]) -> dict[str, Any]:
    """The CycloneDX document as Trivy wrote it, its ``metadata.timestamp`` in UTC with ``Z``."""
    meta = sbom.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("timestamp"), str) and z(meta["timestamp"]):
        return {**sbom, "metadata": {**meta, "timestamp": z(meta["timestamp"])}}
    return sbom


def sbom_image_id(sbom: dict[str, Any]) -> str | None:
    """The image id Trivy's CycloneDX names (``metadata.component`` property ``aquasecurity:trivy:ImageID``)."""
    component = (sbom.get("metadata") or {}).get("component") if isinstance(sbom.get("metadata"), dict) else None
    props = component.get("properties") if isinstance(component, dict) else None
    for prop in props if isinstance(props, list) else []:
        if isinstance(prop, dict) and prop.get("name") == "aquasecurity:trivy:ImageID":
            return str(prop.get("value") or "") or None
    return None
