"""Tags and publishing: compute a variant's tags, push a gated image, attach its evidence.

Tags go compute -> file -> apply: :func:`compute_tags` (``tfimg tags``, and
the tag stage of ``tfimg build``) writes ``build/<variant>/tags.txt``;
applying them locally and publishing read that file (:func:`read_tags`) and
never compute them again, so what is pushed is what the file says.
``publish`` pushes only an image whose report shows checks passed and the gate
passed; the immutable tag goes first, then the moving tags (as manifest puts
of the very same digest), then the evidence (:mod:`builder.publish.evidence`). An
immutable tag that already names another image in the registry is never
moved. Without ``push=True`` it only plans (and writes ``publish-plan.json``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from builder.check import imagefacts as facts_mod
from builder.errors import PublishRefused, RegistryError, TfimgError
from builder.infra import clock, datafile, outdir
from builder.infra import report as report_mod
from builder.infra.engine import Engine
from builder.infra.report_models import (
    AttestationRef,
    EvidenceRef,
    FactsSection,
    PublishedSection,
    PublishSection,
    Report,
    TagsSection,
)
from builder.publish import attest, evidence, tagging
from builder.publish.registry_client import INDEX_TYPES, Ref, Registry, parse_ref, with_retry
from builder.spec.loader import LoadedVariant

PUSH_TRANSIENT = re.compile(r"\b(429|5\d\d)\b|connection (refused|reset)|timeout|EOF|Service Unavailable|"
                            r"Too Many Requests|Bad Gateway", re.I)


TAGS_FILE = "tags.txt"


class Plan(BaseModel):
    """What a publish would do (``publish-plan.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str
    image_id: str
    repository: str                  # HOST/NAMESPACE/VARIANT
    tags: TagsSection                # as tags.txt has them
    state: Literal["new", "published", "conflict", "unchecked"]
    existing: str | None = None      # digest the immutable tag names in the registry
    notes: list[str] = Field(default_factory=list)
    facts: FactsSection | None = None

    def lines(self) -> list[str]:
        verb = {"new": "push", "published": "already there (same image): skip the push",
                "conflict": "REFUSED", "unchecked": "push (registry not checked)"}[self.state]
        out = [f"variant {self.variant}: image {self.image_id[:19]} -> {self.repository}",
               f"  1. {self.repository}:{self.tags.immutable}  (immutable) {verb}"]
        out += [f"  {i}. {self.repository}:{t}  (moving) point at the same digest"
                for i, t in enumerate(self.tags.moving, 2)]
        out.append(f"  {len(self.tags.moving) + 2}. evidence (report) attached to the digest")
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


def compute_tags(loaded: LoadedVariant, out_dir: Path, *, engine: Engine, image: str | None = None
                 ) -> tuple[tagging.TagSet, FactsSection]:
    """Facts of the image and the variant's tags; writes ``tags.txt`` (and nothing else)."""
    rep = report_mod.load(out_dir)
    image = image or require_build(rep)
    facts = facts_mod.read(image, loaded.path, rep, engine)
    values = tagging.fields(loaded.name, facts.model_dump(exclude_unset=True), loaded.spec.base.profile)
    ts = tagging.compute(loaded.spec.tags, values)
    outdir.claim(out_dir)
    (out_dir / TAGS_FILE).write_text(tagging.tags_text(ts))
    return ts, facts


def read_tags(out_dir: Path) -> TagsSection:
    """The tags in ``tags.txt``, immutable first: what is applied and published, never recomputed.

    Raises PublishRefused when there is no such file or it holds no tag; TaggingError for a
    line that is not a valid tag (the file was edited by hand).
    """
    path = out_dir / TAGS_FILE
    if not path.is_file():
        raise PublishRefused(f"no {path}: the tags of this build have not been computed",
                             hint="Run `tfimg tags SPEC` (or `tfimg build SPEC`) first.")
    text = datafile.read_text(path, limit=datafile.MAX_INPUT_BYTES, what="the tags file")
    tags = [tagging.validate(line.strip()) for line in text.splitlines() if line.strip()]
    if not tags:
        raise PublishRefused(f"{path} holds no tag", hint="Run `tfimg tags SPEC` to write it again.")
    return TagsSection(immutable=tags[0], moving=[t for t in dict.fromkeys(tags[1:]) if t != tags[0]])


def tags_stage(loaded: LoadedVariant, out_dir: Path, *, engine: Engine) -> TagsSection:
    """The orchestrator's tag stage: tags.txt plus report.json's ``facts`` and ``tags`` sections."""
    _, facts = compute_tags(loaded, out_dir, engine=engine)
    current = report_mod.load(out_dir).facts
    if current is None or current.model_dump(exclude_unset=True) != facts.model_dump(exclude_unset=True):
        report_mod.write_section(out_dir, facts)
    tags = read_tags(out_dir)
    report_mod.write_section(out_dir, tags)
    return tags


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


def plan(loaded: LoadedVariant, out_dir: Path, registry: str, *, engine: Engine, strict: bool = False) -> Plan:
    """What a publish would do. ``strict``: a registry error is raised, not noted."""
    rep = report_mod.load(out_dir)
    eligibility(rep)
    image_id = require_build(rep)
    target = parse_ref(registry)
    if target.tag or target.digest:
        raise PublishRefused(f"--registry takes HOST/NAMESPACE without a tag or digest, not '{registry}'")
    tags = read_tags(out_dir)   # as the tags stage wrote them: never recomputed here
    repo = f"{target.repo}/{loaded.name}"
    notes: list[str] = []
    state: Literal["new", "published", "conflict", "unchecked"] = "unchecked"
    existing = None
    try:
        state, existing = remote_state(Registry(target.host), repo, tags.immutable, image_id)
    except RegistryError as exc:
        if strict:
            raise
        notes.append(f"registry not checked: {exc.message}")
    if engine.image_attrs(image_id) is None:
        notes.append(f"image {image_id} is not in the local engine; the push would fail")
    return Plan(variant=loaded.name, image_id=image_id, repository=f"{target.host}/{repo}", tags=tags,
                state=state, existing=existing, notes=notes, facts=rep.facts)


def push_transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, TfimgError) and bool(PUSH_TRANSIENT.search(str(exc)))


def _push(ref: Ref, image_id: str, engine: Engine, *, attempts: int, base_delay: float) -> str:
    engine.tag(image_id, ref.name, ref.tag or "")

    def once() -> str:
        try:
            lines = engine.push(ref.name, ref.tag or "")
        except TfimgError as exc:
            if re.search(r"no basic auth credentials|unauthorized|authentication required", str(exc), re.I):
                raise RegistryError(f"push to {ref.host} was refused: not logged in", status=401,
                                    hint=f"Log in with `docker login {ref.host}`.") from None
            raise
        digest = next((ln["aux"]["Digest"] for ln in lines if isinstance(ln.get("aux"), dict)
                       and ln["aux"].get("Digest")), None)
        if not digest:
            raise RegistryError(f"push of {ref} reported no digest")
        return str(digest)

    return with_retry(once, attempts=attempts, base_delay=base_delay, transient=push_transient,
                      what=f"push {ref}")


def _trivy(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "trivy.json"
    if not path.is_file():
        return None
    from builder.scan.trivy_report import redact
    return redact(datafile.load_json(path, what="the Trivy report"))


def publish(loaded: LoadedVariant, out_dir: Path, registry: str, *, engine: Engine, push: bool = False,
            attempts: int = 5, base_delay: float = 1.0, sign_key: str | None = None) -> Plan | PublishSection:
    """Plan, and with ``push`` push + tag + attach evidence.

    ``sign_key``: a PEM private key file, or ``env:NAME`` (:func:`builder.publish.attest.load_signer`);
    the attached statements are signed with it (unsigned DSSE envelopes without it).
    Returns the plan (without ``push``) or the publish record (report.json's ``publish``).
    """
    signer = attest.load_signer(sign_key) if sign_key and push else None   # a bad key fails before the push
    p = plan(loaded, out_dir, registry, engine=engine, strict=push)
    report_mod.write_json(out_dir / "publish-plan.json", p.model_dump(mode="json", by_alias=True))
    if p.state == "conflict":
        raise PublishRefused(
            f"the immutable tag {p.repository}:{p.tags.immutable} already points at {p.existing}, "
            f"which is not image {p.image_id}; immutable tags are never moved",
            hint="Rebuild (a new date or revision gives a new tag) or publish to another namespace.")
    if not push:
        return p
    if p.state == "new" and engine.image_attrs(p.image_id) is None:
        raise PublishRefused(f"image {p.image_id} is not in the local Docker engine",
                             hint="Rebuild it with `tfimg build SPEC` (same inputs give the same checks and scan).")
    ref = parse_ref(p.repository)
    reg = Registry(ref.host, attempts=attempts, base_delay=base_delay)
    if p.state == "published":
        digest = str(p.existing)
    else:
        digest = _push(ref.at(tag=p.tags.immutable), p.image_id, engine, attempts=attempts, base_delay=base_delay)
    found = reg.manifest(ref.repo, digest)
    if found is None or reg.digest_of(ref.repo, p.tags.immutable) != digest:
        raise RegistryError(f"the registry does not show {ref.name}:{p.tags.immutable} at {digest} after the push")
    for tag in p.tags.moving:
        reg.put_manifest(ref.repo, tag, found[0], found[1])
    rep = report_mod.load(out_dir).with_section(p.tags)
    if rep.build is not None:   # what `tfimg build --registry` looks up (find_published)
        reg.put_manifest(ref.repo, input_tag(rep.build.input_hash), found[0], found[1])
    now = clock.now_iso()
    doc = evidence.document(rep, variant=p.variant, repository=ref.name, digest=digest, tags=p.tags,
                            published_at=now)
    previous = evidence.read(reg, ref.repo, digest)
    if previous:
        doc["promotions"] = previous.get("promotions") or []
    evidence_digest = evidence.attach(reg, ref.repo, digest, doc, trivy=_trivy(out_dir))
    attached = attest.attach_all(reg, ref.repo, ref.name, digest, rep, out_dir, chain=loaded.chain,
                                 image=p.image_id, doc=doc, trivy=_trivy(out_dir), signer=signer, started=now)
    record = PublishSection(registry=registry, repository=ref.name, digest=digest, image_id=p.image_id,
                            immutable=p.tags.immutable, moving=p.tags.moving,
                            refs=[f"{ref.name}:{t}" for t in (p.tags.immutable, *p.tags.moving)],
                            evidence=EvidenceRef(tag=evidence.tag_for(digest), digest=evidence_digest),
                            pushed_at=now, skipped_push=p.state == "published",
                            attestations=[AttestationRef(kind=a.kind, digest=a.digest) for a in attached],
                            signed=signer is not None)
    report_mod.write_section(out_dir, p.tags)
    report_mod.write_section(out_dir, record)
    return record


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


def find_published(registry: str, variant: str, input_hash: str, policy: Path | None
                   ) -> PublishedSection | None:
    """The published digest built from the same inputs, when its evidence passes ``policy`` now.

    Looks up ``HOST/NS/VARIANT:ih-<20 hex>`` (one manifest request), then the evidence attached
    to that digest and its Trivy report (small blobs, never the image), and re-evaluates the gate
    under ``policy`` (:func:`builder.publish.curation.policy_decision`); the caller reuses the
    digest only when ``decision`` is 'pass'. None when there is no such tag, or its evidence is
    missing or was for other inputs. Registry errors are raised (RegistryError).
    """
    from builder.publish import curation

    target = namespace(registry, "--registry")
    repo = f"{target.repo}/{variant}"
    reg = Registry(target.host, attempts=3)
    tag = input_tag(input_hash)
    digest = reg.digest_of(repo, tag)
    if digest is None:
        return None
    doc = evidence.read(reg, repo, digest)
    if doc is None or ((doc.get("report") or {}).get("build") or {}).get("input_hash") != input_hash:
        return None
    trivy = evidence.read(reg, repo, digest, evidence.TRIVY_TYPE)
    decision, how = curation.policy_decision(doc, policy, trivy)
    return PublishedSection(registry=registry, repository=f"{target.host}/{repo}", digest=digest,
                            input_hash=input_hash, tag=tag, decision=decision, how=how,
                            checked_at=clock.now_iso())


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

