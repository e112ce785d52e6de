"""The one evidence store of a published digest: DSSE envelopes, each kept twice with the same bytes.

- as an OCI 1.1 referrer (:mod:`builder.publish.referrers`): one artifact per statement, ``artifactType``
  per kind (:data:`builder.publish.statements.KINDS`), the envelope its one layer (``<kind>.json``, or
  ``<kind>.<keyid[:8]>.json`` when signed, as in-toto names a functionary's envelope); listed by the
  referrers API, or the ``sha256-<hex>`` index where the registry has none. What oras and registries read.
- as a layer of cosign's ``sha256-<hex>.att`` image (:mod:`builder.publish.cosign_att`): what cosign,
  Kyverno and most verifiers read.

:func:`read` gives every envelope found for a digest (referrers first, then ``.att`` layers no referrer
holds, such as ones ``cosign attest`` added), unverified: :mod:`builder.publish.verify` judges them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from builder.errors import RegistryError
from builder.infra import datafile
from builder.infra.registry_client import Registry
from builder.publish import cosign_att, referrers
from builder.publish.signing import DSSE_TYPE, open_envelope
from builder.publish.statements import BY_ARTIFACT, BY_PREDICATE, KINDS, STATEMENT_TYPES

PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
KIND_ANNOTATION = "dev.tfimg.evidence.kind"
SOURCE_ANNOTATION = "dev.tfimg.vuln.source"   # "watch" on tfimg watch's vuln statements (a hint; the signed
                                              # invocation.uri says it: builder.publish.evidence.is_watch)


@dataclass(frozen=True)
class Item:
    """One envelope to attach: its kind, bytes and layer title."""

    kind: str
    envelope: bytes
    title: str
    annotations: tuple[tuple[str, str], ...] = ()   # more referrer annotations


@dataclass(frozen=True)
class Attached:
    referrers: list[referrers.Referrer]   # in the order of the items
    att: str                              # the .att manifest's digest after the write


def attach(reg: Registry, repo: str, digest: str, items: list[Item], created: str) -> Attached:
    """Attach each envelope as a referrer of ``digest`` and as a layer of its ``.att`` image."""
    pushed = referrers.attach_many(reg, repo, digest, [
        (KINDS[i.kind].artifact_type, [(i.envelope, DSSE_TYPE, i.title)],
         {PREDICATE_ANNOTATION: KINDS[i.kind].predicate_type, KIND_ANNOTATION: i.kind, referrers.CREATED: created,
          **dict(i.annotations)})
        for i in items])
    att = cosign_att.add(reg, repo, digest, [cosign_att.layer(i.envelope, KINDS[i.kind].predicate_type)
                                             for i in items])
    return Attached(pushed, att)


@dataclass(frozen=True)
class Found:
    """One envelope found for a digest (nothing about it is verified yet)."""

    blob: str              # the envelope's digest (the same in both stores)
    raw: bytes
    hint: str | None       # the kind its artifactType or annotation claims (unauthenticated)
    artifact: str | None   # the referrer's manifest digest; None for an .att layer no referrer holds
    created: str | None    # the referrer's org.opencontainers.image.created

    @property
    def where(self) -> str:
        return f"referrer {self.artifact}" if self.artifact else "cosign .att layer"

    def statement(self) -> dict[str, Any] | None:
        """The in-toto statement inside, unverified; None when this is no envelope of a statement."""
        try:
            stmt = datafile.loads_json(open_envelope(self.raw).payload, "the payload", what="it")
        except ValueError:
            return None
        return stmt if isinstance(stmt, dict) and stmt.get("_type") in STATEMENT_TYPES else None


def _hint(ref: referrers.Referrer) -> str | None:
    return BY_ARTIFACT.get(ref.artifact_type) or BY_PREDICATE.get(ref.annotations.get(PREDICATE_ANNOTATION, ""))


def read(reg: Registry, repo: str, digest: str, kinds: set[str] | None = None) -> tuple[list[Found], str]:
    """Every envelope attached to ``digest`` (of ``kinds`` by their hints, when given) and the referrers
    route ('api' or 'tag-schema'). Referrers come oldest first; ``.att``-only layers follow."""
    refs, route = referrers.list_referrers(reg, repo, digest)
    out: list[Found] = []
    seen: set[str] = set()
    order = list(KINDS)
    for ref in sorted(refs, key=lambda r: (r.annotations.get(referrers.CREATED, ""),   # stable: listing order
                                           order.index(_hint(r) or "promotion"))):   # within one second

        hint = _hint(ref)
        if (hint is None and ref.artifact_type != DSSE_TYPE) or (kinds is not None and hint not in kinds):
            continue
        found = reg.manifest(repo, ref.digest)
        if found is None:
            continue
        layers = datafile.loads_json(found[0], f"manifest {ref.digest}", what="it").get("layers") or []
        layer = next((x for x in layers if isinstance(x, dict) and x.get("mediaType") == DSSE_TYPE), None)
        if layer is None or layer.get("digest") in seen:
            continue
        seen.add(layer["digest"])
        out.append(Found(layer["digest"], reg.blob(repo, layer["digest"]), hint, ref.digest,
                         ref.annotations.get(referrers.CREATED)))
    for lyr in cosign_att.layers(reg, repo, digest):
        hint = BY_PREDICATE.get((lyr.get("annotations") or {}).get(cosign_att.PREDICATE_ANNOTATION, ""))
        if lyr["digest"] in seen or lyr.get("mediaType") != DSSE_TYPE or (kinds is not None and hint not in kinds):
            continue
        seen.add(lyr["digest"])
        out.append(Found(lyr["digest"], reg.blob(repo, lyr["digest"]), hint, None, None))
    return out, route


def copy(src: Registry, src_repo: str, dst: Registry, dst_repo: str, digest: str) -> list[str]:
    """Copy every referrer and the ``.att`` image of ``digest`` (already copied) to another repository;
    the referrers' digests."""
    copied = referrers.copy_referrers(src, src_repo, dst, dst_repo, digest)
    cosign_att.copy(src, src_repo, dst, dst_repo, digest)
    return [r.digest for r in copied]


def delete(reg: Registry, repo: str, digest: str) -> None:
    """Delete the evidence of ``digest``: its referrers, the tag schema's index and the ``.att`` image."""
    for ref in referrers.list_referrers(reg, repo, digest)[0]:
        with contextlib.suppress(RegistryError):
            reg.delete_manifest(repo, ref.digest)
    for tag in (referrers.fallback_tag(digest), cosign_att.tag_for(digest)):
        found = reg.digest_of(repo, tag)
        if found:
            reg.delete_manifest(repo, found)
