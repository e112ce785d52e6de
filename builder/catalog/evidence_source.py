"""The catalog's one window on the registry and its evidence (the only module that knows the format).

Contract, so the evidence format can change here and nowhere else:

- :func:`list_digests` ``(namespace, workers) -> list[Listed]``: every published digest at or under ``HOST/NAMESPACE``
  (tfimg's own lookup tags left out), with the tags that point at it, its creation time and pull size.
  Reads the tag lists, the image manifests and their config blobs; never an image layer.
- :func:`read` ``(listed, keys) -> Evidence``: what is attached to one digest, read but not judged:

  * ``report``: tfimg's evidence document (``{"variant", "tags", "digest", "report": {build, checks,
    facts, scan, gate, tags}, ...}``) of the newest report statement, with ``published_at`` added: when
    that statement was attached (its referrer's ``org.opencontainers.image.created``); ``None`` when none;
  * ``sbom`` (CycloneDX JSON) and ``trivy`` (Trivy's JSON report: the vuln predicate's ``scanner.result``):
    from the newest statements of those kinds;
  * ``promotions``: the promotion-record statements (``from``, ``to``, ``digest``, ``at``, ``policy``,
    ``signed``); ``unsigned_promotions`` when one of them is not signed by a trusted key (without keys:
    carries no signature at all);
  * ``verification``: :func:`builder.publish.verify.judge_all` with all the keys together (``tfimg verify``'s
    policy: every required statement has an envelope signed by a trusted key and consistent with the image;
    envelopes of other signers are no failure). When it passes, the content above comes from the trusted
    envelopes (``key``: the key files that signed them); otherwise it is the newest statements, unverified,
    ``verification.state`` says so and ``problems`` names each requirement not met;
  * ``config``: the image config's labels, exposed ports and layer DiffIDs (a small blob, not a layer);
  * ``watch``: the newest ``tfimg watch`` statement (issue 21: a vuln statement whose signed ``invocation.uri``
    is tfimg watch's), as :func:`watch_of` gives it; with keys only one signed by a key counts; ``None`` when
    there is none;
  * ``problems``: what could not be read, and why. :func:`read` raises only for errors of the registry
    connection itself (:class:`~builder.errors.RegistryError`).

  Safe to call from several threads at once (each call has its own registry session).
- :func:`recorded_decision` ``(evidence) -> str``: the decision recorded at publishing
  (:func:`builder.publish.evidence.verdict`); :func:`redecide` ``(evidence, policy) -> (decision, how)``: the
  attached Trivy report under another policy today (:func:`builder.pipeline.gatekeeping.policy_decision`,
  what ``tfimg promote --policy`` does).

It uses :func:`builder.publish.curation.ls` / ``entries``, :func:`builder.publish.store.read` (the one
evidence store: referrers and cosign's ``.att``), :mod:`builder.publish.verify` and
:mod:`builder.publish.evidence`. Issue 21 (dated watch statements) changes what this module reads, not its contract.
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
from builder.publish import curation, evidence, signing, statements, store, verify

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


def _found(reg: Registry, repo: str, digest: str, problems: list[str]) -> tuple[list[store.Found], str | None]:
    """Every envelope attached to ``digest`` (unverified) and the referrers route; read errors are problems."""
    try:
        return store.read(reg, repo, digest)
    except READ_ERRORS as exc:
        _tolerate(exc)
        problems.append(f"the statements could not be read: {exc}")
        return [], None


def _unverified(found: list[store.Found], digest: str) -> list[tuple[str, store.Found, dict[str, Any]]]:
    """(kind, envelope, predicate) of every statement about ``digest``, oldest first, nothing checked."""
    out = []
    for f in found:
        stmt = f.statement() or {}
        kind = statements.BY_PREDICATE.get(str(stmt.get("predicateType")))
        if kind and isinstance(stmt.get("predicate"), dict) and verify.content_problems("", stmt, digest, None) == []:
            out.append((_kind(kind, stmt["predicate"]), f, stmt["predicate"]))
    return out


def _verify(reg: Registry, repo: str, digest: str, found: list[store.Found], keys: list[Path]
            ) -> tuple[Verification, list[tuple[str, store.Found, dict[str, Any]]], dict[str, str | None]]:
    """tfimg verify's policy with all ``keys``; the trusted, consistent statements; blobs signed by a key
    (-> that key's file name)."""
    trusted = [signing.load_public_key(k) for k in keys]
    judged, missing = verify.judge_all(found, trusted, digest, verify.image_id_of(reg, repo, digest))
    good = [(_kind(j.kind, j.predicate), j.found, j.predicate) for j in judged
            if j.ok or (j.status == "trusted" and _kind(j.kind, j.predicate) == "watch")]
    signers = sorted({str(j.signer) for j in judged if j.ok})
    by_key = {j.found.blob: j.signer for j in judged if j.status == "trusted"}
    if missing:
        return Verification("unverifiable", None, tuple(missing)), good, by_key
    return Verification("verified", ", ".join(signers)), good, by_key


def _kind(kind: str, predicate: dict[str, Any]) -> str:
    """'watch' for a later watch's vuln statement (kept apart from the publish-time one), else ``kind``."""
    return "watch" if kind == "vuln" and evidence.is_watch(predicate) else kind


def _newest(items: list[tuple[str, store.Found, dict[str, Any]]]) -> dict[str, tuple[store.Found, dict[str, Any]]]:
    """The newest (last listed) statement of each kind."""
    return {kind: (f, p) for kind, f, p in items}


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
    found, route = _found(reg, ref.repo, listed.digest, problems)
    every = _unverified(found, listed.digest)
    by_key: dict[str, str | None] = {f.blob: None for _, f, _ in every if signing_count(f)}   # signed, unchecked
    verification = Verification("not-verified", route=route)
    chosen = _newest(every)
    if keys:
        try:
            verification, good, by_key = _verify(reg, ref.repo, listed.digest, found, keys)
            verification = Verification(verification.state, verification.key, verification.problems, route)
            chosen.pop("watch", None)   # with keys, only a watch signed by one of them counts
            chosen = {**chosen, **_newest(good)} if verification.state == "verified" else \
                {**chosen, **{k: v for k, v in _newest(good).items() if k == "watch"}}
        except READ_ERRORS as exc:
            _tolerate(exc)
            verification, by_key = Verification("unverifiable", None, (f"could not be verified: {exc}",), route), {}
    pred = {k: p for k, (_, p) in chosen.items()}
    report = {**pred["report"], "published_at": chosen["report"][0].created} if "report" in pred else None
    vuln = pred.get("vuln") or {}
    trivy = _doc((vuln.get("scanner") or {}).get("result")) if isinstance(vuln.get("scanner"), dict) else None
    records = [(f, p) for kind, f, p in every if kind == "promotion"]
    promotions = [r.model_dump(mode="json", by_alias=True) for r in evidence.promotions_from([f for f, _ in records])]
    try:
        config = _config(reg, ref.repo, listed.digest)
    except READ_ERRORS as exc:
        _tolerate(exc)
        problems.append(f"the image config: {exc}")
        config = ImageConfig()
    return Evidence(listed=listed, report=report, report_signed="report" in chosen and chosen["report"][0].blob in by_key,
                    sbom=pred.get("sbom"), trivy=trivy, promotions=tuple(promotions),
                    unsigned_promotions=any(f.blob not in by_key for f, _ in records),
                    verification=verification, config=config, problems=tuple(problems),
                    watch=watch_of(chosen["watch"][1], chosen["watch"][0].created,
                                   by_key.get(chosen["watch"][0].blob)) if "watch" in chosen else None)


def signing_count(found: store.Found) -> int:
    """How many signatures an envelope carries (none checked); 0 when it is no envelope."""
    try:
        return len(signing.open_envelope(found.raw).signatures)
    except ValueError:
        return 0


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

    signing.load_public_key(path)
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



def watch_of(predicate: Any, created: str | None, verified_with: str | None) -> dict[str, Any] | None:
    """The ``watch`` of the contract, from one vulnerability predicate: None unless ``tfimg watch`` made it
    (its signed ``invocation.uri``; an annotation is not signed, so it is not what tells them apart).

    ``{"at", "decision", "policy", "reasons", "new_findings", "db_updated", "verified_with"}``: ``at`` is when
    it was attached (else when its scan finished), ``verified_with`` the key file its statement verified with
    (None: not verified)."""
    def obj(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    if not isinstance(predicate, dict) or not evidence.is_watch(predicate):
        return None
    invocation = obj(predicate.get("invocation"))
    params, predicate = obj(invocation.get("parameters")), obj(predicate)
    return {"at": created or obj(predicate.get("metadata")).get("scanFinishedOn"), "decision": params.get("decision"),
            "policy": params.get("policy"), "reasons": params.get("reasons"), "new_findings": params.get("new"),
            "db_updated": obj(obj(predicate.get("scanner")).get("db")).get("version"), "verified_with": verified_with}
