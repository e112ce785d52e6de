"""Registry curation: promote by digest, list, show evidence, prune with retention.

``promote`` copies one digest (``skopeo copy --all --preserve-digests``, no
rebuild, no re-tagging elsewhere) to a target repository only when its
attached evidence passes the target policy (the caller's ``judge``:
:func:`builder.pipeline.gatekeeping.judge` re-evaluates the gate; with trusted
keys, only statements that verify are judged); the evidence (referrers and
cosign's ``.att``) is copied too, the moving tags at the target follow, and both
sides get a promotion statement (in-toto's promotion-record predicate), signed
with ``signer`` when one is given and UNSIGNED otherwise.
``prune`` keeps the newest N digests per variant and never deletes a digest
that was promoted, carries a moving tag, or carries an immutable tag in a
protected repository. Blobs are freed by the registry's garbage-collect.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from builder.errors import PublishRefused, RegistryError, TfimgError
from builder.infra import clock, datafile, runner
from builder.infra.credentials import docker_config_path
from builder.infra.registry_client import INDEX_TYPES, LOOPBACK, Ref, Registry, parse_ref
from builder.infra.report_models import JsonObject
from builder.publish import cosign_att, evidence, referrers, signing, statements, store, verify, watched

# (decision, how) for a published digest's evidence and its attached Trivy report
Judge = Callable[[evidence.Evidence, JsonObject | None], tuple[str, str]]


def _now() -> str:
    return clock.now_rfc3339z()


def recorded(doc: evidence.Evidence, trivy: JsonObject | None) -> tuple[str, str]:
    """The :data:`Judge` without a policy: the gate decision and checks the evidence records."""
    return evidence.verdict(doc), "recorded gate decision and checks"


def show(text: str) -> JsonObject:
    """The evidence attached to ``REF@DIGEST`` (or ``REF:TAG``): the newest report statement's document,
    the promotion records, and every statement found (referrers and cosign's ``.att``), unverified.

    ``referrers`` lists every artifact whose subject is the digest, by the referrers API when the
    registry serves it, else from the ``sha256-<hex>`` index (``referrers_route`` says which).
    """
    ref = parse_ref(text)
    reg = Registry(ref.host)
    ref = reg.resolve(ref)
    digest = str(ref.digest)
    found, route = store.read(reg, ref.repo, digest)
    if not found:
        raise RegistryError(f"no tfimg evidence is attached to {ref.name}@{digest}", status=404,
                            hint="Publish with `tfimg publish --push`; `cosign tree REF` lists what is attached.")
    doc = evidence.from_found(found, digest)
    listed = []
    for f in found:
        stmt = f.statement() or {}
        listed.append({"kind": statements.BY_PREDICATE.get(str(stmt.get("predicateType")), "?"),
                       "predicateType": stmt.get("predicateType"), "envelope": f.blob, "where": f.where,
                       "signatures": len(signing.open_envelope(f.raw).signatures)})
    return {**(doc.to_json() if doc else {}),
            "promotions": [p.model_dump(mode="json", by_alias=True) for p in evidence.promotions_from(found)],
            "statements": listed, "signatures_checked": False, "referrers_route": route,
            "referrers": [r.descriptor() for r in referrers.list_referrers(reg, ref.repo, digest)[0]],
            "att": cosign_att.tag_for(digest)}


# --------------------------------------------------------------------------- promote

class Promotion(BaseModel):
    """What ``tfimg promote`` did (or, with ``dry_run``, would do)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="HOST/NAME@sha256:... that was promoted.")
    target: str = Field(description="HOST/PRODNAME it was copied to.")
    digest: str
    decision: str = Field(description="The gate decision under the target policy.")
    policy: str = Field(description="How the decision was reached (and that signatures were verified).")
    tags: list[str] = Field(description="The immutable tag, then the moving tags, at the target.")
    dry_run: bool
    promoted_at: str | None = None
    referrers: list[str] = Field(default_factory=list, description="Digests of the referrers copied along.")
    record_signed: bool = Field(False, description="Whether the promotion statements were signed (--sign-key).")


def _skopeo_copy(src: Ref, dst: Ref) -> None:
    argv = [runner.which("skopeo", purpose="copy images between registries by digest"), "copy", "--all",
            "--preserve-digests", "--retry-times", "3"]
    cfg = docker_config_path()
    if cfg.is_file():
        argv.append(f"--authfile={cfg}")
    if LOOPBACK.fullmatch(src.host):
        argv.append("--src-tls-verify=false")
    if LOOPBACK.fullmatch(dst.host):
        argv.append("--dest-tls-verify=false")
    runner.run([*argv, f"docker://{src}", f"docker://{dst}"], timeout=3600)


def _evidence(sreg: Registry, src: Ref, digest: str, keys: list[Path]) -> tuple[list[store.Found], str]:
    """The statements promotion judges: all of them, or with ``keys`` only those that verify (refusing
    when the policy's required statements do not)."""
    if not keys:
        return store.read(sreg, src.repo, digest)[0], ""
    verdict = verify.verify(f"{src.name}@{digest}", keys)
    if not verdict.ok:
        raise PublishRefused(f"not promoted: {verdict.error().message}")
    return [j.found for j in verdict.judged if j.ok], f"; signatures verified with {', '.join(p.name for p in keys)}"


def promote(source: str, target: str, *, judge: Judge = recorded, verify_keys: list[Path] | None = None,
            signer: Any | None = None, require_signer: bool = False, dry_run: bool = False) -> Promotion:
    """Copy ``HOST/NAME@sha256:...`` to ``HOST/PRODNAME`` if ``judge`` passes its evidence.

    With ``verify_keys`` the required statements must verify (:func:`builder.publish.verify.verify`) and
    only those are judged. The referrers and the ``.att`` image are copied along; the promotion statement
    is signed with ``signer`` (``require_signer``: refuse, exit 2, without one).
    """
    src, dst = parse_ref(source), parse_ref(target)
    if dst.tag or dst.digest:
        raise PublishRefused(f"--to takes HOST/NAME without a tag or digest, not '{target}'")
    sreg, dreg = Registry(src.host), Registry(dst.host)
    src = sreg.resolve(src)
    digest = str(src.digest)
    found, verified = _evidence(sreg, src, digest, list(verify_keys or []))
    doc, trivy, watch_note = watched.latest_from(found, digest)   # a newer watch decides
    if doc is None:
        raise PublishRefused(f"{src.name}@{digest} has no tfimg evidence; only published, gated images are promoted")
    decision, how = judge(doc, trivy)
    how += watch_note
    if decision != "pass":
        raise PublishRefused(f"{src.name}@{digest} does not pass the target policy: decision '{decision}' ({how})")
    how += verified
    immutable, moving = doc.tags.immutable, list(doc.tags.moving)
    if not immutable:
        raise PublishRefused("the evidence names no immutable tag; republish with `tfimg publish --push`")
    current = dreg.digest_of(dst.repo, immutable)
    if current not in (None, digest):
        raise PublishRefused(f"{dst.name}:{immutable} already points at {current}; immutable tags are never moved")
    result = Promotion(source=f"{src.name}@{digest}", target=dst.name, digest=digest, decision=decision,
                       policy=how, tags=[immutable, *moving], dry_run=dry_run)
    if require_signer and signer is None:
        raise TfimgError("the target policy requires signatures (publish.require_signatures), so the promotion "
                         "record must be signed: pass --sign-key", hint="Nothing was copied.")
    if dry_run:
        return result
    if current is None:
        _skopeo_copy(src.at(digest=digest), dst.at(tag=immutable))
    return _copied(result, (sreg, src), (dreg, dst), signer)


def _copied(result: Promotion, source: tuple[Registry, Ref], target: tuple[Registry, Ref],
            signer: Any | None) -> Promotion:
    """After the copy: the moving tags and the evidence at the target; a promotion statement on both sides."""
    (sreg, src), (dreg, dst) = source, target
    digest, immutable = result.digest, result.tags[0]
    found = dreg.manifest(dst.repo, digest)
    if found is None or dreg.digest_of(dst.repo, immutable) != digest:
        raise RegistryError(f"after the copy {dst.name}:{immutable} is not {digest}")
    for tag in result.tags[1:]:
        dreg.put_manifest(dst.repo, tag, found[0], found[1])
    copied = store.copy(sreg, src.repo, dreg, dst.repo, digest)
    when = _now()
    record = statements.promotion(source=src.name, target=dst.name, digest=digest, at=when,
                                  policy=result.policy, decision=result.decision)
    for reg, ref in ((sreg, src), (dreg, dst)):
        env = signing.envelope(statements.statement(ref.name, digest, "promotion", record), signer)
        title = f"promotion.{str(signing.key_id(signer))[:8]}.json" if signer is not None else "promotion.json"
        store.attach(reg, ref.repo, digest, [store.Item("promotion", env, title)], when)
    return result.model_copy(update={"promoted_at": when, "referrers": copied, "record_signed": signer is not None})


# --------------------------------------------------------------------------- list and prune

@dataclass
class Entry:
    repository: str
    variant: str
    digest: str
    tags: list[str]
    created: str | None
    size: int | None
    gate: str
    promoted: bool
    immutable: str | None
    moving: list[str] = field(default_factory=list)


def _size_and_created(reg: Registry, repo: str, raw: bytes, media: str) -> tuple[int | None, str | None]:
    manifest = datafile.loads_json(raw, f"a manifest of {repo}", what="it")
    if media in INDEX_TYPES:
        return sum(m.get("size", 0) for m in manifest.get("manifests", [])), None
    config = manifest.get("config") or {}
    size = config.get("size", 0) + sum(lyr.get("size", 0) for lyr in manifest.get("layers", []))
    try:
        created = datafile.loads_json(reg.blob(repo, config["digest"]), f"config {config['digest']}", what="it").get("created")
    except (KeyError, ValueError, RegistryError):
        created = None
    return size, created


def entries(reg: Registry, repo: str) -> list[Entry]:
    """One entry per digest in ``repo`` (evidence artifacts excluded), newest first."""
    by_digest: dict[str, list[str]] = {}
    manifests: dict[str, tuple[bytes, str]] = {}
    for tag in reg.tags(repo):
        if evidence.is_evidence_tag(tag) or evidence.is_input_tag(tag):   # tfimg's own lookup tags
            continue
        found = reg.manifest(repo, tag)
        if found:
            by_digest.setdefault(found[2], []).append(tag)
            manifests[found[2]] = (found[0], found[1])
    out = []
    for digest, tags in by_digest.items():
        statements_found = store.read(reg, repo, digest, {"report", "promotion"})[0]
        doc = evidence.from_found(statements_found, digest)
        size, created = _size_and_created(reg, repo, *manifests[digest])
        t = doc.tags if doc is not None else evidence.EvidenceTags()
        out.append(Entry(f"{reg.host}/{repo}", (doc.variant if doc else None) or repo.rsplit("/", 1)[-1],
                         digest, sorted(tags), created, size, evidence.verdict(doc),
                         bool(evidence.promotions_from(statements_found)), t.immutable, list(t.moving)))
    return sorted(out, key=lambda e: e.created or "9999", reverse=True)


def ls(namespace: str) -> list[Entry]:
    """Entries of every repository at or under ``HOST/NAMESPACE``."""
    ref = parse_ref(namespace)
    reg = Registry(ref.host)
    try:
        repos = [r for r in reg.catalog() if r == ref.repo or r.startswith(ref.repo + "/")]
    except RegistryError as exc:
        if exc.status not in (401, 403, 404):
            raise
        repos = [ref.repo]
    return [e for repo in sorted(repos) for e in entries(reg, repo)]


def retention(items: list[Entry], *, keep: int, protected: bool) -> list[tuple[Entry, str]]:
    """Decide per entry (pure): ('keep: why' | 'delete: why'). ``items`` newest first."""
    decided: list[tuple[Entry, str]] = []
    seen: dict[str, int] = {}
    for e in items:
        seen[e.variant] = seen.get(e.variant, 0) + 1
        if seen[e.variant] <= keep:
            decided.append((e, f"keep: among the newest {keep} of {e.variant}"))
        elif e.promoted:
            decided.append((e, "keep: promoted"))
        elif any(t in e.moving or (e.immutable and t != e.immutable and not evidence.is_input_tag(t))
                 for t in e.tags):
            decided.append((e, "keep: carries a moving tag"))
        elif protected and (e.immutable in e.tags or e.immutable is None):
            decided.append((e, "keep: immutable tag in a protected repository"))
        else:
            decided.append((e, "delete: older than the newest " + str(keep)))
    return decided


def prune(name: str, *, keep: int = 5, protect: list[str] | None = None, yes: bool = False
          ) -> list[tuple[Entry, str]]:
    """Apply retention to ``HOST/NAME``; deletes only with ``yes``. Returns the decisions."""
    if keep < 1:
        raise PublishRefused("--keep must be at least 1")
    ref = parse_ref(name)
    reg = Registry(ref.host)
    protected = any(fnmatch.fnmatch(ref.name, pat) or fnmatch.fnmatch(ref.repo, pat) for pat in protect or [])
    decided = retention(entries(reg, ref.repo), keep=keep, protected=protected)
    if yes:
        for e, why in decided:
            if why.startswith("delete"):
                store.delete(reg, ref.repo, e.digest)   # its statements: referrers, index, .att
                reg.delete_manifest(ref.repo, e.digest)
    return decided
