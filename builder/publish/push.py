"""Publishing: push a gated image, its tags and its evidence.

``publish`` pushes only an image whose report shows checks passed and the gate
passed, with the tags of ``tags.txt`` (:func:`builder.publish.tags.read`: never
computed again); the immutable tag goes first, then the moving tags (as manifest puts
of the very same digest), the ``ih-`` input-hash tag, then the signed statements
(:mod:`builder.publish.attest`; the one evidence store: :mod:`builder.publish.store`).
An immutable tag that already names another image in the registry is never moved.
When the ``ih-`` tag of the same input hash already names another image (a second
checkout rebuilt the same inputs into another digest), that digest is reported and
nothing is pushed: state ``same-inputs``, exit 0. Without ``push=True`` it only
plans (and writes ``publish-plan.json``). It returns what it did; the orchestrator
records it in report.json.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from builder.errors import PublishRefused, RegistryError, TfimgError
from builder.infra import clock, datafile
from builder.infra import report as report_mod
from builder.infra.engine import Engine
from builder.infra.registry_client import INDEX_TYPES, Ref, Registry, parse_ref, with_retry
from builder.infra.report_models import (
    AttestationRef,
    EvidenceRef,
    FactsSection,
    JsonObject,
    PublishedSection,
    PublishSection,
    Report,
    TagsSection,
)
from builder.publish import attest, cosign_att, evidence, tags, verify, watched
from builder.publish.curation import Judge
from builder.spec.loader import LoadedVariant

PUSH_TRANSIENT = re.compile(r"\b(429|5\d\d)\b|connection (refused|reset)|ConnectionError|timeout|EOF|"
                            r"Service Unavailable|Too Many Requests|Bad Gateway", re.I)


class Plan(BaseModel):
    """What a publish would do (``publish-plan.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str
    image_id: str
    repository: str                  # HOST/NAMESPACE/VARIANT
    tags: TagsSection                # as tags.txt has them
    state: Literal["new", "published", "conflict", "unchecked", "same-inputs"]
    existing: str | None = None      # digest the immutable tag (or, same-inputs, the ih- tag) names
    existing_image: str | None = None   # same-inputs: that digest's image id
    existing_tags: list[str] = Field(default_factory=list)   # same-inputs: the tags its evidence records
    notes: list[str] = Field(default_factory=list)
    facts: FactsSection | None = None

    def lines(self) -> list[str]:
        if self.state == "same-inputs":
            return [f"variant {self.variant}: image {self.image_id[:19]} -> {self.repository}",
                    f"  already published from the same inputs: {self.repository}@{self.existing} "
                    f"(image {str(self.existing_image)[:19]}); nothing to push"]
        verb = {"new": "push", "published": "already there (same image): skip the push",
                "conflict": "REFUSED", "unchecked": "push (registry not checked)"}[self.state]
        out = [f"variant {self.variant}: image {self.image_id[:19]} -> {self.repository}",
               f"  1. {self.repository}:{self.tags.immutable}  (immutable) {verb}"]
        out += [f"  {i}. {self.repository}:{t}  (moving) point at the same digest"
                for i, t in enumerate(self.tags.moving, 2)]
        out.append(f"  {len(self.tags.moving) + 2}. signed statements (report, sbom, vuln, provenance) "
                   "attached to the digest")
        return out + [f"  note: {n}" for n in self.notes]


def require_build(report: Report) -> str:
    if report.build is None:
        raise PublishRefused("the report has no built image (build.image_id)",
                             hint="Run `tfimg build SPEC` first.")
    return report.build.image_id


def eligibility(report: Report) -> None:
    """Refuse an image whose checks or gate did not pass (pure)."""
    require_build(report)
    checks = report.checks
    if checks is None:
        raise PublishRefused("the image was not checked (no checks section in report.json)",
                             hint="Run `tfimg test SPEC` first.")
    if checks.passed is not True:
        raise PublishRefused("the image failed its checks; a failed image is never published",
                             hint="See checks in report.json (and checks.xml).")
    gate = report.gate
    if gate is None or gate.decision == "unscanned":
        raise PublishRefused("the image was not scanned (gate decision 'unscanned'); only a scanned image "
                             "that passed the gate is published", hint="Run `tfimg scan SPEC` first.")
    if gate.decision != "pass":
        detail = "".join(f"\n  - {r}" for r in gate.reasons[:10])
        raise PublishRefused(f"the gate decision is '{gate.decision}', not 'pass'{detail}",
                             hint="Fix or waive the findings, rescan, and publish again.")


def remote_state(reg: Registry, repo: str, tag: str, image_id: str
                 ) -> tuple[Literal["new", "published", "conflict"], str | None]:
    """('new' | 'published' | 'conflict', digest) for the immutable tag in the registry."""
    found = reg.manifest(repo, tag)
    if found is None:
        return "new", None
    raw, media, digest = found
    if media in INDEX_TYPES:
        return "conflict", digest
    config = (datafile.loads_json(raw, f"manifest {repo}:{tag}", what="it").get("config") or {}).get("digest")
    return ("published" if config == image_id else "conflict"), digest


def same_inputs(reg: Registry, repo: str, input_hash: str, image_id: str) -> tuple[str, str, list[str]] | None:
    """(digest, its image id, its tags) when the ``ih-`` tag of ``input_hash`` names another image whose
    evidence records the same input hash; None otherwise (no such tag, the same image, other inputs)."""
    digest = reg.digest_of(repo, input_tag(input_hash))
    if digest is None:
        return None
    other = verify.image_id_of(reg, repo, digest)
    if other == image_id:
        return None
    doc = evidence.read(reg, repo, digest)
    if doc is None or doc.section("build").get("input_hash") != input_hash:
        return None
    return digest, str(other), [t for t in (doc.tags.immutable, *doc.tags.moving) if t]


def plan(loaded: LoadedVariant, rep: Report, out_dir: Path, registry: str, *, engine: Engine,
         strict: bool = False) -> Plan:
    """What a publish would do. ``strict``: a registry error is raised, not noted."""
    eligibility(rep)
    image_id = require_build(rep)
    target = parse_ref(registry)
    if target.tag or target.digest:
        raise PublishRefused(f"--registry takes HOST/NAMESPACE without a tag or digest, not '{registry}'")
    planned = tags.read(out_dir)   # as the tags stage wrote them: never recomputed here
    repo = f"{target.repo}/{loaded.name}"
    notes: list[str] = []
    state: Literal["new", "published", "conflict", "unchecked", "same-inputs"] = "unchecked"
    existing, found = None, None
    try:
        reg = Registry(target.host)
        state, existing = remote_state(reg, repo, planned.immutable, image_id)
        if state != "published" and rep.build is not None:
            found = same_inputs(reg, repo, rep.build.input_hash, image_id)
    except RegistryError as exc:
        if strict:
            raise
        notes.append(f"registry not checked: {exc.message}")
    if found is not None:
        state, existing = "same-inputs", found[0]
    elif engine.image(image_id) is None:
        notes.append(f"image {image_id} is not in the local engine; the push would fail")
    return Plan(variant=loaded.name, image_id=image_id, repository=f"{target.host}/{repo}", tags=planned,
                state=state, existing=existing, existing_image=found[1] if found else None,
                existing_tags=found[2] if found else [], notes=notes, facts=rep.facts)


def push_transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, TfimgError) and bool(PUSH_TRANSIENT.search(str(exc)))


def _push(ref: Ref, image_id: str, engine: Engine, *, attempts: int, base_delay: float) -> str:
    engine.tag(image_id, ref.name, ref.tag or "")

    def once() -> str:
        try:
            digest = engine.push(ref.name, ref.tag or "")
        except TfimgError as exc:
            if re.search(r"no basic auth credentials|unauthorized|authentication required", str(exc), re.I):
                raise RegistryError(f"push to {ref.host} was refused: not logged in", status=401,
                                    hint=f"Log in with `docker login {ref.host}`.") from None
            raise
        if not digest:
            raise RegistryError(f"push of {ref} reported no digest")
        return str(digest)

    return with_retry(once, attempts=attempts, base_delay=base_delay, transient=push_transient,
                      what=f"push {ref}")


@dataclass(frozen=True)
class Evidence:
    """What is attached beside a pushed digest, as the caller read it (the stage reads no scan files)."""

    trivy: JsonObject | None                      # the gate's Trivy report (redacted), for re-gating
    sbom: Callable[[], JsonObject]                # the image's CycloneDX SBOM, made when it is attached
    signer: Any | None = None                     # signs the statements (signing.load_signer); unsigned without
    vex: Callable[[Ref], JsonObject | None] | None = None   # the waivers as OpenVEX for the pushed digest, or None


@dataclass(frozen=True)
class Pushed:
    plan: Plan
    record: PublishSection    # report.json's ``publish`` section


def publish(loaded: LoadedVariant, rep: Report, out_dir: Path, registry: str, *, engine: Engine,
            attached: Evidence, push: bool = False, attempts: int = 5, base_delay: float = 1.0) -> Plan | Pushed:
    """Plan, and with ``push`` push + tag + attach evidence (``attached``: what goes beside the
    digest, and the signer of the statements). Returns the plan (without ``push``), or what was pushed.
    """
    p = plan(loaded, rep, out_dir, registry, engine=engine, strict=push)
    report_mod.write_json(out_dir / "publish-plan.json", p.model_dump(mode="json", by_alias=True))
    if p.state == "conflict":
        raise PublishRefused(
            f"the immutable tag {p.repository}:{p.tags.immutable} already points at {p.existing}, "
            f"which is not image {p.image_id}; immutable tags are never moved",
            hint="Rebuild (a new date or revision gives a new tag) or publish to another namespace.")
    if not push:
        return p
    if p.state == "same-inputs":
        return Pushed(p, _same_inputs_record(p, registry))
    if p.state == "new" and engine.image(p.image_id) is None:
        raise PublishRefused(f"image {p.image_id} is not in the local Docker engine",
                             hint="Rebuild it with `tfimg build SPEC` (same inputs give the same checks and scan).")
    ref = parse_ref(p.repository)
    reg = Registry(ref.host, attempts=attempts, base_delay=base_delay)
    digest = str(p.existing) if p.state == "published" else \
        _push(ref.at(tag=p.tags.immutable), p.image_id, engine, attempts=attempts, base_delay=base_delay)
    found = reg.manifest(ref.repo, digest)
    if found is None or reg.digest_of(ref.repo, p.tags.immutable) != digest:
        raise RegistryError(f"the registry does not show {ref.name}:{p.tags.immutable} at {digest} after the push")
    for tag in p.tags.moving:
        reg.put_manifest(ref.repo, tag, found[0], found[1])
    rep = rep.with_section(p.tags)
    if rep.build is not None:   # what `tfimg build --registry` looks up (find_published)
        reg.put_manifest(ref.repo, input_tag(rep.build.input_hash), found[0], found[1])
    return Pushed(p, _attach(loaded, rep, p, (reg, ref.at(digest=digest)), registry, attached))


def _attach(loaded: LoadedVariant, rep: Report, p: Plan, where: tuple[Registry, Ref], registry: str,
            attached: Evidence) -> PublishSection:
    """The four statements, attached to the pushed digest (once per signer); the publish record."""
    reg, ref = where
    digest, signer = str(ref.digest), attached.signer
    doc = evidence.document(rep, variant=p.variant, repository=ref.name, digest=digest, tags=p.tags)
    statements, att = attest.attach_all(reg, ref, rep, chain=loaded.chain, doc=doc, sbom=attached.sbom(),
                                        trivy=attached.trivy, signer=signer)
    waivers = attached.vex(ref) if attached.vex is not None else None
    if waivers is not None:   # one more statement: the waivers that apply to this digest, as OpenVEX
        statements.append(attest.attach_one(reg, ref, "vex", waivers, signer, clock.now_rfc3339z()))
        att = reg.digest_of(ref.repo, cosign_att.tag_for(digest)) or att   # the .att image holds it too
    return PublishSection(registry=registry, repository=ref.name, digest=digest, image_id=p.image_id,
                          immutable=p.tags.immutable, moving=p.tags.moving,
                          refs=[f"{ref.name}:{t}" for t in (p.tags.immutable, *p.tags.moving)],
                          evidence=EvidenceRef(tag=cosign_att.tag_for(digest), digest=att),
                          pushed_at=clock.now_rfc3339z(), skipped_push=p.state == "published",
                          attestations=[AttestationRef(kind=a.kind, digest=a.digest, existing=a.existing)
                                        for a in statements],
                          signed=signer is not None)


def _same_inputs_record(p: Plan, registry: str) -> PublishSection:
    """The publish record when the same inputs were already published as another image: that digest."""
    digest = str(p.existing)
    shown = p.existing_tags or [p.tags.immutable]
    return PublishSection(registry=registry, repository=p.repository, digest=digest, image_id=p.image_id,
                          immutable=shown[0], moving=shown[1:], refs=[f"{p.repository}:{t}" for t in shown],
                          pushed_at=clock.now_rfc3339z(), skipped_push=True, same_inputs=p.existing_image)


# --------------------------------------------------------------------------- already published

def namespace(text: str, option: str) -> Ref:
    """``HOST[:PORT]/NAMESPACE`` as an option names it (``--registry``, ``--scan-registry``): no tag or
    digest. Raises TfimgError (bad input, exit 2) naming the option."""
    try:
        target = parse_ref(text)
    except RegistryError as exc:
        raise TfimgError(f"{option}: {exc.message}", hint="Write HOST[:PORT]/NAMESPACE, e.g. "
                                                          "registry.corp/ml-dev or 127.0.0.1:5000/team.") from None
    if target.tag or target.digest:
        raise TfimgError(f"{option} takes HOST[:PORT]/NAMESPACE without a tag or digest, not '{text}'",
                         hint="The repository is NAMESPACE/<variant>; tfimg chooses the tags.")
    return target


input_tag = evidence.input_tag


def find_published(registry: str, variant: str, input_hash: str, judge: Judge) -> PublishedSection | None:
    """The published digest built from the same inputs, and how its evidence is judged now.

    Looks up ``HOST/NS/VARIANT:ih-<20 hex>`` (one manifest request), then the evidence attached
    to that digest and its Trivy report (small blobs, never the image), and asks ``judge``
    (:func:`builder.pipeline.gatekeeping.judge`: the gate under the current policy); the caller
    reuses the digest only when ``decision`` is 'pass'. None when there is no such tag, or its
    evidence is missing or was for other inputs. Registry errors are raised (RegistryError).
    """
    target = namespace(registry, "--registry")
    repo = f"{target.repo}/{variant}"
    reg = Registry(target.host, attempts=3)
    tag = input_tag(input_hash)
    digest = reg.digest_of(repo, tag)
    if digest is None:
        return None
    doc, trivy, watch_note = watched.latest(reg, repo, digest)   # a newer watch decides
    if doc is None or doc.section("build").get("input_hash") != input_hash:
        return None
    decision, how = judge(doc, trivy)
    how += watch_note
    return PublishedSection(registry=registry, repository=f"{target.host}/{repo}", digest=digest,
                            input_hash=input_hash, tag=tag, decision=decision, how=how,
                            checked_at=clock.now_rfc3339z())


# --------------------------------------------------------------------------- scan through a registry

def push_for_scan(image_id: str, registry: str, variant: str, input_hash: str, *, engine: Engine,
                  attempts: int = 3, base_delay: float = 1.0) -> str:
    """Push a built image that is not gated yet to ``HOST/NS/VARIANT:scan-<12 hex of its input hash>``
    and return ``HOST/NS/VARIANT@sha256:...`` for Trivy to read from the registry (``tfimg build
    --scan-registry``; NS is a quarantine namespace: nothing there has passed the gate).

    The registry holds each layer once, so after the first image on a base the push sends only the
    variant's own layers, and Trivy then fetches only the layers its cache (keyed by layer digest)
    has not analysed: the scan's cost follows the variant's own layers, and no ``docker save``
    archive of the whole image is written. The local tag made for the push is removed again.
    Raises RegistryError, PublishRefused (a malformed ``registry``), TfimgError (the push failed).
    """
    target = namespace(registry, "--scan-registry")
    ref = Ref(target.host, f"{target.repo}/{variant}", tag=f"scan-{input_hash.split(':')[-1][:12]}")
    try:
        digest = _push(ref, image_id, engine, attempts=attempts, base_delay=base_delay)
    finally:
        engine.remove_image(str(ref))   # untag only: the image keeps its other names
    return f"{ref.name}@{digest}"

