"""The catalog's one window on the registry and its evidence (the only module that knows the format).

Contract, so the evidence format can change here and nowhere else:

- :func:`list_digests` ``(namespace, workers) -> list[Listed]``: every published digest at or under ``HOST/NAMESPACE``
  (tfimg's own lookup tags left out), with the tags that point at it, its creation time and pull size.
  Reads the tag lists, the image manifests and their config blobs; never an image layer.
- :func:`read` ``(listed, keys) -> Evidence``: what is attached to one digest, read but not judged:

  * ``report``: tfimg's evidence document (``{"variant", "tags", "published_at", "report": {build, checks,
    facts, scan, gate, tags}, ...}``), from the signed report statement when there is one, else from the
    unsigned ``sha256-<hex>.tfimg`` document; ``None`` when neither exists;
  * ``sbom`` (CycloneDX JSON) and ``trivy`` (Trivy's JSON report): from the signed statements (the Trivy
    report is the vuln predicate's ``scanner.result``), the Trivy report else from the unsigned document;
  * ``promotions``: the promotion records (today in the unsigned document only: ``unsigned_promotions``);
  * ``verification``: for each key, :func:`builder.publish.attest.verify`; the first key every statement
    verifies with wins. When one does, the content above is the verified predicates; otherwise it is the
    raw (unverified) statements, and ``verification.state`` says so;
  * ``config``: the image config's labels, exposed ports and layer DiffIDs (a small blob, not a layer);
  * ``watch``: the newest ``tfimg watch`` statement (issue 21): always ``None`` until watch attaches one;
  * ``problems``: what could not be read, and why. :func:`read` raises only for errors of the registry
    connection itself (:class:`~builder.errors.RegistryError`).

  Safe to call from several threads at once (each call has its own registry session).
- :func:`recorded_decision` ``(evidence) -> str``: the decision recorded at publishing
  (:func:`builder.publish.evidence.verdict`); :func:`redecide` ``(evidence, policy) -> (decision, how)``: the
  attached Trivy report under another policy today (:func:`builder.pipeline.gatekeeping.policy_decision`,
  what ``tfimg promote --policy`` does).

Today it uses :func:`builder.publish.curation.ls`, :func:`builder.publish.referrers.list_referrers`,
:func:`builder.publish.attest.verify`, :func:`builder.publish.evidence.read` and ``read_trivy``.
Issue 19 (one artifactType per kind, cosign's layout, ``verify`` as a policy with trusted keys and "other signer", no unsigned
``.tfimg`` document) and issue 21 (dated watch statements) change what this module reads, not its contract.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from builder.errors import RegistryError, TfimgError
from builder.infra import datafile
from builder.infra.registry_client import INDEX_TYPES, Registry, parse_ref
from builder.pipeline import gatekeeping
from builder.publish import attest, curation, evidence, referrers

# What hostile or broken evidence raises while it is read: recorded as a problem of that digest.
READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, StopIteration, TfimgError)


def _tolerate(exc: BaseException) -> None:
    """Re-raise errors of the registry connection itself (auth, 5xx after retries); others are problems."""
    if isinstance(exc, RegistryError) and exc.status not in (400, 404):
        raise exc


@dataclass(frozen=True)
class Listed:
    repository: str                  # HOST/NAMESPACE/VARIANT
    digest: str
    tags: tuple[str, ...]
    created: str | None
    pull_size: int | None


@dataclass(frozen=True)
class Verification:
    state: str                       # verified | unverifiable | not-verified
    key: str | None = None           # the key file name it verified with
    problems: tuple[str, ...] = ()
    route: str | None = None


@dataclass(frozen=True)
class ImageConfig:
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[int, ...] = ()
    diff_ids: tuple[str, ...] = ()
    layer_sizes: tuple[int, ...] = ()   # compressed, in manifest order (diff_ids[i] is layer i)
    config_size: int = 0


@dataclass(frozen=True)
class Evidence:
    listed: Listed
    report: dict[str, Any] | None
    report_signed: bool
    sbom: dict[str, Any] | None
    trivy: dict[str, Any] | None
    promotions: tuple[dict[str, Any], ...]
    unsigned_promotions: bool
    verification: Verification
    config: ImageConfig
    watch: dict[str, Any] | None = None
    problems: tuple[str, ...] = ()


@contextlib.contextmanager
def _connection(host: str) -> Iterator[None]:
    """A registry that cannot be reached (after the client's retries) is an environment error (exit 2)."""
    try:
        yield
    except requests.RequestException as exc:
        raise RegistryError(f"cannot reach the registry {host}: {type(exc).__name__}",
                            hint="Check that it runs and that HOST[:PORT] is right (plain HTTP is used for "
                                 "127.0.0.1 and localhost only).") from None


def list_digests(namespace: str, workers: int = 8) -> list[Listed]:
    """Every published digest at or under ``HOST/NAMESPACE``, newest first: :func:`builder.publish.curation.ls`,
    its repositories listed side by side (:func:`~builder.publish.curation.entries` of each)."""
    ref = parse_ref(namespace)
    with _connection(ref.host):
        reg = Registry(ref.host)
        try:
            repos = sorted(r for r in reg.catalog() if r == ref.repo or r.startswith(ref.repo + "/"))
        except RegistryError as exc:
            if exc.status not in (401, 403, 404):
                raise
            return _listed(curation.ls(namespace))   # no catalog API: ls knows what to do
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(repos)))) as pool:
            found = [e for entries in pool.map(lambda repo: curation.entries(Registry(ref.host), repo), repos)
                     for e in entries]
    return _listed(sorted(found, key=lambda e: e.created or "9999", reverse=True))


def _listed(entries: list[curation.Entry]) -> list[Listed]:
    return [Listed(e.repository, e.digest, tuple(e.tags), e.created, e.size) for e in entries]


def _doc(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _statements(reg: Registry, repo: str, digest: str, problems: list[str]) -> tuple[dict[str, Any], str]:
    """The newest statement predicate of each kind attached to ``digest``, unverified; and the route."""
    refs, route = referrers.list_referrers(reg, repo, digest)
    newest: dict[str, tuple[str, dict[str, Any]]] = {}
    for ref in refs:
        if ref.artifact_type != attest.DSSE_TYPE and attest.PREDICATE_ANNOTATION not in ref.annotations:
            continue
        kind = ref.annotations.get(attest.KIND_ANNOTATION) or attest.KINDS.get(
            ref.annotations.get(attest.PREDICATE_ANNOTATION, ""), "?")
        try:
            found = reg.manifest(repo, ref.digest)
            if found is None:
                raise ValueError("listed as a referrer but the manifest is gone")
            manifest = datafile.loads_json(found[0], f"manifest {ref.digest}", what="it")
            if (manifest.get("subject") or {}).get("digest") != digest:
                raise ValueError("its subject is not this digest")
            layer = next(x for x in manifest.get("layers") or [] if x.get("mediaType") == attest.DSSE_TYPE)
            env = datafile.loads_json(reg.blob(repo, layer["digest"]), "the envelope", what="it")
            stmt = attest.envelope_b64_payload(env)
            hexes = [(s.get("digest") or {}).get("sha256") for s in stmt.get("subject") or []]
            if digest.partition(":")[2] not in hexes:
                raise ValueError("the statement's subject is not this digest")
            predicate = stmt.get("predicate")
        except READ_ERRORS as exc:
            _tolerate(exc)
            problems.append(f"{kind} statement {ref.digest[:19]}: {exc}")
            continue
        created = str(ref.annotations.get(referrers.CREATED) or "")
        if isinstance(predicate, dict) and (kind not in newest or created >= newest[kind][0]):
            newest[kind] = (created, predicate)
    return {k: p for k, (_, p) in newest.items()}, route


def _verify(ref: str, keys: list[Path]) -> tuple[Verification, dict[str, Any]]:
    """The first key every statement verifies with, and the verified predicates by kind."""
    if not keys:
        return Verification("not-verified"), {}
    problems: list[str] = []
    route = None
    for key in keys:
        v = attest.verify(ref, key)
        route = v.route
        if v.ok:
            return Verification("verified", key.name, (), v.route), {c.kind: c.predicate for c in v.checked if c.ok}
        problems += [f"with {key.name}: {p}" for p in v.problems]
    return Verification("unverifiable", None, tuple(problems), route), {}


def _config(reg: Registry, repo: str, digest: str) -> ImageConfig:
    found = reg.manifest(repo, digest)
    if found is None or found[1] in INDEX_TYPES:
        return ImageConfig()
    manifest = datafile.loads_json(found[0], f"manifest {digest}", what="it")
    cfg_desc = manifest.get("config") or {}
    config = datafile.loads_json(reg.blob(repo, cfg_desc["digest"]), "the image config", what="it")
    inner = config.get("config") or {}
    ports = []
    for spec in (inner.get("ExposedPorts") or {}):
        with contextlib.suppress(ValueError):
            port = int(str(spec).split("/")[0])
            if 0 < port < 65536:
                ports.append(port)
    return ImageConfig(
        labels={str(k): str(v) for k, v in (inner.get("Labels") or {}).items()},
        exposed_ports=tuple(sorted(set(ports))),
        diff_ids=tuple(str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []),
        layer_sizes=tuple(int(lyr.get("size") or 0) for lyr in manifest.get("layers") or []),
        config_size=int(cfg_desc.get("size") or 0))


def read(listed: Listed, keys: list[Path]) -> Evidence:
    """Everything attached to one digest (see the module's contract)."""
    with _connection(parse_ref(listed.repository).host):
        return _read(listed, keys)


def _read(listed: Listed, keys: list[Path]) -> Evidence:
    ref = parse_ref(listed.repository)
    reg = Registry(ref.host)
    problems: list[str] = []
    text = f"{listed.repository}@{listed.digest}"
    try:
        verification, verified = _verify(text, keys)
    except READ_ERRORS as exc:
        _tolerate(exc)
        verification, verified = Verification("unverifiable", None, (f"could not be verified: {exc}",)), {}
    predicates = verified
    if verification.state != "verified":
        predicates, route = _statements(reg, ref.repo, listed.digest, problems)
        verification = Verification(verification.state, verification.key, verification.problems,
                                    verification.route or route)
    legacy: evidence.Evidence | None = None
    legacy_trivy: dict[str, Any] | None = None
    try:
        legacy = evidence.read(reg, ref.repo, listed.digest)
        if "vuln" not in predicates:
            legacy_trivy = evidence.read_trivy(reg, ref.repo, listed.digest)
    except READ_ERRORS as exc:
        _tolerate(exc)
        problems.append(f"the unsigned evidence document: {exc}")
    vuln = _doc(predicates.get("vuln")) or {}
    trivy = _doc((vuln.get("scanner") or {}).get("result")) if vuln else legacy_trivy
    promotions = [p.model_dump(mode="json", by_alias=True) for p in (legacy.promotions if legacy else [])]
    try:
        config = _config(reg, ref.repo, listed.digest)
    except READ_ERRORS as exc:
        _tolerate(exc)
        problems.append(f"the image config: {exc}")
        config = ImageConfig()
    report = _doc(predicates.get("report"))
    return Evidence(listed=listed, report=report or (legacy.to_json() if legacy else None),
                    report_signed=report is not None,
                    sbom=_doc(predicates.get("sbom")), trivy=trivy or None, promotions=tuple(promotions),
                    unsigned_promotions=True, verification=verification, config=config, watch=None,
                    problems=tuple(problems))


def redecide(ev: Evidence, policy: Path) -> tuple[str, str]:
    """(decision, how): the attached vulnerability report under ``policy``, judged today."""
    if ev.report is None:
        return "no-evidence", "no tfimg evidence is attached"
    try:
        return gatekeeping.policy_decision(evidence.Evidence.model_validate(ev.report), policy, ev.trivy)
    except (AttributeError, TypeError, KeyError, ValueError, TfimgError) as exc:   # a document of the wrong shape
        return "unreadable", f"the evidence could not be judged under {policy.name} ({type(exc).__name__})"


def key_fingerprint(path: Path) -> str:
    """sha256 of a PEM public key's DER encoding (what the catalog names a key by).

    Raises EnvError (exit 2) when the file is missing or holds no usable public key."""
    from cryptography.hazmat.primitives import serialization

    attest.load_public_key(path)
    pem = datafile.read_bytes(path, limit=2**20, what="the public key file")
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def recorded_decision(ev: Evidence) -> str:
    """The decision recorded when it was published: 'pass', 'block', 'checks-failed', 'no-evidence' ...;
    'unreadable' for a document of the wrong shape."""
    if ev.report is None:
        return "no-evidence"
    try:
        return evidence.verdict(evidence.Evidence.model_validate(ev.report))
    except ValueError:   # pydantic's ValidationError: a document of another shape
        return "unreadable"


WATCH_URI = "https://tfimg.dev/watch"   # the invocation.uri of the vulnerability statements `tfimg watch` attaches


def watch_of(predicate: Any, created: str | None, verified_with: str | None) -> dict[str, Any] | None:
    """The ``watch`` of the contract, from one vulnerability predicate: None unless ``tfimg watch`` made it
    (its signed ``invocation.uri``; an annotation is not signed, so it is not what tells them apart).

    ``{"at", "decision", "policy", "reasons", "new_findings", "db_updated", "verified_with"}``: ``at`` is when
    it was attached (else when its scan finished), ``verified_with`` the key file its statement verified with
    (None: not verified)."""
    def obj(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    invocation = obj(obj(predicate).get("invocation"))
    if invocation.get("uri") != WATCH_URI:
        return None
    params, predicate = obj(invocation.get("parameters")), obj(predicate)
    return {"at": created or obj(predicate.get("metadata")).get("scanFinishedOn"), "decision": params.get("decision"),
            "policy": params.get("policy"), "reasons": params.get("reasons"), "new_findings": params.get("new"),
            "db_updated": obj(obj(predicate.get("scanner")).get("db")).get("version"), "verified_with": verified_with}
